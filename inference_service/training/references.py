"""The training reference set: every LoRA's transfers of every sample, cleansed, in memory.

Loaded once from a catalog directory (docs/design.md 6) or from the database and blob store
(training/adapt.py), both through `build_reference_set`, into a uint8 tensor (L, S, 3, H, W) at the
encoder's input size (resized exactly as inference resizes), with a validity mask (L, S):
a transfer is invalid when it is missing or when cleansing (Eq. 1) says it kept no style.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm  # type: ignore[import-untyped]

from inference_service.catalog.format import read_catalog
from inference_service.imaging import load_image_file
from inference_service.models.style_encoder import to_tensor
from inference_service.scoring.cleansing import DEFAULT_THRESHOLD, transfer_mse


@dataclass(frozen=True)
class CleansingReport:
    threshold: float | None  # None: not applied here (off, or decided earlier: the database's kept flag)
    transfers: int  # transfers present in the catalog
    dropped: int  # removed by Eq. 1
    missing: int  # (LoRA, sample) pairs with no transfer at all

    def as_dict(self) -> dict[str, float | int | None]:
        return {
            "threshold": self.threshold,
            "transfers": self.transfers,
            "dropped": self.dropped,
            "missing": self.missing,
        }


@dataclass
class ReferenceSet:
    slugs: list[str]
    sample_ids: list[str]
    images: torch.Tensor  # uint8 (L, S, 3, H, W)
    valid: torch.Tensor  # bool (L, S)
    report: CleansingReport
    seconds: float = 0.0  # how long loading took (a time budget counts it)

    @property
    def n_loras(self) -> int:
        return len(self.slugs)

    @property
    def n_samples(self) -> int:
        return len(self.sample_ids)


def build_reference_set(
    slugs: list[str],
    sample_ids: list[str],
    transfers: Iterable[tuple[str, str, Image.Image | None]],
    input_size: int,
    *,
    cleansing_threshold: float | None,
    progress: bool = True,
    total: int | None = None,
) -> ReferenceSet:
    """The tensors from `transfers`, (slug, sample id, image) with image None for a transfer that
    cleansing dropped; iterated lazily, so the caller decodes one image at a time under the bar."""
    lora_index = {slug: i for i, slug in enumerate(slugs)}
    sample_index = {sid: i for i, sid in enumerate(sample_ids)}
    started = time.monotonic()
    images = torch.zeros((len(slugs), len(sample_ids), 3, input_size, input_size), dtype=torch.uint8)
    valid = torch.zeros((len(slugs), len(sample_ids)), dtype=torch.bool)
    count = dropped = 0
    for slug, sample_id, transfer in tqdm(
        transfers, total=total, desc="load references", unit="img", disable=not progress
    ):
        count += 1
        if transfer is None:
            dropped += 1
            continue
        li, si = lora_index[slug], sample_index[sample_id]
        batch = to_tensor([transfer], input_size)[0]
        images[li, si] = (batch * 255.0).round().to(torch.uint8)
        valid[li, si] = True
    missing = len(slugs) * len(sample_ids) - count
    report = CleansingReport(cleansing_threshold, count, dropped, missing)
    return ReferenceSet(slugs, sample_ids, images, valid, report, time.monotonic() - started)


def load_reference_set(
    root: Path,
    input_size: int,
    *,
    cleansing_threshold: float | None = DEFAULT_THRESHOLD,
    progress: bool = True,
) -> ReferenceSet:
    """Read a catalog directory's references; `cleansing_threshold=None` keeps failed transfers."""
    catalog = read_catalog(root)
    slugs = sorted(catalog.loras)
    sample_ids = sorted(catalog.samples)
    originals = {sid: load_image_file(path) for sid, path in catalog.samples.items()}

    def transfers() -> Iterator[tuple[str, str, Image.Image | None]]:
        for slug in slugs:
            references = catalog.loras[slug].references
            for sample_id in sample_ids:
                path = references.get(sample_id)
                if path is None:
                    continue
                transfer = load_image_file(path)
                failed = (
                    cleansing_threshold is not None
                    and transfer_mse(transfer, originals[sample_id]) < cleansing_threshold
                )
                yield slug, sample_id, None if failed else transfer

    return build_reference_set(
        slugs,
        sample_ids,
        transfers(),
        input_size,
        cleansing_threshold=cleansing_threshold,
        progress=progress,
        total=sum(len(catalog.loras[slug].references) for slug in slugs),
    )


def as_float(images: torch.Tensor) -> torch.Tensor:
    return images.to(torch.float32) / 255.0


@dataclass(frozen=True)
class StyleBatch:
    images: torch.Tensor  # uint8 (B, 3, H, W)
    labels: torch.Tensor  # int64 (B,): LoRA index
    contents: torch.Tensor  # int64 (B,): sample index


def sample_style_batch(refs: ReferenceSet, rng: np.random.Generator, styles: int, samples: int) -> StyleBatch:
    """K LoRAs x the same P samples (valid transfers only): every batch holds the hard negatives
    "same sample, other LoRA" next to the positives "other sample, same LoRA"."""
    lora_idx = rng.choice(refs.n_loras, size=min(styles, refs.n_loras), replace=False)
    sample_idx = rng.choice(refs.n_samples, size=min(samples, refs.n_samples), replace=False)
    grid_l = torch.from_numpy(np.repeat(lora_idx, len(sample_idx)))
    grid_s = torch.from_numpy(np.tile(sample_idx, len(lora_idx)))
    keep = refs.valid[grid_l, grid_s]
    grid_l, grid_s = grid_l[keep], grid_s[keep]
    return StyleBatch(refs.images[grid_l, grid_s], grid_l.long(), grid_s.long())


def sample_triplets(
    refs: ReferenceSet, rng: np.random.Generator, count: int, hard_share: float = 0.5
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Paper-style triplets (docs/design.md 5) as uint8 image batches; with probability
    `hard_share` the negative restyles the anchor's own sample (the hard case)."""
    valid = refs.valid.numpy()
    usable = np.flatnonzero(valid.sum(axis=1) >= 2)
    anchors: list[torch.Tensor] = []
    positives: list[torch.Tensor] = []
    negatives: list[torch.Tensor] = []
    while len(anchors) < count:
        lora = int(rng.choice(usable))
        a_s, p_s = (int(v) for v in rng.choice(np.flatnonzero(valid[lora]), size=2, replace=False))
        if rng.random() < hard_share:  # same sample, other LoRA
            others = np.flatnonzero(valid[:, a_s])
            others = others[others != lora]
            if not len(others):
                continue
            neg_lora, n_s = int(rng.choice(others)), a_s
        else:
            others = usable[usable != lora]
            neg_lora = int(rng.choice(others))
            n_s = int(rng.choice(np.flatnonzero(valid[neg_lora])))
        anchors.append(refs.images[lora, a_s])
        positives.append(refs.images[lora, p_s])
        negatives.append(refs.images[neg_lora, n_s])
    return torch.stack(anchors), torch.stack(positives), torch.stack(negatives)


def save_reference_cache(refs: ReferenceSet, path: Path, input_size: int) -> None:
    """The decoded, cleansed reference set as .safetensors (decoding thousands of PNGs is slow)."""
    from safetensors.torch import save_file

    metadata = {
        "slugs": json.dumps(refs.slugs),
        "samples": json.dumps(refs.sample_ids),
        "report": json.dumps(refs.report.as_dict()),
        "input_size": str(input_size),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(
        {"images": refs.images.contiguous(), "valid": refs.valid.contiguous()}, str(path), metadata=metadata
    )


def load_reference_cache(path: Path, input_size: int, cleansing_threshold: float | None) -> ReferenceSet:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        metadata = dict(handle.metadata() or {})
        images, valid = handle.get_tensor("images"), handle.get_tensor("valid")
    report = CleansingReport(**json.loads(metadata["report"]))
    if int(metadata.get("input_size", -1)) != input_size or report.threshold != cleansing_threshold:
        raise ValueError(
            f"{path} caches input size {metadata.get('input_size')}, cleansing threshold {report.threshold}; "
            f"this run needs {input_size} and {cleansing_threshold}"
        )
    return ReferenceSet(json.loads(metadata["slugs"]), json.loads(metadata["samples"]), images, valid, report)
