"""A loopback HTTPS server with a throwaway CA (trustme), for fetcher tests. Never any other address."""

from __future__ import annotations

import http.server
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import trustme

Handler = Callable[[http.server.BaseHTTPRequestHandler], None]


@dataclass
class LocalServer:
    port: int
    client_context: ssl.SSLContext
    routes: dict[str, Handler] = field(default_factory=dict)
    hits: list[str] = field(default_factory=list)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"https://{host}:{self.port}{path}"


def body(
    data: bytes, status: int = 200, headers: dict[str, str] | None = None, chunked: bool = False
) -> Handler:
    def handle(request: http.server.BaseHTTPRequestHandler) -> None:
        request.send_response(status)
        for name, value in (headers or {}).items():
            request.send_header(name, value)
        if chunked:
            request.send_header("Transfer-Encoding", "chunked")
            request.end_headers()
            for start in range(0, len(data), 65536):
                piece = data[start : start + 65536]
                request.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            request.wfile.write(b"0\r\n\r\n")
        else:
            request.send_header("Content-Length", str(len(data)))
            request.end_headers()
            request.wfile.write(data)

    return handle


def redirect(location: str, status: int = 302) -> Handler:
    return body(b"", status, {"Location": location})


@contextmanager
def https_server() -> Iterator[LocalServer]:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "127.0.0.2", "localhost")
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    state = LocalServer(0, client_context)

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            state.hits.append(self.path)
            route = state.routes.get(self.path.split("?")[0])
            if route is None:
                body(b"not found", 404)(self)
            else:
                route(self)

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.socket = server_context.wrap_socket(httpd.socket, server_side=True)
    state.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
