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
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _redact,
            structlog.processors.format_exc_info if use_json else structlog.processors.StackInfoRenderer(),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
