"""Import: validate first, per-LoRA transactions, idempotent, resumable, cleansing applied."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import psycopg
import pytest

from db import catalog as db_catalog
from db.database import Database
from inference_service.blobs import BlobStore
from inference_service.catalog.exporter import export_catalog
from inference_service.catalog.format import CatalogError, read_catalog
from inference_service.catalog.importer import import_catalog
from inference_service.models.style_encoder import StyleEmbedder, untrained_encoder
from tests.helpers.catalogs import unreadable, write_catalog
from tests.helpers.encoders import as_stored

pytestmark = pytest.mark.db


@pytest.fixture(scope="module")
def embedder() -> StyleEmbedder:
    return StyleEmbedder(untrained_encoder(), "untrained-test")


def table_count(url: str, table: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
        assert row is not None
        return int(row[0])


async def test_import_then_reimport_imports_nothing_twice(
    tmp_path: Path, db: Database, db_url: str, embedder: StyleEmbedder
) -> None:
    catalog = write_catalog(tmp_path / "cat", n_loras=4, n_samples=5)
    blobs = BlobStore(tmp_path / "blobs")
    first = await import_catalog(catalog, db, blobs, embedder)
    assert first.imported == ["style-00", "style-01", "style-02", "style-03"]
    assert (first.references, first.samples_added) == (20, 5)
    second = await import_catalog(catalog, db, blobs, embedder)
    assert (second.imported, second.updated, second.references) == ([], [], 0)
    assert len(second.unchanged) == 4
    assert table_count(db_url, "reference_images") == 20
    assert table_count(db_url, "lora_style_summary") == 4


async def test_style_summary_matches_numpy(
    tmp_path: Path, db: Database, db_url: str, embedder: StyleEmbedder
) -> None:
    catalog = write_catalog(tmp_path / "cat", n_loras=2, n_samples=6)
    await import_catalog(catalog, db, BlobStore(tmp_path / "blobs"), embedder)
    parsed = read_catalog(catalog)
    from inference_service.imaging import load_image_file

    refs = parsed.loras["style-01"].references
    expected = as_stored(embedder.embed([load_image_file(refs[s]) for s in sorted(refs)]))
    centroid = expected.mean(axis=0)
    radii = np.linalg.norm(expected - centroid, axis=1)
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "SELECT centroid::text, mean_radius, mean_sq_radius, n_refs FROM lora_style_summary s"
            " JOIN loras l ON l.id = s.lora_id WHERE l.slug = 'style-01'"
        ).fetchone()
    assert row is not None
    stored = np.array([float(v) for v in row[0].strip("[]").split(",")])
    np.testing.assert_allclose(stored, centroid, atol=1e-5)
    assert row[1] == pytest.approx(radii.mean(), abs=1e-5)
    assert row[2] == pytest.approx((radii**2).mean(), abs=1e-5)
    assert row[3] == 6


async def test_resumes_after_a_crash_without_duplicates(
    tmp_path: Path, db: Database, db_url: str, embedder: StyleEmbedder
) -> None:
    catalog = write_catalog(tmp_path / "cat", n_loras=5, n_samples=3)
    blobs = BlobStore(tmp_path / "blobs")

    class Crash(Exception):
        pass

    def crash_after_two(slug: str, done: int, total: int) -> None:
        if done == 2:
            raise Crash

    with pytest.raises(Crash):
        await import_catalog(catalog, db, blobs, embedder, progress=crash_after_two)
    assert table_count(db_url, "loras") == 2  # committed LoRA by LoRA
    resumed = await import_catalog(catalog, db, blobs, embedder)
    assert resumed.unchanged == ["style-00", "style-01"]
    assert resumed.imported == ["style-02", "style-03", "style-04"]
    assert table_count(db_url, "reference_images") == 15


async def test_a_failing_lora_leaves_nothing_half_imported(
    tmp_path: Path, db: Database, db_url: str, embedder: StyleEmbedder
) -> None:
    catalog = write_catalog(tmp_path / "cat", n_loras=2, n_samples=3)
    await import_catalog(catalog, db, BlobStore(tmp_path / "blobs"), embedder)
    # The database refuses one row of the next version of style-01: the old version must stay whole.
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "ALTER TABLE reference_images ADD CONSTRAINT no_s02 CHECK (sample_id <> 's02') NOT VALID"
        )
    (catalog / "loras" / "style-01" / "lora.toml").write_text('name = "Renamed"\n')
    with pytest.raises(psycopg.errors.CheckViolation):
        await import_catalog(catalog, db, BlobStore(tmp_path / "blobs"), embedder, update=True)
    lora = await db.run(db_catalog.lora_by_slug, "style-01")
    assert lora is not None
    assert lora.name == "Style 1"
    assert len(await db.run(db_catalog.reference_blobs, lora.id)) == 3


async def test_changed_entry_needs_update_flag(tmp_path: Path, db: Database, embedder: StyleEmbedder) -> None:
    catalog = write_catalog(tmp_path / "cat", n_loras=2, n_samples=3)
    blobs = BlobStore(tmp_path / "blobs")
    await import_catalog(catalog, db, blobs, embedder)
    (catalog / "loras" / "style-00" / "lora.toml").write_text('name = "New name"\n')
    with pytest.raises(CatalogError, match="already exists with different content"):
        await import_catalog(catalog, db, blobs, embedder)
    report = await import_catalog(catalog, db, blobs, embedder, update=True)
    assert report.updated == ["style-00"]
    assert report.unchanged == ["style-01"]
    lora = await db.run(db_catalog.lora_by_slug, "style-00")
    assert lora is not None
    assert lora.name == "New name"

    # A LoRA that came by registration keeps its file's link and hash through a catalog update.
    async with db.connection() as conn:
        await conn.execute(
            "UPDATE loras SET source_url = 'https://huggingface.co/a/b.safetensors', sha256 = 'ab12'"
            " WHERE slug = 'style-00'"
        )
    (catalog / "loras" / "style-00" / "lora.toml").write_text('name = "Newer name"\n')
    await import_catalog(catalog, db, blobs, embedder, update=True)
    async with db.connection() as conn:
        cur = await conn.execute("SELECT name, source_url, sha256 FROM loras WHERE slug = 'style-00'")
        assert await cur.fetchone() == ("Newer name", "https://huggingface.co/a/b.safetensors", "ab12")


async def test_corrupt_image_is_reported_and_nothing_imported(
    tmp_path: Path, db: Database, db_url: str, embedder: StyleEmbedder
) -> None:
    catalog = write_catalog(tmp_path / "cat", n_loras=3, n_samples=3)
    bad = catalog / "loras" / "style-02" / "references" / "s01.png"
    bad.write_bytes(bad.read_bytes()[:100])
    (catalog / "samples" / "s02.png").write_bytes(b"")
    with pytest.raises(CatalogError) as info:
        await import_catalog(catalog, db, BlobStore(tmp_path / "blobs"), embedder)
    text = "\n".join(info.value.problems)
    assert f"{bad} is corrupt or truncated" in text
    assert f"{catalog}/samples/s02.png is empty" in text
    assert table_count(db_url, "loras") == 0
    assert table_count(db_url, "samples") == 0


async def test_encoder_mismatch_is_refused(tmp_path: Path, db: Database, embedder: StyleEmbedder) -> None:
    catalog = write_catalog(tmp_path / "cat", n_loras=1, n_samples=2)
    await import_catalog(catalog, db, BlobStore(tmp_path / "blobs"), embedder)
    other = StyleEmbedder(untrained_encoder(), "another-encoder")
    with pytest.raises(CatalogError, match="findlora catalog reembed"):
        await import_catalog(catalog, db, BlobStore(tmp_path / "blobs"), other)


async def test_cleansing_drops_unchanged_transfers(
    tmp_path: Path, db: Database, db_url: str, embedder: StyleEmbedder
) -> None:
    catalog = write_catalog(tmp_path / "cat", n_loras=2, n_samples=3, unchanged_sample=("style-01", "s01"))
    report = await import_catalog(catalog, db, BlobStore(tmp_path / "blobs"), embedder)
    assert report.dropped_by_cleansing == 1
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT l.slug, r.sample_id, r.transfer_mse FROM reference_images r"
            " JOIN loras l ON l.id = r.lora_id WHERE NOT r.kept"
        ).fetchall()
        n_refs = conn.execute(
            "SELECT n_refs FROM lora_style_summary s JOIN loras l ON l.id = s.lora_id"
            " WHERE l.slug = 'style-01'"
        ).fetchone()
    assert [(r[0], r[1]) for r in rows] == [("style-01", "s01")]
    assert rows[0][2] == 0.0
    assert n_refs == (2,)


async def test_export_writes_the_same_catalog(tmp_path: Path, db: Database, embedder: StyleEmbedder) -> None:
    catalog = write_catalog(tmp_path / "cat", n_loras=3, n_samples=3)
    blobs = BlobStore(tmp_path / "blobs")
    await import_catalog(catalog, db, blobs, embedder)
    out = tmp_path / "exported"
    assert await export_catalog(db, blobs, out) == 3
    original, exported = read_catalog(catalog), read_catalog(out)
    assert exported.loras.keys() == original.loras.keys()
    for slug, entry in original.loras.items():
        again = exported.loras[slug]
        assert (again.name, again.url, again.trigger_words) == (entry.name, entry.url, entry.trigger_words)
        for sample_id, path in entry.references.items():
            assert again.references[sample_id].read_bytes() == path.read_bytes()
    # Importing the export into the same database changes nothing.
    report = await import_catalog(out, db, blobs, embedder)
    assert report.imported == []
    assert report.updated == []


def test_a_lora_with_its_file_but_no_references_is_a_problem_that_names_the_command(tmp_path: Path) -> None:
    """Import stores references and generates none: such a LoRA was listed as imported and could
    never be found."""
    import shutil

    root = write_catalog(tmp_path / "catalog", n_loras=3, n_samples=3)
    lora_dir = root / "loras" / "style-01"
    shutil.rmtree(lora_dir / "references")
    toml = lora_dir / "lora.toml"
    toml.write_text(toml.read_text() + 'file = "style.safetensors"\n')
    with pytest.raises(CatalogError) as info:
        read_catalog(root)
    assert info.value.problems == [
        f"{lora_dir}: no references/ images; register its file instead: "
        f"findlora lora register {lora_dir / 'style.safetensors'} --name ..."
    ]


async def test_unreadable_images_are_reported_before_any_read_of_their_bytes(
    tmp_path: Path, db: Database, db_url: str, embedder: StyleEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """validate fingerprinted (and hashed) every image after checking it: an unreadable one
    raised PermissionError instead of the list of problems."""
    catalog = write_catalog(tmp_path / "cat", n_loras=2, n_samples=3)
    blobs = BlobStore(tmp_path / "blobs")
    reference = catalog / "loras" / "style-01" / "references" / "s01.png"
    with monkeypatch.context() as patch:
        unreadable(patch, reference)
        with pytest.raises(CatalogError) as info:
            await import_catalog(catalog, db, blobs, embedder)
    assert info.value.problems == [
        f"{reference}: unreadable (Permission denied): make it readable to this user"
    ]
    assert table_count(db_url, "loras") == 0
    await import_catalog(catalog, db, blobs, embedder)
    # A stored sample is compared with the directory's by its bytes.
    sample = catalog / "samples" / "s02.png"
    unreadable(monkeypatch, sample)
    with pytest.raises(CatalogError) as info:
        await import_catalog(catalog, db, blobs, embedder)
    assert info.value.problems == [f"{sample}: unreadable (Permission denied): make it readable to this user"]
