"""`findlora` given awkward input, run as a user runs it (a subprocess): settings that do not parse,
names and paths holding Rich markup, output paths that cannot be written, and a registration with
no worker to run it. Each is one clear line, never a traceback, and never after the work."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from db.clients import Role
from findlora.metrics_http import parse_listen
from inference_service.catalog.importer import import_catalog
from inference_service.config import Settings
from inference_service.runtime import open_runtime
from inference_service.server import start_service
from tests.helpers.catalogs import write_catalog
from tests.helpers.service import issue_token
from tests.test_cli import FINDLORA, cli_env, findlora

SECRET = "S3cretPW"
MALFORMED_URL = f"postgres//admin:{SECRET}@db.example/findlora"  # no ':' after the scheme
BAD_URL_MESSAGE = "not a valid PostgreSQL connection URL"


@pytest.fixture
def offline_env(tmp_path: Path) -> dict[str, str]:
    """The CLI's environment for commands refused before any database or service is reached."""
    env = cli_env(Settings(data_dir=tmp_path / "data"))
    del env["DATABASE_URL"]
    return env


def assert_one_line_error(code: int, out: str, err: str, said: str) -> None:
    assert code == 1, (out, err)
    assert said in err, (out, err)
    assert "Traceback" not in out + err


# --- 1: a malformed DATABASE_URL is named, its value (a password) never shown ----------------------


async def test_malformed_database_url_is_refused_without_quoting_it(offline_env: dict[str, str]) -> None:
    code, out, err = await findlora("auth", "list", env={**offline_env, "DATABASE_URL": MALFORMED_URL})
    assert code != 0
    assert "DATABASE_URL" in err
    assert BAD_URL_MESSAGE in err
    assert SECRET not in out + err
    assert "Traceback" not in out + err


async def test_malformed_database_url_file_is_refused_without_quoting_it(
    tmp_path: Path, offline_env: dict[str, str]
) -> None:
    """Read after the settings' own checks: psycopg's parse error, which quotes it, is caught."""
    secret_file = tmp_path / "database_url"
    secret_file.write_text(MALFORMED_URL + "\n")
    code, out, err = await findlora(
        "auth", "list", env={**offline_env, "DATABASE_URL_FILE": str(secret_file)}
    )
    assert_one_line_error(code, out, err, BAD_URL_MESSAGE)
    assert SECRET not in out + err


def test_settings_refuse_a_malformed_database_url_without_its_value(tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(data_dir=tmp_path, database_url=MALFORMED_URL)
    assert BAD_URL_MESSAGE in refused.value.errors()[0]["msg"]
    assert SECRET not in refused.value.errors()[0]["msg"]
    assert Settings(data_dir=tmp_path, database_url="postgresql://u:p@db:5432/x").database_url


# --- 2: names and paths with '[' and ']' are text, not Rich markup -----------------------------------


async def test_paths_with_brackets_are_printed_as_given(offline_env: dict[str, str], tmp_path: Path) -> None:
    for name in ("shot[/]1.png", "cat [final].png"):
        code, out, err = await findlora("search", str(tmp_path / name), env=offline_env)
        assert_one_line_error(code, out, err, f"cannot read {tmp_path / name}")


async def test_an_empty_list_names_its_toml_tables(offline_env: dict[str, str], tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    code, out, err = await findlora("lora", "register-many", str(empty), env=offline_env)
    assert_one_line_error(code, out, err, "[[lora]] tables")


@pytest.mark.db
async def test_register_many_failure_line_keeps_brackets(settings: Settings, tmp_path: Path) -> None:
    listing = tmp_path / "list.txt"
    listing.write_text("shot[/]1.safetensors\n")
    code, out, err = await findlora("lora", "register-many", str(listing), env=cli_env(settings))
    assert code == 1, (out, err)
    assert "shot[/]1.safetensors" in out
    assert "Traceback" not in out + err


@pytest.mark.db
async def test_search_table_shows_a_lora_name_with_brackets(settings: Settings, tmp_path: Path) -> None:
    catalog = write_catalog(tmp_path / "catalog", n_loras=3, n_samples=3)
    entry = catalog / "loras" / "style-01" / "lora.toml"
    entry.write_text(entry.read_text().replace('name = "Style 1"', 'name = "Ink wash [/] v2"'))
    runtime = await open_runtime(settings)
    await import_catalog(catalog, runtime.db, runtime.blobs, runtime.embedder)
    await runtime.close()
    service = await start_service(settings, "127.0.0.1:0")
    try:
        env = {**cli_env(settings), "FINDLORA_TOKEN": await issue_token(service, Role.SEARCH)}
        query = catalog / "loras" / "style-01" / "references" / "s00.png"
        args = ("search", str(query), "--top-k", "3", "--service", f"127.0.0.1:{service.port}")
        code, out, err = await findlora(*args, env=env)
    finally:
        await service.stop(0.5)
    assert code == 0, out + err
    assert "Ink wash [/] v2" in out


# --- 4, 5: output paths are checked before the work, not after it ------------------------------------


@pytest.fixture
def afile(tmp_path: Path) -> Path:
    path = tmp_path / "afile"
    path.write_text("x")
    return path


@pytest.mark.db
@pytest.mark.parametrize("rollback", [False, True])
async def test_adapt_json_into_a_directory_is_refused_before_training(
    settings: Settings, tmp_path: Path, rollback: bool
) -> None:
    args = ["catalog", "adapt", "--json", str(tmp_path), *(["--rollback"] if rollback else [])]
    code, out, err = await findlora(*args, env=cli_env(settings))
    assert_one_line_error(code, out, err, f"--json {tmp_path} is a directory; give a file name")


@pytest.mark.db
async def test_export_into_a_path_under_a_file_is_refused(settings: Settings, afile: Path) -> None:
    code, out, err = await findlora("catalog", "export", str(afile / "sub"), env=cli_env(settings))
    assert_one_line_error(code, out, err, f"{afile} is a file, not a directory")


@pytest.mark.db
async def test_feedback_chart_of_an_unknown_type_is_refused_first(settings: Settings, tmp_path: Path) -> None:
    chart = tmp_path / "trend.xyz"
    code, out, err = await findlora("eval", "feedback", "--chart", str(chart), env=cli_env(settings))
    assert_one_line_error(code, out, err, "cannot write a .xyz chart; use one of")
    assert ".png" in err
    assert "user-judged precision" not in out  # refused before the report, not after it
    assert not chart.exists()


async def test_bench_json_into_a_directory_is_refused_before_the_run(
    offline_env: dict[str, str], tmp_path: Path
) -> None:
    args = ("--seconds", "0.5", "--concurrency", "1", "--image-px", "64", "--json", str(tmp_path))
    code, out, err = await findlora("bench", "throughput", *args, env=offline_env)
    assert_one_line_error(code, out, err, f"--json {tmp_path} is a directory; give a file name")


async def test_transfers_dir_under_a_file_is_refused_before_the_search(
    offline_env: dict[str, str], tmp_path: Path, afile: Path
) -> None:
    image = tmp_path / "q.png"
    image.write_bytes(b"whatever")
    args = ("search", str(image), "--transfers-dir", str(afile / "sub"), "--json", "--service", "127.0.0.1:9")
    code, out, err = await findlora(*args, env=offline_env)
    # Refused before the (unreachable) service is asked: the search would be lost otherwise.
    assert_one_line_error(code, out, err, f"--transfers-dir {afile / 'sub'}: {afile} is a file")


# --- 8: FINDLORA_METRICS_LISTEN -----------------------------------------------------------------------


@pytest.mark.parametrize("listen", ["9464", ":9464", "localhost:99999", "999.1.1.1:9464"])
async def test_bad_metrics_listen_is_a_setting_error(offline_env: dict[str, str], listen: str) -> None:
    env = {**offline_env, "FINDLORA_METRICS_LISTEN": listen}
    code, out, err = await findlora("serve", "inference", env=env)
    assert_one_line_error(code, out, err, "invalid setting (FINDLORA_METRICS_LISTEN:")


@pytest.mark.parametrize("listen", ["9464", ":9464", "localhost:99999", "999.1.1.1:9464", "[::1]:x"])
def test_metrics_listen_is_checked_where_it_is_read(tmp_path: Path, listen: str) -> None:
    with pytest.raises(ValidationError, match="metrics_listen"):
        Settings(data_dir=tmp_path, metrics_listen=listen)
    with pytest.raises(ValueError, match=r"host:port|IPv4"):
        parse_listen(listen)


def test_good_metrics_listen_values_pass(tmp_path: Path) -> None:
    for listen in ("0.0.0.0:9464", "localhost:0", "[::1]:65535", ""):
        assert Settings(data_dir=tmp_path, metrics_listen=listen).metrics_listen == listen
    assert parse_listen("[::1]:65535") == ("::1", 65535)


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield int(holder.getsockname()[1])


async def test_metrics_port_in_use_is_one_line(offline_env: dict[str, str], taken_port: int) -> None:
    env = {**offline_env, "FINDLORA_METRICS_LISTEN": f"127.0.0.1:{taken_port}"}
    code, out, err = await findlora("serve", "inference", env=env)
    assert_one_line_error(code, out, err, f"FINDLORA_METRICS_LISTEN=127.0.0.1:{taken_port}: cannot serve")


async def test_bot_with_a_bad_metrics_listen_is_one_line(offline_env: dict[str, str]) -> None:
    """The bots' settings live in bot/: their value is caught where the endpoint starts."""
    env = {
        **offline_env,
        "DISCORD_TOKEN": "x",
        "FINDLORA_TOKEN": "y",
        "FINDLORA_DISCORD_METRICS_LISTEN": "9464",
    }
    code, out, err = await findlora("serve", "discord", env=env)
    assert_one_line_error(code, out, err, "FINDLORA_DISCORD_METRICS_LISTEN=9464: cannot serve /metrics")


# --- 11: bench throughput --concurrency -------------------------------------------------------------


@pytest.mark.parametrize(
    ("levels", "said"), [("1,x", "comma-separated integers"), ("0", "each level must be at least 1")]
)
async def test_bench_concurrency_is_checked_before_the_run(
    offline_env: dict[str, str], levels: str, said: str
) -> None:
    args = ("--seconds", "0.5", "--image-px", "64", "--concurrency", levels)
    code, out, err = await findlora("bench", "throughput", *args, env=offline_env)
    assert code == 2, (out, err)  # a usage error
    assert said in err
    assert "Traceback" not in out + err


# --- 12: lora register with no worker says so --------------------------------------------------------


@pytest.mark.db
async def test_register_without_a_worker_warns_while_it_waits(settings: Settings) -> None:
    args = ("lora", "register", "https://civitai.com/api/download/models/1", "--name", "Ink")
    pipe = asyncio.subprocess.PIPE
    process = await asyncio.create_subprocess_exec(
        *FINDLORA, *args, env=cli_env(settings), stdout=pipe, stderr=pipe
    )
    assert process.stderr is not None
    said = []
    still_waiting = False
    try:
        async with asyncio.timeout(90):
            while line := (await process.stderr.readline()).decode():
                said.append(line)
                if "no registration worker is running" in line:
                    break
    except TimeoutError:
        pass
    finally:
        still_waiting = process.returncode is None
        if still_waiting:
            process.kill()
        await process.wait()
    text = "".join(said)
    assert "no registration worker is running" in text, text
    assert "findlora serve worker" in text
    assert "--run-here" in text
    assert still_waiting  # it keeps waiting, as --wait asks: a worker started now takes the job


@pytest.mark.db
async def test_register_no_wait_without_a_worker_warns(settings: Settings) -> None:
    args = ("lora", "register", "https://civitai.com/api/download/models/2", "--name", "Ink", "--no-wait")
    code, out, err = await findlora(*args, env=cli_env(settings))
    assert code == 0, out + err
    assert "queued" in out
    assert "no registration worker is running, queued jobs wait until one starts" in err


def test_a_failed_tls_handshake_is_not_told_to_start_the_service(capsys: pytest.CaptureFixture[str]) -> None:
    """The service answered and the handshake failed: "start it with findlora serve inference"
    sent people to start a second service instead of fixing FINDLORA_SERVICE_CA."""
    import grpc
    import typer

    from findlora.console import run
    from findlora_client import TlsHandshakeFailed

    async def handshake_fails() -> None:
        message = "the TLS handshake with the findlora service at x:1 failed: check FINDLORA_SERVICE_CA"
        raise TlsHandshakeFailed(message, grpc.StatusCode.UNAVAILABLE)

    with pytest.raises(typer.Exit):
        run(handshake_fails())
    said = " ".join(capsys.readouterr().err.split())
    assert "check FINDLORA_SERVICE_CA" in said
    assert "serve inference" not in said


def test_database_url_file_is_read_from_a_dotenv_file_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README's "environment variables (or a .env file)" holds for the secret file as well."""
    secret_file = tmp_path / "database_url"
    secret_file.write_text("postgresql://u:p@db:5432/findlora\n")
    (tmp_path / ".env").write_text(f"DATABASE_URL_FILE={secret_file}\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("DATABASE_URL_FILE", raising=False)
    assert Settings().database_url == "postgresql://u:p@db:5432/findlora"
    # The variable itself wins over the file.
    monkeypatch.setenv("DATABASE_URL", "postgresql://v:q@other:5432/x")
    assert Settings().database_url == "postgresql://v:q@other:5432/x"
