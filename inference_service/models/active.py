"""The active style encoder of one process: the one catalog_meta['style_encoder'] names.

The service, the importer, registration and moderation ask this holder instead of holding a
fixed StyleEmbedder: it reads the label (one indexed row; per request is fine) and, when an
activation changed it, loads that registered encoder's weights from the blob store off the event
loop and swaps. A label that is neither registered nor the configured encoder cannot be served
(CATALOG_STALE: run `findlora catalog reembed`).
"""

from __future__ import annotations

import asyncio
import time

import structlog

from db import encoders
from db.database import Connection, Database
from inference_service.blobs import BlobStore
from inference_service.models.style_encoder import StyleEmbedder, encoder_fingerprint, load_encoder

log = structlog.get_logger(__name__)


class UnknownEncoder(Exception):
    """The catalog was embedded with an encoder this process neither runs nor can load."""

    def __init__(self, stored: str, configured: str) -> None:
        super().__init__(
            f"the catalog was embedded with style encoder {stored} but the service runs "
            f"{configured}: run findlora catalog reembed"
        )
        self.stored = stored
        self.message = str(self)


class EncoderWeightsMissing(UnknownEncoder):
    """A registered encoder whose weights the blob store no longer holds."""

    def __init__(self, stored: str, path: str) -> None:
        Exception.__init__(
            self,
            f"the weights of style encoder {stored} are missing from the blob store ({path}): "
            "restore them, or run findlora catalog reembed to embed the catalog with the configured encoder",
        )
        self.stored = stored
        self.message = str(self)


class EncoderWeightsUnreadable(UnknownEncoder):
    """A registered encoder whose weights file is there but cannot be loaded (damaged, unreadable,
    or not the weights its label's fingerprint names)."""

    def __init__(self, stored: str, path: str, why: str) -> None:
        Exception.__init__(
            self,
            f"the weights of style encoder {stored} in the blob store cannot be loaded ({path}: {why}): "
            "restore them, run findlora catalog adapt --rollback to go back to the previous encoder, "
            "or findlora catalog reembed to embed the catalog with the configured encoder",
        )
        self.stored = stored
        self.message = str(self)


# A failed load is not retried for this long while its file is unchanged: every search would
# otherwise read and hash the damaged file again, one after another under the lock.
RETRY_FAILED_LOAD_S = 30.0


class ActiveEncoder:
    def __init__(self, db: Database, blobs: BlobStore, configured: StyleEmbedder) -> None:
        self.db = db
        self.blobs = blobs
        self.configured = configured  # FINDLORA_STYLE_ENCODER or the shipped weights
        self._loaded = configured  # the last encoder a label asked for
        self._lock = asyncio.Lock()
        # (label, file mtime, when it may be tried again, why it failed)
        self._failed: tuple[str, int, float, str] | None = None

    @property
    def loaded(self) -> StyleEmbedder:
        """The encoder loaded last (for logs; callers that embed use current())."""
        return self._loaded

    async def active_label(self, conn: Connection | None = None) -> str | None:
        if conn is not None:
            return await encoders.active_label(conn)
        return await self.db.run(encoders.active_label)

    async def current(self, conn: Connection | None = None) -> StyleEmbedder:
        """The encoder of the active label (the configured one while the catalog is empty)."""
        return await self.get(await self.active_label(conn))

    async def current_or_none(self) -> StyleEmbedder | None:
        """The active encoder, or None when the catalog's label cannot be loaded."""
        try:
            return await self.current()
        except UnknownEncoder:
            return None

    async def get(self, label: str | None) -> StyleEmbedder:
        """The encoder named `label`, loading its registered weights when it is not loaded."""
        if label is None:
            return self.configured
        if label == self._loaded.label:
            return self._loaded
        if label == self.configured.label:
            self._loaded = self.configured
            return self.configured
        async with self._lock:  # one load at a time; a second caller finds it loaded
            if self._loaded.label != label:
                self._loaded = await self._load(label)
        return self._loaded

    async def _load(self, label: str) -> StyleEmbedder:
        row = await self.db.run(encoders.get_encoder, label)
        if row is None:
            raise UnknownEncoder(label, self.configured.label)
        device = self.configured.device
        path = self.blobs.path(row.blob_key)
        if not path.is_file():  # a blob store not shared with the activating process, or pruned
            raise EncoderWeightsMissing(label, str(path))
        mtime = path.stat().st_mtime_ns
        failed = self._failed
        if failed is not None and failed[:2] == (label, mtime) and time.monotonic() < failed[2]:
            raise EncoderWeightsUnreadable(label, str(path), failed[3])
        try:
            model = await asyncio.to_thread(load_encoder, path, device)
            fingerprint = await asyncio.to_thread(encoder_fingerprint, model)
            if not label.endswith(f"@{fingerprint}"):
                raise ValueError(f"they have fingerprint {fingerprint}")
        except Exception as exc:  # safetensors, torch and OS errors alike: the file is unusable
            why = f"{type(exc).__name__}: {exc}"[:300]
            self._failed = (label, mtime, time.monotonic() + RETRY_FAILED_LOAD_S, why)
            log.error("style_encoder_unreadable", label=label, error=type(exc).__name__)
            raise EncoderWeightsUnreadable(label, str(path), why) from exc
        self._failed = None
        log.info("style_encoder_loaded", label=label, previous=self._loaded.label)
        return StyleEmbedder(model, label, device, self.configured.batch_size)


def as_active(embedder: StyleEmbedder | ActiveEncoder, db: Database, blobs: BlobStore) -> ActiveEncoder:
    """A fixed embedder (tests, benchmarks, one-shot commands) behaves as a holder that starts with it."""
    return embedder if isinstance(embedder, ActiveEncoder) else ActiveEncoder(db, blobs, embedder)
