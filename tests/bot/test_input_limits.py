"""What the chats let people type stops at what the service accepts: a longer note was refused
only after the artwork was uploaded, once per image, each refusal spending a report."""

from __future__ import annotations

from bot.discord.exts.flags._cog import FlagsCog
from bot.discord.exts.moderation._cog import ModerationCog
from bot.discord.exts.search._cog import SearchCog
from bot.slack.blocks import flag_modal, register_modal
from findlora_client.protocol import MAX_NOTE_CHARS
from inference_service.text_bounds import FIELD_LIMITS, MAX_TEXT


def test_slack_modal_fields_stop_at_the_service_bounds() -> None:
    limits = {
        block["block_id"]: block["element"]["max_length"]
        for modal in (flag_modal(), register_modal())
        for block in modal["blocks"]
    }
    assert limits["note"] == MAX_NOTE_CHARS
    assert limits["lora"] == FIELD_LIMITS["lora"]
    assert limits["name"] == limits["trigger_words"] == MAX_TEXT
    assert all(limit <= 3000 for limit in limits.values())  # Slack refuses a larger max_length


def test_discord_note_option_stops_at_the_service_bound() -> None:
    note = FlagsCog.flaglookalike._params["note"]
    assert note.to_dict()["max_length"] == MAX_NOTE_CHARS  # what Discord is told


def test_discord_text_options_stop_at_the_service_bounds() -> None:
    """A pasted prompt over the bound was refused only after the images were uploaded, and
    spent a search (or one of five reports an hour)."""
    search = SearchCog.findlora._params
    assert search["prompt"].to_dict()["max_length"] == MAX_TEXT
    assert search["base_model"].to_dict()["max_length"] == MAX_TEXT
    assert FlagsCog.flaglookalike._params["lora"].to_dict()["max_length"] == FIELD_LIMITS["lora"]
    for command in (ModerationCog.hide, ModerationCog.restore, ModerationCog.takedown):
        assert command._params["reason"].to_dict()["max_length"] == MAX_TEXT
        assert command._params["lora"].to_dict()["max_length"] == FIELD_LIMITS["lora"]
    assert ModerationCog.registerlora._params["name"].to_dict()["max_length"] == MAX_TEXT
