"""Activation against concurrent writers: a registration or import holding the encoder label
lands before the activation (and is re-embedded in its transaction) or after (and embeds with
the new encoder); the registry and migration 008."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import psycopg
import pytest

from db import catalog as db_catalog
from db.database import Database
from db.encoders import EncoderChanged, active_label, get_encoder
from db.rows import NewLora
from inference_service.blobs import BlobStore
from inference_service.catalog.encoders import activate
from inference_service.catalog.importer import Transfer, build_reference_rows, import_catalog
from inference_service.imaging import load_image_file
from tests.helpers.catalogs import write_catalog
from tests.helpers.encoders import as_stored, perturbed, stored_embeddings, tiny_embedder

pytestmark = pytest.mark.db


async def wait_for_lock_waiter(db: Database) -> None:
    """Until some session waits on a row lock taken FOR UPDATE (the activation's)."""
    for _ in range(600):
        async with db.connection() as conn:
            cur = await conn.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE wait_event_type = 'Lock' AND query LIKE '%FOR UPDATE%'"
            )
            row = await cur.fetchone()
        if row and row[0]:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the activation never waited for the writer's lock")


def reference_rows(catalog: Path, slug: str, blobs: BlobStore, embedder: object) -> list:  # type: ignore[type-arg]
    samples = {p.stem: load_image_file(p) for p in (catalog / "samples").glob("*.png")}
    refs = sorted((catalog / "loras" / slug / "references").glob("*.png"))
    transfers = [Transfer(p.stem, load_image_file(p), p.read_bytes(), ".png") for p in refs]
    return build_reference_rows(transfers, samples, blobs, embedder, 0.01, 64)  # type: ignore[arg-type]


async def test_a_writer_holding_the_label_is_reembedded_by_the_activation(
    db: Database, tmp_path: Path
) -> None:
    blobs = BlobStore(tmp_path / "blobs")
    old = tiny_embedder()
    await import_catalog(write_catalog(tmp_path / "cat", n_loras=3, n_samples=3), db, blobs, old)
    extra = write_catalog(tmp_path / "extra", n_loras=5, n_samples=3)
    new = perturbed(old)
    rows = reference_rows(extra, "style-04", blobs, old)
    async with db.connection() as writer, writer.transaction():
        # A registration's final transaction, embedded with the old encoder, not yet committed.
        await db_catalog.replace_lora(
            writer, NewLora(slug="late", name="Late", base_model="sd1"), rows, old.label
        )
        activation = asyncio.create_task(activate(db, blobs, new, current=old))
        await wait_for_lock_waiter(db)
        assert await db.run(active_label) == old.label
    done = await activation
    assert done.late == 3  # written during the pass: embedded under the lock
    stored = await stored_embeddings(db)
    images = [load_image_file(p) for p in sorted((extra / "loras" / "style-04" / "references").glob("*.png"))]
    expected = as_stored(new.embed(images))
    got = np.stack([stored[("late", s)] for s in ("s00", "s01", "s02")])
    np.testing.assert_allclose(got, expected, atol=1e-5)
    # Every reference is the new encoder's; the summary follows.
    async with db.connection() as conn:
        cur = await conn.execute(
            "SELECT s.centroid FROM lora_style_summary s JOIN loras l ON l.id = s.lora_id"
            " WHERE l.slug = 'late'"
        )
        row = await cur.fetchone()
    assert row is not None
    np.testing.assert_allclose(row[0].to_numpy(), expected.mean(axis=0), atol=1e-5)

    # After the activation, a writer that embedded with the old encoder is refused in its transaction ...
    with pytest.raises(EncoderChanged) as info:
        await db.run(
            db_catalog.replace_lora, NewLora(slug="stale", name="Stale", base_model="sd1"), rows, old.label
        )
    assert (info.value.expected, info.value.active) == (old.label, new.label)
    assert await db.run(db_catalog.lora_by_slug, "stale") is None
    # ... and an import configured with the old encoder embeds with the active one from the blob store.
    report = await import_catalog(extra, db, blobs, old)
    assert report.imported
    stored = await stored_embeddings(db)
    np.testing.assert_allclose(
        np.stack([stored[("style-04", s)] for s in ("s00", "s01", "s02")]), expected, atol=1e-5
    )


async def test_unknown_active_encoder_is_stale_and_reembed_registers_both(
    db: Database, tmp_path: Path
) -> None:
    from inference_service.catalog.format import CatalogError
    from inference_service.catalog.importer import reembed

    blobs = BlobStore(tmp_path / "blobs")
    first = tiny_embedder()
    catalog = write_catalog(tmp_path / "cat", n_loras=2, n_samples=3)
    await import_catalog(catalog, db, blobs, first)
    other = perturbed(first, seed=5)
    # `other` was never registered: a process configured with it cannot serve this catalog.
    with pytest.raises(CatalogError, match="findlora catalog reembed"):
        await import_catalog(catalog, db, blobs, other)
    assert await reembed(db, blobs, other) == 6
    assert await db.run(active_label) == other.label
    # This process could not load `first` (neither its own nor registered): nothing to roll back to.
    assert await db.run(get_encoder, first.label) is None
    after = await db.run(get_encoder, other.label)
    assert after is not None
    assert after.parent is None
    assert after.activated_at is not None
    # A process configured with `first` registers it on its next activation, as the parent.
    assert await reembed(db, blobs, first) == 6
    back = await db.run(get_encoder, first.label)
    assert back is not None
    assert back.parent == other.label


async def test_migration_008_adds_the_registry_and_the_search_encoder(db: Database) -> None:
    async with db.connection() as conn:
        cur = await conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns"
            " WHERE (table_name = 'style_encoders') OR (table_name = 'searches' AND column_name = 'encoder')"
        )
        columns = {(r[0], r[1]) for r in await cur.fetchall()}
    assert ("searches", "encoder") in columns
    assert {c for t, c in columns if t == "style_encoders"} == {
        "label", "blob_key", "parent", "created_at", "activated_at", "metrics", "note"
    }  # fmt: skip


async def test_an_activation_from_a_label_that_is_no_longer_active_is_refused(
    db: Database, tmp_path: Path
) -> None:
    blobs = BlobStore(tmp_path / "blobs")
    first = tiny_embedder()
    await import_catalog(write_catalog(tmp_path / "cat", n_loras=2, n_samples=3), db, blobs, first)
    originals = await stored_embeddings(db)
    # An adaptation that started from `first` while another activation made `second` active.
    second, adapted = perturbed(first, seed=6), perturbed(first, seed=7)
    await activate(db, blobs, second, current=first)
    with pytest.raises(EncoderChanged):
        await activate(db, blobs, adapted, current=first, expected=first.label)
    assert await db.run(active_label) == second.label
    # The embeddings stay those of `second`, the active encoder.
    stored = await stored_embeddings(db)
    assert stored.keys() == originals.keys()
    images = {key: load_image_file(blobs.path(blob)) for key, blob in await reference_blob_keys(db)}
    for key, embedding in stored.items():
        np.testing.assert_allclose(embedding, as_stored(second.embed([images[key]])[0]), atol=1e-5)


async def reference_blob_keys(db: Database) -> list[tuple[tuple[str, str], str]]:
    async with db.connection() as conn:
        cur = await conn.execute(
            "SELECT l.slug, r.sample_id, r.blob_key FROM reference_images r JOIN loras l ON l.id = r.lora_id"
        )
        return [((r[0], r[1]), r[2]) for r in await cur.fetchall()]


async def test_a_rollback_racing_another_activation_is_refused(
    db: Database, db_url: str, tmp_path: Path
) -> None:
    from inference_service.catalog.adaptation import rollback
    from inference_service.models.active import ActiveEncoder

    blobs = BlobStore(tmp_path / "blobs")
    first = tiny_embedder()
    await import_catalog(write_catalog(tmp_path / "cat", n_loras=2, n_samples=3), db, blobs, first)
    adapted, other = perturbed(first, seed=6), perturbed(first, seed=7)
    await activate(db, blobs, adapted, current=first)
    # `other` activated (over `adapted`) while the rollback embedded with `first`: a rollback of
    # `adapted` must not then replace `other` with `adapted`'s parent.
    from inference_service.catalog.encoders import register_encoder

    await register_encoder(db, blobs, other, parent=adapted.label)

    def activation_lands(stage: str, done: int, total: int) -> None:
        if done == total:
            with psycopg.connect(db_url) as conn:
                conn.execute("UPDATE catalog_meta SET value = %s WHERE key = 'style_encoder'", (other.label,))

    with pytest.raises(EncoderChanged):
        await rollback(db, blobs, ActiveEncoder(db, blobs, first), progress=activation_lands)
    assert await db.run(active_label) == other.label


async def test_rollback_to_weights_missing_from_the_blob_store_says_so_and_keeps_the_encoder(
    db: Database, tmp_path: Path
) -> None:
    from inference_service.catalog.adaptation import rollback
    from inference_service.models.active import ActiveEncoder, UnknownEncoder

    blobs = BlobStore(tmp_path / "blobs")
    first = tiny_embedder()
    await import_catalog(write_catalog(tmp_path / "cat", n_loras=2, n_samples=3), db, blobs, first)
    adapted = perturbed(first, seed=6)
    await activate(db, blobs, adapted, current=first)
    row = await db.run(get_encoder, first.label)
    assert row is not None
    blobs.path(row.blob_key).unlink()
    # A process configured with a third encoder must load `first` from the blob store.
    holder = ActiveEncoder(db, blobs, perturbed(first, seed=8))
    with pytest.raises(UnknownEncoder, match="missing from the blob store"):
        await rollback(db, blobs, holder)
    assert await db.run(active_label) == adapted.label


async def test_a_rollback_pauses_automatic_adaptation_in_the_commit_that_switches_the_encoder(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rollback whose pause is not written (the process dies there) switches nothing: the
    worker's next run would otherwise adapt again and undo the rollback."""
    from db import encoders as db_encoders
    from inference_service.catalog.adaptation import rollback
    from inference_service.models.active import ActiveEncoder

    blobs = BlobStore(tmp_path / "blobs")
    first = tiny_embedder()
    await import_catalog(write_catalog(tmp_path / "cat", n_loras=2, n_samples=3), db, blobs, first)
    adapted = perturbed(first, seed=6)
    await activate(db, blobs, adapted, current=first)

    async def dies(conn: object, why: str) -> None:
        raise ConnectionError("the process died here")

    with monkeypatch.context() as patch:
        patch.setattr(db_encoders, "pause_automatic_adaptation", dies)
        with pytest.raises(ConnectionError):
            await rollback(db, blobs, ActiveEncoder(db, blobs, first))
    assert await db.run(active_label) == adapted.label
    assert await db.run(db_encoders.automatic_adaptation_pause) is None

    await rollback(db, blobs, ActiveEncoder(db, blobs, first))
    assert await db.run(active_label) == first.label
    assert await db.run(db_encoders.automatic_adaptation_pause) is not None
