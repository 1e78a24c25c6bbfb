"""Registering under a slug another LoRA holds: "already registered" only for the same source."""

from __future__ import annotations

import pytest

from db.database import Database
from inference_service.config import Settings
from inference_service.registration.jobs import Registration, Registrations, make_queue_app


@pytest.mark.db
async def test_a_slug_taken_by_another_lora_is_not_already_registered(
    settings: Settings, db: Database
) -> None:
    """A bulk list skipped a new LoRA whose name gave another LoRA's slug, calling it "already there"."""
    from findlora_client.protocol import Reason
    from inference_service.errors import AlreadyExists

    registered = "https://huggingface.co/a/b/resolve/main/ink.safetensors"
    async with db.connection() as conn:
        await conn.execute(
            "INSERT INTO loras (slug, name, base_model, source_url) VALUES ('ink', 'Ink', 'sd1', %s)",
            (registered,),
        )
    registrations = Registrations(db, make_queue_app(str(settings.database_url)), settings)
    with pytest.raises(AlreadyExists) as other:
        await registrations.submit(
            Registration("https://huggingface.co/c/d/resolve/main/ink.safetensors", name="Ink")
        )
    assert other.value.reason is Reason.SLUG_TAKEN
    assert "the slug 'ink' is taken by another LoRA" in other.value.message
    with pytest.raises(AlreadyExists) as same:
        await registrations.submit(Registration(registered, name="Ink"))
    assert same.value.reason is Reason.ALREADY_EXISTS
    assert "already registered as 'ink'" in same.value.message
