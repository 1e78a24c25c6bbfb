"""The style zoo: a procedural catalog of parametric "LoRAs" (docs/design.md 6 and 8).

Besides the catalog it writes zoo.json (ignored by `read_catalog`) and, for the eval, demo and
heldout-family splits, queries/ + queries.json (`n_queries`: one per LoRA, then further rounds).
Splits draw styles from independent random streams and content from separate pools (content.py);
queries use a third pool. Train, eval and demo styles take their primary look from
style_ops.PRIMARIES (the trained families); the train-wide split adds wide_ops.WIDE_PRIMARIES
(six more families, for training only); the heldout-family split draws only from
held_out_ops.HELD_OUT_PRIMARIES, families no encoder trains on. A small share of transfers "fail"
(the reference is the unchanged sample), as real ones do; cleansing (Eq. 1) removes them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image
from tqdm import tqdm  # type: ignore[import-untyped]

from inference_service.catalog.format import LoraEntry, dump_toml, lora_toml
from lab.zoo.content import Content, Pool, sample_content
from lab.zoo.held_out_ops import HELD_OUT_PRIMARIES
from lab.zoo.style_ops import PRIMARIES, StyleSpec, apply_style, lookalike, sample_style
from lab.zoo.wide_ops import WIDE_PRIMARIES

Split = Literal["train", "train-wide", "eval", "demo", "heldout-family"]
SPLITS: tuple[Split, ...] = ("train", "train-wide", "eval", "demo", "heldout-family")
SPLIT_STREAM: dict[Split, int] = {"train": 11, "train-wide": 55, "eval": 22, "demo": 33, "heldout-family": 44}
TRAIN_SPLITS: tuple[Split, ...] = ("train", "train-wide")
REFERENCE_POOL: dict[Split, Pool] = {
    split: "train" if split in TRAIN_SPLITS else "eval-ref" for split in SPLITS
}
# The primary families each split draws from: held-out families never reach a training split, and
# the wider training families (wide_ops.py) only the train-wide split, so the eval split measures
# the same ten families it always measured.
SPLIT_PRIMARIES: dict[Split, tuple[str, ...]] = {
    "train": PRIMARIES,
    "train-wide": PRIMARIES + WIDE_PRIMARIES,
    "eval": PRIMARIES,
    "demo": PRIMARIES,
    "heldout-family": HELD_OUT_PRIMARIES,
}
DEFAULT_SIZE = 160
LOOKALIKE_SHARE = 0.3
FAILED_TRANSFER_SHARE = 0.03
QUERIES_FILE = "queries.json"
ZOO_FILE = "zoo.json"


@dataclass(frozen=True)
class Query:
    path: Path
    slug: str  # the LoRA (style) that made it: the right answer
    source: str  # content source, never used by the catalog's samples


def _stream(seed: int, split: Split, *parts: int) -> np.random.Generator:
    return np.random.default_rng([seed, SPLIT_STREAM[split], *parts])


def zoo_styles(
    n_styles: int, split: Split, seed: int, lookalike_share: float = LOOKALIKE_SHARE
) -> list[StyleSpec]:
    """The split's styles; about `lookalike_share` of them are near copies of an earlier one."""
    styles: list[StyleSpec] = []
    for index in range(n_styles):
        rng = _stream(seed, split, 0, index)
        if styles and rng.random() < lookalike_share:
            parent = int(rng.integers(0, len(styles)))
            styles.append(lookalike(styles[parent], parent, rng))
        else:
            styles.append(sample_style(rng, SPLIT_PRIMARIES[split]))
    return styles


def style_slug(split: Split, index: int, spec: StyleSpec) -> str:
    return f"{split}-{index:04d}-{spec.primary.replace('_', '-')}"


def _contents(pool: Pool, count: int, seed: int, split: Split, stream: int, size: int) -> Iterator[Content]:
    for index in range(count):
        # The scene index folds in seed and split so different zoos draw different scenes.
        yield sample_content(
            pool, _stream(seed, split, stream, index), size, scene_index=seed * 100_003 + index
        )


def generate_zoo(
    out_dir: Path,
    *,
    n_styles: int,
    n_samples: int,
    split: Split,
    seed: int,
    progress: bool = True,
    size: int = DEFAULT_SIZE,
    n_queries: int = 40,
    lookalike_share: float = LOOKALIKE_SHARE,
    failed_share: float = FAILED_TRANSFER_SHARE,
) -> Path:
    """Write a style-zoo catalog directory to `out_dir` and return it."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "samples").mkdir(exist_ok=True)
    styles = zoo_styles(n_styles, split, seed, lookalike_share)
    samples = list(_contents(REFERENCE_POOL[split], n_samples, seed, split, 1, size))
    sample_ids = [f"s{index:03d}" for index in range(n_samples)]
    for sample_id, content in zip(sample_ids, samples, strict=True):
        content.image.save(out_dir / "samples" / f"{sample_id}.png")

    (out_dir / "catalog.toml").write_text(
        dump_toml(
            {
                "name": f"style zoo ({split}, seed {seed})",
                "base_model": "sd1",
                "note": f"procedural styles: {n_styles} styles x {n_samples} samples at {size} px",
            }
        ),
        encoding="utf-8",
    )
    slugs = [style_slug(split, index, spec) for index, spec in enumerate(styles)]
    failed: list[str] = []
    bar = tqdm(total=n_styles * n_samples, desc=f"zoo {split}", unit="img", disable=not progress)
    for index, (slug, spec) in enumerate(zip(slugs, styles, strict=True)):
        lora_dir = out_dir / "loras" / slug
        (lora_dir / "references").mkdir(parents=True, exist_ok=True)
        entry = LoraEntry(
            slug=slug,
            name=f"{spec.primary.replace('_', ' ').title()} #{index}",
            url=f"https://example.invalid/zoo/{slug}",
            author="findlora style zoo",
            license="CC0-1.0",
            trigger_words=[f"zoo{index}"],
        )
        (lora_dir / "lora.toml").write_text(lora_toml(entry), encoding="utf-8")
        for sample_number, (sample_id, content) in enumerate(zip(sample_ids, samples, strict=True)):
            rng = _stream(seed, split, 2, index, sample_number)
            if rng.random() < failed_share:
                reference = content.image
                failed.append(f"{slug}/{sample_id}")
            else:
                reference = apply_style(spec, content.image, rng)
            reference.save(lora_dir / "references" / f"{sample_id}.png")
            bar.update()
    bar.close()

    queries: list[dict[str, str]] = []
    if split not in TRAIN_SPLITS and n_queries > 0:
        queries = _write_queries(out_dir, styles, slugs, n_queries, seed, split, size)
    zoo = {
        "split": split,
        "seed": seed,
        "size": size,
        "n_styles": n_styles,
        "n_samples": n_samples,
        "styles": {slug: spec.to_json() for slug, spec in zip(slugs, styles, strict=True)},
        "samples": {
            sample_id: content.source for sample_id, content in zip(sample_ids, samples, strict=True)
        },
        "failed_transfers": failed,
        "families": list(SPLIT_PRIMARIES[split]),
        "trained_families": list(PRIMARIES + WIDE_PRIMARIES),  # what any training split draws
        "held_out_families": list(HELD_OUT_PRIMARIES),
        "queries": queries,
    }
    (out_dir / ZOO_FILE).write_text(json.dumps(zoo, indent=1), encoding="utf-8")
    return out_dir


def query_styles(n_styles: int, count: int, seed: int, split: Split) -> list[int]:
    """Which LoRA each query restyles: rounds of distinct LoRAs, so no LoRA has two queries more
    than another. The first round is the one-query-per-LoRA choice that zoos with `count <=
    n_styles` have always used, so those zoos are unchanged."""
    chosen: list[int] = []
    for round_number in range(-(-count // n_styles) if n_styles else 0):
        rng = _stream(seed, split, 3) if round_number == 0 else _stream(seed, split, 3, round_number)
        size = min(n_styles, count - len(chosen))
        chosen += sorted(int(i) for i in rng.choice(n_styles, size=size, replace=False))
    return chosen


def _write_queries(
    out_dir: Path, styles: list[StyleSpec], slugs: list[str], count: int, seed: int, split: Split, size: int
) -> list[dict[str, str]]:
    """`count` queries over the LoRAs (several per LoRA when count > LoRAs), each on its own
    unseen content image."""
    query_dir = out_dir / "queries"
    query_dir.mkdir(exist_ok=True)
    chosen = query_styles(len(styles), count, seed, split)
    contents = list(_contents("eval-query", count, seed, split, 4, size))
    records = []
    for number, (style_index, content) in enumerate(zip(chosen, contents, strict=True)):
        image = apply_style(styles[style_index], content.image, _stream(seed, split, 5, number))
        name = f"q{number:03d}.png"
        image.save(query_dir / name)
        records.append({"file": f"queries/{name}", "slug": slugs[style_index], "source": content.source})
    (out_dir / QUERIES_FILE).write_text(json.dumps(records, indent=1), encoding="utf-8")
    return records


def read_queries(root: Path) -> list[Query]:
    """The queries written next to an eval/demo zoo catalog (empty for a train zoo)."""
    path = root / QUERIES_FILE
    if not path.exists():
        return []
    records = json.loads(path.read_text(encoding="utf-8"))
    return [Query(root / r["file"], r["slug"], r["source"]) for r in records]


def read_zoo_info(root: Path) -> dict[str, object]:
    """zoo.json: style parameters, content sources, failed transfers."""
    info: dict[str, object] = json.loads((root / ZOO_FILE).read_text(encoding="utf-8"))
    return info


def load_rgb(path: Path) -> Image.Image:
    with Image.open(path) as image:
        return image.convert("RGB")
