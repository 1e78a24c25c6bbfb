"""Slash-command text options bounded by what the service accepts: Discord stops the typing there,
so an over-long prompt is never refused after its images were uploaded and a slot was spent."""

from __future__ import annotations

from discord import app_commands

from findlora_client.links import MAX_LINK_CHARS
from findlora_client.protocol import MAX_TEXT_CHARS

Text = app_commands.Range[str, 0, MAX_TEXT_CHARS]  # a prompt, a base model, a name, a reason
RequiredText = app_commands.Range[str, 1, MAX_TEXT_CHARS]
LoraRef = app_commands.Range[str, 1, MAX_LINK_CHARS]  # a slug, an id or a page link
