"""`findlora catalog adapt` and the worker's `adapt_catalog` job: fine-tune the active encoder on
the catalog (inference_service.training.adapt), activate the result only when validation
improved, and roll back to the previous encoder on request."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import structlog
import torch

from db import catalog as db_catalog
from db import encoders as db_encoders
from db.database import Database
from db.encoders import EncoderChanged
from inference_service.blobs import BlobStore
from inference_service.catalog.encoders import (
    Activation,
    ProgressCallback,
    activate,
    check_reference_blobs,
    previous_label,
    unreadable_reference,
)
from inference_service.config import Settings
from inference_service.imaging import ImageRejected
from inference_service.models.active import ActiveEncoder, UnknownEncoder
from inference_service.models.style_encoder import StyleEmbedder, encoder_fingerprint
from inference_service.training.adapt import (
    AdaptConfig,
    AdaptError,
    AdaptOutcome,
    adapt_encoder,
    lora_draw,
    reference_set_of,
)
from inference_service.training.references import ReferenceSet

ADAPTED_KIND = "adapted"
log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class AdaptRun:
    outcome: AdaptOutcome
    activation: Activation | None  # None: refused (or interrupted), the active encoder stays

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.outcome.as_dict(),
            "activated": None if self.activation is None else self.activation.label,
            "previous": self.outcome.start_label,
            "references": None if self.activation is None else self.activation.references,
        }


def work_dir(settings: Settings) -> Path:
    """Checkpoints of adaptation runs: an interrupted run resumes from here."""
    return settings.data_dir / "adapt"


def training_device(settings: Settings) -> str:
    """FINDLORA_DEVICE when it is set; otherwise cuda when there is one. The activation re-embeds
    on it too: the budget kept back for that was measured there."""
    if "device" in settings.model_fields_set:
        return settings.device
    return "cuda" if torch.cuda.is_available() else "cpu"


@dataclass(frozen=True)
class Prepared:
    """What training starts from: the active encoder and the catalog's references."""

    start: StyleEmbedder
    refs: ReferenceSet
    references: int  # every stored reference: what an activation re-embeds
    trainable: int  # references of the LoRAs adaptation may learn from (not taken down)

    @property
    def drawn(self) -> str | None:
        """Said when a large catalog is adapted on a draw of its LoRAs (None: on all of them)."""
        held = self.refs.report.transfers
        if held >= self.trainable:
            return None
        return (
            f"adapting on {self.refs.n_loras} LoRAs drawn from the catalog ({held:,} of its "
            f"{self.trainable:,} references): FINDLORA_ADAPT_MAX_REFERENCES sets how many fit in memory"
        )


async def prepare(
    db: Database,
    blobs: BlobStore,
    encoders: ActiveEncoder,
    *,
    progress: bool = False,
    max_references: int | None = None,
) -> Prepared:
    try:
        start = await encoders.current()
    except UnknownEncoder as exc:
        raise AdaptError(exc.message) from None
    rows = await db.run(db_catalog.training_references)
    drawn = lora_draw(rows, max_references)
    refs = await reference_set_of(drawn, blobs, start.model.config.input_size, progress=progress)
    return Prepared(start, refs, await db.run(db_encoders.reference_count), len(rows))


def train(
    prepared: Prepared, settings: Settings, config: AdaptConfig, *, progress: bool = False
) -> AdaptOutcome:
    """The fine-tuning itself (blocking): checkpoints under work_dir, resumed by a rerun."""
    start = prepared.start
    return adapt_encoder(
        prepared.refs,
        start.model,
        start.label,
        replace(config, reembed=prepared.references),  # the activation's time is in the budget
        work_dir(settings),
        progress=progress,
        device=training_device(settings),
    )


async def finish(
    db: Database,
    blobs: BlobStore,
    settings: Settings,
    prepared: Prepared,
    outcome: AdaptOutcome,
    *,
    activation_progress: ProgressCallback | None = None,
    automatic: bool = False,
) -> AdaptRun:
    """Activate a kept encoder (only over the encoder it started from) and record the run. A run
    by hand (not `automatic`) lifts the pause a rollback put on the worker's adaptations."""
    activation = None
    try:
        if outcome.kept:
            start = prepared.start
            label = f"{ADAPTED_KIND}@{encoder_fingerprint(outcome.model)}"
            adapted = StyleEmbedder(outcome.model, label, training_device(settings), start.batch_size)
            metrics = {k: v for k, v in outcome.as_dict().items() if k != "train_samples"}
            try:
                activation = await activate(
                    db,
                    blobs,
                    adapted,
                    current=start,
                    expected=start.label,
                    metrics=metrics,
                    note=outcome.reason,
                    actor="catalog adapt",
                    progress=activation_progress,
                )
            except EncoderChanged as exc:
                raise AdaptError(
                    f"the active encoder changed from {exc.expected} to {exc.active} while adapting; "
                    "run the adaptation again"
                ) from None
    finally:
        await db.run(db_encoders.record_adapt_run)
        if not automatic:
            await db.run(db_encoders.resume_automatic_adaptation)
    # Only now: an activation stopped half-way leaves the finished run to resume, not to retrain.
    outcome.discard_work_files()
    return AdaptRun(outcome, activation)


async def prepare_checked(
    db: Database,
    blobs: BlobStore,
    encoders: ActiveEncoder,
    *,
    progress: bool = False,
    max_references: int | None = None,
) -> Prepared:
    """`prepare`, after checking that every reference blob is there (a lost one would stop the
    activation after the training). A reference that is there and does not read is
    ReferenceUnreadable too, naming the LoRA, the sample and the file."""
    await check_reference_blobs(db, blobs)
    try:
        return await prepare(db, blobs, encoders, progress=progress, max_references=max_references)
    except (OSError, ImageRejected) as exc:
        if (known := await unreadable_reference(db, blobs, exc)) is not None:
            raise known from exc
        raise


async def adapt_catalog(
    db: Database,
    blobs: BlobStore,
    encoders: ActiveEncoder,
    settings: Settings,
    config: AdaptConfig,
    *,
    progress: bool = False,
    activation_progress: ProgressCallback | None = None,
    automatic: bool = False,
) -> AdaptRun:
    """Adapt the active encoder and activate it when kept (training in a thread: the worker's
    event loop keeps its heartbeats). An `automatic` run (the worker's) is refused while a
    rollback's pause holds."""
    if automatic and (why := await db.run(db_encoders.automatic_adaptation_pause)) is not None:
        raise AdaptError(f"automatic adaptation is paused: {why}")
    prepared = await prepare_checked(
        db, blobs, encoders, progress=progress, max_references=settings.adapt_max_references
    )
    if prepared.drawn:
        log.info("adaptation_draws_loras", message=prepared.drawn)
    outcome = await asyncio.to_thread(train, prepared, settings, config, progress=progress)
    return await finish(
        db, blobs, settings, prepared, outcome, activation_progress=activation_progress, automatic=automatic
    )


async def rollback(
    db: Database, blobs: BlobStore, encoders: ActiveEncoder, *, progress: ProgressCallback | None = None
) -> Activation:
    """Reactivate the active encoder's parent (the one it was adapted from); EncoderChanged when
    another activation lands meanwhile (the rollback was of an encoder no longer active). The
    worker's adaptations pause until one is run by hand: the next scheduled run would otherwise
    train much the same encoder from the same catalog and activate it again."""
    active, parent = await previous_label(db)
    target = await encoders.get(parent)
    current = await encoders.current_or_none()
    return await activate(
        db,
        blobs,
        target,
        current=current,
        expected=active,
        note="rollback",
        actor="catalog adapt --rollback",
        progress=progress,
        pause_automatic=(
            f"rolled back from {active} to {parent}; run `findlora catalog adapt` by hand to resume it"
        ),
    )


__all__ = [
    "AdaptConfig",
    "AdaptError",
    "AdaptRun",
    "Prepared",
    "adapt_catalog",
    "finish",
    "prepare",
    "prepare_checked",
    "rollback",
    "train",
]
