"""Secret files the service writes itself (the local client token, the generated feedback key):
mode 0600 from the first byte, written to a private temporary file and moved into place whole."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def write_private(path: Path, text: str, *, replace: bool) -> bool:
    """Write `text` to `path`. `replace=False` keeps a file another process put there first (so
    processes starting together agree on one value); returns whether this call's text landed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as out:
            out.write(text + "\n")
        if replace:
            os.replace(temporary, path)
        else:
            os.link(temporary, path)
    except FileExistsError:
        return False
    finally:
        temporary.unlink(missing_ok=True)
    return True
