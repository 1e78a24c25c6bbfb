"""The Slack app: an AsyncApp with every listener, the shared services in each request's context,
and one calm line for failures nobody caught."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from slack_bolt.async_app import AsyncApp
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.response import BoltResponse
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack.listeners import register_listeners
from bot.slack.services import CONTEXT_KEY, SlackServices

log = structlog.get_logger(__name__)


def create_app(services: SlackServices, web: AsyncWebClient, *, signing_secret: str | None) -> AsyncApp:
    """`signing_secret` None: Socket Mode, where Slack authenticates the socket instead of each request."""
    app = AsyncApp(
        client=web,
        signing_secret=signing_secret,
        request_verification_enabled=signing_secret is not None,
        # Ack as soon as the listener calls ack(); the rest of the listener runs after (3-second rule).
        process_before_response=False,
        # Listeners ack themselves or are events (bolt acks those); no unhandled-request noise.
        raise_error_for_unhandled_request=False,
    )

    async def inject_services(
        context: AsyncBoltContext, next: Callable[[], Awaitable[BoltResponse]]
    ) -> BoltResponse:
        context[CONTEXT_KEY] = services
        return await next()

    async def on_error(error: Exception, body: dict[str, Any]) -> None:
        # The request body may hold private text and file links: log its kind, never its content.
        log.error("slack_listener_failed", kind=body.get("type"), error=type(error).__name__, exc_info=error)

    app.use(inject_services)
    app.error(on_error)
    register_listeners(app)
    return app
