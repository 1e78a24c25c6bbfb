"""The bot image installs `.[bot]` only (no numpy, torch or database driver) and runs
`findlora serve discord|slack`: the CLI must start without the service's packages."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from PIL import Image

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
    # The client commands run as far as dialling the service (nothing listens on port 1): they
    # fail as a client does, never on a package the bot image lacks.
    image = sys.argv[2]
    clients = (["health"], ["status"], ["search", image])
    for args in clients:
        result = CliRunner().invoke(app, [*args, "--service", "127.0.0.1:1"], env={"FINDLORA_TOKEN": "t0ken"})
        assert result.exit_code == 1, (args, result.output, result.exception)
        assert not isinstance(result.exception, ImportError), (args, result.exception)
        assert "No module named" not in result.output, (args, result.output)
    print("ok")
    """
)


def test_the_cli_starts_and_its_client_commands_run_without_the_service_packages(tmp_path: Path) -> None:
    image = tmp_path / "query.png"
    Image.new("RGB", (64, 64), (200, 80, 40)).save(image)
    done = subprocess.run(
        [sys.executable, "-c", PROBE, ",".join(SERVICE_ONLY), str(image)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,  # no .findlora or .env of the checkout
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith("ok")
