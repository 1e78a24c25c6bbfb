"""`bench throughput`: images/s of the encoder path, with and without dynamic batching, same run.

Each configuration runs `concurrency` callers that each embed one query image at a time for a
fixed time, as concurrent Search requests do. `unbatched`: every request calls the encoder on its
own (in a thread, serialised by the encoder's lock: the service's path before batching).
`batched`: the service's path now (EncoderBatcher.for_style_embedder: per-request preprocessing
in the caller's thread, one model run per batch). `batched_in_embed`: batching alone, with
preprocessing inside the batch (EncoderBatcher.for_function(embed)), to separate the two effects.
`encoder_forward_variants`: the encoder's own forward and training step, as it runs against how
it ran before (channel statistics by torch's var, contiguous NCHW).
"""

from __future__ import annotations

import asyncio
import copy
import os
import time
from collections.abc import Awaitable, Callable
from contextlib import nullcontext
from typing import Any
from unittest.mock import patch

import numpy as np
import torch
from PIL import Image, ImageDraw

from inference_service.batching import EncoderBatcher
from inference_service.models import style_encoder
from inference_service.models.style_encoder import StyleEmbedder, StyleEncoder, resolve_encoder, to_tensor


def query_images(n: int, px: int, seed: int = 0) -> list[Image.Image]:
    """Procedural RGB images: a random background with shapes (content does not matter here)."""
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(n):
        image = Image.new("RGB", (px, px), tuple(int(v) for v in rng.integers(0, 256, 3)))
        draw = ImageDraw.Draw(image)
        for _ in range(12):
            x0, y0 = (int(v) for v in rng.integers(0, px - 8, 2))
            x1, y1 = x0 + int(rng.integers(8, px // 2)), y0 + int(rng.integers(8, px // 2))
            draw.ellipse((x0, y0, x1, y1), fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
        images.append(image)
    return images


async def _drive(
    embed: Callable[[list[Image.Image]], Awaitable[np.ndarray]],
    images: list[Image.Image],
    concurrency: int,
    seconds: float,
) -> dict[str, float]:
    stop_at = time.perf_counter() + seconds
    latencies: list[float] = []

    async def caller(index: int) -> None:
        n = index
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            await embed([images[n % len(images)]])
            latencies.append(time.perf_counter() - started)
            n += concurrency

    started = time.perf_counter()
    await asyncio.gather(*(caller(i) for i in range(concurrency)))
    elapsed = time.perf_counter() - started
    ms = np.asarray(latencies) * 1000.0
    return {
        "images": len(latencies),
        "seconds": round(elapsed, 3),
        "images_per_s": round(len(latencies) / elapsed, 2),
        "latency_p50_ms": round(float(np.percentile(ms, 50)), 2),
        "latency_p95_ms": round(float(np.percentile(ms, 95)), 2),
    }


def _per_image_cost(embedder: StyleEmbedder, images: list[Image.Image], max_batch: int) -> dict[str, Any]:
    """Preprocessing and model time per image at a few batch sizes: how much batching can gain."""
    size = embedder.model.config.input_size
    out: dict[str, Any] = {}
    for batch in sorted({1, 8, max_batch}):
        chunk = images[:batch]
        prep, model = [], []
        for _ in range(3):
            started = time.perf_counter()
            tensor = to_tensor(chunk, size)
            prep.append(time.perf_counter() - started)
            with torch.inference_mode():
                started = time.perf_counter()
                embedder.model(tensor)
                model.append(time.perf_counter() - started)
        out[str(batch)] = {
            "preprocess_ms": round(1000 * float(np.median(prep)) / batch, 2),
            "model_ms": round(1000 * float(np.median(model)) / batch, 2),
        }
    return out


def _var_mean_std(x: torch.Tensor) -> torch.Tensor:
    """The encoder's channel statistics before the two-pass ones: torch's `var`."""
    flat = x.flatten(2)
    return torch.cat([flat.mean(dim=2), (flat.var(dim=2, unbiased=False) + 1e-6).sqrt()], dim=1)


# name: (channel statistics replaced by `var`, stages in channels-last); the last is what ships
FORWARD_VARIANTS = {
    "var_nchw": (True, False),
    "two_pass_nchw": (False, False),
    "two_pass_channels_last": (False, True),
}


def _forward_costs(model: StyleEncoder, rounds: int = 3, timed: int = 5) -> dict[str, Any]:
    """The encoder's forward as it was (torch's var for the channel statistics, contiguous NCHW),
    with the two-pass statistics, and with channels-last stages too (what it runs), in the same
    run: `rounds` rounds, each variant in turn (the order rotating) for one untimed call and
    `timed` timed ones in a row, as a run of one variant would go; medians. Inference ms per image
    (batch 32 at the input size) and a training step (forward and backward of a catalog-adaptation
    batch: 48 images at the 7/8 crop)."""
    size = model.config.input_size
    generator = torch.Generator().manual_seed(0)
    queries = torch.rand(32, 3, size, size, generator=generator)
    batch = torch.rand(48, 3, size * 7 // 8, size * 7 // 8, generator=generator)
    trainee = copy.deepcopy(model).train()
    names = list(FORWARD_VARIANTS)
    times: dict[str, dict[str, list[float]]] = {name: {"inference": [], "train_step": []} for name in names}
    for round_index in range(rounds):
        for name in names[round_index % len(names) :] + names[: round_index % len(names)]:
            use_var, channels_last = FORWARD_VARIANTS[name]
            model.channels_last = trainee.channels_last = channels_last
            with patch.object(style_encoder, "_mean_std", _var_mean_std) if use_var else nullcontext():
                for call in range(timed + 1):  # the first call after a switch is not timed
                    with torch.inference_mode():
                        started = time.perf_counter()
                        model(queries)
                        inference = (time.perf_counter() - started) / len(queries)
                    started = time.perf_counter()
                    trainee.zero_grad(set_to_none=True)
                    trainee(batch).sum().backward()  # type: ignore[no-untyped-call]
                    if call:
                        times[name]["inference"].append(inference)
                        times[name]["train_step"].append(time.perf_counter() - started)
    model.channels_last = True
    out: dict[str, Any] = {
        name: {f"{kind}_ms": round(1000 * float(np.median(v)), 2) for kind, v in kinds.items()}
        for name, kinds in times.items()
    }
    for name in names[1:]:
        for kind in ("inference", "train_step"):
            ratio = out["var_nchw"][f"{kind}_ms"] / out[name][f"{kind}_ms"]
            out[name][f"{kind}_speedup_over_var_nchw"] = round(ratio, 2)
    return out


async def run_throughput_bench(
    *,
    levels: list[int],
    seconds: float = 6.0,
    image_px: int = 512,
    max_batch: int = 32,
    max_wait_ms: float = 5.0,
    threads: int = 0,
) -> dict[str, Any]:
    if threads > 0:
        torch.set_num_threads(threads)
    model, label = resolve_encoder(None)
    embedder = StyleEmbedder(model, label)
    images = query_images(64, image_px)
    embedder.embed(images[:max_batch])  # warm-up: allocator and kernels

    async def unbatched(batch: list[Image.Image]) -> np.ndarray:
        return await asyncio.to_thread(embedder.embed, batch)

    rows = []
    for j, concurrency in enumerate(levels):
        row: dict[str, Any] = {"concurrency": concurrency}
        # Alternate which mode goes first so slow drift in background load hits both alike.
        modes = ("unbatched", "batched_in_embed", "batched")
        for mode in modes[::-1] if j % 2 else modes:
            if mode == "unbatched":
                row[mode] = await _drive(unbatched, images, concurrency, seconds)
                continue
            limits: dict[str, Any] = {
                "max_batch": max_batch,
                "max_wait": max_wait_ms / 1000.0,
                "max_queue": 4096,
            }
            batcher: EncoderBatcher[Any] = (
                EncoderBatcher.for_style_embedder(embedder, **limits)
                if mode == "batched"
                else EncoderBatcher.for_function(embedder.embed, **limits)
            )
            try:
                row[mode] = await _drive(batcher.embed, images, concurrency, seconds)
            finally:
                await batcher.aclose()
            stats = batcher.batcher.stats
            row[mode]["mean_batch_images"] = round(stats.items / max(1, stats.batches), 2)
        base = row["unbatched"]["images_per_s"]
        row["speedup"] = round(row["batched"]["images_per_s"] / base, 2)
        row["speedup_batched_in_embed"] = round(row["batched_in_embed"]["images_per_s"] / base, 2)
        rows.append(row)
    return {
        "bench": "throughput",
        "encoder_ms_per_image_by_batch": _per_image_cost(embedder, images, max_batch),
        "encoder_forward_variants": _forward_costs(model),
        "encoder": label,
        "image_px": image_px,
        "encoder_input_px": model.config.input_size,
        "max_batch": max_batch,
        "max_wait_ms": max_wait_ms,
        "torch_threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "seconds_per_configuration": seconds,
        "levels": rows,
    }
