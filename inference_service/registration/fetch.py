"""Safe download of a LoRA file (docs/design.md 9).

https only; the host of every hop (the first URL and each redirect) must be on the allowlist and its
port on the allowed ports (443 only by default; a URL without a port means 443); every address a
host resolves to must be public, checked inside the connection itself so that the socket goes to
exactly the address that was checked (no DNS-rebinding window), and IPv6 transition addresses
(NAT64, IPv4-mapped/compatible, 6to4, Teredo), which can carry the connection to any IPv4 host, are
refused outright; the body is streamed to disk under a size cap while its sha256 is computed;
connect/read timeouts and a deadline for the whole download. URLs are stored, logged and shown only
redacted (`redact`): signed download links carry their token in the query. The policy is a value so
that tests can allow their own loopback server explicitly while the production defaults refuse it.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import os
import socket
import ssl
import tempfile
import time
from collections.abc import Callable, Iterable
from contextlib import suppress
from dataclasses import dataclass
from email.message import Message
from pathlib import Path, PurePosixPath
from urllib.parse import quote, unquote, urljoin, urlsplit

import httpcore
import structlog

from inference_service.registration.refusals import PICKLE_EXPLANATION, PICKLE_SUFFIXES, FetchRefused

log = structlog.get_logger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
ProgressFn = Callable[[int, int | None], None]
_REDIRECTS = {301, 302, 303, 307, 308}
_CHUNK = 1024 * 1024
# Half-written files in the LoRA store (a download, a staging copy) until renamed to <sha>.safetensors.
DOWNLOAD_PREFIX, STAGING_PREFIX = ".download-", ".stage-"
_DEFAULT_PORTS = {"https": 443, "http": 80}
# Answers that are a page or an error message, never a LoRA (a login wall, an expired token).
_PAGE_TYPES = frozenset({"text/html", "application/xhtml+xml", "application/json"})


# IPv6 ranges that embed or translate to an IPv4 address: a socket to one of them can end up at a
# private or loopback IPv4 host that the address check never saw. Refused whatever they embed.
_TRANSITION_NETWORKS = (
    (ipaddress.IPv6Network("64:ff9b::/96"), "NAT64"),
    (ipaddress.IPv6Network("64:ff9b:1::/48"), "local-use NAT64"),
    (ipaddress.IPv6Network("::ffff:0:0/96"), "IPv4-mapped"),
    (ipaddress.IPv6Network("::ffff:0:0:0/96"), "IPv4-translated"),
    (ipaddress.IPv6Network("::/96"), "IPv4-compatible"),
    (ipaddress.IPv6Network("2002::/16"), "6to4"),
    (ipaddress.IPv6Network("2001::/32"), "Teredo"),
)

_GLOBAL_UNICAST_V6 = ipaddress.IPv6Network("2000::/3")
_DOCUMENTATION_V6 = ipaddress.IPv6Network("3fff::/20")


def address_problem(address: IPAddress) -> str | None:
    """Why a download may not connect to this address, or None when it is public."""
    if isinstance(address, ipaddress.IPv6Address):
        for network, name in _TRANSITION_NETWORKS:
            if address in network:
                return (
                    f"an IPv6 {name} address ({address}), which can lead to any IPv4 host, "
                    "private ones included"
                )
        # Global unicast is 2000::/3 (site-local fec0::/10 and SRv6 5f00::/16 lie outside it);
        # 3fff::/20 is for documentation (RFC 9637). Python 3.11's is_global knows neither.
        if address not in _GLOBAL_UNICAST_V6 or address in _DOCUMENTATION_V6:
            return f"a non-public address ({address})"
    if not address.is_global or address.is_multicast:
        return f"a non-public address ({address})"
    return None


def is_public_address(address: IPAddress) -> bool:
    """Globally routable unicast only: no loopback, private, link-local, CGNAT, multicast, reserved
    or IPv6 transition (NAT64, IPv4-mapped/compatible, 6to4, Teredo) address."""
    return address_problem(address) is None


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
    """A URL fit for storage, logs and messages: scheme, host, port and path only. Signed download
    URLs carry their token in the query (some in the fragment or user info), so those are dropped."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname or "", parts.port
    except ValueError:
        return "(an unparseable URL)"
    if ":" in host:
        host = f"[{host}]"  # an IPv6 literal
    if port is not None and port != _DEFAULT_PORTS.get(parts.scheme):
        host = f"{host}:{port}"
    return f"{parts.scheme}://{host}{parts.path}"


@dataclass(frozen=True)
class FetchPolicy:
    allowed_hosts: tuple[str, ...]
    max_bytes: int = 2 * 1024**3
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    total_timeout: float = 3600.0
    max_redirects: int = 5
    allowed_ports: tuple[int, ...] = (443,)
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
    """Refuse anything but https to an allowlisted host on an allowed port (443 when the URL names
    none; `policy.allowed_ports`, by default 443 only); returns (host, port)."""
    try:
        parts = urlsplit(url)
        port = 443 if parts.port is None else parts.port
    except ValueError as exc:
        # The message, not the URL: an unparseable one may still hold a token.
        raise FetchRefused(f"not a valid URL ({exc})") from None
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
    if port not in policy.allowed_ports:
        allowed = ", ".join(str(p) for p in policy.allowed_ports)
        raise FetchRefused(f"port {port} is not allowed for downloads (allowed: {allowed})")
    refuse_pickle_name(PurePosixPath(unquote(parts.path)).name)
    return host, port


def request_url(url: str) -> httpcore.URL:
    """The request for a URL that check_url accepted, built from that same parse: the path and
    query percent-encoded (a non-ASCII file name is common on model hubs, and httpcore takes ASCII
    only), `;` included, which httpcore's own parse would cut off with what follows as path
    parameters, so the file requested would not be the one whose name was checked."""
    parts = urlsplit(url)
    try:
        host = (parts.hostname or "").encode("idna")
    except UnicodeError:
        raise FetchRefused("the URL's host name is not a valid domain name") from None
    target = quote(parts.path or "/", safe="/%!$&'()*+,=:@-._~")
    if parts.query:
        target += "?" + quote(parts.query, safe="/%!$&'()*+,;=:@-._~?")
    return httpcore.URL(scheme=parts.scheme, host=host, port=parts.port, target=target)


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
        if not addresses:
            raise FetchRefused(f"{host} resolves to no address; refused")
        if refused:
            why = address_problem(refused[0]) or f"a non-public address ({refused[0]})"
            raise FetchRefused(f"{host} resolves to {why}; refused")
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
            try:  # servers send a non-ASCII Location as raw UTF-8
                return value.decode("utf-8")
            except UnicodeDecodeError:
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
                "GET", request_url(current), headers=headers, extensions={"timeout": timeouts}
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
                kind = (_header(response.headers, b"content-type") or "").split(";")[0].strip().lower()
                if kind in _PAGE_TYPES:
                    raise FetchRefused(
                        f"{redact(current)} answered with a web page or a message ({kind}), not a file: "
                        "is it the file's download link, and does it need a login or a token?"
                    )
                filename = _filename(response.headers, current)
                refuse_pickle_name(filename)
                declared = _header(response.headers, b"content-length")
                total = int(declared) if declared and declared.isascii() and declared.isdigit() else None
                if total is not None and total > policy.max_bytes:
                    raise FetchRefused(_too_big(total, policy.max_bytes))
                return await _store(
                    response.aiter_stream(), dest_dir, policy, filename, current, total, progress
                )
        raise FetchRefused(f"more than {policy.max_redirects} redirects")


def _too_big(size: int, cap: int) -> str:
    return f"the file is larger than the {cap / 1024**2:.0f} MiB limit ({size / 1024**2:.0f} MiB or more)"


class _StoreFile:
    """A file going into the LoRA store under a temporary name: its bytes counted against the cap
    and hashed as they are written, then renamed to <sha256>.safetensors by `commit`. Leaving the
    `with` block without a commit (a refusal, an error, a cancellation) removes it."""

    def __init__(self, dest_dir: Path, prefix: str, max_bytes: int) -> None:
        fd, name = tempfile.mkstemp(dir=dest_dir, prefix=prefix)
        self.dest_dir, self.tmp, self.max_bytes = dest_dir, Path(name), max_bytes
        self.handle = os.fdopen(fd, "wb")
        self.digest, self.size, self.committed = hashlib.sha256(), 0, False

    def __enter__(self) -> _StoreFile:
        return self

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.max_bytes:
            raise FetchRefused(_too_big(self.size, self.max_bytes))
        self.digest.update(chunk)
        self.handle.write(chunk)

    def commit(self) -> tuple[Path, str]:
        self.handle.close()
        sha = self.digest.hexdigest()
        final = self.dest_dir / f"{sha}.safetensors"
        os.replace(self.tmp, final)
        self.committed = True
        return final, sha

    def __exit__(self, *exc_info: object) -> None:
        if not self.committed:
            self.handle.close()
            self.tmp.unlink(missing_ok=True)


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
    with _StoreFile(dest_dir, DOWNLOAD_PREFIX, policy.max_bytes) as stored:
        async for chunk in chunks:  # type: ignore[attr-defined]
            stored.write(chunk)
            if progress is not None:
                progress(stored.size, total)
        final, sha = stored.commit()
    log.info("fetched", url=redact(url), bytes=stored.size, sha256=sha)
    return FetchedFile(final, sha, stored.size, filename, redact(url))


def stage_local_file(path: Path, dest_dir: Path, max_bytes: int) -> FetchedFile:
    """The CLI's `findlora lora register FILE`: copy an operator's file into the staging area,
    hashing the bytes as they are copied (a file still being written cannot get a name that is
    not its content's hash)."""
    refuse_pickle_name(path.name)
    if not path.is_file():
        raise FetchRefused(f"{path}: no such file")
    if (size := path.stat().st_size) > max_bytes:
        raise FetchRefused(_too_big(size, max_bytes))
    dest_dir.mkdir(parents=True, exist_ok=True)
    with _StoreFile(dest_dir, STAGING_PREFIX, max_bytes) as stored, path.open("rb") as source:
        for chunk in iter(lambda: source.read(_CHUNK), b""):
            stored.write(chunk)
        final, sha = stored.commit()
    return FetchedFile(final, sha, stored.size, path.name, f"file:{path.name}")


def sweep_partial_files(dest_dir: Path, older_than_s: float, now: float | None = None) -> int:
    """Remove downloads and staging copies that a killed process left half-written (nothing
    else removes them); ones younger than `older_than_s` may still be written by another worker."""
    cutoff = (time.time() if now is None else now) - older_than_s
    removed = 0
    for prefix in (DOWNLOAD_PREFIX, STAGING_PREFIX):
        for partial in dest_dir.glob(f"{prefix}*"):
            with suppress(OSError):  # gone already, or another worker's just finished
                if partial.stat().st_mtime < cutoff:
                    partial.unlink()
                    removed += 1
    return removed
