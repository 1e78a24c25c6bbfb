"""Registering a LoRA by link (moderators): the job's progress is edited into a DM message."""

from __future__ import annotations

from collections.abc import Mapping

from slack_sdk.web.async_client import AsyncWebClient

from bot.core.jobs import Say, register_and_follow, split_trigger_words
from bot.core.permissions import NOT_A_MODERATOR
from bot.slack.blocks import mrkdwn
from bot.slack.identity import user_key
from bot.slack.services import SlackServices
from findlora_client.base_models import resolve
from protos import findlora_pb2 as pb


def invalid_fields(values: Mapping[str, str]) -> dict[str, str]:
    """Mistakes the modal can show next to the inputs before it closes."""
    errors = {}
    if not values.get("url", "").startswith("https://"):
        errors["url"] = "Give an https link to a .safetensors file."
    if not values.get("name"):
        errors["name"] = "Give the LoRA a name."
    return errors


async def register(
    services: SlackServices,
    web: AsyncWebClient,
    *,
    values: Mapping[str, str],
    team_id: str | None,
    user_id: str,
) -> None:
    async def say(text: str) -> None:
        await web.chat_postMessage(channel=user_id, text=text)

    if not await services.is_moderator(web, user_id):
        await say(NOT_A_MODERATOR)
        return
    base_model = resolve(values.get("base_model", ""))
    if not base_model.known:  # kept, not refused: the file's own metadata may still tell
        await web.chat_postMessage(channel=user_id, text=f"Note: {base_model.warning}.")
    metadata = pb.LoraMetadata(
        name=values["name"],
        base_model=base_model.id,
        trigger_words=split_trigger_words(values.get("trigger_words")),
    )

    async def progress(job_id: str) -> Say:
        status = await web.chat_postMessage(channel=user_id, text=f"Registration `{job_id}` queued.")
        channel, ts = str(status["channel"]), str(status["ts"])

        async def show(text: str) -> None:
            await web.chat_update(channel=channel, ts=ts, text=mrkdwn(text))

        return show

    await register_and_follow(services, user_key(team_id, user_id), values["url"], metadata, say, progress)
