"""Structured logging: one JSON (or console) line per event; secrets and image bytes never logged."""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

_SECRET_KEYS = ("token", "secret", "password", "authorization", "signing")


def _redact(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event):
        lowered = key.lower()
        if any(s in lowered for s in _SECRET_KEYS):
            event[key] = "[redacted]"
        elif isinstance(event[key], bytes | bytearray):
            event[key] = f"<{len(event[key])} bytes>"
    return event


def configure_logging(json: bool | None = None, level: int = logging.INFO) -> None:
    """Configure structlog once per process; JSON when stderr is not a terminal."""
    use_json = (not sys.stderr.isatty()) if json is None else json
    # Plain tracebacks: rich ones print local variables, which may hold image bytes or tokens.
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(exception_formatter=structlog.dev.plain_traceback)
    )
    shared: list[Any] = [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _redact,
        structlog.processors.format_exc_info if use_json else structlog.processors.StackInfoRenderer(),
    ]
    _route_standard_logging(shared, renderer, level)
    structlog.configure(
        processors=[structlog.contextvars.merge_contextvars, *shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )


class _StructlogHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The root handler configure_logging installs (found again, and replaced, on a second call)."""


def _route_standard_logging(shared: list[Any], renderer: Any, level: int) -> None:
    """Libraries that log through `logging` (procrastinate, psycopg_pool, asyncio, the bots' SDKs)
    get the same one-line events: their records used to reach stderr as plain, multi-line text
    (a failed job's traceback printed twice, once as JSON and once raw), and below WARNING not at all."""
    handler = _StructlogHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _StructlogHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
