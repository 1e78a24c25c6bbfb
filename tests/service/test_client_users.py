"""A client bound to a user-id prefix acts only for users under it: a Slack app cannot flag,
vote, search or moderate as a Discord user (docs/design.md 13)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from db import moderation
from db.clients import Role
from db.database import Database
from findlora_client import QueryImage, ServiceCallError
from inference_service.config import Settings
from protos import findlora_pb2 as pb
from tests.helpers.service import ServedCatalog, served_catalog, service_client

pytestmark = pytest.mark.db


@pytest.fixture
async def served(settings: Settings, tmp_path: Path) -> AsyncIterator[ServedCatalog]:
    async with served_catalog(settings, tmp_path) as served:
        yield served


async def test_a_bound_client_names_only_its_own_users(served: ServedCatalog, db: Database) -> None:
    async with served.client(Role.ADMIN) as admin:
        created = await admin.create_client("slack-app", "moderate", users="slack:T0TEAM:")
        assert created.users == "slack:T0TEAM:"
        listed = {c.name: c for c in await admin.list_clients()}
        assert listed["slack-app"].users == "slack:T0TEAM:"
        assert listed["test-admin"].users == ""  # unbound: an operator's script
        with pytest.raises(ServiceCallError) as refused:  # 'discord' would match 'discord-evil:'
            await admin.create_client("loose", "search", users="discord")
        assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT

    artwork = [QueryImage(served.reference_bytes("style-03"), "art.png", "image/png")]
    async with service_client(served.service, created.token) as app:
        for call in (
            app.flag_lookalike("style-03", artwork, reporter="discord:123"),
            app.search(artwork, top_k=3, requested_by="discord:123"),
            app.set_lora_status("style-01", pb.LORA_STATUS_HIDDEN, moderator="discord:9"),
        ):
            with pytest.raises(ServiceCallError) as refused:
                await call
            assert refused.value.code == grpc.StatusCode.PERMISSION_DENIED
            assert "acts only for user ids starting with 'slack:T0TEAM:'" in refused.value.message

        found = await app.search(artwork, top_k=3, requested_by="slack:T0TEAM:U1")
        with pytest.raises(ServiceCallError) as refused:
            await app.record_feedback(found.search_id, found.matches[0].lora_id, up=False, user="discord:123")
        assert refused.value.code == grpc.StatusCode.PERMISSION_DENIED
        assert await app.record_feedback(
            found.search_id, found.matches[0].lora_id, up=True, user="slack:T0TEAM:U1"
        )
        flag = await app.flag_lookalike("style-03", artwork, reporter="slack:T0TEAM:U1")
        assert flag.reporter == "slack:T0TEAM:U1"
    # Nothing was filed in a Discord user's name.
    assert [e.actor for e in await db.run(moderation.audit_entries, "style-03")] == ["slack:T0TEAM:U1"]
