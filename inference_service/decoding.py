"""Decoding uploads off the event loop, a few at a time, at the size the models need.

A request's images are checked from the request itself first (count, bytes: `check_upload`),
then decoded by a small thread pool. The pool has `workers` threads, so at most that many
full-size images exist at once; each worker reduces its image to `working_pixels` before
handing it back (imaging.decode_image). Images waiting for a worker cost only the bytes the
request already holds, and at most `max_pending` images wait or decode: past that a request is
refused at once (RESOURCE_EXHAUSTED) instead of queueing behind work it cannot outlast.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from PIL import Image

from findlora_client.protocol import Reason
from inference_service.config import Settings
from inference_service.errors import InvalidArgument, ResourceExhausted
from inference_service.imaging import ImageRejected, check_size, decode_image
from inference_service.timing import stage


@dataclass(frozen=True)
class Upload:
    data: bytes
    name: str


@dataclass(frozen=True)
class UploadLimits:
    max_images: int
    max_image_bytes: int
    max_total_bytes: int
    what: str  # "images of one style", "images of your artwork": how the count message ends


def check_upload(uploads: Sequence[Upload], limits: UploadLimits) -> None:
    """Count and byte checks from the request alone: nothing is decoded when one fails."""
    if not 1 <= len(uploads) <= limits.max_images:
        raise InvalidArgument(
            f"send 1 to {limits.max_images} {limits.what} (this request has {len(uploads)})"
        )
    try:
        for upload in uploads:
            check_size(upload.data, limits.max_image_bytes, upload.name)
    except ImageRejected as exc:
        raise InvalidArgument(str(exc), reason=Reason.IMAGE_REJECTED) from None
    total = sum(len(upload.data) for upload in uploads)
    if total > limits.max_total_bytes:
        raise InvalidArgument(
            f"the images add up to {total / 1e6:.1f} MB; the limit per request is "
            f"{limits.max_total_bytes / 1e6:.0f} MB",
            reason=Reason.IMAGE_REJECTED,
        )


@dataclass
class DecodeStats:
    submitted: int = 0  # images handed to a worker
    refused: int = 0  # images of requests refused because the pool was full


class DecodePool:
    def __init__(
        self, *, workers: int, max_pending: int, max_image_bytes: int, max_pixels: int, working_pixels: int
    ) -> None:
        if workers < 1 or max_pending < 1 or working_pixels < 1:
            raise ValueError("workers, max_pending and working_pixels must be >= 1")
        self.max_pending, self.max_image_bytes = max_pending, max_image_bytes
        self.max_pixels, self.working_pixels = max_pixels, working_pixels
        self.stats = DecodeStats()
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode")
        self._lock = threading.Lock()  # slots are freed from worker threads
        self._pending = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> DecodePool:
        return cls(
            workers=settings.decode_workers,
            max_pending=settings.decode_queue_max,
            max_image_bytes=settings.max_image_bytes,
            max_pixels=settings.max_image_pixels,
            working_pixels=settings.decode_working_pixels,
        )

    @property
    def pending(self) -> int:
        with self._lock:
            return self._pending

    def _reserve(self, count: int) -> None:
        with self._lock:
            if self._pending + count > self.max_pending:
                self.stats.refused += count
                raise ResourceExhausted(
                    "the service is busy decoding other images; try again in a few seconds"
                )
            self._pending += count

    def _release(self, _: object) -> None:
        with self._lock:
            self._pending -= 1

    def _decode(self, upload: Upload) -> Image.Image:
        try:
            return decode_image(
                upload.data,
                max_bytes=self.max_image_bytes,
                max_pixels=self.max_pixels,
                name=upload.name,
                working_pixels=self.working_pixels,
            )
        except ImageRejected as exc:
            raise InvalidArgument(str(exc), reason=Reason.IMAGE_REJECTED) from None

    async def decode(self, uploads: Sequence[Upload]) -> list[Image.Image]:
        """Every upload decoded and reduced, in order; the first bad one fails the request and
        cancels its images that have not started."""
        self._reserve(len(uploads))
        futures: list[Future[Image.Image]] = []
        try:
            for upload in uploads:
                future = self._executor.submit(self._decode, upload)
                future.add_done_callback(self._release)  # on completion or cancellation
                futures.append(future)
                self.stats.submitted += 1
        except BaseException:
            with self._lock:  # slots of the uploads that never reached a worker
                self._pending -= len(uploads) - len(futures)
            raise
        try:
            with stage("decode"):  # the bots read headers only: every pixel is decoded here
                return list(await asyncio.gather(*(asyncio.wrap_future(f) for f in futures)))
        finally:
            for future in futures:
                future.cancel()  # no-op for finished or running ones

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
