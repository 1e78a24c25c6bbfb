"""host:port addresses a process listens on (the metrics endpoints), parsed one way everywhere:
the service's settings check them when read, the CLI and the bots when they start the endpoint."""

from __future__ import annotations

import ipaddress


def parse_listen(listen: str) -> tuple[str, int]:
    """host:port (an IPv6 host in brackets); the port 0-65535, 0 asking the OS for one."""
    host, _, port = listen.strip().rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"expected host:port with a port 0-65535, got {listen!r}")
    if host.replace(".", "").isdigit():  # dotted digits: an IPv4 address, never a host name
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise ValueError(f"{host} in {listen!r} is not an IPv4 address") from None
    return host, int(port)
