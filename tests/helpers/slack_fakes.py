"""Slack at the API edge, for real: a local Web API (aiohttp on 127.0.0.1) that records every call,
keeps the messages it was sent so they can be read back, edited and reacted to, accepts
files_upload_v2 uploads, serves private files only with the bot token and records what is posted
to response_urls; it can fail like Slack does (an error code, a 429 with Retry-After, a failed
upload, a conversation the app is not a member of). And requests to the app signed with a real
signing secret, dispatched through AsyncApp like Slack's would be."""

from __future__ import annotations

import itertools
import json
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
from aiohttp import web
from slack_bolt.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse
from slack_sdk.signature import SignatureVerifier

TEAM = "T0TEAM"
BOT_USER = "U0BOT"
BOT_ID = "B0BOT"
BOT_TOKEN = "xoxb-test-token"
SIGNING_SECRET = "test-signing-secret-8f2c"
FILES_HOST = "files.slack.com"
UPLOAD = "upload"  # fail_once's name for the file upload itself (files_upload_v2's second step)
_JSON_FIELDS = ("blocks", "metadata", "files", "view", "attachments")


@dataclass
class Call:
    method: str
    args: dict[str, Any]


@dataclass
class MockSlackApi:
    """The Web API methods the app uses, with Slack's shapes (only the fields the app reads)."""

    calls: list[Call] = field(default_factory=list)
    messages: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    downloads: dict[str, bytes] = field(default_factory=dict)
    uploads: dict[str, bytes] = field(default_factory=dict)
    usergroups: dict[str, list[str]] = field(default_factory=dict)
    # What was posted to a response_url (a shortcut's or a command's), in order.
    responses: list[dict[str, Any]] = field(default_factory=list)
    # Conversations the app is not a member of: every call naming one gets this error.
    channel_errors: dict[str, str] = field(default_factory=dict)
    base_url: str = ""
    _failures: dict[str, list[str | int]] = field(default_factory=dict)
    _ts: Any = field(default_factory=lambda: itertools.count(1))
    _runner: web.AppRunner | None = None

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_post("/upload/{file_id}", self._upload)
        app.router.add_get("/files-pri/{path:.*}", self._download)
        app.router.add_post("/respond/{name}", self._respond)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def port(self) -> int:
        return int(self.base_url.rsplit(":", 1)[1])

    @property
    def response_url(self) -> str:
        return f"{self.base_url}/respond/hook"

    # --- failures --------------------------------------------------------------------------

    def fail_once(self, method: str, *errors: str | int) -> None:
        """The next calls of `method` (or of UPLOAD) fail, one per error: a Slack error code
        (HTTP 200, ok false) or an HTTP status (429 with Retry-After: 1, like Slack's limit)."""
        self._failures.setdefault(method, []).extend(errors)

    def _failure(self, method: str) -> web.Response | None:
        queued = self._failures.get(method)
        if not queued:
            return None
        error = queued.pop(0)
        if isinstance(error, str):
            return web.json_response({"ok": False, "error": error})
        headers = {"Retry-After": "1"} if error == 429 else {}
        return web.json_response({"ok": False, "error": "ratelimited"}, status=error, headers=headers)

    # --- what tests read -------------------------------------------------------------------

    def called(self, method: str, **match: Any) -> list[dict[str, Any]]:
        return [
            c.args
            for c in self.calls
            if c.method == method and all(c.args.get(k) == v for k, v in match.items())
        ]

    def posted(self, channel: str) -> list[dict[str, Any]]:
        return self.messages.get(channel, [])

    def message(self, channel: str, ts: str) -> dict[str, Any]:
        return next(m for m in self.posted(channel) if m["ts"] == ts)

    def share_file(self, name: str, data: bytes, mimetype: str | None = "image/png") -> dict[str, Any]:
        """A file someone uploaded, as a message event carries it."""
        file_id = f"F{next(self._ts):06d}"
        path = f"{TEAM}-{file_id}/download/{name}"
        self.downloads[path] = data
        file = {
            "id": file_id,
            "name": name,
            "mimetype": mimetype,
            "size": len(data),
            "url_private": f"https://{FILES_HOST}/files-pri/{path}",
            "url_private_download": f"https://{FILES_HOST}/files-pri/{path}",
        }
        self.files[file_id] = file
        return file

    def post_as_user(self, channel: str, user: str, text: str = "", **extra: Any) -> dict[str, Any]:
        """A message someone else wrote (so the app can read it back like a real one)."""
        message = {"type": "message", "user": user, "text": text, "ts": self.next_ts(), **extra}
        self.messages.setdefault(channel, []).append(message)
        return message

    def next_ts(self) -> str:
        return f"1700000000.{next(self._ts):06d}"

    # --- the Web API -----------------------------------------------------------------------

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        args: dict[str, Any] = dict(request.query)
        if request.can_read_body:
            if request.content_type == "application/json":
                args.update(await request.json())
            else:
                args.update(dict(await request.post()))
        for key in _JSON_FIELDS:
            if isinstance(args.get(key), str):
                args[key] = json.loads(args[key])
        if request.headers.get("Authorization") != f"Bearer {BOT_TOKEN}":
            return web.json_response({"ok": False, "error": "invalid_auth"})
        self.calls.append(Call(method, args))
        failure = self._failure(method)
        if failure is not None:
            return failure
        channel = str(args.get("channel") or args.get("channel_id") or "")
        if channel in self.channel_errors:
            return web.json_response({"ok": False, "error": self.channel_errors[channel]})
        handler: Callable[[dict[str, Any]], dict[str, Any]] | None = getattr(
            self, "_" + method.replace(".", "_"), None
        )
        if handler is None:
            return web.json_response({"ok": False, "error": "unknown_method"})
        return web.json_response(handler(args))

    def _auth_test(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "team_id": TEAM, "user_id": BOT_USER, "bot_id": BOT_ID, "user": "findlora"}

    def _chat_postMessage(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = str(args["channel"])
        if channel.startswith("U"):  # posting to a person opens the app's DM with them
            channel = "D" + channel[1:]
        message = {
            "type": "message",
            "user": BOT_USER,
            "bot_id": BOT_ID,
            "ts": self.next_ts(),
            **{k: args[k] for k in ("text", "blocks", "thread_ts", "metadata") if k in args},
        }
        self.messages.setdefault(channel, []).append(message)
        return {"ok": True, "channel": channel, "ts": message["ts"], "message": message}

    def _chat_update(self, args: dict[str, Any]) -> dict[str, Any]:
        channel, ts = str(args["channel"]), str(args["ts"])
        message = next((m for m in self.posted(channel) if m["ts"] == ts), None)
        if message is None:
            return {"ok": False, "error": "message_not_found"}
        message.update({k: args[k] for k in ("text", "blocks", "metadata") if k in args})
        return {"ok": True, "channel": channel, "ts": ts}

    def _chat_postEphemeral(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "message_ts": self.next_ts()}

    def _window(self, args: dict[str, Any], messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        oldest, latest = args.get("oldest"), args.get("latest")
        return [
            m
            for m in messages
            if (oldest is None or float(m["ts"]) >= float(oldest))
            and (latest is None or float(m["ts"]) <= float(latest))
        ]

    def _visible(self, message: dict[str, Any], args: dict[str, Any]) -> dict[str, Any]:
        # Like Slack, metadata comes back only when asked for.
        if str(args.get("include_all_metadata")).lower() in ("true", "1"):
            return message
        return {k: v for k, v in message.items() if k != "metadata"}

    def _conversations_replies(self, args: dict[str, Any]) -> dict[str, Any]:
        channel, ts = str(args["channel"]), str(args["ts"])
        messages = self.posted(channel)
        target = next((m for m in messages if m["ts"] == ts), None)
        if target is None:
            return {"ok": False, "error": "thread_not_found"}
        root = str(target.get("thread_ts") or target["ts"])
        thread = [m for m in messages if m["ts"] == root or m.get("thread_ts") == root]
        # Slack always answers with the thread's parent first.
        parent = [m for m in thread if m["ts"] == root]
        rest = [m for m in self._window(args, thread) if m["ts"] != root]
        return {"ok": True, "messages": [self._visible(m, args) for m in parent + rest]}

    def _conversations_history(self, args: dict[str, Any]) -> dict[str, Any]:
        top = [m for m in self.posted(str(args["channel"])) if m.get("thread_ts") in (None, m["ts"])]
        return {"ok": True, "messages": [self._visible(m, args) for m in self._window(args, top)]}

    def _reactions_add(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True}

    def _views_open(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "view": {"id": "V1", **args["view"]}}

    def _usergroups_users_list(self, args: dict[str, Any]) -> dict[str, Any]:
        users = self.usergroups.get(str(args["usergroup"]))
        if users is None:
            return {"ok": False, "error": "no_such_subteam"}
        return {"ok": True, "users": users}

    def _files_info(self, args: dict[str, Any]) -> dict[str, Any]:
        file = self.files.get(str(args["file"]))
        return {"ok": True, "file": file} if file else {"ok": False, "error": "file_not_found"}

    def _files_getUploadURLExternal(self, args: dict[str, Any]) -> dict[str, Any]:
        file_id = f"F{next(self._ts):06d}"
        return {"ok": True, "file_id": file_id, "upload_url": f"{self.base_url}/upload/{file_id}"}

    def _files_completeUploadExternal(self, args: dict[str, Any]) -> dict[str, Any]:
        missing = [f["id"] for f in args["files"] if f["id"] not in self.uploads]
        if missing:
            return {"ok": False, "error": "file_not_uploaded"}
        return {"ok": True, "files": [{"id": f["id"], "title": f.get("title", "")} for f in args["files"]]}

    async def _upload(self, request: web.Request) -> web.Response:
        failure = self._failure(UPLOAD)
        if failure is not None:
            return web.Response(status=failure.status, text="upload failed")
        self.uploads[request.match_info["file_id"]] = await request.read()
        return web.Response(text="OK - uploaded")

    async def _download(self, request: web.Request) -> web.Response:
        # Without the bot token Slack answers with a redirect to its login page, not the file.
        if request.headers.get("Authorization") != f"Bearer {BOT_TOKEN}":
            return web.Response(status=302, headers={"Location": "https://slack.com/signin"})
        data = self.downloads.get(request.match_info["path"])
        return web.Response(body=data) if data is not None else web.Response(status=404)

    async def _respond(self, request: web.Request) -> web.Response:
        self.responses.append(await request.json())
        return web.Response(text="ok")


class FilesToMock(httpx.AsyncBaseTransport):
    """The app downloads from https://files.slack.com; this sends exactly those requests to the
    mock server (plain HTTP on loopback) and refuses every other host."""

    def __init__(self, port: int) -> None:
        self._port = port
        self._inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.host != FILES_HOST or request.url.scheme != "https":
            raise httpx.ConnectError(f"test network: {request.url.host} is not reachable", request=request)
        request.url = request.url.copy_with(scheme="http", host="127.0.0.1", port=self._port)
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


@dataclass
class SignedSender:
    """Requests as Slack sends them: signed with the app's signing secret, dispatched by AsyncApp."""

    app: AsyncApp
    secret: str = SIGNING_SECRET
    response_url: str = "https://hooks.slack.com/commands/unused"
    _ids: Any = field(default_factory=lambda: itertools.count(1))

    async def send(self, body: str, content_type: str, *, secret: str | None = None) -> BoltResponse:
        timestamp = str(int(time.time()))
        signature = SignatureVerifier(secret or self.secret).generate_signature(
            timestamp=timestamp, body=body
        )
        request = AsyncBoltRequest(
            body=body,
            headers={
                "content-type": [content_type],
                "x-slack-signature": [signature],
                "x-slack-request-timestamp": [timestamp],
            },
        )
        return await self.app.async_dispatch(request)

    async def event(self, event: Mapping[str, Any], **kwargs: Any) -> BoltResponse:
        body = {
            "token": "legacy-unused",
            "team_id": TEAM,
            "api_app_id": "A0APP",
            "type": "event_callback",
            "event_id": f"Ev{next(self._ids):08d}",
            "event_time": int(time.time()),
            "authorizations": [{"team_id": TEAM, "user_id": BOT_USER, "is_bot": True}],
            "event": dict(event),
        }
        return await self.send(json.dumps(body), "application/json", **kwargs)

    async def interactive(self, payload: Mapping[str, Any], **kwargs: Any) -> BoltResponse:
        body = urllib.parse.urlencode({"payload": json.dumps({"team": {"id": TEAM}, **payload})})
        return await self.send(body, "application/x-www-form-urlencoded", **kwargs)

    async def command(self, name: str, user: str, channel: str, text: str = "") -> BoltResponse:
        fields = {
            "command": name,
            "text": text,
            "team_id": TEAM,
            "user_id": user,
            "channel_id": channel,
            "trigger_id": f"trig.{next(self._ids)}",
            "response_url": self.response_url,
        }
        return await self.send(urllib.parse.urlencode(fields), "application/x-www-form-urlencoded")


# --- payload builders (the fields Slack sends that the app reads) ------------------------------

_mention_ts = itertools.count(1)


def mention(channel: str, user: str, files: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {
        "type": "app_mention",
        "user": user,
        "channel": channel,
        "text": f"<@{BOT_USER}> which LoRA?",
        # Every message has its own ts (the app searches each mention once).
        "ts": extra.pop("ts", f"1699999998.{next(_mention_ts):06d}"),
        "files": files,
        **extra,
    }


def reaction(user: str, name: str, channel: str, ts: str, item_user: str = BOT_USER) -> dict[str, Any]:
    return {
        "type": "reaction_added",
        "user": user,
        "reaction": name,
        "item_user": item_user,
        "item": {"type": "message", "channel": channel, "ts": ts},
        "event_ts": f"{time.time():.6f}",
    }


def button(
    action_id: str,
    value: str,
    user: str,
    channel: str,
    message: Mapping[str, Any],
    thread_ts: str | None = None,
) -> dict[str, Any]:
    container = {"type": "message", "channel_id": channel, "message_ts": message["ts"]}
    if thread_ts:
        container["thread_ts"] = thread_ts
    return {
        "type": "block_actions",
        "user": {"id": user},
        "channel": {"id": channel},
        "container": container,
        "message": dict(message),
        "trigger_id": "trig.button",
        "actions": [{"type": "button", "action_id": action_id, "value": value, "block_id": "b"}],
    }


def view_submission(callback_id: str, user: str, values: Mapping[str, str]) -> dict[str, Any]:
    state = {block_id: {"value": {"type": "plain_text_input", "value": v}} for block_id, v in values.items()}
    return {
        "type": "view_submission",
        "user": {"id": user},
        "view": {"id": "V1", "type": "modal", "callback_id": callback_id, "state": {"values": state}},
    }


def message_shortcut(
    callback_id: str, user: str, channel: str, message: Mapping[str, Any], response_url: str
) -> dict[str, Any]:
    return {
        "type": "message_action",
        "callback_id": callback_id,
        "trigger_id": "trig.shortcut",
        "user": {"id": user},
        "channel": {"id": channel},
        "message": dict(message),
        "response_url": response_url,
    }
