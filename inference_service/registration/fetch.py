"""Safe download of a LoRA file (DESIGN.md 9).

https only; the host of every hop (the first URL and each redirect) must be on the allowlist; every
address a host resolves to must be public, checked inside the connection itself so that the socket
goes to exactly the address that was checked (no DNS-rebinding window); the body is streamed to disk
under a size cap while its sha256 is computed; connect/read timeouts and a deadline for the whole
download. The policy is a value so that tests can allow their own loopback server explicitly while
the production defaults refuse it.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import os
import shutil
import socket
import ssl
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from email.message import Message
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urljoin, urlsplit

import httpcore
import structlog

from inference_service.registration.refusals import PICKLE_EXPLANATION, PICKLE_SUFFIXES, FetchRefused

log = structlog.get_logger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
ProgressFn = Callable[[int, int | None], None]
_REDIRECTS = {301, 302, 303, 307, 308}
_CHUNK = 1024 * 1024


def is_public_address(address: IPAddress) -> bool:
    """Globally routable unicast only: no loopback, private, link-local, CGNAT, multicast or reserved."""
    if isinstance(address, ipaddress.IPv6Address):
        mapped = address.ipv4_mapped or address.sixtofour
        if mapped is not None:
            return is_public_address(mapped)
    return address.is_global and not address.is_multicast


def host_allowed(host: str, patterns: Iterable[str]) -> bool:
    """`example.com` matches that host only; `*.example.com` matches its subdomains only."""
    host = host.lower().rstrip(".")
    for pattern in patterns:
        pattern = pattern.lower().rstrip(".")
        if pattern.startswith("*."):
            if host.endswith(pattern[1:]) and len(host) > len(pattern) - 1:
                return True
        elif host == pattern:
            return True
    return False


def redact(url: str) -> str:
    """A URL fit for logs and messages: signed download URLs carry credentials in the query."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}{parts.path}"


@dataclass(frozen=True)
class FetchPolicy:
    allowed_hosts: tuple[str, ...]
    max_bytes: int = 2 * 1024**3
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    total_timeout: float = 3600.0
    max_redirects: int = 5
    # Injectable so a test can allow its own loopback server; production keeps is_public_address.
    address_allowed: Callable[[IPAddress], bool] = is_public_address
    ssl_context: ssl.SSLContext | None = None  # None: the system trust store


@dataclass(frozen=True)
class FetchedFile:
    path: Path
    sha256: str
    size: int
    filename: str
    final_url: str  # redacted


def check_url(url: str, policy: FetchPolicy) -> tuple[str, int]:
    """Refuse anything but https to an allowlisted host on a sane port; returns (host, port)."""
    try:
        parts = urlsplit(url)
        port = parts.port or 443
    except ValueError:
        raise FetchRefused(f"not a valid URL: {url[:200]!r}") from None
    if parts.scheme != "https":
        raise FetchRefused(f"only https downloads are accepted, not {parts.scheme or 'a bare path'}://")
    if parts.username is not None or parts.password is not None:
        raise FetchRefused("URLs with embedded credentials are not accepted")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise FetchRefused("the URL has no host")
    if not host_allowed(host, policy.allowed_hosts):
        raise FetchRefused(
            f"downloads from {host} are not allowed (allowed: {', '.join(policy.allowed_hosts)})"
        )
    refuse_pickle_name(PurePosixPath(unquote(parts.path)).name)
    return host, port


def refuse_pickle_name(filename: str) -> None:
    if filename.lower().endswith(PICKLE_SUFFIXES):
        raise FetchRefused(f"{filename}: {PICKLE_EXPLANATION}")


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """Resolves the host itself, checks every address, then connects to a checked address literal.
    TLS still verifies the certificate and sends SNI for the original host name."""

    def __init__(self, policy: FetchPolicy) -> None:
        self.policy = policy
        self.inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            infos = await asyncio.wait_for(
                loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), timeout or self.policy.connect_timeout
            )
        except (OSError, TimeoutError) as exc:
            raise FetchRefused(f"could not resolve {host}: {exc}") from None
        addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
        refused = [a for a in addresses if not self.policy.address_allowed(a)]
        if not addresses or refused:
            raise FetchRefused(
                f"{host} resolves to a non-public address ({refused[0] if refused else 'none'}); refused"
            )
        return await self.inner.connect_tcp(
            str(addresses[0]),
            port,
            timeout=timeout,
            local_address=local_address,
            socket_options=socket_options,
        )

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise FetchRefused("unix sockets are not allowed")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


def _filename(headers: list[tuple[bytes, bytes]], url: str) -> str:
    for name, value in headers:
        if name.lower() == b"content-disposition":
            message = Message()
            message["content-disposition"] = value.decode("latin-1")
            found = message.get_filename()
            if found:
                return PurePosixPath(found.replace("\\", "/")).name
    return PurePosixPath(unquote(urlsplit(url).path)).name


def _header(headers: list[tuple[bytes, bytes]], wanted: bytes) -> str | None:
    for name, value in headers:
        if name.lower() == wanted:
            return value.decode("latin-1")
    return None


async def fetch_to_file(
    url: str, dest_dir: Path, policy: FetchPolicy, progress: ProgressFn | None = None
) -> FetchedFile:
    """Download `url` into dest_dir/<sha256>.safetensors under the policy; returns what was stored."""
    try:
        async with asyncio.timeout(policy.total_timeout):
            return await _fetch(url, dest_dir, policy, progress)
    except TimeoutError:
        raise FetchRefused(f"the download did not finish within {policy.total_timeout:.0f} s") from None
    except httpcore.TimeoutException:
        raise FetchRefused("the download host stopped answering (timeout)") from None
    except (httpcore.NetworkError, httpcore.ProtocolError, ssl.SSLError) as exc:
        raise FetchRefused(f"the download failed: {type(exc).__name__}: {exc}") from None


async def _fetch(url: str, dest_dir: Path, policy: FetchPolicy, progress: ProgressFn | None) -> FetchedFile:
    timeouts = {
        "connect": policy.connect_timeout,
        "read": policy.read_timeout,
        "write": policy.read_timeout,
        "pool": policy.connect_timeout,
    }
    async with httpcore.AsyncConnectionPool(
        ssl_context=policy.ssl_context or ssl.create_default_context(),
        network_backend=_GuardedBackend(policy),
        retries=0,
    ) as pool:
        current = url
        for _hop in range(policy.max_redirects + 1):
            check_url(current, policy)
            headers = [(b"User-Agent", b"findlora-registration"), (b"Accept-Encoding", b"identity")]
            async with pool.stream(
                "GET", current, headers=headers, extensions={"timeout": timeouts}
            ) as response:
                if response.status in _REDIRECTS:
                    location = _header(response.headers, b"location")
                    if not location:
                        raise FetchRefused(f"{redact(current)} redirected without a Location")
                    current = urljoin(current, location)
                    log.info("fetch_redirect", to=redact(current))
                    continue
                if response.status != 200:
                    raise FetchRefused(f"{redact(current)} answered HTTP {response.status}")
                filename = _filename(response.headers, current)
                refuse_pickle_name(filename)
                declared = _header(response.headers, b"content-length")
                total = int(declared) if declared and declared.isdigit() else None
                if total is not None and total > policy.max_bytes:
                    raise FetchRefused(_too_big(total, policy.max_bytes))
                return await _store(
                    response.aiter_stream(), dest_dir, policy, filename, current, total, progress
                )
        raise FetchRefused(f"more than {policy.max_redirects} redirects")


def _too_big(size: int, cap: int) -> str:
    return f"the file is larger than the {cap / 1024**2:.0f} MiB limit ({size / 1024**2:.0f} MiB or more)"


async def _store(
    chunks: object,
    dest_dir: Path,
    policy: FetchPolicy,
    filename: str,
    url: str,
    total: int | None,
    progress: ProgressFn | None,
) -> FetchedFile:
    await asyncio.to_thread(dest_dir.mkdir, parents=True, exist_ok=True)
    digest = hashlib.sha256()
    size = 0
    fd, tmp_name = tempfile.mkstemp(dir=dest_dir, prefix=".download-")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            async for chunk in chunks:  # type: ignore[attr-defined]
                size += len(chunk)
                if size > policy.max_bytes:
                    raise FetchRefused(_too_big(size, policy.max_bytes))
                digest.update(chunk)
                handle.write(chunk)
                if progress is not None:
                    progress(size, total)
        sha = digest.hexdigest()
        final = dest_dir / f"{sha}.safetensors"
        os.replace(tmp, final)
    except BaseException:
        await asyncio.shield(asyncio.to_thread(tmp.unlink, missing_ok=True))
        raise
    log.info("fetched", url=redact(url), bytes=size, sha256=sha)
    return FetchedFile(final, sha, size, filename, redact(url))


def stage_local_file(path: Path, dest_dir: Path, max_bytes: int) -> FetchedFile:
    """The CLI's `findlora lora register FILE`: copy an operator's file into the staging area."""
    refuse_pickle_name(path.name)
    if not path.is_file():
        raise FetchRefused(f"{path}: no such file")
    size = path.stat().st_size
    if size > max_bytes:
        raise FetchRefused(_too_big(size, max_bytes))
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    sha = digest.hexdigest()
    dest_dir.mkdir(parents=True, exist_ok=True)
    final = dest_dir / f"{sha}.safetensors"
    if not final.exists():
        fd, tmp = tempfile.mkstemp(dir=dest_dir, prefix=".stage-")
        os.close(fd)
        shutil.copyfile(path, tmp)
        os.replace(tmp, final)
    return FetchedFile(final, sha, size, path.name, f"file:{path.name}")
