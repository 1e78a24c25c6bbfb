"""Adapt the style encoder to the catalog: fine-tune on the catalog's own references, keep the
result only when it ranks held-out content better.

A catalog's references are labelled examples of exactly the styles a deployment must tell apart
(LoRA = label). Its sample ids are split (seeded): fine-tuning sees only the training samples'
references; the validation queries are each LoRA's held-out-sample references, ranked against
every LoRA by d_avg over the training-sample references: the service's ranking, on content the
encoder has not seen, as a user's query is. Kept when validation MRR rises by more than
`min_gain`. The whole run fits `max_minutes` (loading, training, both validations and, when
`reembed` says how many references an activation will embed, the time to embed them),
checkpoints under a work directory and resumes there after an interruption.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
import math
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from filelock import FileLock, Timeout
from PIL import Image
from tqdm import tqdm  # type: ignore[import-untyped]

from inference_service.imaging import load_image_file
from inference_service.models.style_encoder import StyleEncoder, encoder_fingerprint
from inference_service.scoring.style_distance import style_distances
from inference_service.training.references import ReferenceSet, as_float, build_reference_set
from inference_service.training.schedule import FIRST_FIT_STEP, PaceFit
from inference_service.training.trainer import TrainConfig, _make_optimizer, _step_loss, train

if TYPE_CHECKING:  # the database stack is needed only to read a catalog from it
    from db.database import Database
    from inference_service.blobs import BlobStore

# Fine-tuning never runs more passes than this over the training references (by default): on a
# small catalog the time budget would allow thousands, which only fit those references tighter.
# Chosen on validation zoos only (docs/benchmarks.md, "Adaptation's epoch cap"): on the real-art
# validation zoo 60 passes gained +0.196 MRR on held-out content against +0.136 for 30; on the
# held-out-family validation zoo 42 passes gained +0.100 against +0.098.
MAX_EPOCHS = 60.0
# Time kept back beyond the measured validation time (checkpoint writes, the last step's overrun).
SAFETY_SECONDS = 3.0


class AdaptError(ValueError):
    """The catalog cannot be adapted to (too few LoRAs or samples); the message says why."""


@dataclass(frozen=True)
class AdaptConfig:
    max_minutes: float = 5.0  # whole budget: loading + training + validation (+ re-embedding)
    threads: int = 0  # 0: leave torch's default
    holdout_fraction: float = 0.25  # share of sample ids held out for validation
    min_gain: float = 0.01  # validation MRR must rise by more than this to keep
    seed: int = 0
    max_steps: int | None = None  # cap on fine-tuning steps (tests use a few)
    max_epochs: float = MAX_EPOCHS  # cap on passes over the training references
    reembed: int = 0  # references an activation re-embeds after a kept run: their time is kept back


@dataclass(frozen=True)
class AdaptOutcome:
    model: StyleEncoder  # the fine-tuned encoder (eval mode, CPU)
    start_label: str  # label of the encoder it started from
    before: float  # validation MRR of the starting encoder
    after: float  # validation MRR of the fine-tuned encoder
    before_hit5: float
    after_hit5: float
    kept: bool  # after > before + min_gain
    reason: str  # one sentence for the user: why kept or refused
    steps: int
    seconds: float
    resumed: bool
    loras: int
    train_samples: list[str] = field(default_factory=list)
    val_samples: list[str] = field(default_factory=list)
    queries: int = 0
    # A finished run's checkpoint, plan, weights and loss curve: kept until the caller is done with
    # the model (an activation interrupted half-way resumes from them instead of training again).
    work_files: tuple[Path, ...] = ()

    def as_dict(self) -> dict[str, object]:
        """JSON-ready, without the model and the work files."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("model", "work_files")}

    def discard_work_files(self) -> None:
        for path in self.work_files:
            path.unlink(missing_ok=True)


TrainingRow = tuple[str, str, str, bool]  # db.catalog.training_references: slug, sample id, blob, kept


def lora_draw(rows: list[TrainingRow], max_references: int | None) -> list[TrainingRow]:
    """All of `rows` when they fit `max_references` (None: no cap); else whole LoRAs, in the order
    of a hash of their slug, while their references fit: the tensors of a large catalog would not
    fit in memory (10,000 LoRAs x 30 references are 15 GB at 128 px, held two or three times
    over). A LoRA keeps its place in the order as the catalog grows, and whole LoRAs keep their
    "same sample, other LoRA" negatives."""
    if max_references is None or len(rows) <= max_references:
        return rows
    by_lora: dict[str, list[TrainingRow]] = {}
    for row in rows:
        by_lora.setdefault(row[0], []).append(row)
    order = sorted(by_lora, key=lambda slug: (hashlib.sha256(slug.encode()).digest(), slug))
    drawn: list[TrainingRow] = []
    for slug in order:
        if len(drawn) + len(by_lora[slug]) > max_references:
            break
        drawn += by_lora[slug]
    return sorted(drawn)


async def catalog_reference_set(
    db: Database, blobs: BlobStore, input_size: int, *, progress: bool = True
) -> ReferenceSet:
    """Every reference of every active or hidden LoRA (taken-down ones stay out), label = LoRA;
    a reference the importer's cleansing did not keep counts as dropped. Decoded in a thread."""
    from db import catalog as db_catalog

    rows = await db.run(db_catalog.training_references)
    return await reference_set_of(rows, blobs, input_size, progress=progress)


async def reference_set_of(
    rows: list[TrainingRow], blobs: BlobStore, input_size: int, *, progress: bool = True
) -> ReferenceSet:
    """The reference set of these training rows (`catalog_reference_set`, or a `lora_draw` of them)."""
    slugs = sorted({row[0] for row in rows})
    sample_ids = sorted({row[1] for row in rows})

    def transfers() -> Iterator[tuple[str, str, Image.Image | None]]:
        for slug, sample_id, blob_key, kept in rows:
            yield slug, sample_id, load_image_file(blobs.path(blob_key)) if kept else None

    return await asyncio.to_thread(
        build_reference_set,
        slugs,
        sample_ids,
        transfers(),
        input_size,
        cleansing_threshold=None,  # decided at import (the kept flag), not here
        progress=progress,
        total=len(rows),
    )


_SPLIT_SALT = "0"  # not the run's seed (see split_samples); "0": the default seed's split as before


def split_samples(sample_ids: list[str], holdout_fraction: float) -> tuple[list[str], list[str]]:
    """(training, held-out) sample ids. A sample is held out when its own hash falls under
    `holdout_fraction`, so its split depends neither on the others nor on the seed (with it, a run
    with another --seed validated on samples the active adapted encoder trained on): a catalog that
    grows keeps its held-out samples held out. At least 1 is held out and 2 are left to train on."""
    n = len(sample_ids)
    if n < 3:
        raise AdaptError(
            f"the catalog has {n} sample(s); adapting needs at least 3 "
            "(one held out for validation, two to train on)"
        )

    def position(sample_id: str) -> float:
        digest = hashlib.sha256(f"{_SPLIT_SALT}:{sample_id}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64

    ordered = sorted(sample_ids, key=lambda sid: (position(sid), sid))
    under = sum(1 for sid in ordered if position(sid) < holdout_fraction)
    held_out = set(ordered[: min(n - 2, max(1, under))])
    return [s for s in sample_ids if s not in held_out], sorted(held_out)


def sample_columns(refs: ReferenceSet, sample_ids: list[str]) -> ReferenceSet:
    """The reference set restricted to these samples (a copy)."""
    index = torch.tensor([refs.sample_ids.index(s) for s in sample_ids], dtype=torch.long)
    valid = refs.valid[:, index]
    loras, columns = torch.nonzero(valid, as_tuple=True)  # (LoRA, sample) order, as blocks hold them
    images = refs.pick(loras, index[columns])
    return ReferenceSet(refs.slugs, list(sample_ids), [images], valid, refs.report, refs.catalogs)


def reference_fingerprint(refs: ReferenceSet) -> str:
    digest = hashlib.sha256(json.dumps([refs.slugs, refs.sample_ids]).encode())
    digest.update(refs.valid.numpy().tobytes())
    for block in refs.blocks:
        digest.update(block.contiguous().numpy().reshape(-1).data)
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class Score:
    mrr: float
    hit5: float
    seconds: float


class Validation:
    """Held-out queries ranked by d_avg against every LoRA's training-sample references."""

    def __init__(self, train_refs: ReferenceSet, val_refs: ReferenceSet, progress: bool) -> None:
        # A LoRA with no usable training reference cannot be ranked (nor asked for).
        self.candidates = [m for m in range(train_refs.n_loras) if bool(train_refs.valid[m].any())]
        if len(self.candidates) < 2:
            raise AdaptError(
                f"the catalog has {len(self.candidates)} LoRA(s) with usable references on the "
                "training samples; adapting needs at least 2 to tell apart"
            )
        position = {m: i for i, m in enumerate(self.candidates)}
        valid = train_refs.valid[self.candidates]
        owners, columns = torch.nonzero(valid, as_tuple=True)
        self.reference_images = train_refs.pick(torch.tensor(self.candidates)[owners], columns)
        self.reference_owner = owners.numpy()
        pairs = [(m, s) for m, s in torch.nonzero(val_refs.valid).tolist() if m in position]
        if not pairs:
            raise AdaptError("no LoRA has a usable reference on the held-out samples to validate with")
        lora_ids, sample_ids = (torch.tensor(column) for column in zip(*pairs, strict=True))
        self.query_images = val_refs.pick(lora_ids, sample_ids)
        self.truth = np.array([position[m] for m, _ in pairs], dtype=np.int64)
        self.progress = progress

    @property
    def queries(self) -> int:
        return len(self.truth)

    def _embed(self, model: StyleEncoder, images: torch.Tensor, chunk: int = 256) -> np.ndarray:
        device = next(model.parameters()).device
        parts = []
        with torch.inference_mode():
            for start in tqdm(
                range(0, len(images), chunk), desc="validate", unit="chunk", disable=not self.progress
            ):
                parts.append(model(as_float(images[start : start + chunk].to(device))).float().cpu())
        return torch.cat(parts).numpy()

    def score(self, model: StyleEncoder) -> Score:
        started = time.monotonic()
        was_training = model.training
        model.eval()
        references = self._embed(model, self.reference_images)
        queries = self._embed(model, self.query_images)
        model.train(was_training)
        per_lora = [references[self.reference_owner == i] for i in range(len(self.candidates))]
        distances = style_distances(queries, per_lora, "d_avg")
        truth_distance = distances[np.arange(len(self.truth)), self.truth][:, None]
        # Ties count half (the expected rank under a random tie-break): counting them in the
        # query's favour would score an encoder that maps everything to one point as perfect.
        ties = (distances == truth_distance).sum(axis=1) - 1
        ranks = (distances < truth_distance).sum(axis=1) + 1 + 0.5 * ties
        return Score(float(np.mean(1.0 / ranks)), float(np.mean(ranks <= 5)), time.monotonic() - started)


def adapt_train_config(start: StyleEncoder, config: AdaptConfig, steps: int) -> TrainConfig:
    """The v5 stage's settings (AdamW, lr 1e-3 cosine, batch-all triplet loss, margin 0.2,
    K=12 LoRAs x P=4 samples, random crops), from the starting encoder, no head-only phase.

    Batch-all mining over K LoRAs x the same P samples puts every sample under several LoRAs in
    each batch, so each anchor's hardest negatives are "same sample, other LoRA": the content is
    shared and only the style tells them apart. Batches are filled up to K LoRAs from other groups
    when the LoRAs sharing the batch's samples are fewer (`fill_batches`): a LoRA whose samples no
    other LoRA restyles would otherwise never meet a negative. On the real-art validation zoo that
    raised the adapted MRR from 0.879 to 0.908 (its lone freeciv style from 0.50 to 1.00, icon
    themes from 0.64 to 0.68; level on the eval split, whose lone styles rank first either way);
    a dense catalog's batches are drawn as before.

    The proxy term (v5's second term) stays off: on a 100-style x 30-sample catalog it added only
    0.004-0.005 validation MRR at 300, 600 and 1,340 steps (0.963/0.969/0.974 without,
    0.967/0.973/0.979 with; one catalog, one seed)."""
    size = start.config.input_size
    return TrainConfig(
        backbone=start.config.backbone,
        mining="batch-all",
        epochs=config.max_epochs,
        max_steps=steps,
        styles_per_batch=12,
        samples_per_batch=4,
        fill_batches=True,
        optimizer="adamw",
        lr=1e-3,
        schedule="cosine",
        margin=0.2,
        loss="triplet",
        proxy_weight=0.0,
        crop=size * 7 // 8,
        cleansing_threshold=None,  # the reference set arrives cleansed
        seed=config.seed,
        checkpoint_every=25,
        head_steps=0,
        encoder=start.config,
    )


def epoch_steps(refs: ReferenceSet, train_config: TrainConfig) -> int:
    per_step = train_config.styles_per_batch * train_config.samples_per_batch
    return max(1, math.ceil(train_config.epochs * int(refs.valid.sum()) / per_step))


def step_seconds(model: StyleEncoder, refs: ReferenceSet, train_config: TrainConfig, steps: int = 3) -> float:
    """Seconds per training step (the mean of `steps` after a warm-up one), measured on a copy with
    generators of its own, so nothing of the run itself moves."""
    probe = copy.deepcopy(model).train()
    optimizer = _make_optimizer(train_config, probe)
    rng = np.random.default_rng(train_config.seed)
    times = []
    with torch.random.fork_rng(devices=[]):
        for _ in range(steps + 1):
            began = time.monotonic()
            loss = _step_loss(probe, refs, train_config, rng)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            if next(probe.parameters()).device.type == "cuda":
                torch.cuda.synchronize()  # a queued step is not a finished one
            times.append(time.monotonic() - began)
    return float(np.mean(times[1:]))


def per_image_seconds(refs: ReferenceSet, validation: Validation, score: Score) -> float:
    """Seconds to decode and embed one reference, as loading and the first validation measured
    them: what an activation spends on each reference it re-embeds."""
    decode = refs.seconds / max(1, refs.report.transfers - refs.report.dropped)
    embed = score.seconds / max(1, len(validation.reference_images) + validation.queries)
    return decode + embed


# Settings a resumed run may change: threads change no result; the budget (max_minutes, reembed)
# changes only the step count, which the plan file keeps (and, once fitted, the checkpoint);
# min_gain only the decision.
RESUMABLE_SETTINGS = ("threads", "reembed", "max_minutes", "min_gain")


def _run_key(start: StyleEncoder, refs: ReferenceSet, config: AdaptConfig) -> str:
    settings = {k: v for k, v in asdict(config).items() if k not in RESUMABLE_SETTINGS}
    recipe = adapt_train_config(start, config, 0).to_json()  # a checkpoint of another recipe never resumes
    text = json.dumps(
        {
            "start": encoder_fingerprint(start),
            "refs": reference_fingerprint(refs),
            "config": settings,
            "recipe": recipe,
        },
        sort_keys=True,
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _decide(
    before: Score, after: Score, config: AdaptConfig, queries: int, start_label: str, interrupted: str
) -> tuple[bool, str]:
    numbers = (
        f"validation MRR {before.mrr:.3f} -> {after.mrr:.3f} (hit@5 {before.hit5:.2f} -> {after.hit5:.2f})"
        f" on {queries} queries of held-out samples"
    )
    if interrupted:
        return False, f"not kept: {interrupted} (run again to resume); {numbers} so far"
    if after.mrr > before.mrr + config.min_gain:
        return True, f"kept: {numbers}, a gain above the required {config.min_gain}"
    return False, f"refused: {numbers}, not a gain above the required {config.min_gain}; {start_label} stays"


def adapt_encoder(
    refs: ReferenceSet,
    start: StyleEncoder,
    start_label: str,
    config: AdaptConfig,
    work_dir: Path,
    *,
    progress: bool = True,
    stop_after_step: int | None = None,
    device: str | None = None,
) -> AdaptOutcome:
    """Fine-tune `start` on the catalog's references and validate it against `start`.

    Checkpoints under `work_dir` (keyed by the starting encoder, the reference set and `config`),
    so a rerun after an interruption resumes; `stop_after_step` interrupts on purpose (the outcome
    is then refused and says so). `device`: cuda when there is one, unless given."""
    work_dir.mkdir(parents=True, exist_ok=True)
    # One run per work directory (the worker's job and the CLI in one container share it): the
    # second would resume from the first one's unfinished checkpoint and delete its files.
    lock = FileLock(work_dir / "adapt.lock")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise AdaptError(
            f"another adaptation is running on {work_dir}; wait for it to end and run this one again"
        ) from None
    previous_threads = torch.get_num_threads()
    if config.threads > 0:
        torch.set_num_threads(config.threads)
    try:
        return _adapt(refs, start, start_label, config, work_dir, progress, stop_after_step, device)
    finally:
        torch.set_num_threads(previous_threads)
        lock.release()


def _adapt(
    refs: ReferenceSet,
    start: StyleEncoder,
    start_label: str,
    config: AdaptConfig,
    work_dir: Path,
    progress: bool,
    stop_after_step: int | None,
    device: str | None,
) -> AdaptOutcome:
    started = time.monotonic()
    deadline = started + config.max_minutes * 60 - refs.seconds  # loading already spent its share
    if refs.n_loras == 0:
        raise AdaptError("the catalog is empty: import one first (findlora catalog import DIRECTORY)")
    if refs.n_loras < 2:
        raise AdaptError(f"the catalog has {refs.n_loras} LoRA(s); adapting needs at least 2 to tell apart")
    train_ids, val_ids = split_samples(refs.sample_ids, config.holdout_fraction)
    train_refs, val_refs = sample_columns(refs, train_ids), sample_columns(refs, val_ids)
    validation = Validation(train_refs, val_refs, progress)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    start_model = copy.deepcopy(start).to(device).eval()
    before = validation.score(start_model)

    key = _run_key(start, refs, config)
    checkpoint = work_dir / f"adapt-{key}.ckpt.safetensors"
    plan_path = work_dir / f"adapt-{key}.plan.json"
    resumed = checkpoint.exists() and plan_path.exists()
    if not resumed:  # another catalog, encoder or recipe left them: they can never resume
        for stale in work_dir.glob("adapt-*"):
            if not stale.name.startswith(f"adapt-{key}."):
                stale.unlink(missing_ok=True)
    reserve = 1.25 * before.seconds + SAFETY_SECONDS  # the second validation, measured by the first
    reserve += 1.25 * config.reembed * per_image_seconds(refs, validation, before)
    if resumed:
        steps = int(json.loads(plan_path.read_text())["steps"])
    else:
        probe_config = adapt_train_config(start, config, 1)
        steps = epoch_steps(train_refs, probe_config)
        if config.max_steps is not None:
            steps = min(steps, config.max_steps)
        else:
            per_step = step_seconds(start_model, train_refs, probe_config)
            planned = int(0.9 * (deadline - time.monotonic() - reserve) / per_step)
            # Long enough to time its own pace: start on the epoch cap and fit to the budget (below).
            steps = steps if planned > FIRST_FIT_STEP else min(steps, planned)
        if steps < 1:
            seconds = time.monotonic() - started + refs.seconds
            reembedding = f" and to re-embed {config.reembed} references" if config.reembed else ""
            raise AdaptError(
                f"{config.max_minutes} minutes leave no time to train after loading and validating "
                f"({seconds:.0f} s so far){reembedding}; give adaptation more minutes"
            )
        plan_path.write_text(json.dumps({"steps": steps, "val_samples": val_ids}))
    train_config = adapt_train_config(start, config, steps)
    budget = deadline - time.monotonic() - reserve
    fit = PaceFit(budget) if config.max_steps is None and steps > FIRST_FIT_STEP else None
    result = train(
        work_dir / "catalog",
        work_dir / f"adapt-{key}.safetensors",
        train_config,
        checkpoint=checkpoint,
        refs=train_refs,
        init_model=start_model,
        device=device,
        max_minutes=max(0.0, budget / 60),
        stop_after_step=stop_after_step,
        provenance={"adapted_from": start_label},
        progress=progress,
        fit=fit,
    )
    assert result.model is not None
    model = result.model.eval()
    after = validation.score(model)
    interrupted = ""
    if stop_after_step is not None and stop_after_step <= result.steps < steps:
        interrupted = f"interrupted at step {result.steps} of {steps}"
    kept, reason = _decide(before, after, config, validation.queries, start_label, interrupted)
    finished = () if interrupted else (checkpoint, plan_path, result.model_path, result.loss_curve_path)
    return AdaptOutcome(
        model=model.cpu(),
        start_label=start_label,
        before=before.mrr,
        after=after.mrr,
        before_hit5=before.hit5,
        after_hit5=after.hit5,
        kept=kept,
        reason=reason,
        steps=result.steps,
        seconds=round(time.monotonic() - started + refs.seconds, 2),
        resumed=resumed,
        loras=refs.n_loras,
        train_samples=train_ids,
        val_samples=val_ids,
        queries=validation.queries,
        work_files=finished,
    )
