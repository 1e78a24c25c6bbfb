"""Activation: the one way the catalog changes style encoder (adapt, rollback, reembed).

Every reference is embedded with the new encoder first, outside any lock. Then one transaction
holds the active label's row (FOR UPDATE): it embeds the references written since the pass (a
registration or import that committed meanwhile), replaces the embeddings, refreshes every
LoRA's style summary and sets the label. Writers of embeddings hold the same row FOR SHARE and
check the label in their transaction (db.encoders.require_label), so no reference is ever
stored under another encoder than the label says; searches check it in their ranking snapshot.
A reference whose blob is lost or corrupt stops the activation before it switches anything
(ReferenceUnreadable, naming the LoRA, the sample and the file).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import structlog
from PIL import Image

from db import encoders as db_encoders
from db import moderation
from db.catalog import lora_by_id, refresh_style_summary
from db.database import Connection, Database
from inference_service.blobs import BlobStore
from inference_service.imaging import ImageRejected, load_image_file
from inference_service.models.style_encoder import StyleEmbedder, encoder_bytes

log = structlog.get_logger(__name__)
ProgressCallback = Callable[[str, int, int], None]
Key = tuple[int, str, str]  # (lora_id, sample_id, blob_key): a blob key names its bytes


class NoPreviousEncoder(ValueError):
    """Rollback asked of an encoder that has no registered parent."""


class ReferenceUnreadable(Exception):
    """A stored reference image is missing from the blob store or does not read as an image.
    Raised before an activation switches or re-embeds anything (at most it registered the
    encoder, as its next try would); the message says what to do."""

    def __init__(self, slug: str, sample_id: str, path: Path, error: Exception, others: int = 0) -> None:
        self.slug, self.sample_id, self.path = slug, sample_id, path
        reimport = (
            "re-import the LoRA from its catalog directory with `findlora catalog import --update DIR` "
            "(it stores the LoRA's missing images again)"
        )
        if isinstance(error, FileNotFoundError):
            what, fix = (
                "is missing from the blob store",
                f"restore the blob store from a backup, or {reimport}",
            )
        elif isinstance(error, PermissionError):
            what, fix = "cannot be read (permission denied)", "make the blob store readable to this user"
        else:
            if isinstance(error, OSError):
                what = f"cannot be read ({error.strerror or error})"
            else:  # ImageRejected: its message starts with the path
                what = str(error).removeprefix(f"{path} ")
            fix = f"restore the blob store from a backup, or delete that file and {reimport}"
        more = f" (and {others} other reference(s))" if others else ""
        super().__init__(
            f"{path}: the reference image of LoRA {slug!r} for sample {sample_id!r} {what}{more}; "
            f"nothing was changed: {fix}"
        )


class _Unreadable(Exception):
    """One key's image failed to load in a worker thread (no database there to name its LoRA)."""

    def __init__(self, key: Key, path: Path, error: Exception) -> None:
        super().__init__(str(error))
        self.key, self.path, self.error = key, path, error


async def _slug(conn: Connection, lora_id: int) -> str:
    lora = await lora_by_id(conn, lora_id)
    return lora.slug if lora is not None else f"#{lora_id}"


async def missing_reference_blobs(
    db: Database, blobs: BlobStore, keys: Sequence[Key] | None = None
) -> list[Key]:
    """The stored references (all, or `keys`) whose blob is gone from the store, one stat each."""
    if keys is None:
        keys = await db.run(db_encoders.reference_keys)
    return await asyncio.to_thread(lambda: [k for k in keys if not blobs.path(k[2]).exists()])


async def check_reference_blobs(db: Database, blobs: BlobStore, keys: Sequence[Key] | None = None) -> None:
    """ReferenceUnreadable when a stored reference's blob is gone: an activation or adaptation
    fails at once, not after minutes of work."""
    missing = await missing_reference_blobs(db, blobs, keys)
    if missing:
        lora_id, sample_id, blob_key = missing[0]
        path = blobs.path(blob_key)
        slug = await db.run(_slug, lora_id)
        error = FileNotFoundError(2, "No such file or directory", str(path))
        raise ReferenceUnreadable(slug, sample_id, path, error, len(missing) - 1)


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


async def unreadable_reference(db: Database, blobs: BlobStore, exc: Exception) -> ReferenceUnreadable | None:
    """`exc`, raised reading a blob (an OSError naming its file, or ImageRejected whose message
    starts with it), as the ReferenceUnreadable of the stored reference that blob holds; None
    when it is about no reference. For errors raised where the reference was not known
    (adaptation reads its references in inference_service.training)."""
    named = exc.filename if isinstance(exc, OSError) else str(exc)
    if not isinstance(named, str):
        return None
    for lora_id, sample_id, blob_key in await db.run(db_encoders.reference_keys):
        path = blobs.path(blob_key)
        if named == str(path) or named.startswith(f"{path} "):
            return ReferenceUnreadable(await db.run(_slug, lora_id), sample_id, path, exc)
    return None


def _load(blobs: BlobStore, key: Key) -> Image.Image:
    path = blobs.path(key[2])
    try:
        return load_image_file(path)
    except (OSError, ImageRejected) as exc:
        raise _Unreadable(key, path, exc) from exc


def _embed_keys(blobs: BlobStore, embedder: StyleEmbedder, keys: Sequence[Key]) -> np.ndarray:
    return embedder.embed([_load(blobs, key) for key in keys])


async def _embed(
    blobs: BlobStore, embedder: StyleEmbedder, keys: Sequence[Key], slug: Callable[[int], Awaitable[str]]
) -> dict[Key, np.ndarray]:
    """_embed_keys in a thread; a reference that does not load becomes ReferenceUnreadable."""
    try:
        return dict(zip(keys, await asyncio.to_thread(_embed_keys, blobs, embedder, keys), strict=True))
    except _Unreadable as exc:
        lora_id, sample_id, _ = exc.key
        raise ReferenceUnreadable(await slug(lora_id), sample_id, exc.path, exc.error) from exc.error


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
    pause_automatic: str | None = None,
) -> Activation:
    """Make `embedder` the catalog's encoder. `current` is the encoder active now when this
    process can load it: it is registered too (first activation over the shipped or configured
    encoder), so a rollback can return to it. `parent` defaults to the current label.
    The switch happens only from `expected` (default: `current`'s label), EncoderChanged
    otherwise: an adaptation, rollback or reembed must not replace an encoder that another
    activation made while it embedded, nor register a parent that was not the one it replaced.
    `pause_automatic` (a rollback's reason) pauses the worker's adaptations in the commit that
    switches the encoder: never one without the other."""
    if expected is None and current is not None:
        expected = current.label
    if parent is None and current is not None:
        parent = current.label
    keys = await db.run(db_encoders.reference_keys)
    # A lost or corrupt reference stops the activation before it registers or changes anything.
    await check_reference_blobs(db, blobs, keys)
    embedded: dict[Key, np.ndarray] = {}
    for start in range(0, len(keys), batch):
        embedded.update(
            await _embed(blobs, embedder, keys[start : start + batch], lambda i: db.run(_slug, i))
        )
        if progress is not None:
            progress("embedding", len(embedded), len(keys))
    if current is not None:
        await register_encoder(db, blobs, current, note="active before the first activation")
    await register_encoder(db, blobs, embedder, parent=parent, metrics=metrics, note=note)
    async with db.transaction() as conn:
        previous = await db_encoders.lock_label(conn, embedder.label, exclusive=True)
        if expected is not None and previous != expected:
            raise db_encoders.EncoderChanged(expected, previous)
        now = await db_encoders.reference_keys(conn)
        late = [key for key in now if key not in embedded]
        if late:  # committed by a writer during the pass; writers now wait for this commit
            embedded.update(await _embed(blobs, embedder, late, lambda i: _slug(conn, i)))
        await db_encoders.replace_embeddings(
            conn, [(lid, sid, embedded[(lid, sid, key)]) for lid, sid, key in now]
        )
        loras = await db_encoders.summarised_loras(conn)
        for lora_id in loras:
            await refresh_style_summary(conn, lora_id)
        await db_encoders.set_active(conn, embedder.label)
        if pause_automatic is not None:
            await db_encoders.pause_automatic_adaptation(conn, pause_automatic)
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
