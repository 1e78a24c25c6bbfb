"""The bot image installs `.[bot]` only (no numpy, torch or database driver) and runs
`findlora serve discord|slack`: the CLI must start without the service's packages."""

from __future__ import annotations

import subprocess
import sys
import textwrap

# What the service extra brings and the bot extra does not.
SERVICE_ONLY = (
    "numpy", "torch", "torchvision", "psycopg", "psycopg_pool", "pgvector", "pgserver", "faiss",
    "scipy", "safetensors", "open_clip", "transformers", "diffusers", "procrastinate",
)  # fmt: skip

PROBE = textwrap.dedent(
    """
    import importlib.abc, sys
    blocked = set(sys.argv[1].split(","))

    class BotInstall(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in blocked:
                raise ModuleNotFoundError(f"No module named {name!r} (not in the bot install)")
            return None

    sys.meta_path.insert(0, BotInstall())
    from typer.testing import CliRunner
    from findlora.cli import app
    commands = (["--help"], ["serve", "discord", "--help"], ["serve", "slack", "--help"])
    for args in commands:
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, (args, result.output, result.exception)
    print("ok")
    """
)


def test_the_cli_starts_without_the_service_packages() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, ",".join(SERVICE_ONLY)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith("ok")
