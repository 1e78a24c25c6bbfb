"""What one `bench quality` run carries: its configuration, each zoo loaded once, the rows it
scores, and the context (zoo, encoder, cached vectors, validation zoo) a row is scored in."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from inference_service.models.style_encoder import StyleEncoder
from inference_service.scoring.cleansing import DEFAULT_THRESHOLD
from lab.bench.seed_ledger import LEDGER
from lab.metrics import BOOTSTRAP_RESAMPLES
from lab.zoo.style_zoo import Query

VALIDATION_SEED = 7  # the project's validation zoo seed (model selection, F1 thresholds)
# Bumped whenever generated zoo content changes for the same arguments, so cached zoos are not
# reused stale. 2: real lfw faces in every pool; more queries than LoRAs in rounds.
ZOO_FORMAT = 2


@dataclass(frozen=True)
class QualityConfig:
    zoo: Path | None = None  # an existing eval zoo; None: generate (and cache) one
    cache_dir: Path = Path(".bench")
    n_styles: int = 100
    n_samples: int = 30
    n_queries: int = 200
    zoo_seed: int = 0
    val_zoo: Path | None = None  # an existing validation zoo for the F1 thresholds
    val_seed: int = VALIDATION_SEED  # else one generated with this seed (when the eval zoo is)
    val_zoo_pairs: bool = True  # False: thresholds from a held-out half of the eval pairs
    real_zoo: Path | None = None  # a human-made-art eval zoo: adds the "real-art" rows
    held_out_zoo: Path | None = None  # a heldout-family zoo: rows from held_out_rows.py (extra_rows)
    bootstrap_resamples: int = BOOTSTRAP_RESAMPLES
    seed_ledger: Path = LEDGER
    reuse_seed: bool = False  # score an eval seed the ledger lists for other encoders
    record_seed: bool = False  # append this run's (zoo, seed, encoder) to the ledger
    image_size: int = 160
    n_positive: int = 10_000
    n_negative: int = 10_100
    pair_seed: int = 0
    cleansing_threshold: float = DEFAULT_THRESHOLD
    encoder: Path | None = None  # None: the shipped default (else untrained)
    no_cleansing_encoder: Path | None = None  # an encoder trained without cleansing, if any


@dataclass
class EvalSet:
    """The eval zoo loaded once: images, labels, cleansing mask and queries."""

    root: Path
    slugs: list[str]
    sample_ids: list[str]
    references: list[Image.Image]  # L*S, LoRA-major
    labels: NDArray[np.int64]
    contents: NDArray[np.int64]
    kept: NDArray[np.bool_]  # Eq. 1 says the transfer imparted a style
    queries: list[Query]
    query_images: list[Image.Image]
    truth: NDArray[np.int64]


@dataclass
class Row:
    method: str
    featurizer: str
    aggregation: str
    cleansed: bool
    ranking: dict[str, Any]  # RankingMetrics.as_dict(): numbers, mrr_ci / hit5_ci [low, high]
    verification: dict[str, float | int]
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. an adapted row's delta and adaptation

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class QualityContext:
    config: QualityConfig
    data: EvalSet
    encoder: StyleEncoder
    encoder_label: str
    progress: bool
    embeddings: dict[str, NDArray[np.float32]] = field(default_factory=dict)  # by featurizer name
    validation: QualityContext | None = None  # the validation zoo: F1 thresholds come from it


# Called at the end with every row and each zoo's (context, d_avg row), e.g. to add adapted rows.
ZooRowsHook = Callable[[list[Row], list[tuple[QualityContext, Row]]], None]
