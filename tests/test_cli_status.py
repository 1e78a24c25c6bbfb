"""`findlora status`, run as a user runs it, against a real service, an empty one and nothing."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from db.clients import Role
from inference_service.config import Settings
from inference_service.server import RunningService
from tests.helpers.service import issue_token
from tests.test_cli import cli_env, findlora

pytestmark = pytest.mark.db


async def test_status_of_a_running_service_with_a_catalog(
    settings: Settings, service: RunningService
) -> None:
    env = cli_env(settings, FINDLORA_TOKEN=await issue_token(service, Role.SEARCH))
    address = f"127.0.0.1:{service.port}"
    code, out, err = await findlora("status", "--service", address, env=env)
    assert code == 0, out + err
    lines = {line.split()[1]: line for line in out.splitlines() if line.strip()}
    assert set(lines) == {"service", "catalog", "encoder", "database", "queue"}
    assert all(line.startswith("ok") for line in lines.values()), out
    assert f"{address} answers SERVING" in lines["service"]
    assert "searchable LoRA(s) of" in lines["catalog"]
    assert service.runtime.embedder.label in lines["encoder"]
    assert "external PostgreSQL at" in lines["database"]
    assert "0 registration job(s) waiting" in lines["queue"]

    # A job waiting with no worker alive: the queue line says which command takes it.
    with psycopg.connect(str(settings.database_url), autocommit=True) as conn:
        conn.execute(
            "INSERT INTO registration_jobs (id, source_url, metadata, slug)"
            " VALUES (gen_random_uuid(), 'https://civitai.com/x', '{}', 'waiting')"
        )
    code, out, _ = await findlora("status", "--service", address, env=env)
    assert code == 1
    assert "1 registration job(s) waiting" in out
    assert "start one with `findlora serve worker`" in out


async def test_the_service_address_comes_from_a_dotenv_file_too(
    settings: Settings, service: RunningService, tmp_path: Path
) -> None:
    address = f"127.0.0.1:{service.port}"
    (tmp_path / ".env").write_text(f"FINDLORA_SERVICE={address}\n")
    env = cli_env(settings, FINDLORA_TOKEN=await issue_token(service, Role.SEARCH))
    code, out, err = await findlora("status", env=env, cwd=tmp_path)
    assert f"{address} answers SERVING" in out, out + err
    assert code == 0


async def test_status_with_nothing_listening_names_the_command_that_starts_it(
    tmp_path: Path, settings: Settings
) -> None:
    code, out, err = await findlora("status", "--service", "127.0.0.1:9", env=cli_env(settings))
    assert code == 1
    assert "no service at 127.0.0.1:9: start it with `findlora serve inference`" in out
    assert "Traceback" not in out + err


async def test_status_of_an_empty_catalog_says_how_to_fill_it(
    settings: Settings, empty_service: RunningService
) -> None:
    env = cli_env(settings, FINDLORA_TOKEN=await issue_token(empty_service, Role.SEARCH))
    code, out, _ = await findlora("status", "--service", f"127.0.0.1:{empty_service.port}", env=env)
    assert code == 1
    catalog = next(line for line in out.splitlines() if " catalog " in line)
    assert catalog.startswith("fix")
    assert "0 searchable LoRA(s) of 0" in catalog
    assert "`findlora catalog import DIR`" in catalog
    assert "`make demo`" in catalog


async def test_status_without_a_token_says_how_to_get_one(
    settings: Settings, empty_service: RunningService
) -> None:
    code, out, _ = await findlora(
        "status", "--service", f"127.0.0.1:{empty_service.port}", env=cli_env(settings, FINDLORA_TOKEN="")
    )
    assert code == 1
    assert "findlora auth add" in out
