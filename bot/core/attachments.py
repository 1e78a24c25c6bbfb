"""Validate and download user images before they reach the service (docs/design.md 9).

Checks run cheapest first: what the platform declares (type, size), then the download itself
(https, allowed host, streamed byte cap, no redirects), then the image header (format allowlist,
pixel cap) read without decoding the pixels. The service decodes fully and checks again.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx
from PIL import Image, UnidentifiedImageError

from findlora_client import MAX_IMAGE_PIXELS, QueryImage

# Pillow format name -> MIME type; the content itself decides, the declared type only pre-filters.
ALLOWED_FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "GIF": "image/gif"}
# Pillow's JPEG reader names a JPEG that carries more pictures (phones' HDR gain maps, stereo
# shots) "MPO"; its first picture is an ordinary JPEG, which the service decodes as one.
FORMAT_ALIASES = {"MPO": "JPEG"}
ALLOWED_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".gif")
DISCORD_CDN_HOSTS = frozenset({"cdn.discordapp.com", "media.discordapp.net"})


class AttachmentRejected(Exception):
    """The attachment cannot be used; `message` is written for the person who sent it."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class AttachmentInfo:
    """What the chat platform tells us about a file before we download it."""

    url: str
    filename: str
    content_type: str | None = None
    size: int | None = None


@dataclass(frozen=True)
class ImageLimits:
    max_bytes: int = 10 * 1024 * 1024
    max_pixels: int = MAX_IMAGE_PIXELS
    allowed_hosts: frozenset[str] = field(default=DISCORD_CDN_HOSTS)
    timeout_s: float = 15.0


def _megabytes(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def is_probably_image(info: AttachmentInfo) -> bool:
    content_type = (info.content_type or "").split(";")[0].strip().lower()
    if content_type:
        return content_type in ALLOWED_FORMATS.values()
    return info.filename.lower().endswith(ALLOWED_SUFFIXES)


def check_declared(info: AttachmentInfo, limits: ImageLimits) -> None:
    if not is_probably_image(info):
        raise AttachmentRejected(
            f"{info.filename} is not a PNG, JPEG, WebP or GIF image; attach one of those instead"
        )
    if info.size is not None and info.size > limits.max_bytes:
        raise AttachmentRejected(
            f"{info.filename} is {_megabytes(info.size)}; the limit is {_megabytes(limits.max_bytes)}"
        )


def probe_header(data: bytes, name: str, limits: ImageLimits) -> str:
    """The image's MIME type, from its header; rejects other formats and too many pixels."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            # Image.open reads the header only; pixels are decoded lazily, never here.
            with Image.open(io.BytesIO(data), formats=tuple(ALLOWED_FORMATS)) as probe:
                width, height = probe.size
                image_format = FORMAT_ALIASES.get(probe.format or "", probe.format or "")
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise AttachmentRejected(f"{name} has too many pixels to process safely") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise AttachmentRejected(f"{name} is not a readable PNG, JPEG, WebP or GIF image") from None
    if width * height > limits.max_pixels:
        raise AttachmentRejected(
            f"{name} is {width}×{height} pixels; the limit is {limits.max_pixels / 1e6:.3g} megapixels"
        )
    if image_format not in ALLOWED_FORMATS:
        raise AttachmentRejected(f"{name} is not a readable PNG, JPEG, WebP or GIF image")
    return ALLOWED_FORMATS[image_format]


def _check_url(url: str, limits: ImageLimits) -> None:
    parts = urlsplit(url)
    if parts.scheme != "https" or (parts.hostname or "").lower() not in limits.allowed_hosts:
        raise AttachmentRejected("that file is not hosted where I can fetch it from; attach it directly")


async def download(
    info: AttachmentInfo, limits: ImageLimits, http: httpx.AsyncClient, headers: dict[str, str] | None = None
) -> QueryImage:
    """Fetch a declared-valid attachment with a streamed byte cap and check its header."""
    check_declared(info, limits)
    data = await _fetch(info, limits, http, headers)
    mime_type = probe_header(data, info.filename, limits)
    return QueryImage(data=data, filename=info.filename, content_type=mime_type)


# A list of LoRAs to register (bot.core.bulk): plain text, TOML or JSON, small.
LIST_SUFFIXES = (".txt", ".toml", ".json")
LIST_TYPES = ("text/", "application/json", "application/toml")
MAX_LIST_BYTES = 256 * 1024


def is_list_file(info: AttachmentInfo) -> bool:
    content_type = (info.content_type or "").split(";")[0].strip().lower()
    return info.filename.lower().endswith(LIST_SUFFIXES) or content_type.startswith(LIST_TYPES)


async def download_text(
    info: AttachmentInfo,
    limits: ImageLimits,
    http: httpx.AsyncClient,
    headers: dict[str, str] | None = None,
    max_bytes: int = MAX_LIST_BYTES,
) -> str:
    """A small UTF-8 text file (from the same hosts as images): a list, never anything binary."""
    if not is_list_file(info):
        raise AttachmentRejected(f"{info.filename} is not a list; attach a .txt, .toml or .json file")
    limits = ImageLimits(max_bytes, limits.max_pixels, limits.allowed_hosts, limits.timeout_s)
    if info.size is not None and info.size > max_bytes:
        raise AttachmentRejected(
            f"{info.filename} is {_megabytes(info.size)}; the limit is {_megabytes(max_bytes)}"
        )
    data = await _fetch(info, limits, http, headers)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise AttachmentRejected(f"{info.filename} is not UTF-8 text") from None
    if "\0" in text:
        raise AttachmentRejected(f"{info.filename} is not a text file")
    return text


async def _fetch(
    info: AttachmentInfo, limits: ImageLimits, http: httpx.AsyncClient, headers: dict[str, str] | None
) -> bytes:
    _check_url(info.url, limits)
    chunks: list[bytes] = []
    received = 0
    try:
        async with http.stream(
            "GET", info.url, headers=headers, follow_redirects=False, timeout=limits.timeout_s
        ) as response:
            if response.status_code != 200:
                raise AttachmentRejected(
                    f"could not download {info.filename} (HTTP {response.status_code});"
                    " try attaching it again"
                )
            async for chunk in response.aiter_bytes():
                received += len(chunk)
                if received > limits.max_bytes:
                    raise AttachmentRejected(
                        f"{info.filename} is larger than {_megabytes(limits.max_bytes)}, the limit"
                    )
                chunks.append(chunk)
    except httpx.HTTPError:
        raise AttachmentRejected(f"could not download {info.filename}; try attaching it again") from None
    data = b"".join(chunks)
    if not data:
        raise AttachmentRejected(f"{info.filename} is empty")
    return data
