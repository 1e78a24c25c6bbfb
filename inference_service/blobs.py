"""Content-addressed blob store for reference images and thumbnails (filesystem)."""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path

_SAFE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp"}
_FINGERPRINT = re.compile(r"^[0-9a-f]{8,64}$")


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def put(self, data: bytes, suffix: str) -> str:
        """Store bytes once (keyed by their sha256); returns the key."""
        suffix = suffix.lower()
        if suffix not in _SAFE_SUFFIXES:
            raise ValueError(f"unsupported blob suffix {suffix!r}")
        digest = hashlib.sha256(data).hexdigest()
        return self._write_once(f"{digest[:2]}/{digest}{suffix}", data)

    def put_encoder(self, data: bytes, fingerprint: str) -> str:
        """A style encoder's .safetensors, keyed by its weights' fingerprint (the label's suffix)
        and written once: `encoders/<fingerprint>.safetensors`."""
        if not _FINGERPRINT.match(fingerprint):
            raise ValueError(f"not an encoder fingerprint: {fingerprint!r}")
        return self._write_once(f"encoders/{fingerprint}.safetensors", data)

    def _write_once(self, key: str, data: bytes) -> str:
        path = self.root / key
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            # Write then rename: a crash never leaves a truncated blob under a valid key.
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, path)
        return key

    def path(self, key: str) -> Path:
        resolved = (self.root / key).resolve()
        if self.root.resolve() not in resolved.parents:
            raise ValueError(f"blob key escapes the store: {key!r}")
        return resolved

    def get(self, key: str) -> bytes:
        return self.path(key).read_bytes()

    def get_or_empty(self, keys: Sequence[str]) -> list[bytes]:
        """Each blob, or b"" where it is missing or unreadable (a partial restore, a volume a
        worker wrote that this replica does not see): one lost thumbnail must not fail a whole
        answer. File reads: call it in a thread, never on the event loop."""
        found = []
        for key in keys:
            try:
                found.append(self.get(key))
            except (OSError, ValueError):
                found.append(b"")
        return found
