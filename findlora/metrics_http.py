"""The Prometheus /metrics endpoint every long-running findlora process can expose."""

from __future__ import annotations

import structlog
from prometheus_client import start_http_server

log = structlog.get_logger(__name__)


def parse_listen(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"expected host:port, got {listen!r}")
    return host.strip("[]"), int(port)


def start_metrics_server(listen: str) -> int:
    """Serve /metrics over HTTP in a thread; returns the bound port (0 asks the OS for one)."""
    host, port = parse_listen(listen)
    server, _thread = start_http_server(port, addr=host)
    bound = int(server.server_address[1])
    log.info("metrics_listening", address=f"{host}:{bound}")
    return bound
