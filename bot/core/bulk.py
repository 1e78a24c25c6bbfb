"""Registering a list of LoRAs from a file a moderator attached, whatever the chat: every entry goes
to RegisterLora, the jobs are followed with WatchJob, and one message keeps the count until the
summary replaces it. Rerunning the same file skips what is registered or queued already."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import grpc
import structlog

from bot.core.rendering import clip
from bot.core.replies import friendly_error
from findlora_client import FindLoraClient, ServiceCallError
from findlora_client.bulk import (
    ALREADY_QUEUED,
    ALREADY_REGISTERED,
    FAILED,
    QUEUED,
    REGISTERED,
    BulkSummary,
    Outcome,
    parse_list,
)
from findlora_client.protocol import Reason
from protos import findlora_pb2 as pb

log = structlog.get_logger(__name__)
Show = Callable[[str], Awaitable[None]]
LOCAL_PATH = "a local file cannot be registered from chat; give its https download link"
NO_ENTRIES = (
    "The file lists no LoRAs: one https link per line, [[lora]] tables (TOML), or model versions (JSON)."
)
MAX_SUMMARY_CHARS = 1800  # Discord's message limit is 2000
MAX_SUMMARY_LINE_CHARS = 400  # one failure or warning (a link, a base-model name are the user's)
_LEFT_OUT_CHARS = 40  # kept for the "… and N more lines left out" line
# Reasons whose message is about the entry itself (its link, its slug) and written for people:
# shown as it is. Any other failure gets the bot's own line, never the service's internals
# (an unreachable service's message names its address).
_ABOUT_THE_ENTRY = frozenset(
    {
        Reason.INVALID_ARGUMENT,
        Reason.NOT_FOUND,
        Reason.FAILED_PRECONDITION,
        Reason.ALREADY_EXISTS,
        Reason.SLUG_TAKEN,
        Reason.SOURCE_BUSY,
        Reason.REGISTRATION_DISABLED,
    }
)


def failure_reason(error: ServiceCallError) -> str:
    return error.message if error.reason in _ABOUT_THE_ENTRY else friendly_error(error)


def progress_line(summary: BulkSummary, total: int) -> str:
    done = total - summary.count(QUEUED)
    return (
        f"⏳ Registering {total} LoRAs: {done}/{total} done · {summary.count(REGISTERED)} registered · "
        f"{summary.count(ALREADY_REGISTERED) + summary.count(ALREADY_QUEUED)} skipped · "
        f"{summary.count(FAILED)} failed"
    )


def summary_text(summary: BulkSummary, max_chars: int = MAX_SUMMARY_CHARS) -> str:
    """The headline, then failures and warnings while they fit in `max_chars`, each line clipped
    (a long link or base-model name must not crowd out the rest), and a last line saying how many
    were left out: a summary over Discord's limit was refused and the moderator saw none."""
    icon = "❌" if summary.failed else "✅"
    head = f"{icon} {summary.headline()}."
    items = [f"• {line}" for line in summary.failure_lines()]
    items += [f"⚠️ {warning}" for warning in summary.warnings]
    lines = [clip(head, max_chars)]
    room = max_chars - len(lines[0]) - _LEFT_OUT_CHARS
    for index, item in enumerate(items):
        line = clip(item, MAX_SUMMARY_LINE_CHARS)
        if len(line) + 1 > room:
            lines.append(f"… and {len(items) - index} more lines left out")
            break
        lines.append(line)
        room -= len(line) + 1
    return "\n".join(lines)


class _Throttled:
    """At most one edit per interval (chat edit rate limits); `flush` shows the latest."""

    def __init__(self, show: Show, min_interval_s: float, clock: Callable[[], float]) -> None:
        self.show, self.min_interval_s, self.clock = show, min_interval_s, clock
        self.shown_at = float("-inf")

    async def __call__(self, text: str) -> None:
        now = self.clock()
        if now - self.shown_at >= self.min_interval_s:
            self.shown_at = now
            await self.show(text)


async def register_list(
    client: FindLoraClient,
    moderator: str,
    text: str,
    filename: str,
    show: Show,
    *,
    timeout: float,
    min_interval_s: float = 1.5,
    clock: Callable[[], float] = time.monotonic,
) -> BulkSummary:
    """Queue every entry, follow the jobs, end with the summary shown; returns it."""
    parsed = parse_list(text, filename)
    summary = BulkSummary.of(parsed)
    total = len(parsed.entries) + len(parsed.bad)
    if total == 0:
        await show(NO_ENTRIES)
        return summary
    update = _Throttled(show, min_interval_s, clock)
    jobs: list[tuple[str, Outcome]] = []
    for entry in parsed.entries:
        if not entry.is_url:
            summary.add(entry, FAILED, reason=LOCAL_PATH)
            continue
        metadata = pb.LoraMetadata(
            slug=entry.slug,
            name=entry.name,
            base_model=entry.base_model,
            trigger_words=list(entry.trigger_words),
            license=entry.license,
            author=entry.author,
            nsfw=entry.nsfw,
            page_url=entry.page_url,
        )
        try:
            job_id = await client.register_lora(
                entry.source, metadata, requested_by=moderator, timeout=timeout
            )
        except ServiceCallError as error:
            if error.code == grpc.StatusCode.ALREADY_EXISTS and error.reason is not Reason.SLUG_TAKEN:
                status = ALREADY_QUEUED if error.reason is Reason.SOURCE_BUSY else ALREADY_REGISTERED
                summary.add(entry, status, reason=failure_reason(error))
            else:
                summary.add(entry, FAILED, reason=failure_reason(error))
        else:
            jobs.append((job_id, summary.add(entry, QUEUED, job_id=job_id)))
        await update(progress_line(summary, total))
    log.info("bulk_registration_queued", by=moderator, queued=len(jobs), entries=total)
    for job_id, outcome in jobs:  # the worker takes them in about this order
        await _follow(client, job_id, outcome)
        await update(progress_line(summary, total))
    log.info("bulk_registration_finished", by=moderator, failed=summary.count(FAILED))
    await show(summary_text(summary))
    return summary


async def _follow(client: FindLoraClient, job_id: str, outcome: Outcome) -> None:
    last: pb.JobEvent | None = None
    try:
        async for event in client.watch_job(job_id):
            last = event
    except ServiceCallError as error:
        outcome.status, outcome.reason = FAILED, f"lost track of job {job_id}: {failure_reason(error)}"
        return
    if last is not None and last.state == pb.JOB_STATE_SUCCEEDED:
        outcome.status, outcome.slug = REGISTERED, last.slug
    else:
        outcome.status = FAILED
        outcome.reason = last.message if last is not None else f"job {job_id} ended without a word"
