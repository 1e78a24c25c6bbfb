"""The `findlora` command line, run as a user runs it (a subprocess), against a real service."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from db.clients import Role
from findlora_client import FindLoraClient, QueryImage, ServiceCallError
from inference_service.config import Settings
from inference_service.server import RunningService, start_service
from tests.helpers.catalogs import write_catalog
from tests.helpers.service import issue_token

pytestmark = pytest.mark.db
FINDLORA = [sys.executable, "-m", "findlora"]


def cli_env(settings: Settings, **extra: str) -> dict[str, str]:
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("FINDLORA_", "DATABASE_URL"))}
    return {
        **inherited,
        **extra,
        "FINDLORA_DATA_DIR": str(settings.data_dir),
        "DATABASE_URL": str(settings.database_url),
        "FINDLORA_TORCH_THREADS": "1",
        "COLUMNS": "200",
    }


async def findlora(*args: str, env: dict[str, str], cwd: Path | None = None) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *FINDLORA, *args, env=env, cwd=cwd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_import_then_search_json(tmp_path: Path, settings: Settings) -> None:
    catalog = write_catalog(tmp_path / "catalog", n_loras=20, n_samples=10)
    env = cli_env(settings)
    code, out, err = await findlora("catalog", "import", str(catalog), env=env)
    assert code == 0, err
    assert "imported 20, updated 0, unchanged 0 LoRA(s); 200 reference(s)" in out
    code, out, _ = await findlora("catalog", "import", str(catalog), env=env)
    assert code == 0
    assert "imported 0, updated 0, unchanged 20" in out

    service = await start_service(settings, "127.0.0.1:0")
    env["FINDLORA_TOKEN"] = await issue_token(service, Role.SEARCH)
    try:
        query = catalog / "loras" / "style-12" / "references" / "s04.png"
        code, out, err = await findlora(
            "search",
            str(query),
            "--json",
            "--top-k",
            "3",
            "--service",
            f"127.0.0.1:{service.port}",
            "--transfers-dir",
            str(tmp_path / "thumbs"),
            env=env,
        )
    finally:
        await service.stop(0.5)
    assert code == 0, err
    result = json.loads(out)
    assert set(result) == {"search_id", "pseudo_prompt", "results"}
    assert len(result["results"]) == 3
    first = result["results"][0]
    assert set(first) == {
        "rank",
        "slug",
        "name",
        "url",
        "score",
        "style_distance",
        "rkme_score",
        "suggested_prompt",
        "transfers",
    }
    assert first["rkme_score"] is None
    # The query is style-12's own reference s04: that LoRA ranks first, its nearest transfer is it.
    assert first["slug"] == "style-12"
    assert first["transfers"][0]["sample_id"] == "s04"
    assert [match["rank"] for match in result["results"]] == [1, 2, 3]
    for match in result["results"]:
        for transfer in match["transfers"]:
            assert set(transfer) == {"sample_id", "path_or_key"}
            assert Path(transfer["path_or_key"]).is_file()


async def test_search_against_a_down_service_names_the_address(tmp_path: Path, settings: Settings) -> None:
    image = tmp_path / "q.png"
    image.write_bytes(b"whatever")
    code, out, err = await findlora("search", str(image), "--service", "127.0.0.1:9", env=cli_env(settings))
    assert code == 1
    assert "could not reach the findlora service at 127.0.0.1:9" in err
    assert "start it with `findlora serve inference`" in err
    assert "Traceback" not in err + out
    assert "not a known family" not in err


async def test_search_warns_of_a_base_model_it_does_not_know(tmp_path: Path, settings: Settings) -> None:
    """A misspelt family filters to a family of its own: nothing matches, and nothing said why."""
    image = tmp_path / "q.png"
    image.write_bytes(b"whatever")
    args = ("search", str(image), "--service", "127.0.0.1:9", "--base-model", "SDXXL")
    code, _, err = await findlora(*args, env=cli_env(settings))
    assert code == 1  # the service is down: the warning comes first all the same
    assert "base model 'SDXXL' is not a known family" in err
    assert "sdxl" in err  # the known ones are named


async def test_bad_catalog_reports_every_problem_and_exits_1(tmp_path: Path, settings: Settings) -> None:
    catalog = write_catalog(tmp_path / "catalog", n_loras=2, n_samples=2)
    (catalog / "loras" / "style-01" / "lora.toml").write_text("name = ")
    (catalog / "samples" / "s01.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    code, out, err = await findlora("catalog", "import", str(catalog), env=cli_env(settings))
    assert code == 1
    assert "style-01/lora.toml: invalid TOML" in err
    assert "samples/s01.png is not a readable image: corrupt" in err
    assert "Traceback" not in err + out


async def test_missing_image_file(tmp_path: Path, settings: Settings) -> None:
    code, _, err = await findlora("search", str(tmp_path / "nope.png"), env=cli_env(settings))
    assert code == 1
    assert "cannot read" in err
    assert "nope.png" in err


async def test_auth_add_list_revoke_and_revocation_on_the_next_call(
    tmp_path: Path, settings: Settings, empty_service: RunningService
) -> None:
    env = cli_env(settings)
    code, out, err = await findlora("auth", "add", "ci-bot", "--role", "moderate", "--json", env=env)
    assert code == 0, err
    issued = json.loads(out)
    assert (issued["name"], issued["roles"]) == ("ci-bot", ["search", "moderate"])
    assert issued["token"].startswith("fl_")

    address = f"127.0.0.1:{empty_service.port}"
    async with FindLoraClient(address, timeout=10, token=issued["token"]) as client:
        assert await client.list_flags() == []
        with pytest.raises(ServiceCallError) as refused:
            await client.list_clients()
        assert refused.value.code == grpc.StatusCode.PERMISSION_DENIED

        code, out, err = await findlora("auth", "revoke", "ci-bot", env=env)
        assert (code, out.strip()) == (0, "client 'ci-bot' revoked"), err
        with pytest.raises(ServiceCallError) as refused:  # the running service, not restarted
            await client.list_flags()
        assert refused.value.code == grpc.StatusCode.UNAUTHENTICATED

    code, out, err = await findlora("auth", "add", "plain-bot", "--role", "search", env=env)
    assert code == 0
    assert "client 'plain-bot' created with roles search" in err
    assert out.count("\n") == 1  # stdout is the token alone: `... > token-file` stores it
    assert out.startswith("fl_")

    code, out, _ = await findlora("auth", "list", "--json", env=env)
    assert code == 0
    (row,) = [r for r in json.loads(out) if r["name"] == "ci-bot"]
    assert row["revoked_at"] is not None

    for args, message in [
        (("add", "ci-bot", "--role", "search"), "a client named 'ci-bot' exists already"),
        (("add", "other", "--role", "root"), "role must be one of search, moderate, admin"),
        (("revoke", "nobody"), "no client named 'nobody'"),
    ]:
        code, out, err = await findlora("auth", *args, env=env)
        assert code == 1
        assert message in err
        assert "Traceback" not in err + out


@pytest.fixture
def short_data_dir() -> Iterator[Path]:
    """The embedded server's unix socket path must stay short."""
    path = Path(tempfile.mkdtemp(prefix="flcli-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


async def test_embedded_database_needs_no_token_setup(short_data_dir: Path, tmp_path: Path) -> None:
    """README flow: db init, serve, search, with no token configured anywhere."""
    settings = Settings(data_dir=short_data_dir, torch_threads=1, listen="127.0.0.1:0")
    env = cli_env(settings)
    del env["DATABASE_URL"]
    code, out, err = await findlora("db", "init", env=env)
    assert code == 0, err
    assert "client 'local' (every role): its token is in" in out
    assert "embedded_postgres" not in out  # log lines go to stderr: stdout is the command's own
    token_file = short_data_dir / "client-token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    code, out, _ = await findlora("auth", "list", "--json", env=env)
    assert code == 0
    assert [(r["name"], r["roles"]) for r in json.loads(out)] == [("local", ["search", "moderate", "admin"])]

    service = await start_service(settings)
    try:
        assert service.local_token == token_file.read_text().strip()  # a valid file is kept
        image = tmp_path / "q.png"
        image.write_bytes((write_catalog(tmp_path / "c", 1, 1) / "samples" / "s00.png").read_bytes())
        address = f"127.0.0.1:{service.port}"
        code, out, err = await findlora("search", str(image), "--exact", "--service", address, env=env)
        # Through authentication (the local client may do an exact search) to the empty catalog.
        assert code == 1
        assert "catalog is empty" in err
        async with FindLoraClient(address, timeout=10) as anonymous:
            with pytest.raises(ServiceCallError) as refused:
                await anonymous.search([QueryImage(image.read_bytes())])
        assert refused.value.code == grpc.StatusCode.UNAUTHENTICATED
        assert "findlora auth add NAME --role" in refused.value.message
    finally:
        await service.stop(0.5)


async def test_feedback_report_on_a_fresh_data_directory_is_empty_not_an_error(short_data_dir: Path) -> None:
    env = cli_env(Settings(data_dir=short_data_dir))
    del env["DATABASE_URL"]
    code, out, err = await findlora("eval", "feedback", env=env)
    assert code == 0, out + err
    assert "user-judged precision (0 votes)" in out


async def test_user_mistakes_get_one_line_not_a_traceback(settings: Settings, tmp_path: Path) -> None:
    env = cli_env(settings)
    afile = tmp_path / "afile"
    afile.write_text("x")
    full = tmp_path / "full"
    full.mkdir()
    (full / "x").write_text("x")
    for args, extra, said in (
        (("catalog", "export", str(afile)), {}, "is a file: give a new or empty directory"),
        (("catalog", "export", str(full)), {}, "is not empty: export into a new or empty directory"),
        (("status",), {"FINDLORA_SERVICE_TLS": "maybe"}, "invalid setting (FINDLORA_SERVICE_TLS:"),
        (
            ("catalog", "export", str(tmp_path / "new")),
            {"FINDLORA_GMI": "maybe"},
            "invalid setting (FINDLORA_GMI:",
        ),
        (  # a '[/]' in a setting's message is printed, not read as markup (a MarkupError)
            ("catalog", "export", str(tmp_path / "new")),
            {"FINDLORA_ADAPT_CRON": "[/]x"},
            "FINDLORA_ADAPT_CRON '[/]x' is not a cron schedule",
        ),
        (("eval", "feedback", "--json", str(tmp_path / "no" / "r.json")), {}, "the directory"),
        (("search", str(afile), "--transfers-dir", str(afile)), {}, "is a file; give a directory"),
    ):
        code, out, err = await findlora(*args, env={**env, **extra})
        assert code == 1, (args, out, err)
        assert said in out + err, (args, out, err)
        assert "Traceback" not in out + err
