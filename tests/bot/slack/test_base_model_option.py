"""The register modal's base model: any common spelling becomes the canonical family, an unknown
name is sent on as other:<name> with a note to the moderator (the file's metadata may still tell)."""

from __future__ import annotations

from unittest import mock

import pytest

from bot.slack.blocks import REGISTER_VIEW
from tests.bot.slack.conftest import GROUP_MODERATOR, SlackHarness
from tests.bot.slack.test_moderation_and_flags import URL, dm
from tests.helpers.jobs import scripted_watch_job
from tests.helpers.slack_fakes import view_submission

pytestmark = pytest.mark.db


@pytest.mark.parametrize(
    ("typed", "sent", "note"),
    [
        ("SDXL 1.0", "sdxl", False),
        ("Pony Diffusion V6 XL", "pony", False),
        ("", "", False),
        ("My Mix v3", "other:my-mix-v3", True),
    ],
)
async def test_register_modal_sends_the_canonical_family(
    harness: SlackHarness, typed: str, sent: str, note: bool
) -> None:
    sender, services = harness.start()
    values = {"url": URL, "name": "A", "base_model": typed, "trigger_words": ""}
    with (
        mock.patch.object(services.client, "register_lora", mock.AsyncMock(return_value="j1")) as register,
        mock.patch.object(services.client, "watch_job", scripted_watch_job("j1")),
    ):
        await sender.interactive(view_submission(REGISTER_VIEW, GROUP_MODERATOR, values))
        await services.work.drain()
    assert register.await_args.args[1].base_model == sent
    notes = [
        c["text"]
        for c in harness.api.called("chat.postMessage", channel=GROUP_MODERATOR)
        + harness.api.called("chat.postMessage", channel=dm(GROUP_MODERATOR))
        if "not a known family" in c["text"]
    ]
    assert bool(notes) == note
    if note:
        assert "other:my-mix-v3" in notes[0]
