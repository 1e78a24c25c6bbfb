"""The Prometheus /metrics endpoint every long-running findlora process can expose."""

from __future__ import annotations

import structlog
from prometheus_client import start_http_server

from findlora_client.listen import parse_listen

log = structlog.get_logger(__name__)


def start_metrics_server(listen: str) -> int:
    """Serve /metrics over HTTP in a thread; returns the bound port (0 asks the OS for one)."""
    host, port = parse_listen(listen)
    server, _thread = start_http_server(port, addr=host)
    bound = int(server.server_address[1])
    log.info("metrics_listening", address=f"{host}:{bound}")
    return bound
