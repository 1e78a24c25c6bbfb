"""The register modal's base model: any common spelling becomes the canonical family, an unknown
name is sent on as other:<name> with a note to the moderator (the file's metadata may still tell).
The real service takes the request: the job it queues records the family it was given, and a
family it cannot generate references for is refused before anything is downloaded."""

from __future__ import annotations

import pytest

from bot.slack.blocks import REGISTER_VIEW
from tests.bot.slack.conftest import GROUP_MODERATOR, SlackHarness
from tests.bot.slack.test_moderation_and_flags import URL, dm
from tests.helpers.jobs import JobDriver
from tests.helpers.slack_fakes import view_submission
from tests.helpers.waits import eventually

pytestmark = pytest.mark.db
ANSWERS = ("Registration `", "I can't do that")  # the job's status message, or the refusal
PONY_REFUSAL = (
    "I can't do that: this is a Pony Diffusion V6 XL (pony) LoRA: it loads on SDXL 1.0 but shows its "
    "style only on Pony Diffusion V6 XL checkpoints, and none is configured for generating references"
)


def texts(harness: SlackHarness) -> list[str]:
    """Everything the moderator was sent, in order: posted messages, then the status's edits."""
    return [
        c["text"]
        for c in harness.api.called("chat.postMessage", channel=GROUP_MODERATOR)
        + harness.api.called("chat.postMessage", channel=dm(GROUP_MODERATOR))
        + harness.api.called("chat.update", channel=dm(GROUP_MODERATOR))
    ]


@pytest.mark.parametrize(
    ("typed", "sent", "note"),
    [
        ("SDXL 1.0", "sdxl", False),
        ("", "", False),
        ("My Mix v3", "other:my-mix-v3", True),
    ],
)
async def test_register_modal_sends_the_canonical_family(
    harness: SlackHarness, jobs: JobDriver, typed: str, sent: str, note: bool
) -> None:
    sender, services = harness.start()
    values = {"url": URL, "name": "A", "base_model": typed, "trigger_words": ""}
    await sender.interactive(view_submission(REGISTER_VIEW, GROUP_MODERATOR, values))
    [answer] = await eventually(lambda: [t for t in texts(harness) if t.startswith(ANSWERS)], "an answer")
    assert answer.startswith("Registration `"), answer  # queued, not refused
    job = await jobs.job_for(URL)  # queued by the real RegisterLora
    assert answer == f"Registration `{job.id}` queued."
    assert job.metadata["base_model"] == sent
    await jobs.succeed(job)
    await services.work.drain()

    shown = texts(harness)
    assert shown[-1].startswith("✅ Registration succeeded · step index · 100%")
    assert shown[-1].endswith("Registered as `a`.")
    notes = [t for t in shown if "not a known family" in t]
    assert bool(notes) == note
    if note:
        assert "other:my-mix-v3" in notes[0]


async def test_a_family_without_a_configured_checkpoint_is_refused_before_the_download(
    harness: SlackHarness, jobs: JobDriver
) -> None:
    """Pony LoRAs show their style only on Pony checkpoints; with none configured the service
    refuses the canonical family at once, and the moderator reads why."""
    sender, services = harness.start()
    values = {"url": URL, "name": "A", "base_model": "Pony Diffusion V6 XL", "trigger_words": ""}
    await sender.interactive(view_submission(REGISTER_VIEW, GROUP_MODERATOR, values))
    [answer] = await eventually(lambda: [t for t in texts(harness) if t.startswith(ANSWERS)], "an answer")
    assert answer.startswith(PONY_REFUSAL)
    await services.work.drain()
    assert texts(harness) == [answer]
    assert 'FINDLORA_DERIVATIVE_BASE_MODELS=\'{"pony"' in answer
    async with jobs.db.connection() as conn:
        cur = await conn.execute("SELECT count(*) FROM registration_jobs")
        assert await cur.fetchone() == (0,)
