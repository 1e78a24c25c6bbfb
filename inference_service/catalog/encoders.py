"""Activation: the one way the catalog changes style encoder (adapt, rollback, reembed).

Every reference is embedded with the new encoder first, outside any lock. Then one transaction
holds the active label's row (FOR UPDATE): it embeds the references written since the pass (a
registration or import that committed meanwhile), replaces the embeddings, refreshes every
LoRA's style summary and sets the label. Writers of embeddings hold the same row FOR SHARE and
check the label in their transaction (db.encoders.require_label), so no reference is ever
stored under another encoder than the label says; searches check it in their ranking snapshot.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import structlog

from db import encoders as db_encoders
from db import moderation
from db.catalog import refresh_style_summary
from db.database import Database
from inference_service.blobs import BlobStore
from inference_service.imaging import load_image_file
from inference_service.models.style_encoder import StyleEmbedder, encoder_bytes

log = structlog.get_logger(__name__)
ProgressCallback = Callable[[str, int, int], None]
Key = tuple[int, str, str]  # (lora_id, sample_id, blob_key): a blob key names its bytes


class NoPreviousEncoder(ValueError):
    """Rollback asked of an encoder that has no registered parent."""


@dataclass(frozen=True)
class Activation:
    label: str  # now active
    previous: str | None  # active before
    references: int  # embedded and stored
    late: int  # of which written during the pass, embedded under the lock
    loras: int  # style summaries refreshed


def fingerprint_of(label: str) -> str:
    return label.rsplit("@", 1)[-1]


async def register_encoder(
    db: Database,
    blobs: BlobStore,
    embedder: StyleEmbedder,
    *,
    parent: str | None = None,
    metrics: dict[str, Any] | None = None,
    note: str = "",
) -> bool:
    """Store an encoder's weights in the blob store (once) and register its label; True when new."""
    if await db.run(db_encoders.get_encoder, embedder.label) is not None:
        return False
    data = await asyncio.to_thread(encoder_bytes, embedder.model)
    key = blobs.put_encoder(data, fingerprint_of(embedder.label))
    return await db.run(
        db_encoders.add_encoder, embedder.label, key, parent=parent, metrics=metrics, note=note
    )


def _embed_keys(blobs: BlobStore, embedder: StyleEmbedder, keys: Sequence[Key]) -> np.ndarray:
    images = [load_image_file(blobs.path(blob_key)) for _, _, blob_key in keys]
    return embedder.embed(images)


async def activate(
    db: Database,
    blobs: BlobStore,
    embedder: StyleEmbedder,
    *,
    current: StyleEmbedder | None,
    expected: str | None = None,
    parent: str | None = None,
    metrics: dict[str, Any] | None = None,
    note: str = "",
    actor: str = "operator",
    progress: ProgressCallback | None = None,
    batch: int = 256,
) -> Activation:
    """Make `embedder` the catalog's encoder. `current` is the encoder active now when this
    process can load it: it is registered too (first activation over the shipped or configured
    encoder), so a rollback can return to it. `parent` defaults to the current label.
    The switch happens only from `expected` (default: `current`'s label), EncoderChanged
    otherwise: an adaptation, rollback or reembed must not replace an encoder that another
    activation made while it embedded, nor register a parent that was not the one it replaced."""
    if expected is None and current is not None:
        expected = current.label
    if current is not None:
        await register_encoder(db, blobs, current, note="active before the first activation")
    if parent is None and current is not None:
        parent = current.label
    await register_encoder(db, blobs, embedder, parent=parent, metrics=metrics, note=note)
    keys = await db.run(db_encoders.reference_keys)
    embedded: dict[Key, np.ndarray] = {}
    for start in range(0, len(keys), batch):
        chunk = keys[start : start + batch]
        embedded.update(zip(chunk, await asyncio.to_thread(_embed_keys, blobs, embedder, chunk), strict=True))
        if progress is not None:
            progress("embedding", len(embedded), len(keys))
    async with db.transaction() as conn:
        previous = await db_encoders.lock_label(conn, embedder.label, exclusive=True)
        if expected is not None and previous != expected:
            raise db_encoders.EncoderChanged(expected, previous)
        now = await db_encoders.reference_keys(conn)
        late = [key for key in now if key not in embedded]
        if late:  # committed by a writer during the pass; writers now wait for this commit
            embedded.update(
                zip(late, await asyncio.to_thread(_embed_keys, blobs, embedder, late), strict=True)
            )
        await db_encoders.replace_embeddings(
            conn, [(lid, sid, embedded[(lid, sid, key)]) for lid, sid, key in now]
        )
        loras = await db_encoders.summarised_loras(conn)
        for lora_id in loras:
            await refresh_style_summary(conn, lora_id)
        await db_encoders.set_active(conn, embedder.label)
        await moderation.audit(
            conn,
            actor,
            "activate_encoder",
            embedder.label,
            {"previous": previous, "references": len(now), "late": len(late), "note": note},
        )
    log.info(
        "encoder_activated", label=embedder.label, previous=previous, references=len(now), late=len(late)
    )
    return Activation(embedder.label, previous, len(now), len(late), len(loras))


async def previous_label(db: Database) -> tuple[str, str]:
    """(the active encoder, its parent): what a rollback leaves and returns to."""
    active = await db.run(db_encoders.active_label)
    if active is None:
        raise NoPreviousEncoder("the catalog is empty: there is no encoder to roll back")
    row = await db.run(db_encoders.get_encoder, active)
    if row is None or row.parent is None:
        raise NoPreviousEncoder(f"the active encoder {active} has no previous encoder to roll back to")
    return active, row.parent
