"""Attachment validation and download, with the HTTP edge replaced by httpx.MockTransport."""

from __future__ import annotations

import io
import struct
import zlib

import httpx
import pytest
from PIL import Image

from bot.core.attachments import AttachmentInfo, AttachmentRejected, ImageLimits, download, probe_header

URL = "https://cdn.discordapp.com/attachments/1/2/art.png"


def png_bytes(width: int = 32, height: int = 24) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 40, 40)).save(out, format="PNG")
    return out.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG signature and IHDR claiming a huge size, then an empty IDAT: a bomb's header with no
    pixels, so only a header read can judge it."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"")


def serving(body: bytes, status: int = 200) -> httpx.AsyncClient:
    def respond(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=body)

    return httpx.AsyncClient(transport=httpx.MockTransport(respond))


async def test_downloads_a_valid_png() -> None:
    async with serving(png_bytes()) as http:
        image = await download(AttachmentInfo(URL, "art.png", "image/png", 100), ImageLimits(), http)
    assert image.content_type == "image/png"
    assert image.data == png_bytes()


@pytest.mark.parametrize(
    ("info", "expected"),
    [
        (AttachmentInfo(URL, "notes.txt", "text/plain", 10), "not a PNG, JPEG, WebP or GIF"),
        (AttachmentInfo(URL, "big.png", "image/png", 11 * 1024 * 1024), "the limit is"),
        (AttachmentInfo("http://cdn.discordapp.com/a.png", "a.png", "image/png", 10), "not hosted where"),
        (AttachmentInfo("https://evil.example/a.png", "a.png", "image/png", 10), "not hosted where"),
    ],
)
async def test_rejects_before_downloading(info: AttachmentInfo, expected: str) -> None:
    def never(request: httpx.Request) -> httpx.Response:
        raise AssertionError("downloaded a rejected attachment")

    async with httpx.AsyncClient(transport=httpx.MockTransport(never)) as http:
        with pytest.raises(AttachmentRejected, match=expected):
            await download(info, ImageLimits(), http)


async def test_byte_cap_holds_even_when_the_declared_size_lies() -> None:
    async with serving(png_bytes(400, 400)) as http:
        with pytest.raises(AttachmentRejected, match="larger than"):
            await download(AttachmentInfo(URL, "art.png", "image/png", 10), ImageLimits(max_bytes=500), http)


async def test_not_an_image_inside() -> None:
    async with serving(b"GIF89a but not really") as http:
        with pytest.raises(AttachmentRejected, match="not a readable"):
            await download(AttachmentInfo(URL, "art.gif", "image/gif", 20), ImageLimits(), http)


async def test_http_error_is_a_friendly_rejection() -> None:
    async with serving(b"", status=404) as http:
        with pytest.raises(AttachmentRejected, match="HTTP 404"):
            await download(AttachmentInfo(URL, "art.png", "image/png", 20), ImageLimits(), http)


def test_pixel_cap_is_read_from_the_header() -> None:
    with pytest.raises(AttachmentRejected, match="2000×2000 pixels; the limit is 1 megapixels"):
        probe_header(png_header_only(2000, 2000), "big.png", ImageLimits(max_pixels=1_000_000))
    with pytest.raises(AttachmentRejected, match="too many pixels"):
        probe_header(png_header_only(20_000, 20_000), "bomb.png", ImageLimits(max_pixels=1_000_000))
    assert probe_header(png_bytes(), "ok.png", ImageLimits(max_pixels=1_000_000)) == "image/png"


def test_a_phone_jpeg_with_more_pictures_inside_is_a_jpeg() -> None:
    # Pillow reads a JPEG that carries a second picture (an HDR gain map, a stereo pair) as "MPO".
    buffer = io.BytesIO()
    first, second = Image.new("RGB", (8, 8), "red"), Image.new("RGB", (8, 8), "blue")
    first.save(buffer, format="MPO", save_all=True, append_images=[second])
    assert Image.open(io.BytesIO(buffer.getvalue())).format == "MPO"
    assert probe_header(buffer.getvalue(), "phone.jpg", ImageLimits()) == "image/jpeg"
