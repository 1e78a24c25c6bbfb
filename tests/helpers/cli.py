"""Running `findlora` as a user does, for the bench commands' option checks."""

from __future__ import annotations

import subprocess
import sys


def assert_cli_refuses(args: list[str], message: str) -> None:
    """`findlora ARGS` exits with a usage error (2) naming `message`, without a traceback."""
    done = subprocess.run(
        [sys.executable, "-m", "findlora", *args], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr
