"""The fetcher against a loopback HTTPS server: what it accepts and every hostile case it refuses."""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from inference_service.config import Settings
from inference_service.registration.fetch import (
    FetchPolicy,
    check_url,
    fetch_to_file,
    host_allowed,
    is_public_address,
    redact,
    stage_local_file,
    sweep_partial_files,
)
from inference_service.registration.refusals import FetchRefused
from tests.helpers.https import LocalServer, body, https_server, redirect

PAYLOAD = b"x" * 300_000
LOOPBACK = ipaddress.ip_address("127.0.0.1")


@pytest.fixture
def server() -> Iterator[LocalServer]:
    with https_server() as running:
        yield running


def loopback_policy(server: LocalServer, **overrides: object) -> FetchPolicy:
    """Allows exactly this test's own server: host 127.0.0.1, its port and that one loopback address."""
    options: dict[str, object] = {
        "allowed_hosts": ("127.0.0.1", "127.0.0.2", "10.1.2.3", "localhost"),
        "allowed_ports": (443, server.port),
        "max_bytes": 1_000_000,
        "address_allowed": lambda a: is_public_address(a) or a == LOOPBACK,
        "ssl_context": server.client_context,
        "connect_timeout": 2.0,
        "read_timeout": 2.0,
    }
    options.update(overrides)
    return FetchPolicy(**options)  # type: ignore[arg-type]


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


async def test_fetches_with_hash_through_a_redirect(server: LocalServer, tmp_path: Path) -> None:
    server.routes["/start"] = redirect("/files/style.safetensors")
    server.routes["/files/style.safetensors"] = body(PAYLOAD, chunked=True)
    got = await fetch_to_file(server.url("/start?token=secret"), tmp_path, loopback_policy(server))
    assert got.sha256 == hashlib.sha256(PAYLOAD).hexdigest()
    assert got.size == len(PAYLOAD)
    assert got.path == tmp_path / f"{got.sha256}.safetensors"
    assert got.path.read_bytes() == PAYLOAD
    assert got.filename == "style.safetensors"
    assert "secret" not in got.final_url  # signed URLs never reach logs or messages
    assert server.hits == ["/start?token=secret", "/files/style.safetensors"]


async def test_refuses_plain_http(server: LocalServer, tmp_path: Path) -> None:
    with pytest.raises(FetchRefused, match="only https"):
        await fetch_to_file(
            f"http://127.0.0.1:{server.port}/a.safetensors", tmp_path, loopback_policy(server)
        )
    assert server.hits == []


async def test_refuses_a_host_outside_the_allowlist(server: LocalServer, tmp_path: Path) -> None:
    policy = loopback_policy(server, allowed_hosts=("civitai.com",))
    with pytest.raises(FetchRefused, match=r"downloads from 127\.0\.0\.1 are not allowed"):
        await fetch_to_file(server.url("/a.safetensors"), tmp_path, policy)
    assert server.hits == []


async def test_production_rule_refuses_loopback_even_when_allowlisted(
    server: LocalServer, tmp_path: Path
) -> None:
    policy = FetchPolicy(
        allowed_hosts=("127.0.0.1",), allowed_ports=(server.port,), ssl_context=server.client_context
    )
    server.routes["/a.safetensors"] = body(PAYLOAD)
    with pytest.raises(FetchRefused, match=r"non-public address \(127\.0\.0\.1\)"):
        await fetch_to_file(server.url("/a.safetensors"), tmp_path, policy)
    assert server.hits == []  # refused before any byte was sent


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ("https://127.0.0.2:{port}/a.safetensors", r"non-public address \(127\.0\.0\.2\)"),  # other loopback
        ("https://10.1.2.3/a.safetensors", r"non-public address \(10\.1\.2\.3\)"),  # private
        ("https://evil.example/a.safetensors", "downloads from evil.example are not allowed"),
        ("http://127.0.0.1:{port}/a.safetensors", "only https"),
        ("https://127.0.0.1:{port}/a.ckpt", "pickles"),
        ("https://127.0.0.1:8443/a.safetensors", r"port 8443 is not allowed for downloads"),
    ],
)
async def test_every_redirect_hop_is_checked(
    server: LocalServer, tmp_path: Path, target: str, reason: str
) -> None:
    server.routes["/start"] = redirect(target.format(port=server.port))
    server.routes["/a.safetensors"] = body(PAYLOAD)
    with pytest.raises(FetchRefused, match=reason):
        await fetch_to_file(server.url("/start"), tmp_path, loopback_policy(server))
    assert server.hits == ["/start"]
    assert leftovers(tmp_path) == []


async def test_refuses_an_oversize_body_declared_or_streamed(server: LocalServer, tmp_path: Path) -> None:
    big = b"y" * 1_500_000
    server.routes["/declared.safetensors"] = body(big)
    server.routes["/streamed.safetensors"] = body(big, chunked=True)
    for path in ("/declared.safetensors", "/streamed.safetensors"):
        with pytest.raises(FetchRefused, match="larger than the 1 MiB limit"):
            await fetch_to_file(server.url(path), tmp_path, loopback_policy(server))
    assert leftovers(tmp_path) == []  # the partial download is gone


async def test_refuses_pickle_names_from_url_or_content_disposition(
    server: LocalServer, tmp_path: Path
) -> None:
    server.routes["/download/1"] = body(
        PAYLOAD, headers={"Content-Disposition": 'attachment; filename="s.ckpt"'}
    )
    with pytest.raises(FetchRefused, match=r"s\.ckpt: findlora accepts only \.safetensors"):
        await fetch_to_file(server.url("/download/1"), tmp_path, loopback_policy(server))
    with pytest.raises(FetchRefused, match="Python pickles"):
        await fetch_to_file(server.url("/model.pt"), tmp_path, loopback_policy(server))
    assert leftovers(tmp_path) == []


async def test_refuses_redirect_loops_and_error_statuses(server: LocalServer, tmp_path: Path) -> None:
    server.routes["/loop"] = redirect("/loop")
    with pytest.raises(FetchRefused, match="more than 5 redirects"):
        await fetch_to_file(server.url("/loop"), tmp_path, loopback_policy(server))
    with pytest.raises(FetchRefused, match="answered HTTP 404"):
        await fetch_to_file(server.url("/missing.safetensors"), tmp_path, loopback_policy(server))


async def test_refuses_an_untrusted_certificate(server: LocalServer, tmp_path: Path) -> None:
    server.routes["/a.safetensors"] = body(PAYLOAD)
    policy = loopback_policy(server, ssl_context=None)  # the system trust store does not know the test CA
    with pytest.raises(FetchRefused, match="download failed"):
        await fetch_to_file(server.url("/a.safetensors"), tmp_path, policy)


def test_public_address_rule() -> None:
    for private in ("127.0.0.1", "10.0.0.1", "172.16.5.4", "192.168.1.1", "169.254.169.254", "100.64.0.1",
                    "0.0.0.0", "::1", "fe80::1", "fc00::1", "::ffff:127.0.0.1", "224.0.0.1"):  # fmt: skip
        assert not is_public_address(ipaddress.ip_address(private)), private
    for public in ("8.8.8.8", "1.1.1.1", "2606:4700:4700::1111"):
        assert is_public_address(ipaddress.ip_address(public)), public


def test_default_allowlist_covers_civitai_and_hugging_face_only() -> None:
    hosts = Settings().registration_allowed_hosts
    for host in ("civitai.com", "huggingface.co", "cdn-lfs.huggingface.co", "cas-bridge.xethub.hf.co"):
        assert host_allowed(host, hosts), host
    for host in ("evilcivitai.com", "civitai.com.evil.org", "hf.co.evil.org", "example.org", "localhost"):
        assert not host_allowed(host, hosts), host
    policy = FetchPolicy(allowed_hosts=tuple(hosts))
    with pytest.raises(FetchRefused, match="embedded credentials"):
        check_url("https://user:pw@civitai.com/a.safetensors", policy)


def test_stage_local_file(tmp_path: Path) -> None:
    source = tmp_path / "mine.safetensors"
    source.write_bytes(PAYLOAD)
    staged = stage_local_file(source, tmp_path / "staged", max_bytes=1_000_000)
    assert staged.path.read_bytes() == PAYLOAD
    assert staged.sha256 == hashlib.sha256(PAYLOAD).hexdigest()
    with pytest.raises(FetchRefused, match="larger than"):
        stage_local_file(source, tmp_path / "staged", max_bytes=1000)
    pickle = tmp_path / "old.ckpt"
    pickle.write_bytes(b"\x80\x04")
    with pytest.raises(FetchRefused, match="pickles"):
        stage_local_file(pickle, tmp_path / "staged", max_bytes=1000)
    assert leftovers(tmp_path / "staged") == [staged.path.name]


def test_half_written_files_older_than_a_download_are_swept(tmp_path: Path) -> None:
    store = tmp_path / "loras"
    store.mkdir()
    for name in (".download-old", ".stage-old", ".download-new", "abc.safetensors"):
        (store / name).write_bytes(b"x")
    hour_ago = time.time() - 3600
    for name in (".download-old", ".stage-old", "abc.safetensors"):
        os.utime(store / name, (hour_ago, hour_ago))
    assert sweep_partial_files(store, older_than_s=600) == 2
    assert leftovers(store) == [".download-new", "abc.safetensors"]


# Each transition range, embedding 127.0.0.1 (Teredo's client address is stored inverted).
TRANSITION = {
    "NAT64": "64:ff9b::7f00:1",
    "local-use NAT64": "64:ff9b:1::7f00:1",
    "IPv4-mapped": "::ffff:127.0.0.1",
    "IPv4-compatible": "::127.0.0.1",
    "6to4": "2002:7f00:1::1",
    "Teredo": "2001:0:4136:e378:8000:63bf:80ff:fffe",
}


@pytest.mark.parametrize("kind", list(TRANSITION))
async def test_ipv6_transition_addresses_are_refused_before_connecting(
    server: LocalServer, tmp_path: Path, kind: str
) -> None:
    """With the production address rule, even an allowlisted host (here the literal itself) that
    resolves into a NAT64, mapped, compatible, 6to4 or Teredo range is refused, saying which."""
    literal = TRANSITION[kind]
    policy = FetchPolicy(
        allowed_hosts=(literal,), allowed_ports=(server.port,), ssl_context=server.client_context
    )
    shown = re.escape(str(ipaddress.ip_address(literal)))
    with pytest.raises(FetchRefused, match=rf"resolves to an IPv6 {kind} address \({shown}\)"):
        await fetch_to_file(f"https://[{literal}]:{server.port}/a.safetensors", tmp_path, policy)
    assert server.hits == []
    assert leftovers(tmp_path) == []


def test_transition_ranges_are_not_public_whatever_they_embed() -> None:
    for address in (*TRANSITION.values(), "64:ff9b::808:808", "::ffff:8.8.8.8", "2002:808:808::1"):
        assert not is_public_address(ipaddress.ip_address(address)), address


def test_port_rule_of_check_url() -> None:
    """443 (named or implied) is allowed by default; any other port only when the policy names it."""
    policy = FetchPolicy(allowed_hosts=("civitai.com",))
    assert check_url("https://civitai.com/api/download/models/1", policy) == ("civitai.com", 443)
    assert check_url("https://civitai.com:443/api/download/models/1", policy) == ("civitai.com", 443)
    for port in (0, 22, 80, 5432, 8443):
        with pytest.raises(FetchRefused, match=rf"port {port} is not allowed for downloads \(allowed: 443\)"):
            check_url(f"https://civitai.com:{port}/m.safetensors", policy)
    with pytest.raises(FetchRefused, match="not a valid URL"):
        check_url("https://civitai.com:99999/m.safetensors?token=hush", policy)
    wider = FetchPolicy(allowed_hosts=("civitai.com",), allowed_ports=(443, 8443))
    assert check_url("https://civitai.com:8443/m.safetensors", wider) == ("civitai.com", 8443)


async def test_an_allowed_non_default_port_downloads(server: LocalServer, tmp_path: Path) -> None:
    server.routes["/a.safetensors"] = body(PAYLOAD)
    got = await fetch_to_file(server.url("/a.safetensors"), tmp_path, loopback_policy(server))
    assert got.size == len(PAYLOAD)
    with pytest.raises(FetchRefused, match=rf"port {server.port} is not allowed"):
        await fetch_to_file(
            server.url("/a.safetensors"), tmp_path, loopback_policy(server, allowed_ports=(443,))
        )
    assert server.hits == ["/a.safetensors"]


def test_redact_keeps_scheme_host_port_and_path_only() -> None:
    cases = {
        "https://civitai.com/api/download/models/1?token=hush&type=Model": (
            "https://civitai.com/api/download/models/1"
        ),
        "https://Example.org:443/a.safetensors#hush": "https://example.org/a.safetensors",
        "https://example.org:8443/a.safetensors?X-Amz-Signature=hush": "https://example.org:8443/a.safetensors",
        "https://user:hush@example.org/a": "https://example.org/a",
        "https://[2606:4700::1]:8443/a?hush": "https://[2606:4700::1]:8443/a",
        "https://example.org:99999/a?hush": "(an unparseable URL)",
        "https://[::1/a?hush": "(an unparseable URL)",
    }
    for url, redacted in cases.items():
        assert redact(url) == redacted, url
        assert "hush" not in redact(url)


async def test_a_non_ascii_file_name_is_requested_percent_encoded(
    server: LocalServer, tmp_path: Path
) -> None:
    server.routes["/caf%C3%A9%20noir.safetensors"] = body(PAYLOAD)
    got = await fetch_to_file(server.url("/café noir.safetensors"), tmp_path, loopback_policy(server))
    assert got.size == len(PAYLOAD)
    assert server.hits == ["/caf%C3%A9%20noir.safetensors"]


async def test_path_parameters_are_part_of_the_name_that_was_checked(
    server: LocalServer, tmp_path: Path
) -> None:
    """'/a.pt;x.safetensors' passes the name check; a client that cut ';x.safetensors' off as path
    parameters would fetch the pickle '/a.pt'. The whole checked path is requested instead."""
    server.routes["/a.pt"] = body(PAYLOAD)
    with pytest.raises(FetchRefused, match="HTTP 404"):
        await fetch_to_file(server.url("/a.pt;x.safetensors"), tmp_path, loopback_policy(server))
    assert server.hits == ["/a.pt%3Bx.safetensors"]


async def test_a_web_page_instead_of_the_file_is_refused_by_its_type(
    server: LocalServer, tmp_path: Path
) -> None:
    server.routes["/login"] = body(
        b"<html>sign in</html>", headers={"Content-Type": "text/html; charset=utf-8"}
    )
    with pytest.raises(FetchRefused, match=r"answered with a web page or a message .*login or a token"):
        await fetch_to_file(server.url("/login"), tmp_path, loopback_policy(server))
    assert leftovers(tmp_path) == []


def test_non_global_ipv6_ranges_that_python_calls_global_are_refused() -> None:
    for text in ("fec0::1", "::ffff:0:7f00:1", "::ffff:0:a9fe:a9fe", "3fff::1", "5f00::1"):
        assert not is_public_address(ipaddress.ip_address(text)), text
    assert is_public_address(ipaddress.ip_address("2606:4700:4700::1111"))
