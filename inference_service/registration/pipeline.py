"""One registration job: fetch -> validate -> generate -> embed -> index, resumable step by step.

What a step produced is in the database before the next starts (the fetched file's sha256, the
validated metadata, each generated image as it is made), so a worker that dies is replaced by one
that skips what is done. Only the final step makes the LoRA visible, in one transaction with the
job's success: a failed or interrupted job never leaves a half-registered LoRA behind.
"""

from __future__ import annotations

import asyncio
import io
import threading
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import psycopg
import structlog
from PIL import Image

from db import catalog, registration, specs
from db.database import Database
from db.encoders import EncoderChanged
from db.registration import JobRow
from db.rows import NewLora, SpecRow
from db.spec_index import ensure_spec_index_async
from findlora_client.base_models import canonical
from inference_service.blobs import BlobStore
from inference_service.catalog.importer import Transfer, build_reference_rows
from inference_service.config import Settings
from inference_service.gmi import GmiModels
from inference_service.imaging import load_image_file
from inference_service.models.active import ActiveEncoder, UnknownEncoder, as_active
from inference_service.models.style_encoder import StyleEmbedder
from inference_service.registration.families import generator_family, registered_family
from inference_service.registration.fetch import FetchPolicy, fetch_to_file, redact
from inference_service.registration.generate import TransferGenerator
from inference_service.registration.lora_file import LoraInfo, validate_lora_file
from inference_service.registration.refusals import DuplicateLora, RegistrationRefused

log = structlog.get_logger(__name__)
STAGED_PREFIX = "staged:"
# Share of the whole job at the start and end of each step, for one progress bar.
STEPS = {"fetch": (0.0, 0.15), "validate": (0.15, 0.2), "generate": (0.2, 0.85), "embed": (0.85, 0.95),
         "index": (0.95, 1.0)}  # fmt: skip
GeneratorFactory = Callable[[str], TransferGenerator]


def fetch_policy(settings: Settings) -> FetchPolicy:
    return FetchPolicy(
        allowed_hosts=tuple(settings.registration_allowed_hosts),
        max_bytes=settings.registration_max_bytes,
        connect_timeout=settings.registration_connect_timeout,
        read_timeout=settings.registration_read_timeout,
        total_timeout=settings.registration_total_timeout,
        max_redirects=settings.registration_max_redirects,
        allowed_ports=tuple(settings.registration_allowed_ports),
    )


@dataclass(frozen=True)
class Lookalike:
    slug: str
    distance: float
    threshold: float


def png_bytes(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


class RegistrationPipeline:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        blobs: BlobStore,
        embedder: StyleEmbedder | ActiveEncoder,
        generators: GeneratorFactory,
        policy: FetchPolicy | None = None,
        gmi: GmiModels | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.blobs = blobs
        self.encoders = as_active(embedder, db, blobs)
        self.generators = generators
        self.generation_lock = threading.Lock()  # held by a job's generation thread (see _generate)
        self.policy = policy or fetch_policy(settings)
        self.gmi = gmi

    async def _report(self, job: JobRow, step: str, fraction: float, message: str) -> None:
        start, end = STEPS[step]
        await self.db.run(
            registration.report, job.id, step, start + (end - start) * min(max(fraction, 0.0), 1.0), message
        )

    async def run(self, job_id: uuid.UUID) -> None:
        job = await self.db.run(registration.get_job, job_id)
        if job is None or job.finished:
            return  # a duplicate delivery of a finished job: nothing to do
        attempt = await self.db.run(registration.start_attempt, job_id)
        bound = log.bind(job_id=str(job_id), slug=job.slug, attempt=attempt)
        bound.info("registration_started", resumed=attempt > 1)
        try:
            await self._run(job, attempt)
        except RegistrationRefused as exc:
            bound.info("registration_refused", reason=exc.message)
            await self.db.run(registration.fail, job_id, exc.message)
            await self._discard_file(job_id)
        except Exception:
            bound.exception("registration_failed")
            await self.db.run(
                registration.fail,
                job_id,
                f"internal error while registering (job {job_id}); see the worker log",
            )
            await self._discard_file(job_id)
            raise
        except asyncio.CancelledError:
            # Aborted, or the process stopped (Ctrl-C in `lora register --run-here`): the queue
            # ends its job for good, so a row left `running` would hold its source busy forever.
            bound.warning("registration_interrupted")
            await asyncio.shield(self._fail_interrupted(job_id))
            raise
        else:
            bound.info("registration_succeeded")

    async def _run(self, job: JobRow, attempt: int) -> None:
        resumed = " (resumed)" if attempt > 1 else ""
        path, sha256 = await self._fetch(job, resumed)
        info, base_model = await self._validate(job, path)
        references, spec = await self._generate(job, path, base_model, info)
        for _ in range(3):
            rows, encoder = await self._embed(job, references)
            try:
                await self._index(job, info, base_model, sha256, rows, spec, encoder)
                return
            except EncoderChanged as exc:  # an activation committed since the embed step
                log.info(
                    "registration_reembeds", job_id=str(job.id), embedded=exc.expected, active=exc.active
                )
        raise RegistrationRefused("the style encoder kept changing while registering; register again")

    async def _fail_interrupted(self, job_id: uuid.UUID) -> None:
        await self.db.run(
            registration.fail,
            job_id,
            "the registration was stopped before it finished; register the LoRA again",
        )
        await self._discard_file(job_id)

    async def _discard_file(self, job_id: uuid.UUID) -> None:
        """A failed job's file leaves the LoRA store, unless a LoRA is this file or another job
        needs it: no later job reuses it (a new one downloads or stages again), and failed
        downloads of up to the size cap would otherwise fill the worker's disk."""
        job = await self.db.run(registration.get_job, job_id)
        if job is None or not job.file_sha256:
            return
        if not await self.db.run(registration.file_still_wanted, job.file_sha256, job_id):
            (self.settings.lora_dir / f"{job.file_sha256}.safetensors").unlink(missing_ok=True)

    # --- steps -------------------------------------------------------------------------------

    async def _fetch(self, job: JobRow, resumed: str) -> tuple[Any, str]:
        lora_dir = self.settings.lora_dir
        if job.source_url.startswith(STAGED_PREFIX):
            sha256 = job.source_url.removeprefix(STAGED_PREFIX)
            path = lora_dir / f"{sha256}.safetensors"
            if not path.is_file():
                raise RegistrationRefused("the staged file is gone from the LoRA store; register it again")
            await self._report(job, "fetch", 1.0, f"using the staged file{resumed}")
        elif job.file_sha256 and (lora_dir / f"{job.file_sha256}.safetensors").is_file():
            sha256, path = job.file_sha256, lora_dir / f"{job.file_sha256}.safetensors"
            await self._report(job, "fetch", 1.0, f"already downloaded{resumed}")
        else:
            if not job.fetch_url:
                # The full link (it may carry a token) is wiped once the download is done.
                raise RegistrationRefused(
                    "the downloaded file is gone from the LoRA store and its link is no longer kept; "
                    "register the LoRA again"
                )
            await self._report(job, "fetch", 0.0, f"downloading from {redact(job.source_url)}{resumed}")
            loop = asyncio.get_running_loop()
            last = [0.0]
            pending: set[asyncio.Task[None]] = set()

            def progress(done: int, total: int | None) -> None:
                fraction = done / total if total else 0.0
                if fraction - last[0] >= 0.1:  # a database write per 10%, not per chunk
                    last[0] = fraction
                    message = f"downloaded {done / 1024**2:.0f} MiB"
                    task = loop.create_task(self._report(job, "fetch", fraction, message))
                    pending.add(task)
                    task.add_done_callback(pending.discard)

            fetched = await fetch_to_file(job.fetch_url, lora_dir, self.policy, progress)
            await asyncio.gather(*pending)
            sha256, path = fetched.sha256, fetched.path
        await self.db.run(registration.record_fetch, job.id, sha256)
        existing = await self.db.run(registration.slug_of_sha256, sha256)
        if existing is not None:
            raise DuplicateLora(existing, sha256)
        return path, sha256

    async def _validate(self, job: JobRow, path: Any) -> tuple[LoraInfo, str]:
        await self._report(job, "validate", 0.0, "checking the safetensors header and tensors")
        info = await asyncio.to_thread(validate_lora_file, path, self.settings.registration_max_header_bytes)
        declared = canonical(str(job.metadata.get("base_model") or ""))
        base_model, warning = registered_family(declared, info.base_model)
        generator_family(base_model, self.settings)
        await self.db.run(registration.record_validation, job.id, info.to_json())
        summary = f"{info.key_style} LoRA for {base_model}, rank {info.rank}, {info.modules} modules"
        summary += f" ({warning})" if warning else ""
        await self._report(job, "validate", 1.0, summary)
        return info, base_model

    async def _generate(
        self, job: JobRow, path: Any, base_model: str, info: LoraInfo
    ) -> tuple[dict[str, str], list[SpecRow]]:
        samples = await self.db.run(catalog.sample_blobs)
        if not samples:
            raise RegistrationRefused("the catalog has no sample set yet: import a catalog first")
        prompts = await self.db.run(specs.platform_prompts)
        trigger = ", ".join(job.metadata.get("trigger_words") or info.trigger_words)
        per_prompt = max(self.settings.spec_images_per_prompt, 0)
        spec_items = {
            f"{p.id}-{n}": (p.text + (f", {trigger}" if trigger else ""))
            for p in prompts
            for n in range(per_prompt)
        }
        refs_done = await self.db.run(registration.artifacts, job.id, "reference")
        spec_done = await self.db.run(registration.artifacts, job.id, "spec")
        todo_refs = [s for s in sorted(samples) if s not in refs_done]
        todo_spec = [k for k in spec_items if k not in spec_done]
        total = len(samples) + len(spec_items)
        done = total - len(todo_refs) - len(todo_spec)
        if todo_refs or todo_spec:
            reused = f"; {done} reused from the interrupted attempt" if done else ""
            await self._report(job, "generate", done / total, f"loading the {base_model} pipeline{reused}")
            loop = asyncio.get_running_loop()
            # Set when the job is stopped: a thread cannot be cancelled, and left alone it went on
            # generating (and holding the pipelines) for a job that had already failed.
            stopped = threading.Event()

            def record(kind: str, item: str, image: Image.Image) -> None:
                nonlocal done
                if stopped.is_set():
                    return
                key = self.blobs.put(png_bytes(image), ".png")
                asyncio.run_coroutine_threadsafe(
                    self.db.run(registration.add_artifact, job.id, kind, item, key), loop
                ).result()
                done += 1
                message = f"generated {done}/{total} images ({kind} {item})"
                asyncio.run_coroutine_threadsafe(
                    self._report(job, "generate", done / total, message), loop
                ).result()

            def work() -> None:
                # One LoRA at a time in the shared pipelines: a second job's LoRA would take the
                # same adapter slot, be refused, and unload the first one's mid-generation.
                with self.generation_lock:
                    if stopped.is_set():
                        return
                    generator = self.generators(base_model)
                    with generator.lora(path):
                        for sample_id in todo_refs:
                            if stopped.is_set():
                                return
                            sample = load_image_file(self.blobs.path(samples[sample_id]))
                            record("reference", sample_id, generator.reference(sample_id, sample))
                        for key in todo_spec:
                            if stopped.is_set():
                                return
                            record("spec", key, generator.spec(key, spec_items[key]))

            try:
                await asyncio.to_thread(work)
            except asyncio.CancelledError:
                stopped.set()  # the thread ends after the image in progress, recording nothing more
                raise
        refs = await self.db.run(registration.artifacts, job.id, "reference")
        spec_keys = await self.db.run(registration.artifacts, job.id, "spec")
        spec = await self._spec_features(
            [SpecRow(int(k.split("-")[0]), int(k.split("-")[1]), v) for k, v in sorted(spec_keys.items())]
        )
        note = f", {len(spec)} spec images" if spec else "; no platform prompt set, so no spec images"
        await self._report(job, "generate", 1.0, f"{len(refs)} reference transfers{note}")
        return refs, spec

    async def _spec_features(self, spec: list[SpecRow]) -> list[SpecRow]:
        """CLIP image features of the spec images when this worker has the GMI models (in the
        feature space the catalog's prompts were embedded with); otherwise the images and prompt
        ids are stored and search skips the spec until its features are filled."""
        if self.gmi is None or not spec:
            return spec
        stored = await self.db.run(catalog.get_meta, catalog.GMI_ENCODER_KEY)
        if stored is not None and stored != self.gmi.label:
            log.warning("spec_features_skipped", stored=stored, running=self.gmi.label)
            return spec
        gmi = self.gmi
        images = [load_image_file(self.blobs.path(row.blob_key)) for row in spec]
        features = await asyncio.to_thread(gmi.image.encode_images, images)
        return [replace(row, image_feature=f) for row, f in zip(spec, features, strict=True)]

    async def _embed(self, job: JobRow, references: dict[str, str]) -> tuple[list[Any], str]:
        """The reference rows embedded with the catalog's active encoder, and its label."""
        await self._report(job, "embed", 0.0, f"embedding {len(references)} references")
        try:
            embedder = await self.encoders.current()
        except UnknownEncoder as exc:
            raise RegistrationRefused(
                f"the catalog was embedded with {exc.stored!r} but this worker runs "
                f"{self.encoders.configured.label!r}"
            ) from None
        sample_keys = await self.db.run(catalog.sample_blobs)

        def work() -> list[Any]:
            samples = {s: load_image_file(self.blobs.path(sample_keys[s])) for s in references}
            transfers = [
                Transfer(s, load_image_file(self.blobs.path(k)), self.blobs.get(k), ".png")
                for s, k in sorted(references.items())
            ]
            return build_reference_rows(
                transfers,
                samples,
                self.blobs,
                embedder,
                self.settings.cleansing_threshold,
                self.settings.thumbnail_px,
            )

        rows = await asyncio.to_thread(work)
        dropped = sum(not r.kept for r in rows)
        if dropped == len(rows):
            raise RegistrationRefused(
                "every transfer was dropped by cleansing (Eq. 1): the LoRA did not change the samples"
            )
        await self._report(
            job, "embed", 1.0, f"{len(rows)} references embedded, {dropped} dropped by cleansing"
        )
        return rows, embedder.label

    async def lookalikes(self, centroid: np.ndarray) -> tuple[list[Lookalike], float | None]:
        """Existing LoRAs whose centroid is closer to the new one than the catalog's own
        `lookalike_quantile` of nearest-neighbour distances."""
        distances = await self.db.run(
            registration.nearest_neighbour_distances, self.settings.lookalike_sample
        )
        if len(distances) < self.settings.lookalike_min_catalog:
            return [], None
        threshold = float(np.quantile(distances, self.settings.lookalike_quantile))
        near = await self.db.run(registration.nearest_centroids, centroid, 5)
        return [Lookalike(slug, d, threshold) for slug, d in near if d < threshold], threshold

    async def _index(
        self,
        job: JobRow,
        info: LoraInfo,
        base_model: str,
        sha256: str,
        rows: list[Any],
        spec: list[SpecRow],
        encoder: str,
    ) -> None:
        await self._report(job, "index", 0.0, "checking for lookalikes and indexing")
        kept = np.stack([r.embedding for r in rows if r.kept]).astype(np.float32)
        found, threshold = await self.lookalikes(kept.mean(axis=0))
        meta = job.metadata
        lora = NewLora(
            slug=job.slug,
            name=str(meta.get("name") or info.title or job.slug),
            base_model=base_model,
            page_url=str(meta.get("page_url") or ""),
            source_url="" if job.source_url.startswith(STAGED_PREFIX) else redact(job.source_url),
            trigger_words=list(meta.get("trigger_words") or info.trigger_words),
            license=str(meta.get("license") or info.license),
            author=str(meta.get("author") or info.author),
            nsfw=bool(meta.get("nsfw")) or info.nsfw,
            sha256=sha256,
            created_by=job.requested_by,
        )
        dropped = sum(not r.kept for r in rows)
        message = (
            f"registered {job.slug}: {len(rows)} references ({dropped} dropped by cleansing), "
            f"{len(spec)} spec images"
        )
        if found:
            message += "; likely lookalike of " + ", ".join(f"{f.slug} ({f.distance:.3f})" for f in found)
        lookalikes = [asdict(f) for f in found]
        audit = {
            "job_id": str(job.id),
            "sha256": sha256,
            "references": len(rows),
            "dropped_by_cleansing": dropped,
            "lookalikes": lookalikes,
            "lookalike_threshold": threshold,
        }
        try:
            await self.db.run(
                registration.complete,
                job.id,
                lora,
                rows,
                spec,
                lookalikes,
                message,
                audit,
                encoder,
                None if self.gmi is None else self.gmi.label,
            )
        except psycopg.errors.UniqueViolation:
            # Another job registered the same file or slug while this one was generating.
            existing = await self.db.run(registration.slug_of_sha256, sha256)
            if existing is not None:
                raise DuplicateLora(existing, sha256) from None
            raise RegistrationRefused(f"the slug {job.slug!r} was taken while this job ran") from None
        if any(row.image_feature is not None for row in spec):
            # A first spec with features makes the catalog's CLIP dimension known: index its
            # points (a no-op once built; refused, and logged, where this role owns no table).
            await ensure_spec_index_async(self.db.url)
