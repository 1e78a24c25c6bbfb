"""A registration whose spec features were computed with one CLIP model commits after an import
switched the catalog to another: its features must not join the new model's (a search would
compare two models' features for good). Both orders of the two commits."""

from __future__ import annotations

import asyncio
import uuid

import numpy as np
import pytest

from db import catalog, registration, specs
from db.database import Database
from db.filters import Filters
from db.rows import NewLora, SpecRow

pytestmark = pytest.mark.db
FEATURE = np.full(4, 0.5, np.float32)


async def clip_a_catalog(db: Database) -> int:
    async with db.transaction() as conn:
        await specs.upsert_platform_prompts(conn, ["a prompt"], np.ones((1, 4), np.float32))
        await catalog.set_meta(conn, catalog.GMI_ENCODER_KEY, "clipA")
    return (await db.run(specs.platform_prompts))[0].id


async def switch_to_clip_b(db: Database) -> None:
    """What spec_import.import_specs commits for another CLIP model: the label, then forgetting."""
    async with db.transaction() as conn:
        await catalog.set_meta(conn, catalog.GMI_ENCODER_KEY, "clipB")
        await specs.forget_features(conn)


async def register_with_clip_a(db: Database, prompt_id: int) -> int:
    lora = NewLora(slug="new", name="New", base_model="sdxl")
    spec = [SpecRow(prompt_id, 0, "k", FEATURE)]
    return int(await db.run(registration.complete, uuid.uuid4(), lora, [], spec, [], "ok", {}, None, "clipA"))


async def test_features_of_the_earlier_model_are_not_stored_after_a_switch(db: Database) -> None:
    prompt_id = await clip_a_catalog(db)
    await switch_to_clip_b(db)
    await register_with_clip_a(db, prompt_id)
    assert await db.run(specs.load_specs, None, Filters()) == {}  # stored as missing, filled later


async def test_a_registration_committing_during_a_switch_waits_for_it(db: Database) -> None:
    """The import has updated the label but not yet forgotten the features: the registration's
    commit waits for the import's, then stores no feature of the earlier model."""
    prompt_id = await clip_a_catalog(db)
    async with db.transaction() as conn:  # the import, as import_specs orders it
        await catalog.set_meta(conn, catalog.GMI_ENCODER_KEY, "clipB")
        registering = asyncio.create_task(register_with_clip_a(db, prompt_id))
        await asyncio.sleep(0.3)
        assert not registering.done()  # waiting on the label row
        await specs.forget_features(conn)
    await registering
    assert await db.run(specs.load_specs, None, Filters()) == {}


async def test_the_same_model_keeps_its_features(db: Database) -> None:
    prompt_id = await clip_a_catalog(db)
    lora_id = await register_with_clip_a(db, prompt_id)
    stored = await db.run(specs.load_specs, None, Filters())
    assert list(stored) == [lora_id]
    np.testing.assert_allclose(stored[lora_id].image_features[0], FEATURE)
