"""Registering a LoRA by link (moderators): the job's progress is edited into a DM message."""

from __future__ import annotations

from collections.abc import Mapping

import structlog
from slack_sdk.web.async_client import AsyncWebClient

from bot.core.jobs import follow_job
from bot.core.permissions import NOT_A_MODERATOR
from bot.core.replies import friendly_error
from bot.slack.blocks import mrkdwn
from bot.slack.identity import user_key
from bot.slack.services import SlackServices
from findlora_client import ServiceCallError
from findlora_client.base_models import resolve
from protos import findlora_pb2 as pb

log = structlog.get_logger(__name__)


def split_trigger_words(text: str | None) -> list[str]:
    return [word.strip() for word in (text or "").split(",") if word.strip()]


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
    if not await services.is_moderator(web, user_id):
        await web.chat_postMessage(channel=user_id, text=NOT_A_MODERATOR)
        return
    moderator = user_key(team_id, user_id)
    base_model = resolve(values.get("base_model", ""))
    if not base_model.known:  # kept, not refused: the file's own metadata may still tell
        await web.chat_postMessage(channel=user_id, text=f"Note: {base_model.warning}.")
    metadata = pb.LoraMetadata(
        name=values["name"],
        base_model=base_model.id,
        trigger_words=split_trigger_words(values.get("trigger_words")),
    )
    try:
        job_id = await services.client.register_lora(
            values["url"], metadata, requested_by=moderator, timeout=services.settings.call_timeout_s
        )
    except ServiceCallError as error:
        log.info("registration_refused", by=moderator, code=error.code.name if error.code else "")
        await web.chat_postMessage(channel=user_id, text=friendly_error(error))
        return
    log.info("registration_started", by=moderator, job_id=job_id)
    status = await web.chat_postMessage(channel=user_id, text=f"Registration `{job_id}` queued.")
    channel, ts = str(status["channel"]), str(status["ts"])

    async def show(text: str) -> None:
        await web.chat_update(channel=channel, ts=ts, text=mrkdwn(text))

    try:
        await follow_job(services.client.watch_job(job_id), show)
    except ServiceCallError as error:
        await web.chat_postMessage(
            channel=user_id, text=f"Lost track of job `{job_id}`: {friendly_error(error)}"
        )
