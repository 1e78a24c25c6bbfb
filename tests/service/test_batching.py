"""Dynamic batching: grouping, max wait, bounded queue, deadlines, cancellation (no tight timings)."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest
from PIL import Image

from inference_service.batching import DynamicBatcher, EncoderBatcher
from inference_service.errors import DeadlineExceeded, ResourceExhausted
from inference_service.models.style_encoder import StyleEmbedder, untrained_encoder
from lab.bench.throughput import query_images, run_throughput_bench


class Recorder:
    """A batch function that records its batches and can be held until released."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.release = threading.Event()
        self.release.set()

    def __call__(self, items: list[int]) -> list[int]:
        self.release.wait(10)
        self.batches.append(list(items))
        return [i * 10 for i in items]


async def _started(batcher: DynamicBatcher[int, int]) -> None:
    """Until the worker has taken its first batch (and is blocked in it)."""
    for _ in range(1000):
        if batcher.stats.batches:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the batcher never started a batch")


async def test_concurrent_requests_share_a_batch_and_get_their_own_result() -> None:
    run = Recorder()
    batcher = DynamicBatcher(run, max_batch=8, max_wait=5.0)
    try:
        results = await asyncio.gather(*(batcher.submit(i) for i in range(8)))
    finally:
        await batcher.aclose()
    assert results == [i * 10 for i in range(8)]
    assert run.batches == [list(range(8))]  # full batch left at once, long before max_wait


async def test_max_batch_splits_and_max_wait_flushes_a_lone_request() -> None:
    run = Recorder()
    batcher = DynamicBatcher(run, max_batch=4, max_wait=0.01)
    try:
        assert await asyncio.wait_for(batcher.submit(1), 5) == 10  # alone: flushed by max_wait
        results = await asyncio.gather(*(batcher.submit(i) for i in range(10)))
    finally:
        await batcher.aclose()
    assert results == [i * 10 for i in range(10)]
    assert all(len(b) <= 4 for b in run.batches)


async def test_full_queue_answers_resource_exhausted() -> None:
    run = Recorder()
    run.release.clear()  # the first batch blocks the worker
    batcher = DynamicBatcher(run, max_batch=1, max_wait=0.0, max_queue=2)
    try:
        first = asyncio.ensure_future(batcher.submit(0))
        await _started(batcher)
        queued = [asyncio.ensure_future(batcher.submit(i)) for i in (1, 2)]
        await asyncio.sleep(0.01)
        with pytest.raises(ResourceExhausted):
            await batcher.submit(3)
        run.release.set()
        assert await asyncio.gather(first, *queued) == [0, 10, 20]
    finally:
        run.release.set()
        await batcher.aclose()
    assert batcher.stats.rejected == 1


async def test_expired_and_cancelled_requests_are_not_computed() -> None:
    run = Recorder()
    run.release.clear()
    batcher = DynamicBatcher(run, max_batch=1, max_wait=0.0)
    loop = asyncio.get_running_loop()
    try:
        blocker = asyncio.ensure_future(batcher.submit(0))
        await _started(batcher)
        expiring = asyncio.ensure_future(batcher.submit(1, deadline=loop.time() + 0.05))
        cancelled = asyncio.ensure_future(batcher.submit(2))
        kept = asyncio.ensure_future(batcher.submit(3))
        await asyncio.sleep(0.1)  # the deadline passes while the worker is busy
        cancelled.cancel()
        run.release.set()
        assert await blocker == 0
        assert await kept == 30
        with pytest.raises(DeadlineExceeded):
            await expiring
        with pytest.raises(DeadlineExceeded):
            await batcher.submit(4, deadline=loop.time() - 1)
    finally:
        run.release.set()
        await batcher.aclose()
    computed = [i for batch in run.batches for i in batch]
    assert computed == [0, 3]
    assert batcher.stats.expired == 1
    assert batcher.stats.cancelled == 1


async def test_encoder_batcher_matches_unbatched_embeddings() -> None:
    embedder = StyleEmbedder(untrained_encoder(), "untrained")
    images: list[Image.Image] = query_images(6, 96, seed=2)
    requests = [images[:1], images[1:4], images[4:5], images[5:6]]
    expected = [embedder.embed(r) for r in requests]
    for batcher in (
        EncoderBatcher.for_style_embedder(embedder, max_batch=32, max_wait=0.05),
        EncoderBatcher.for_function(embedder.embed, max_batch=32, max_wait=0.05),
    ):
        try:
            got = await asyncio.gather(*(batcher.embed(r) for r in requests))
        finally:
            await batcher.aclose()
        for g, e in zip(got, expected, strict=True):
            assert g.shape == e.shape
            assert np.allclose(g, e, atol=1e-5)


async def test_announced_callers_are_waited_for_and_a_lone_one_is_not() -> None:
    run = Recorder()
    batcher = DynamicBatcher(run, max_batch=8, max_wait=30.0, wait_only_when_announced=True)
    try:
        # Nobody announced: leaves at once although max_wait is long.
        assert await asyncio.wait_for(batcher.submit(1), 10) == 10

        async def late(i: int) -> int:
            with batcher.announce():
                await asyncio.sleep(0.05)  # still preparing its item
            return await batcher.submit(i)

        results = await asyncio.wait_for(asyncio.gather(batcher.submit(2), late(3)), 10)
    finally:
        await batcher.aclose()
    assert results == [20, 30]
    assert run.batches == [[1], [2, 3]]


async def test_closing_during_a_batch_answers_its_callers() -> None:
    """aclose() while a batch runs in its thread: its callers get the shutdown error, not a hang."""
    run = Recorder()
    run.release.clear()
    batcher = DynamicBatcher(run, max_batch=4, max_wait=0)
    caller = asyncio.create_task(batcher.submit(1))
    for _ in range(200):  # until the batch is in its thread
        await asyncio.sleep(0.01)
        if batcher.stats.batches:
            break
    await batcher.aclose()
    with pytest.raises(ResourceExhausted, match="shutting down"):
        await asyncio.wait_for(caller, 5)
    run.release.set()


async def test_bench_throughput_small() -> None:
    result = await run_throughput_bench(levels=[1, 4], seconds=0.3, image_px=64, max_batch=4)
    assert [row["concurrency"] for row in result["levels"]] == [1, 4]
    for row in result["levels"]:
        for mode in ("unbatched", "batched", "batched_in_embed"):
            assert row[mode]["images"] > 0
        assert row["batched"]["mean_batch_images"] <= 4
    assert set(result["encoder_ms_per_image_by_batch"]) == {"1", "4", "8"}
    variants = result["encoder_forward_variants"]
    assert set(variants) == {"var_nchw", "two_pass_nchw", "two_pass_channels_last"}
    assert all(v["inference_ms"] > 0 and v["train_step_ms"] > 0 for v in variants.values())
    assert variants["two_pass_channels_last"]["train_step_speedup_over_var_nchw"] > 0
