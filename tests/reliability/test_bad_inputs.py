"""Every kind of bad or odd upload through the real Search RPC: a clear answer, a healthy service."""

from __future__ import annotations

import io
from pathlib import Path

import grpc
import numpy as np
import pytest
from PIL import Image

from findlora_client import FindLoraClient, QueryImage, ServiceCallError
from inference_service.server import RunningService
from tests.helpers.service import service_client

pytestmark = pytest.mark.db


def encoded(image: Image.Image, fmt: str, **params: object) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **params)
    return out.getvalue()


def photo() -> Image.Image:
    rng = np.random.default_rng(3)
    return Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))


def animated_gif() -> bytes:
    frames = [Image.new("P", (32, 32), i * 40) for i in range(4)]
    return encoded(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)


def exif_rotated_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 8
    return encoded(photo(), "JPEG", exif=exif)


ACCEPTED = {
    "animated GIF (first frame)": animated_gif(),
    "CMYK JPEG": encoded(photo().convert("CMYK"), "JPEG"),
    "16-bit greyscale PNG": encoded(
        photo().convert("L").point(lambda v: v * 256, "I").convert("I;16"), "PNG"
    ),
    "RGBA PNG": encoded(photo().convert("RGBA"), "PNG"),
    "palette PNG": encoded(photo().convert("P"), "PNG"),
    "EXIF-rotated JPEG": exif_rotated_jpeg(),
    "WebP": encoded(photo(), "WEBP"),
}

REJECTED = {
    "0 bytes": (b"", "is empty"),
    "truncated PNG": (encoded(photo(), "PNG")[:200], "corrupt or truncated"),
    "truncated JPEG": (encoded(photo(), "JPEG")[:300], "corrupt or truncated"),
    "SVG named .png": (
        b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>',
        "not a readable image",
    ),
    "HTML named .png": (b"<!doctype html><html><script>alert(1)</script></html>", "not a readable image"),
    "decompression bomb": (encoded(Image.new("1", (30000, 30000)), "PNG"), "megapixels"),
    "20k x 20k image": (encoded(Image.new("L", (20000, 20000)), "PNG"), "megapixels"),
    "TIFF (not allowed)": (encoded(photo(), "TIFF"), "not a readable image"),
}


@pytest.mark.parametrize("name", sorted(ACCEPTED))
async def test_odd_but_valid_images_are_searched(client: FindLoraClient, name: str) -> None:
    # The declared content type is only a hint: a JPEG sent as image/png is still searched.
    response = await client.search([QueryImage(ACCEPTED[name], "upload.png", "image/png")], top_k=2)
    assert len(response.matches) == 2


@pytest.mark.parametrize("name", sorted(REJECTED))
async def test_bad_uploads_get_a_clear_invalid_argument(client: FindLoraClient, name: str) -> None:
    data, message = REJECTED[name]
    with pytest.raises(ServiceCallError) as info:
        await client.search([QueryImage(data, "upload.png", "image/png")])
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert message in info.value.message
    assert "Traceback" not in info.value.message
    assert await client.health() == "SERVING"


async def test_oversize_grpc_message_is_refused_by_the_transport(
    service: RunningService, search_token: str
) -> None:
    """The service's own cap holds against any client; findlora_client refuses such a request
    before sending it, as one no retry can pass (not the transport's "busy")."""
    from protos import findlora_pb2 as pb
    from protos import findlora_pb2_grpc as pb_grpc

    limit = service.runtime.settings.max_grpc_message_bytes
    request = pb.SearchRequest(images=[pb.Image(data=b"\0" * (limit + 1024), filename="big.png")])
    options = [("grpc.max_send_message_length", 2 * limit)]
    async with grpc.aio.insecure_channel(f"127.0.0.1:{service.port}", options=options) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as raw:
            await pb_grpc.FindLoraStub(channel).Search(
                request, metadata=[("authorization", f"Bearer {search_token}")]
            )
        assert raw.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    async with service_client(service, search_token) as client:
        with pytest.raises(ServiceCallError) as info:
            await client.search([QueryImage(b"\0" * (limit + 1024))])
        assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert "the service takes at most" in info.value.message
        assert await client.health() == "SERVING"


async def test_byte_cap_applies_below_the_transport_limit(
    client: FindLoraClient, service: RunningService
) -> None:
    cap = service.runtime.settings.max_image_bytes
    with pytest.raises(ServiceCallError) as info:
        await client.search([QueryImage(b"\x89PNG" + b"\0" * cap, "big.png")])
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "big.png is" in info.value.message
    assert "limit" in info.value.message


async def test_catalog_file_path_shows_in_errors(client: FindLoraClient, catalog_dir: Path) -> None:
    data = (catalog_dir / "samples" / "s00.png").read_bytes()
    with pytest.raises(ServiceCallError, match=r"second\.png is empty"):
        await client.search([QueryImage(data, "first.png"), QueryImage(b"", "second.png")])
