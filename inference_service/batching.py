"""Dynamic batching: concurrent requests share one encoder run.

Requests queue up; a single worker takes the oldest and waits at most `max_wait` for more,
up to `max_batch` items (an item counts as many as its `size`), then runs the whole batch in a
thread while the next one gathers. With `wait_only_when_announced` it waits only while other
callers have announced an item on its way (still preprocessing): a lone request is never held
back. A request whose deadline passed, or whose caller went away,
is dropped before it costs encoder time. The queue is bounded: past `max_queue` items a request
is refused at once (RESOURCE_EXHAUSTED) rather than waiting behind work it cannot outlast.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import itertools
from collections.abc import Callable, Iterator, Sequence, Sized
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import numpy as np
import structlog
import torch
from PIL import Image

from inference_service.errors import DeadlineExceeded, ResourceExhausted
from inference_service.models.style_encoder import StyleEmbedder, to_tensor

log = structlog.get_logger(__name__)
T = TypeVar("T")
R = TypeVar("R")
X = TypeVar("X", bound=Sized)


@dataclass
class _Pending(Generic[T, R]):
    item: T
    size: int
    future: asyncio.Future[R]
    deadline: float | None
    enqueued: float


@dataclass
class BatchStats:
    batches: int = 0
    items: int = 0
    expired: int = 0
    cancelled: int = 0
    rejected: int = 0
    sizes: collections.Counter[int] = field(default_factory=collections.Counter)


class DynamicBatcher(Generic[T, R]):
    def __init__(
        self,
        run_batch: Callable[[list[T]], Sequence[R]],
        *,
        max_batch: int = 32,
        max_wait: float = 0.005,
        max_queue: int = 256,
        size: Callable[[T], int] = lambda _: 1,
        wait_only_when_announced: bool = False,
    ) -> None:
        if max_batch < 1 or max_queue < 1 or max_wait < 0:
            raise ValueError("max_batch and max_queue must be >= 1 and max_wait >= 0")
        self.run_batch, self.size = run_batch, size
        self.max_batch, self.max_wait, self.max_queue = max_batch, max_wait, max_queue
        self.stats = BatchStats()
        self._queue: collections.deque[_Pending[T, R]] = collections.deque()
        self._wakeup = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._closed = False
        self.incoming = 0  # callers preparing an item (announced): worth waiting for
        self.wait_only_when_announced = wait_only_when_announced

    @contextlib.contextmanager
    def announce(self) -> Iterator[None]:
        """Mark a caller that will submit soon (while it preprocesses), so a batch waits for it;
        with nobody announced a batch leaves at once instead of idling for max_wait."""
        self.incoming += 1
        try:
            yield
        finally:
            self.incoming -= 1

    async def submit(self, item: T, *, deadline: float | None = None) -> R:
        """The result of `item` computed in some batch. `deadline` is in loop.time() seconds."""
        if self._closed:
            raise RuntimeError("the batcher is closed")
        self._refuse_if_full()
        loop = asyncio.get_running_loop()
        if deadline is not None and deadline <= loop.time():
            raise DeadlineExceeded("the request's deadline passed before it could be computed")
        if self._worker is None:
            self._worker = loop.create_task(self._run(), name="dynamic-batcher")
        future: asyncio.Future[R] = loop.create_future()
        self._queue.append(_Pending(item, max(1, self.size(item)), future, deadline, loop.time()))
        self._wakeup.set()
        return await future  # a cancelled caller cancels the future: the worker skips it

    async def prepare_and_submit(self, prepare: Callable[[], T], *, deadline: float | None = None) -> R:
        """Submit the item `prepare` makes in a thread while announced (so it overlaps the batch
        ahead), refusing a full queue before spending the preparation."""
        self._refuse_if_full()
        with self.announce():
            item = await asyncio.to_thread(prepare)
        return await self.submit(item, deadline=deadline)

    def _refuse_if_full(self) -> None:
        if len(self._queue) >= self.max_queue:
            self.stats.rejected += 1
            raise ResourceExhausted("the service is overloaded (encoder queue full); try again shortly")

    async def aclose(self) -> None:
        self._closed = True
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
        while self._queue:
            pending = self._queue.popleft()
            if not pending.future.done():
                pending.future.set_exception(ResourceExhausted("the service is shutting down"))

    async def _gather(self) -> list[_Pending[T, R]]:
        """Wait for work, then for a full batch or the oldest item's max wait."""
        loop = asyncio.get_running_loop()
        while not self._queue:
            self._wakeup.clear()
            await self._wakeup.wait()
        while sum(p.size for p in self._queue) < self.max_batch and (
            self.incoming > 0 or not self.wait_only_when_announced
        ):
            remaining = self._queue[0].enqueued + self.max_wait - loop.time()
            if remaining <= 0:
                break
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except TimeoutError:
                break
        batch: list[_Pending[T, R]] = []
        total = 0
        now = loop.time()
        while self._queue and (not batch or total + self._queue[0].size <= self.max_batch):
            pending = self._queue.popleft()
            if pending.future.done():
                self.stats.cancelled += 1
            elif pending.deadline is not None and pending.deadline <= now:
                self.stats.expired += 1
                pending.future.set_exception(
                    DeadlineExceeded("the request's deadline passed while it waited for the encoder")
                )
            else:
                batch.append(pending)
                total += pending.size
        return batch

    async def _run(self) -> None:
        while True:
            batch = await self._gather()
            if not batch:
                continue
            self.stats.batches += 1
            self.stats.items += len(batch)
            self.stats.sizes[sum(p.size for p in batch)] += 1
            try:
                results = await asyncio.to_thread(self.run_batch, [p.item for p in batch])
            except asyncio.CancelledError:  # aclose() while the batch ran: its callers must not hang
                for p in batch:
                    if not p.future.done():
                        p.future.set_exception(ResourceExhausted("the service is shutting down"))
                raise
            except Exception as exc:  # every caller of the batch learns why
                log.warning("batch_failed", size=len(batch), error=type(exc).__name__)
                for p in batch:
                    if not p.future.done():
                        p.future.set_exception(exc)
                continue
            for p, result in zip(batch, results, strict=True):
                if not p.future.done():
                    p.future.set_result(result)


class EncoderBatcher(Generic[X]):
    """Batches style-encoder calls: each request's 1-4 images go through one shared model run;
    preprocessing runs per request before queueing (DynamicBatcher.prepare_and_submit)."""

    def __init__(
        self,
        preprocess: Callable[[list[Image.Image]], X],
        forward: Callable[[list[X]], np.ndarray],
        *,
        max_batch: int = 32,
        max_wait: float = 0.005,
        max_queue: int = 256,
    ) -> None:
        self._preprocess, self._forward = preprocess, forward
        self.batcher: DynamicBatcher[X, np.ndarray] = DynamicBatcher(
            self._run,
            max_batch=max_batch,
            max_wait=max_wait,
            max_queue=max_queue,
            size=len,
            wait_only_when_announced=True,
        )

    @classmethod
    def for_style_embedder(cls, embedder: StyleEmbedder, **limits: Any) -> EncoderBatcher[torch.Tensor]:
        size = embedder.model.config.input_size
        return EncoderBatcher(
            lambda images: to_tensor(images, size), functools.partial(_forward, embedder), **limits
        )

    @classmethod
    def for_function(
        cls, embed: Callable[[Sequence[Image.Image]], np.ndarray], **limits: Any
    ) -> EncoderBatcher[list[Image.Image]]:
        """Batch any embed(images) function; preprocessing stays inside it."""
        return EncoderBatcher(
            lambda images: images, lambda requests: embed([i for r in requests for i in r]), **limits
        )

    def _run(self, requests: list[X]) -> list[np.ndarray]:
        return _split(self._forward(requests), [len(r) for r in requests])

    async def embed(self, images: Sequence[Image.Image], deadline: float | None = None) -> np.ndarray:
        return await self.batcher.prepare_and_submit(
            functools.partial(self._preprocess, list(images)), deadline=deadline
        )

    async def aclose(self) -> None:
        await self.batcher.aclose()


class StyleBatcher:
    """Batches style-encoder calls while the active encoder may change (an activation): each
    request names the embedder it embeds with, and a batch runs each embedder's requests
    together, so no query is ever embedded by another encoder than the one its search checks.
    Preprocessing runs per request before queueing, as in EncoderBatcher."""

    def __init__(self, *, max_batch: int = 32, max_wait: float = 0.005, max_queue: int = 256) -> None:
        self.batcher: DynamicBatcher[tuple[StyleEmbedder, torch.Tensor], np.ndarray] = DynamicBatcher(
            self._run,
            max_batch=max_batch,
            max_wait=max_wait,
            max_queue=max_queue,
            size=lambda item: len(item[1]),
            wait_only_when_announced=True,
        )

    async def embed(
        self, embedder: StyleEmbedder, images: Sequence[Image.Image], deadline: float | None = None
    ) -> np.ndarray:
        size = embedder.model.config.input_size
        return await self.batcher.prepare_and_submit(
            lambda: (embedder, to_tensor(list(images), size)), deadline=deadline
        )

    @staticmethod
    def _run(items: list[tuple[StyleEmbedder, torch.Tensor]]) -> list[np.ndarray]:
        results: list[np.ndarray] = [np.zeros(0, dtype=np.float32)] * len(items)
        groups: dict[int, list[int]] = {}
        for index, (embedder, _) in enumerate(items):
            groups.setdefault(id(embedder), []).append(index)
        for indices in groups.values():
            tensors = [items[i][1] for i in indices]
            embeddings = _forward(items[indices[0]][0], tensors)
            for index, part in zip(indices, _split(embeddings, [len(t) for t in tensors]), strict=True):
                results[index] = part
        return results

    async def aclose(self) -> None:
        await self.batcher.aclose()


def _forward(embedder: StyleEmbedder, tensors: list[torch.Tensor]) -> np.ndarray:
    with torch.inference_mode():
        out = embedder.model(torch.cat(tensors).to(embedder.device))
    result: np.ndarray = out.float().cpu().numpy().astype(np.float32)
    return result


def _split(embeddings: np.ndarray, counts: list[int]) -> list[np.ndarray]:
    """One request's rows each, in order."""
    bounds = np.cumsum([0, *counts])
    return [embeddings[a:b] for a, b in itertools.pairwise(bounds.tolist())]
