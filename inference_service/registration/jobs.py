"""Registration jobs on the Postgres-backed queue (procrastinate), and what the RPCs need of them.

A job whose worker stopped sending heartbeats is put back on the queue by the next worker that
notices, and the pipeline resumes it from what was committed.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, nullcontext, suppress
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import structlog
from procrastinate import App, JobContext, PsycopgConnector
from procrastinate.exceptions import AlreadyEnqueued, ConnectorException, UniqueViolation
from procrastinate.jobs import Status

from db import encoders as db_encoders
from db import registration
from db.database import Database
from db.registration import JobRow, SlugTaken, SourceBusy
from findlora_client.base_models import BY_ID, OTHER, resolve
from findlora_client.bulk import SOURCE_BUSY
from findlora_client.links import page_link_problem
from findlora_client.protocol import Reason
from inference_service.config import Settings
from inference_service.errors import AlreadyExists, InvalidArgument, NotFound
from inference_service.periodic import every
from inference_service.registration.families import generator_family
from inference_service.registration.fetch import FetchPolicy, check_url, redact, sweep_partial_files
from inference_service.registration.pipeline import STAGED_PREFIX, RegistrationPipeline, fetch_policy
from inference_service.registration.refusals import FetchRefused, LoraFileRejected
from inference_service.runtime import Runtime

log = structlog.get_logger(__name__)
QUEUE = "registration"
TASK = "findlora.register_lora"
# Catalog adaptation (findlora catalog adapt as a job): its own queue, one at a time, one queued.
ADAPT_QUEUE = "adapt"
ADAPT_TASK = "findlora.adapt_catalog"
ADAPT_LOCK = "adapt_catalog"
_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_METADATA = ("name", "base_model", "trigger_words", "license", "author", "nsfw", "page_url")


def make_queue_app(url: str) -> App:
    return App(connector=PsycopgConnector(conninfo=url, min_size=1, max_size=2))


def slugify(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:63].rstrip("-")


@dataclass(frozen=True)
class Registration:
    """A request as the RPC or the CLI gives it."""

    source_url: str
    name: str
    slug: str = ""
    base_model: str = ""
    trigger_words: list[str] = field(default_factory=list)
    license: str = ""
    author: str = ""
    nsfw: bool = False
    page_url: str = ""
    requested_by: str = ""
    client: str | None = None  # the authenticated client of RegisterLora (None: operator CLI)

    def metadata(self) -> dict[str, Any]:
        """What the job row keeps of the LoRA itself (the rest says who asked, and from where)."""
        return {key: value for key, value in asdict(self).items() if key in _METADATA}


@dataclass(frozen=True)
class JobEvent:
    job_id: str
    state: str
    step: str
    progress: float
    message: str
    lora_id: int
    slug: str
    lookalikes: list[dict[str, Any]]

    @classmethod
    def of(cls, job: JobRow) -> JobEvent:
        return cls(
            str(job.id),
            job.state,
            job.step,
            job.progress,
            job.message,
            job.lora_id or 0,
            job.slug,
            job.lookalikes,
        )

    def key(self) -> tuple[str, str, float, str]:
        return (self.state, self.step, round(self.progress, 4), self.message)


class Registrations:
    """The service side: submit and watch jobs (the work itself runs in workers)."""

    def __init__(self, db: Database, queue: App, settings: Settings) -> None:
        self.db = db
        self.queue = queue
        self.settings = settings

    async def submit(self, request: Registration, *, staged: bool = False) -> uuid.UUID:
        """`staged` is for the operator CLI only: source_url is then 'staged:<sha256>'."""
        if not staged:
            try:
                check_url(request.source_url, fetch_policy(self.settings))
            except FetchRefused as exc:
                raise InvalidArgument(exc.message) from None
        if not request.name.strip() and not request.slug:
            raise InvalidArgument("give the LoRA a name")
        if problem := page_link_problem(request.page_url):
            raise InvalidArgument(problem)
        slug = request.slug or slugify(request.name)
        if not _SLUG.match(slug):
            raise InvalidArgument(
                f"slug {slug!r} must be 1-63 of a-z, 0-9 and '-', starting with a letter or digit"
            )
        family = resolve(request.base_model)
        # A stored "other:<name>" (what a bot sends back after resolving a name nobody knows)
        # resolves as known, yet is as unknown as the name typed as is: both are kept, and the
        # file's own metadata decides at validation.
        catalogued = family.id in BY_ID and family.id != OTHER
        if catalogued:
            try:  # a known family the generator cannot run is refused now, not after the download
                generator_family(family.id, self.settings)
            except LoraFileRejected as exc:
                raise InvalidArgument(exc.message) from None
        elif family.id:
            log.warning("registration_unknown_base_model", base_model=family.id)
        request = replace(request, base_model=family.id)
        job_id = uuid.uuid4()
        # The row keeps the redacted URL for good; the link itself (a signed one carries a token in
        # its query) only until the worker has downloaded the file.
        shown, fetch_url = (
            (request.source_url, None) if staged else (redact(request.source_url), request.source_url)
        )
        try:
            await self.db.run(
                registration.create_job,
                job_id,
                shown,
                request.metadata(),
                slug,
                request.requested_by,
                fetch_url=fetch_url,
                client=request.client,
            )
        except SlugTaken:
            # The same source under its own slug is "already registered"; another LoRA's slug is
            # not, and a bulk list must say which entry to rename rather than skip it.
            lora_source = "" if staged else shown
            existing = await self.db.run(
                registration.find_existing, slug=slug, job_source=shown, lora_source=lora_source
            )
            if existing is not None and existing.kind == "registered":
                raise AlreadyExists(f"this LoRA is already registered as {existing.slug!r}") from None
            raise AlreadyExists(
                f"the slug {slug!r} is taken by another LoRA; choose another", reason=Reason.SLUG_TAKEN
            ) from None
        except SourceBusy:
            raise AlreadyExists(SOURCE_BUSY, reason=Reason.SOURCE_BUSY) from None
        try:
            queue_id = await self.queue.configure_task(TASK, queue=QUEUE, lock=str(job_id)).defer_async(
                job_id=str(job_id)
            )
        except BaseException:
            await self.db.run(registration.delete_job, job_id)
            raise
        await self.db.run(registration.set_queue_job, job_id, queue_id)
        log.info("registration_queued", job_id=str(job_id), slug=slug, requested_by=request.requested_by)
        return job_id

    async def watch(
        self, job_id: str, still_allowed: Callable[[], Awaitable[None]] | None = None
    ) -> AsyncIterator[JobEvent]:
        """Every change of the job until it finishes (polled: any replica may be asked).
        `still_allowed` runs before each poll and raises to end the stream (a revoked caller)."""
        try:
            parsed = uuid.UUID(job_id)
        except ValueError:
            raise InvalidArgument(f"not a job id: {job_id[:60]!r}") from None
        last: tuple[str, str, float, str] | None = None
        while True:
            if still_allowed is not None:
                await still_allowed()
            job = await self.db.run(registration.get_job, parsed)
            if job is None:
                raise NotFound(f"no registration job {job_id}")
            event = JobEvent.of(job)
            if event.key() != last:
                last = event.key()
                yield event
            if job.finished:
                return
            await asyncio.sleep(self.settings.watch_poll_seconds)


async def requeue_stalled(queue: App, settings: Settings) -> int:
    """Put back jobs whose worker stopped sending heartbeats (killed, out of memory, lost host).

    Both queues: an adaptation left in `doing` would hold ADAPT_LOCK for good, and every later
    one would wait behind it while its triggers found the queueing lock taken."""
    count = 0
    for name in (QUEUE, ADAPT_QUEUE):
        stalled = await queue.job_manager.get_stalled_jobs(
            queue=name, seconds_since_heartbeat=settings.worker_stalled_after_seconds
        )
        for job in stalled:
            ids = {"queue": name, "queue_job_id": job.id, "job_id": job.task_kwargs.get("job_id")}
            try:
                await queue.job_manager.retry_job(job)
            except UniqueViolation:
                # A job with the same queueing lock already waits (an adaptation queued while this
                # one ran): it does this one's work, and two cannot wait at once.
                await queue.job_manager.finish_job(job, status=Status.FAILED, delete_job=False)
                log.warning("stalled_job_superseded", **ids)
                continue
            except ConnectorException:  # another replica put it back first: no longer `doing`
                log.info("stalled_job_already_requeued", **ids)
                continue
            log.warning("job_requeued", **ids)
            count += 1
    return count


async def fail_orphaned_registrations(db: Database) -> None:
    for job_id in await db.run(registration.fail_orphaned):
        log.warning("registration_orphaned", job_id=str(job_id))


async def _touch_heartbeat(db: Database, queue_job_id: int, timeout_s: float) -> None:
    async with db.transaction() as conn:
        # Bounded: a touch blocked behind a lock must not hold up the end of the job it serves.
        await conn.execute(f"SET LOCAL statement_timeout = {max(1, round(timeout_s * 1000))}")
        await conn.execute(
            "UPDATE procrastinate_workers w SET last_heartbeat = now() FROM procrastinate_jobs j"
            " WHERE j.id = %s AND j.worker_id = w.id",
            (queue_job_id,),
        )


@asynccontextmanager
async def heartbeat_while_running(db: Database, queue_job_id: int, interval: float) -> AsyncIterator[None]:
    """Keep the running job's worker heartbeat fresh for as long as the job runs.

    A stopping worker cancels its own heartbeats first and then waits for its running jobs, which
    can take many minutes (a registration's diffusion, an adaptation): past the stall timeout any
    replica's watcher would put the still-running job back and a second worker would run it too.
    The beat is stopped between touches, never cancelled mid-query (inference_service.periodic)."""
    stop = asyncio.Event()

    async def touch() -> None:
        with suppress(Exception):  # a blip: procrastinate's own heartbeat may still run
            await _touch_heartbeat(db, queue_job_id, max(interval, 1.0))

    beating = asyncio.create_task(every(interval, stop, touch))
    try:
        yield
    finally:
        stop.set()
        await asyncio.shield(beating)  # ends after the touch in flight, itself bounded


# How long a stopping worker waits for the watcher's round in flight before it goes on without it.
WATCHER_STOP_WAIT_S = 10.0


@asynccontextmanager
async def stalled_jobs_watched(queue: App, db: Database, settings: Settings) -> AsyncIterator[None]:
    """Requeue stalled jobs and fail orphaned registrations every half stall timeout while the
    worker runs. Stopped between rounds, never cancelled mid-query (inference_service.periodic):
    a cancellation that psycopg_pool loses would have left the watcher looping and the worker's
    stop waiting on it until the orchestrator killed the process."""
    stop = asyncio.Event()
    interval = max(settings.worker_stalled_after_seconds / 2, 0.5)

    async def watch() -> None:
        with suppress(Exception):  # a database blip must not stop the worker; next round retries
            await requeue_stalled(queue, settings)
            await fail_orphaned_registrations(db)

    watching = asyncio.create_task(every(interval, stop, watch, first_now=True), name="stalled-job-watcher")
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait({watching}, timeout=WATCHER_STOP_WAIT_S)


async def defer_adapt_when_due(queue: App, db: Database, settings: Settings) -> bool:
    """After a registration: queue an adaptation when adapt_every_registrations LoRAs were
    registered since the last one (activation or run). The queueing lock keeps it to one job."""
    every = settings.adapt_every_registrations
    if every <= 0:
        return False
    count = await db.run(db_encoders.registrations_since_adapt)
    if count < every or await db.run(db_encoders.automatic_adaptation_pause) is not None:
        return False
    try:
        await queue.configure_task(
            ADAPT_TASK, queue=ADAPT_QUEUE, lock=ADAPT_LOCK, queueing_lock=ADAPT_LOCK
        ).defer_async()
    except AlreadyEnqueued:
        return False
    log.info("adaptation_queued", registrations=count, every=every)
    return True


async def run_worker(settings: Settings, *, wait: bool = True, policy: FetchPolicy | None = None) -> None:
    """`findlora serve worker`: take registration jobs until stopped (or, wait=False, until none is
    left). `policy` replaces the download policy built from settings (tests allow loopback with it)."""
    from inference_service.registration.generate import GenerationParams, TransferGenerator
    from inference_service.runtime import open_runtime

    runtime = await open_runtime(settings)
    loaded: dict[str, TransferGenerator] = {}

    def generators(family: str) -> TransferGenerator:
        # Loaded on first use and kept: loading SD is the slow part of a job.
        if family not in loaded:
            loaded[family] = TransferGenerator.load(
                GenerationParams.from_settings(settings, family),
                hed_weights=settings.hed_weights,
                device=settings.device,
            )
        return loaded[family]

    pipeline = RegistrationPipeline(
        settings, runtime.db, runtime.blobs, runtime.encoders, generators, policy, gmi=runtime.gmi
    )
    queue = make_queue_app(runtime.url)

    beat = settings.worker_heartbeat_seconds

    @queue.task(name=TASK, queue=QUEUE, pass_context=True)
    async def register_lora(context: JobContext, job_id: str) -> None:
        async with heartbeat_while_running(runtime.db, _queue_job_id(context), beat):
            await pipeline.run(uuid.UUID(job_id))
            await defer_adapt_when_due(queue, runtime.db, settings)

    @queue.task(name=ADAPT_TASK, queue=ADAPT_QUEUE, lock=ADAPT_LOCK, pass_context=True)
    async def adapt_catalog_job(context: JobContext, timestamp: int | None = None) -> None:
        async with heartbeat_while_running(runtime.db, _queue_job_id(context), beat):
            await run_adapt_job(runtime, settings)

    if settings.adapt_cron:
        queue.periodic(cron=settings.adapt_cron, periodic_id="adapt", queueing_lock=ADAPT_LOCK)(
            adapt_catalog_job  # type: ignore[arg-type]
        )

    async with runtime, queue.open_async():
        await requeue_stalled(queue, settings)
        await fail_orphaned_registrations(runtime.db)
        await sweep_lora_store(settings)
        log.info("worker_started", queue=QUEUE, device=settings.device)
        async with stalled_jobs_watched(queue, runtime.db, settings) if wait else nullcontext():
            await queue.run_worker_async(
                queues=[QUEUE, ADAPT_QUEUE],
                concurrency=settings.worker_concurrency,
                wait=wait,
                install_signal_handlers=wait,
                update_heartbeat_interval=settings.worker_heartbeat_seconds,
                stalled_worker_timeout=settings.worker_stalled_after_seconds,
                listen_notify=wait,
            )
    log.info("worker_stopped")


async def sweep_lora_store(settings: Settings) -> None:
    """Half-written downloads and staging copies older than a whole download may take."""
    older_than = fetch_policy(settings).total_timeout
    removed = await asyncio.to_thread(sweep_partial_files, settings.lora_dir, older_than)
    if removed:
        log.info("partial_lora_files_removed", count=removed)


def _queue_job_id(context: JobContext) -> int:
    job_id = context.job.id
    assert job_id is not None  # a job being run has been stored
    return job_id


async def run_adapt_job(runtime: Runtime, settings: Settings) -> None:
    """One adaptation on the worker: kept and activated, or refused; a catalog too small to
    adapt is logged, not retried."""
    from inference_service.catalog.adaptation import AdaptConfig, AdaptError, adapt_catalog
    from inference_service.catalog.encoders import ReferenceUnreadable

    config = AdaptConfig(max_minutes=settings.adapt_max_minutes)
    try:
        run = await adapt_catalog(
            runtime.db, runtime.blobs, runtime.encoders, settings, config, automatic=True
        )
    except (AdaptError, ReferenceUnreadable) as exc:
        # Not retried: a lost reference needs the blob store restored (the message says how).
        await runtime.db.run(db_encoders.record_adapt_run)
        log.warning("adaptation_skipped", reason=str(exc))
        return
    except Exception:
        # Counted as a run: the next registration must not queue the same failure straight away.
        await runtime.db.run(db_encoders.record_adapt_run)
        log.exception("adaptation_failed")
        raise
    outcome = run.outcome
    log.info(
        "adaptation_finished",
        kept=outcome.kept,
        before=outcome.before,
        after=outcome.after,
        activated=None if run.activation is None else run.activation.label,
        reason=outcome.reason,
    )


__all__ = ["STAGED_PREFIX", "JobEvent", "Registration", "Registrations", "make_queue_app", "run_worker"]
