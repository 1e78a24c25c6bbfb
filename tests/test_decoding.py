"""The upload checks and the bounded decode pool (real decoding, real threads)."""

from __future__ import annotations

import asyncio
import io

import numpy as np
import pytest
from PIL import Image

from inference_service.decoding import DecodePool, Upload, UploadLimits, check_upload
from inference_service.errors import InvalidArgument, ResourceExhausted
from inference_service.imaging import decode_image, reduce_to, working_size
from inference_service.models.style_encoder import StyleEmbedder, resolve_encoder
from tests.helpers.catalogs import apply_style, content_image

LIMITS = UploadLimits(max_images=4, max_image_bytes=1000, max_total_bytes=2500, what="images of one style")


def png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def pool(**overrides: int) -> DecodePool:
    options = {
        "workers": 2,
        "max_pending": 8,
        "max_image_bytes": 20_000_000,
        "max_pixels": 4096 * 4096,
        "working_pixels": 1024 * 1024,
    }
    return DecodePool(**(options | overrides))


@pytest.mark.parametrize(
    ("sizes", "message"),
    [
        ([], "send 1 to 4 images of one style (this request has 0)"),
        ([10] * 5, "send 1 to 4 images of one style (this request has 5)"),
        ([10, 0], "image 2 is empty (0 bytes)"),
        ([10, 1001], "image 2 is 0.0 MB; the limit is 0 MB"),
        ([900, 900, 900], "the images add up to 0.0 MB; the limit per request is 0 MB"),
    ],
)
def test_upload_checks_need_only_the_request(sizes: list[int], message: str) -> None:
    uploads = [Upload(b"x" * size, f"image {i + 1}") for i, size in enumerate(sizes)]
    with pytest.raises(InvalidArgument) as info:
        check_upload(uploads, LIMITS)
    assert info.value.message == message


def test_working_size_keeps_the_aspect_and_leaves_small_images_alone() -> None:
    assert working_size((1024, 1024), 1024 * 1024) == (1024, 1024)
    assert working_size((832, 1216), 1024 * 1024) == (832, 1216)  # an SDXL bucket: untouched
    assert working_size((4000, 4000), 1024 * 1024) == (1024, 1024)
    width, height = working_size((4000, 3000), 1024 * 1024)
    assert width * height <= 1024 * 1024
    assert abs(width / height - 4 / 3) < 0.01


async def test_pool_returns_images_at_working_size_and_small_ones_unchanged() -> None:
    decoder = pool()
    try:
        big = png(Image.new("RGB", (4000, 2000), (10, 200, 30)))
        small_image = Image.effect_noise((640, 480), 60).convert("RGB")
        small = png(small_image)
        reduced, kept = await decoder.decode([Upload(big, "big.png"), Upload(small, "small.png")])
        assert reduced.size == working_size((4000, 2000), 1024 * 1024)
        assert reduced.mode == "RGB"
        assert reduced.getpixel((0, 0)) == (10, 200, 30)
        assert np.array_equal(np.asarray(kept), np.asarray(decode_image(small)))
        assert decoder.pending == 0
        assert decoder.stats.submitted == 2
    finally:
        decoder.close()


async def test_pool_refuses_past_its_queue_and_frees_the_slots() -> None:
    decoder = pool(workers=1, max_pending=3)
    try:
        big = png(Image.new("RGB", (4000, 4000), (1, 2, 3)))
        first = asyncio.create_task(decoder.decode([Upload(big, f"{i}.png") for i in range(3)]))
        await asyncio.sleep(0)  # the first request has reserved its three slots
        with pytest.raises(ResourceExhausted, match="busy decoding other images; try again"):
            await decoder.decode([Upload(big, "late.png")])
        assert decoder.stats.refused == 1
        assert len(await first) == 3
        assert decoder.pending == 0
        assert len(await decoder.decode([Upload(big, "later.png")])) == 1
    finally:
        decoder.close()


async def test_a_bad_image_fails_its_request_and_frees_every_slot() -> None:
    decoder = pool(workers=1)
    try:
        good = png(Image.new("RGB", (64, 64)))
        with pytest.raises(InvalidArgument, match=r"bad\.png is not a readable image"):
            await decoder.decode([Upload(good, "a.png"), Upload(b"<svg/>", "bad.png"), Upload(good, "c.png")])
        for _ in range(100):  # a decode already running finishes in its thread
            if decoder.pending == 0:
                break
            await asyncio.sleep(0.01)
        assert decoder.pending == 0
    finally:
        decoder.close()


def test_reduction_barely_moves_the_style_embedding() -> None:
    """A 2048x2048 upload reduced to 1024x1024 embeds next to its full-size self: far closer
    than the same content in another style."""
    model, label = resolve_encoder(None)
    embedder = StyleEmbedder(model, label)
    rng = np.random.default_rng(7)
    content = content_image(rng).resize((2048, 2048), Image.Resampling.BICUBIC)
    noisy = Image.fromarray(
        np.clip(np.asarray(content, dtype=np.float64) + rng.normal(0, 18, (2048, 2048, 3)), 0, 255).astype(
            np.uint8
        )
    )
    styled, other = apply_style(noisy, 0), apply_style(noisy, 1)
    full, reduced, different = embedder.embed([styled, reduce_to(styled, 1024 * 1024), other])
    assert float(np.linalg.norm(full - reduced)) < 0.1 * float(np.linalg.norm(full - different))
