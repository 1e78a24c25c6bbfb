"""The training reference set: every LoRA's transfers of every sample, cleansed, in memory.

Loaded once from one or more catalog directories (docs/design.md 6), or from the database and blob
store (training/adapt.py, through `build_reference_set`), at the encoder's input size
(resized exactly as inference resizes). Only valid references are stored, as uint8 blocks
(N_b, 3, H, W) in (LoRA, sample) order, one block per catalog, with a validity mask (L, S) over
the union: a transfer is invalid when it is missing, when cleansing (Eq. 1) says it kept no style,
or when the sample belongs to another catalog. Several catalogs (a procedural zoo and a real-art
zoo) are concatenated with their LoRA slugs and sample ids prefixed by the catalog's name, so they
never collide; storing valid references only keeps a block-sparse union as small as its parts.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from functools import cached_property
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
        return asdict(self)


DENSE_SHARE = 0.5  # valid share above which a single catalog is drawn from as a full grid


@dataclass
class ReferenceSet:
    slugs: list[str]
    sample_ids: list[str]
    blocks: list[torch.Tensor]  # uint8 (N_b, 3, H, W): the valid references in (LoRA, sample) order
    valid: torch.Tensor  # bool (L, S)
    report: CleansingReport
    catalogs: list[str] = field(default_factory=list)  # where the references were read from
    seconds: float = 0.0  # how long loading took (a time budget counts it)
    slot: torch.Tensor = field(init=False)  # int64 (L, S): row of each reference in the blocks, -1: none

    def __post_init__(self) -> None:
        count = int(self.valid.sum())
        if count != sum(len(block) for block in self.blocks):
            raise ValueError(f"{count} valid references but {sum(map(len, self.blocks))} images")
        rows = torch.cumsum(self.valid.flatten().long(), 0) - 1
        self.slot = torch.where(self.valid.flatten(), rows, -1).view(self.valid.shape)
        self._starts = np.cumsum([0] + [len(block) for block in self.blocks])

    @classmethod
    def from_dense(
        cls,
        slugs: list[str],
        sample_ids: list[str],
        images: torch.Tensor,
        valid: torch.Tensor,
        report: CleansingReport,
    ) -> ReferenceSet:
        """From a uint8 (L, S, 3, H, W) tensor; the invalid entries are left out."""
        return cls(slugs, sample_ids, [images[valid]], valid, report)

    @property
    def n_loras(self) -> int:
        return len(self.slugs)

    @property
    def n_samples(self) -> int:
        return len(self.sample_ids)

    @property
    def n_references(self) -> int:
        return int(self._starts[-1])

    @cached_property
    def dense(self) -> bool:
        """One catalog whose LoRAs restyle (nearly) every sample: any K x P draw is full."""
        return len(self.catalogs) <= 1 and float(self.valid.float().mean()) >= DENSE_SHARE

    @cached_property
    def usable_loras(self) -> np.ndarray:
        """LoRAs with at least two valid references (an anchor and a positive)."""
        return np.flatnonzero(self.valid.sum(dim=1).numpy() >= 2)

    def pick(self, loras: torch.Tensor, samples: torch.Tensor) -> torch.Tensor:
        """The uint8 references of the valid (lora, sample) pairs given elementwise."""
        return self.rows(self.slot[loras, samples])

    def rows(self, rows: torch.Tensor) -> torch.Tensor:
        """References by their row in the (LoRA, sample) order of the valid ones."""
        if bool((rows < 0).any()):
            raise IndexError("asked for a reference that is not valid")
        if len(self.blocks) == 1:
            return self.blocks[0][rows]
        first = self.blocks[0]
        out = torch.empty((len(rows), *first.shape[1:]), dtype=first.dtype)
        which = torch.from_numpy(np.searchsorted(self._starts, rows.numpy(), side="right") - 1)
        for index, block in enumerate(self.blocks):
            mine = which == index
            if bool(mine.any()):
                out[mine] = block[rows[mine] - int(self._starts[index])]
        return out

    def chunks(self, size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(images, keep) covering every valid reference in row order: images[keep] are the next
        references. A dense set is walked over the full (LoRA, sample) grid with blank images
        where a transfer is invalid, the batches the dense layout always had, so features
        computed from them (and the runs that use them) stay exactly as they were."""
        if self.dense:
            slots = self.slot.flatten()
            for start in range(0, len(slots), size):
                rows = slots[start : start + size]
                keep = rows >= 0
                images = torch.zeros((len(rows), *self.blocks[0].shape[1:]), dtype=torch.uint8)
                images[keep] = self.rows(rows[keep])
                yield images, keep
            return
        for block in self.blocks:
            for start in range(0, len(block), size):
                images = block[start : start + size]
                yield images, torch.ones(len(images), dtype=torch.bool)


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
    cleansing dropped, in any order; iterated lazily, so the caller decodes one image at a time
    under the bar."""
    lora_index = {slug: i for i, slug in enumerate(slugs)}
    sample_index = {sid: i for i, sid in enumerate(sample_ids)}
    started = time.monotonic()
    kept: dict[tuple[int, int], torch.Tensor] = {}
    count = dropped = 0
    for slug, sample_id, transfer in tqdm(
        transfers, total=total, desc="load references", unit="img", disable=not progress
    ):
        count += 1
        if transfer is None:
            dropped += 1
            continue
        image = to_tensor([transfer], input_size)[0]
        kept[lora_index[slug], sample_index[sample_id]] = (image * 255.0).round().to(torch.uint8)
    order = sorted(kept)  # the blocks hold references in (LoRA, sample) order
    valid = torch.zeros((len(slugs), len(sample_ids)), dtype=torch.bool)
    for li, si in order:
        valid[li, si] = True
    empty = torch.zeros((0, 3, input_size, input_size), dtype=torch.uint8)
    images = torch.stack([kept[key] for key in order]) if order else empty
    report = CleansingReport(cleansing_threshold, count, dropped, len(slugs) * len(sample_ids) - count)
    return ReferenceSet(slugs, sample_ids, [images], valid, report, seconds=time.monotonic() - started)


def load_reference_set(
    root: Path,
    input_size: int,
    *,
    cleansing_threshold: float | None = DEFAULT_THRESHOLD,
    progress: bool = True,
) -> ReferenceSet:
    """Read a catalog directory's references; `cleansing_threshold=None` keeps failed transfers."""
    started = time.monotonic()
    catalog = read_catalog(root)
    slugs = sorted(catalog.loras)
    sample_ids = sorted(catalog.samples)
    originals = {sid: load_image_file(path) for sid, path in catalog.samples.items()}
    present = sum(1 for slug in slugs for sid in sample_ids if sid in catalog.loras[slug].references)
    # One row per transfer present; dropped ones leave unused rows at the end (a few per cent)
    images = torch.zeros((present, 3, input_size, input_size), dtype=torch.uint8)
    valid = torch.zeros((len(slugs), len(sample_ids)), dtype=torch.bool)
    kept = dropped = 0
    bar = tqdm(total=present, desc="load references", unit="img", disable=not progress)
    for li, slug in enumerate(slugs):
        references = catalog.loras[slug].references
        for si, sample_id in enumerate(sample_ids):
            path = references.get(sample_id)
            if path is None:
                continue
            bar.update()
            transfer = load_image_file(path)
            if (
                cleansing_threshold is not None
                and transfer_mse(transfer, originals[sample_id]) < cleansing_threshold
            ):
                dropped += 1
                continue
            batch = to_tensor([transfer], input_size)[0]
            images[kept] = (batch * 255.0).round().to(torch.uint8)
            valid[li, si] = True
            kept += 1
    bar.close()
    report = CleansingReport(cleansing_threshold, present, dropped, len(slugs) * len(sample_ids) - present)
    return ReferenceSet(
        slugs, sample_ids, [images[:kept]], valid, report, [str(root)], time.monotonic() - started
    )


def zoo_names(catalogs: Sequence[Path]) -> list[str]:
    """The prefix of each catalog's slugs and sample ids in a union: its directory name, numbered
    when two catalogs share one (e.g. two `train` directories)."""
    names = [catalog.name or str(catalog) for catalog in catalogs]
    return [f"{name}#{index}" if names.count(name) > 1 else name for index, name in enumerate(names)]


def combine_reference_sets(parts: Sequence[ReferenceSet], names: Sequence[str]) -> ReferenceSet:
    """The union of several catalogs' reference sets: slugs and sample ids become "NAME/ID", and a
    LoRA has references only on its own catalog's samples (a block-diagonal validity mask)."""
    if len(parts) == 1:
        return parts[0]
    thresholds = {part.report.threshold for part in parts}
    if len(thresholds) > 1:
        raise ValueError(f"the reference sets were cleansed with different thresholds: {thresholds}")
    valid = torch.zeros((sum(p.n_loras for p in parts), sum(p.n_samples for p in parts)), dtype=torch.bool)
    row = column = 0
    for part in parts:
        valid[row : row + part.n_loras, column : column + part.n_samples] = part.valid
        row, column = row + part.n_loras, column + part.n_samples
    slugs = [f"{name}/{slug}" for part, name in zip(parts, names, strict=True) for slug in part.slugs]
    samples = [f"{name}/{sid}" for part, name in zip(parts, names, strict=True) for sid in part.sample_ids]
    # Missing pairs count within each catalog; the union's cross-catalog pairs are not transfers.
    report = CleansingReport(
        parts[0].report.threshold,
        sum(p.report.transfers for p in parts),
        sum(p.report.dropped for p in parts),
        sum(p.report.missing for p in parts),
    )
    blocks = [block for part in parts for block in part.blocks]
    catalogs = [catalog for part in parts for catalog in part.catalogs]
    return ReferenceSet(slugs, samples, blocks, valid, report, catalogs)


def load_training_references(
    catalogs: Sequence[Path],
    input_size: int,
    *,
    cleansing_threshold: float | None = DEFAULT_THRESHOLD,
    caches: Sequence[Path] = (),
    progress: bool = True,
) -> ReferenceSet:
    """The reference set of one or more catalogs. `caches`: none, one (for the whole union) or one
    per catalog, in order (reuses a single-catalog cache in a multi-catalog run); each is read when
    it exists and written when it does not."""
    if not catalogs:
        raise ValueError("no catalog to train on")
    if len(caches) not in {0, 1, len(catalogs)}:
        raise ValueError(
            f"{len(caches)} reference caches for {len(catalogs)} catalogs: "
            "give one for the union or one per catalog"
        )
    names = zoo_names(catalogs)

    def cached(paths: Sequence[Path], cache: Path | None) -> ReferenceSet:
        if cache is not None and cache.exists():
            return load_reference_cache(cache, input_size, cleansing_threshold, catalogs=paths)
        parts = [
            load_reference_set(path, input_size, cleansing_threshold=cleansing_threshold, progress=progress)
            for path in paths
        ]
        refs = combine_reference_sets(parts, zoo_names(paths))
        if cache is not None:
            save_reference_cache(refs, cache, input_size)
        return refs

    if len(caches) == len(catalogs):
        parts = [cached([path], cache) for path, cache in zip(catalogs, caches, strict=True)]
        return combine_reference_sets(parts, names)
    return cached(catalogs, caches[0] if caches else None)


def as_float(images: torch.Tensor) -> torch.Tensor:
    return images.to(torch.float32) / 255.0


@dataclass(frozen=True)
class StyleBatch:
    images: torch.Tensor  # uint8 (B, 3, H, W)
    labels: torch.Tensor  # int64 (B,): LoRA index
    contents: torch.Tensor  # int64 (B,): sample index


def sample_style_batch(
    refs: ReferenceSet, rng: np.random.Generator, styles: int, samples: int, fill: bool = False
) -> StyleBatch:
    """K LoRAs x the same P samples (valid transfers only): every batch holds the hard negatives
    "same sample, other LoRA" next to the positives "other sample, same LoRA".

    Drawn around a seed LoRA: P of its own valid samples, then K-1 other LoRAs among those with at
    least two valid references on these samples. In a sparse catalog (a real-art zoo, whose sources
    each draw their own contents, or a union of zoos) every batch thus stays inside one group of
    LoRAs that share samples, and a LoRA with only a few valid samples still gets positives.
    A single dense catalog (a procedural zoo) keeps the original draw, K LoRAs and P samples at
    random, so the documented training runs reproduce exactly.

    `fill`: when the seed's group has fewer than K LoRAs, the batch is filled up to K with LoRAs of
    other groups, each on P of its own samples. Without it a LoRA that shares no sample with
    another (a community catalog's own preview images, a lone source of a real-art zoo) only ever
    sits in a batch of its own, which has no negative: its loss is zero and the others move
    around it. Drawn after the group, so a batch without fillers is the same as without `fill`."""
    if refs.dense:
        lora_idx = rng.choice(refs.n_loras, size=min(styles, refs.n_loras), replace=False)
        sample_idx = rng.choice(refs.n_samples, size=min(samples, refs.n_samples), replace=False)
        return _grid_batch(refs, lora_idx, sample_idx)
    valid = refs.valid.numpy()
    seed = int(rng.choice(refs.usable_loras))
    own = np.flatnonzero(valid[seed])
    sample_idx = rng.choice(own, size=min(samples, len(own)), replace=False)
    shared = valid[:, sample_idx].sum(axis=1)
    others = np.flatnonzero(shared >= min(2, len(sample_idx)))
    others = others[others != seed]
    picked = rng.choice(others, size=min(styles - 1, len(others)), replace=False)
    group = np.concatenate([[seed], picked])
    batch = _grid_batch(refs, group, sample_idx)
    if not fill or len(group) >= styles:
        return batch
    return _with_fillers(refs, rng, batch, group, styles - len(group), samples)


def _with_fillers(
    refs: ReferenceSet,
    rng: np.random.Generator,
    batch: StyleBatch,
    group: np.ndarray,
    count: int,
    samples: int,
) -> StyleBatch:
    """`batch` and up to `count` LoRAs from outside `group`, each on up to `samples` of its own
    valid samples: negatives for the group (and the group for them), on other content."""
    outside = np.setdiff1d(refs.usable_loras, group)
    if not len(outside):
        return batch
    valid = refs.valid.numpy()
    loras, contents = [], []
    for lora in rng.choice(outside, size=min(count, len(outside)), replace=False):
        own = np.flatnonzero(valid[lora])
        picks = rng.choice(own, size=min(samples, len(own)), replace=False)
        loras += [int(lora)] * len(picks)
        contents += [int(c) for c in picks]
    extra_l, extra_s = torch.tensor(loras, dtype=torch.long), torch.tensor(contents, dtype=torch.long)
    return StyleBatch(
        torch.cat([batch.images, refs.pick(extra_l, extra_s)]),
        torch.cat([batch.labels, extra_l]),
        torch.cat([batch.contents, extra_s]),
    )


def _grid_batch(refs: ReferenceSet, lora_idx: np.ndarray, sample_idx: np.ndarray) -> StyleBatch:
    grid_l = torch.from_numpy(np.repeat(lora_idx.astype(np.int64), len(sample_idx)))
    grid_s = torch.from_numpy(np.tile(sample_idx.astype(np.int64), len(lora_idx)))
    keep = refs.valid[grid_l, grid_s]
    grid_l, grid_s = grid_l[keep], grid_s[keep]
    return StyleBatch(refs.pick(grid_l, grid_s), grid_l.long(), grid_s.long())


def sample_triplets(
    refs: ReferenceSet, rng: np.random.Generator, count: int, hard_share: float = 0.5
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Paper-style triplets (docs/design.md 5) as uint8 image batches; with probability
    `hard_share` the negative restyles the anchor's own sample (the hard case)."""
    valid = refs.valid.numpy()
    usable = refs.usable_loras
    loras: list[int] = []
    samples: list[int] = []
    while len(loras) < 3 * count:
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
        loras += [lora, lora, neg_lora]
        samples += [a_s, p_s, n_s]
    images = refs.pick(torch.tensor(loras), torch.tensor(samples))
    return images[0::3], images[1::3], images[2::3]


def save_reference_cache(refs: ReferenceSet, path: Path, input_size: int) -> None:
    """The decoded, cleansed reference set as .safetensors (decoding thousands of PNGs is slow)."""
    from safetensors.torch import save_file

    metadata = {
        "slugs": json.dumps(refs.slugs),
        "samples": json.dumps(refs.sample_ids),
        "report": json.dumps(refs.report.as_dict()),
        "input_size": str(input_size),
        "catalogs": json.dumps([_key(Path(c)) for c in refs.catalogs]),
    }
    tensors = {f"block/{i}": block.contiguous() for i, block in enumerate(refs.blocks)}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({**tensors, "valid": refs.valid.contiguous()}, str(path), metadata=metadata)


def _key(catalog: Path) -> str:
    return str(catalog.resolve())


def load_reference_cache(
    path: Path, input_size: int, cleansing_threshold: float | None, catalogs: Sequence[Path] | None = None
) -> ReferenceSet:
    """A cache written by save_reference_cache (or the older dense one, (L, S, 3, H, W) "images");
    `catalogs`, when given, must be the catalogs the cache was made from."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        metadata = dict(handle.metadata() or {})
        names = sorted((k for k in handle.keys() if k.startswith("block/")), key=lambda k: int(k[6:]))  # noqa: SIM118
        blocks = [handle.get_tensor(name) for name in names]
        valid = handle.get_tensor("valid")
        dense = handle.get_tensor("images") if not names else None
    report = CleansingReport(**json.loads(metadata["report"]))
    if int(metadata.get("input_size", -1)) != input_size or report.threshold != cleansing_threshold:
        raise ValueError(
            f"{path} caches input size {metadata.get('input_size')}, cleansing threshold {report.threshold}; "
            f"this run needs {input_size} and {cleansing_threshold}"
        )
    stored = json.loads(metadata["catalogs"]) if "catalogs" in metadata else None
    wanted = [_key(c) for c in catalogs] if catalogs is not None else None
    if stored is not None and wanted is not None and stored != wanted:
        raise ValueError(f"{path} caches the references of {stored}; this run trains on {wanted}")
    slugs, samples = json.loads(metadata["slugs"]), json.loads(metadata["samples"])
    if dense is not None:
        blocks = [dense[valid]]
        del dense
    sources = stored if stored is not None else [str(c) for c in catalogs or []]
    return ReferenceSet(slugs, samples, blocks, valid, report, sources)
