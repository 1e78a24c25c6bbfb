"""Slack people and files as the core's neutral values."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bot.core.attachments import AttachmentInfo

SLACK_FILE_HOSTS = frozenset({"files.slack.com"})


def user_key(team_id: str | None, user_id: str) -> str:
    """The opaque id the service stores for a person (rate limits, feedback, flags, audit);
    Slack user ids are unique per workspace, so the workspace is part of it."""
    return f"slack:{team_id or '-'}:{user_id}"


def user_id_of(key: str) -> str | None:
    parts = key.split(":")
    return parts[-1] if len(parts) == 3 and parts[0] == "slack" and parts[-1] else None


def file_info(file: Mapping[str, Any]) -> AttachmentInfo | None:
    """A shared file as an attachment; None when Slack sent no download link (see files.info)."""
    url = file.get("url_private_download") or file.get("url_private")
    if not url:
        return None
    size = file.get("size")
    return AttachmentInfo(
        url=str(url),
        filename=str(file.get("name") or file.get("title") or "image"),
        content_type=file.get("mimetype") or None,
        size=int(size) if isinstance(size, int) else None,
    )
