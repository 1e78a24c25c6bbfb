"""`findlora lora register-many`: check every entry of a list, queue the new ones, follow them all.

Resumable without any state of its own: before queueing, each entry is looked up in the database,
so one already registered (same file, link or slug) is skipped, one whose job is still queued or
running is skipped and followed, and only the rest is queued. A rerun of a finished list queues
nothing; a rerun of an interrupted one picks up where it stopped.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import structlog

from db import registration
from db.database import Database
from db.registration import Existing
from findlora_client.base_models import resolve
from findlora_client.bulk import (
    ALREADY_QUEUED,
    ALREADY_REGISTERED,
    FAILED,
    QUEUED,
    REGISTERED,
    BulkEntry,
    BulkSummary,
    Outcome,
)
from inference_service.config import Settings
from inference_service.errors import AlreadyExists, InvalidArgument
from inference_service.registration.families import generator_family
from inference_service.registration.fetch import check_url, redact, stage_local_file
from inference_service.registration.jobs import Registration, Registrations, slugify
from inference_service.registration.lora_file import validate_lora_file
from inference_service.registration.pipeline import STAGED_PREFIX, fetch_policy
from inference_service.registration.refusals import RegistrationRefused

log = structlog.get_logger(__name__)
# (entries with a final outcome, jobs running now): the caller's progress bar
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Planned:
    """An entry checked and ready to queue: a local file is already in the LoRA store."""

    entry: BulkEntry
    request: Registration
    staged: bool
    lora_source: str  # the link a registered LoRA keeps ("" for a staged file)
    sha256: str  # known for a local file only


def plan_entry(entry: BulkEntry, base_dir: Path, settings: Settings, requested_by: str) -> Planned:
    """Everything that can be checked before queueing; a RegistrationRefused says why not."""
    family = resolve(entry.base_model)
    if family.known and family.id:
        generator_family(family.id, settings)  # a family no pipeline renders: refused now
    if entry.is_url:
        check_url(entry.source, fetch_policy(settings))
        source, staged, lora_source, sha256 = entry.source, False, redact(entry.source), ""
    else:
        path = Path(entry.source).expanduser()
        path = path if path.is_absolute() else base_dir / path
        if not path.is_file():
            raise RegistrationRefused(f"{entry.source}: no such file")
        validate_lora_file(path, settings.registration_max_header_bytes)
        staged_file = stage_local_file(path, settings.lora_dir, settings.registration_max_bytes)
        source, staged, lora_source, sha256 = STAGED_PREFIX + staged_file.sha256, True, "", staged_file.sha256
    request = Registration(
        source_url=source,
        name=entry.name,
        slug=entry.slug or slugify(entry.name),
        base_model=family.id,
        trigger_words=list(entry.trigger_words),
        license=entry.license,
        author=entry.author,
        nsfw=entry.nsfw,
        page_url=entry.page_url,
        requested_by=requested_by,
    )
    return Planned(entry, request, staged, lora_source, sha256)


def plan_entries(
    entries: Sequence[BulkEntry], base_dir: Path, settings: Settings, requested_by: str, summary: BulkSummary
) -> list[Planned]:
    planned = []
    for entry in entries:
        try:
            planned.append(plan_entry(entry, base_dir, settings, requested_by))
        except RegistrationRefused as exc:
            summary.add(entry, FAILED, reason=exc.message)
        except OSError as exc:
            summary.add(entry, FAILED, reason=f"cannot read {entry.source}: {exc.strerror or exc}")
    return planned


class BulkRegistration:
    def __init__(self, registrations: Registrations, summary: BulkSummary, progress: Progress) -> None:
        self.registrations = registrations
        self.db: Database = registrations.db
        self.summary = summary
        self.progress = progress
        self.following: dict[uuid.UUID, Outcome] = {}
        self.finished: set[uuid.UUID] = set()

    async def _existing(self, plan: Planned) -> Existing | None:
        shown = plan.request.source_url if plan.staged else redact(plan.request.source_url)
        return await self.db.run(
            registration.find_existing,
            slug=plan.request.slug,
            job_source=shown,
            lora_source=plan.lora_source,
            sha256=plan.sha256,
        )

    async def queue(self, planned: Sequence[Planned]) -> None:
        """Queue what is new, one entry at a time (Ctrl-C leaves every entry queued or not)."""
        for plan in planned:
            existing = await self._existing(plan)
            if existing is None:
                try:
                    job_id = await self.registrations.submit(plan.request, staged=plan.staged)
                except AlreadyExists as exc:  # queued by someone else since the look-up
                    existing = await self._existing(plan)
                    if existing is None:
                        self.summary.add(plan.entry, FAILED, slug=plan.request.slug, reason=exc.message)
                except InvalidArgument as exc:
                    self.summary.add(plan.entry, FAILED, slug=plan.request.slug, reason=exc.message)
                else:
                    outcome = self.summary.add(plan.entry, QUEUED, slug=plan.request.slug, job_id=str(job_id))
                    self.following[job_id] = outcome
            if existing is not None:
                self._skip(plan, existing)
            self.progress(self.done(), 0)

    def _skip(self, plan: Planned, existing: Existing) -> None:
        entry, slug = plan.entry, existing.slug
        if existing.kind == "registered":
            self.summary.add(entry, ALREADY_REGISTERED, slug=slug, reason=f"already registered as {slug!r}")
        elif existing.kind == "queued" and existing.job_id is not None:
            job = str(existing.job_id)
            outcome = self.summary.add(
                entry, ALREADY_QUEUED, slug=slug, reason=f"already queued (job {job})", job_id=job
            )
            self.following[existing.job_id] = outcome
        elif existing.kind == "slug_taken":
            reason = f"the slug {slug!r} belongs to another LoRA; give this entry a slug of its own"
            self.summary.add(entry, FAILED, slug=slug, reason=reason)
        else:
            reason = f"the slug {slug!r} is being registered from another source (job {existing.job_id})"
            self.summary.add(entry, FAILED, slug=slug, reason=reason)

    async def follow(self, poll_seconds: float) -> None:
        """Poll the jobs (one query for all) until every one has finished."""
        while True:
            pending = [job_id for job_id in self.following if job_id not in self.finished]
            if not pending:
                return
            jobs = {job.id: job for job in await self.db.run(registration.get_jobs, pending)}
            running = 0
            for job_id in pending:
                job = jobs.get(job_id)
                outcome = self.following[job_id]
                if job is None:
                    outcome.status, outcome.reason = FAILED, "the job vanished from the database"
                elif job.finished:
                    if job.state == "succeeded":
                        outcome.slug = job.slug
                        outcome.status = REGISTERED if outcome.status == QUEUED else outcome.status
                    else:
                        outcome.status, outcome.reason = FAILED, job.message
                else:
                    running += job.state == "running"
                    continue
                self.finished.add(job_id)
            self.progress(self.done(), running)
            if len(self.finished) < len(self.following):
                await asyncio.sleep(poll_seconds)

    def done(self) -> int:
        """Entries with a final outcome (skipped, failed, or their job finished)."""
        return len(self.summary.outcomes) - sum(1 for job_id in self.following if job_id not in self.finished)
