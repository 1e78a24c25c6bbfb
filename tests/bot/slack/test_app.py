"""The app's wiring: listeners by kind, settings and secrets, HTTP mode through the aiohttp
adapter, `findlora serve slack` without tokens, and no torch or database driver in the process."""

from __future__ import annotations

import json
import os
import pkgutil
import subprocess
import sys
import time
from pathlib import Path
from unittest import mock

import pytest
from aiohttp.test_utils import TestClient, TestServer
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack import listeners
from bot.slack.app import create_app
from bot.slack.config import SlackSettings
from bot.slack.run import SlackSecrets
from bot.slack.services import SlackServices
from findlora_client import TokenMissing
from tests.helpers.slack_fakes import BOT_TOKEN, SIGNING_SECRET, MockSlackApi


def test_listeners_follow_the_starter_template_layout() -> None:
    kinds = sorted(m.name for m in pkgutil.iter_modules(listeners.__path__) if m.ispkg)
    assert kinds == ["actions", "commands", "events", "shortcuts", "views"]
    app = create_app(
        SlackServices.create(SlackSettings(), mock.MagicMock(), mock.MagicMock(), BOT_TOKEN),
        AsyncWebClient(token=BOT_TOKEN),
        signing_secret=SIGNING_SECRET,
    )
    # Every kind's register(app) added its listeners: 3 actions, 2 commands, 3 events, 1 shortcut, 2 views.
    assert len(app._async_listeners) == 11


def test_secrets_come_from_files_first_and_never_show(tmp_path: Path) -> None:
    bot_file = tmp_path / "bot"
    bot_file.write_text("xoxb-from-file\n")
    settings = SlackSettings(
        bot_token="xoxb-from-env",
        bot_token_file=bot_file,
        app_token="xapp-secret",
        moderator_user_ids="U1, U2",
        nsfw_channel_ids="C9",
    )
    secrets = SlackSecrets.read(settings)
    assert secrets.bot_token == "xoxb-from-file"
    assert secrets.app_token == "xapp-secret"
    assert settings.moderator_user_ids == frozenset({"U1", "U2"})
    for shown in (repr(settings), repr(secrets), str(settings)):
        assert "xoxb" not in shown
        assert "xapp" not in shown
    with pytest.raises(TokenMissing, match="SLACK_SIGNING_SECRET"):
        SlackSecrets.read(SlackSettings(bot_token="xoxb-1", mode="http"))


async def test_http_mode_verifies_signatures_and_acks_over_aiohttp() -> None:
    api = MockSlackApi()
    await api.start()
    services = SlackServices.create(SlackSettings(), mock.MagicMock(), mock.MagicMock(), BOT_TOKEN)
    app = create_app(
        services,
        AsyncWebClient(token=BOT_TOKEN, base_url=f"{api.base_url}/api/"),
        signing_secret=SIGNING_SECRET,
    )
    body = json.dumps({"type": "url_verification", "challenge": "c-123", "token": "x"})
    timestamp = str(int(time.time()))
    signature = SignatureVerifier(SIGNING_SECRET).generate_signature(timestamp=timestamp, body=body)
    async with TestClient(TestServer(app.web_app(path="/slack/events"))) as http:
        headers = {"content-type": "application/json", "x-slack-request-timestamp": timestamp}
        good = await http.post(
            "/slack/events", data=body, headers={**headers, "x-slack-signature": signature}
        )
        assert good.status == 200
        assert (await good.json())["challenge"] == "c-123"
        forged = await http.post(
            "/slack/events", data=body, headers={**headers, "x-slack-signature": "v0=00"}
        )
        assert forged.status == 401
    await api.stop()


def test_serve_slack_without_tokens_says_which_are_missing(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "FINDLORA_SLACK_"))}
    out = subprocess.run(
        [sys.executable, "-m", "findlora", "serve", "slack"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert out.returncode == 1
    assert "SLACK_BOT_TOKEN or SLACK_BOT_TOKEN_FILE" in out.stderr


def test_the_slack_app_imports_no_torch_and_no_database_driver() -> None:
    code = (
        "import sys, bot.slack.run, bot.slack.app, bot.slack.listeners; "
        "banned = ('torch', 'psycopg', 'numpy', 'inference_service', 'db'); "
        "print(sorted(m for m in banned if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
