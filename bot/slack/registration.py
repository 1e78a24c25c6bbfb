"""Registering LoRAs (moderators): one by link from the modal, the job's progress edited into a DM
message; or many from a list file sent to the app's DM, the count edited into a reply in its thread."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import suppress
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.core.attachments import AttachmentInfo, AttachmentRejected, download_text, is_list_file
from bot.core.bulk import register_list
from bot.core.jobs import Say, register_and_follow, split_trigger_words
from bot.core.permissions import NOT_A_MODERATOR
from bot.slack.blocks import mrkdwn
from bot.slack.identity import file_info, user_key
from bot.slack.messages import Place
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


def list_files(files: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The files of a message that are lists of LoRAs (.txt, .toml, .json), not images."""
    return [
        file
        for file in files
        if is_list_file(AttachmentInfo("", str(file.get("name") or ""), file.get("mimetype") or None))
    ]


async def register_files(
    services: SlackServices,
    web: AsyncWebClient,
    *,
    files: Sequence[Mapping[str, Any]],
    place: Place,
    team_id: str | None,
    user_id: str,
) -> None:
    """A list of LoRAs sent to the app's DM: register them all, the summary in the thread."""

    async def say(text: str) -> None:
        await web.chat_postMessage(channel=place.channel, thread_ts=place.thread_ts, text=text)

    if not await services.is_moderator(web, user_id):
        await say(NOT_A_MODERATOR)
        return
    for file in files:
        info = file_info(file)
        if info is None and file.get("id"):  # shared from elsewhere: files.info has the link
            with suppress(SlackApiError):
                info = file_info((await web.files_info(file=str(file["id"]))).get("file") or {})
        if info is None:
            await say(f"I cannot read {file.get('name') or 'that file'}; send it again.")
            continue
        try:
            text = await download_text(info, services.limits, services.http, services.download_headers)
        except AttachmentRejected as rejected:
            await say(rejected.message)
            continue
        status = await web.chat_postMessage(
            channel=place.channel, thread_ts=place.thread_ts, text=f"Reading {info.filename}…"
        )
        channel, ts = str(status["channel"]), str(status["ts"])

        async def show(text: str, channel: str = channel, ts: str = ts) -> None:
            await web.chat_update(channel=channel, ts=ts, text=mrkdwn(text))

        moderator = user_key(team_id, user_id)
        timeout = services.settings.call_timeout_s
        await register_list(services.client, moderator, text, info.filename, show, timeout=timeout)
