"""A reference image lost from (or corrupt in) the blob store: `catalog adapt`, `--rollback` and
`reembed` stop with one message naming the LoRA, the sample and the file, before they change
anything, and `catalog import --update` of the catalog stores the lost image again."""

from __future__ import annotations

from pathlib import Path

import pytest

from db.database import Database
from db.encoders import active_label, get_encoder, list_encoders
from inference_service.blobs import BlobStore
from inference_service.catalog.encoders import ReferenceUnreadable, activate, unreadable_reference
from inference_service.catalog.importer import import_catalog
from inference_service.config import Settings
from inference_service.imaging import ImageRejected
from inference_service.models.style_encoder import StyleEmbedder, save_encoder
from tests.helpers.catalogs import write_catalog
from tests.helpers.encoders import perturbed, tiny_embedder
from tests.test_cli import cli_env, findlora

pytestmark = pytest.mark.db


async def blob_of(db: Database, slug: str, sample_id: str) -> str:
    async with db.connection() as conn:
        cur = await conn.execute(
            "SELECT r.blob_key FROM reference_images r JOIN loras l ON l.id = r.lora_id"
            " WHERE l.slug = %s AND r.sample_id = %s",
            (slug, sample_id),
        )
        row = await cur.fetchone()
    assert row is not None
    return str(row[0])


async def test_a_lost_reference_blob_stops_adapt_rollback_and_reembed_with_what_to_do(
    settings: Settings, db: Database, tmp_path: Path
) -> None:
    # The configured encoder (`first`, as the CLI labels its file) was replaced by `second`:
    # a rollback returns to `first`, a reembed (configured with `first`) makes it active again.
    tiny = tiny_embedder()
    save_encoder(tiny.model, tmp_path / "tiny.safetensors")
    first = StyleEmbedder(tiny.model, f"tiny.safetensors@{tiny.label.split('@')[1]}")
    second = perturbed(first, seed=4)
    env = cli_env(settings, FINDLORA_STYLE_ENCODER=str(tmp_path / "tiny.safetensors"))
    blobs = BlobStore(settings.blob_dir)
    catalog = write_catalog(tmp_path / "catalog", n_loras=4, n_samples=4)
    await import_catalog(catalog, db, blobs, first)
    await activate(db, blobs, second, current=first)
    registered = await db.run(list_encoders)

    lost = blobs.path(await blob_of(db, "style-01", "s02"))
    lost.unlink()
    for command in (["catalog", "reembed"], ["catalog", "adapt", "--rollback"], ["catalog", "adapt"]):
        code, out, err = await findlora(*command, env=env)
        assert code == 1, (command, out, err)
        assert "Traceback" not in err
        message = " ".join(err.split())
        assert (
            f"{lost}: the reference image of LoRA 'style-01' for sample 's02' is missing from the blob store"
            in message
        ), command
        assert "nothing was changed: restore the blob store from a backup, or re-import the LoRA" in message
        assert "`findlora catalog import --update DIR`" in message
        assert await db.run(active_label) == second.label
        assert await db.run(list_encoders) == registered

    # The remedy the message names: the unchanged LoRA is imported again, its image stored again.
    code, out, err = await findlora("catalog", "import", "--update", str(catalog), env=env)
    assert code == 0, err
    assert "1 unchanged LoRA(s) imported again: reference images were missing from the blob store" in out
    assert lost.exists()
    code, out, err = await findlora("catalog", "adapt", "--rollback", env=env)
    assert code == 0, err
    assert await db.run(active_label) == first.label


async def test_a_corrupt_reference_blob_stops_an_activation_before_it_registers_anything(
    db: Database, tmp_path: Path
) -> None:
    blobs = BlobStore(tmp_path / "blobs")
    first = tiny_embedder()
    await import_catalog(write_catalog(tmp_path / "cat", n_loras=2, n_samples=3), db, blobs, first)
    corrupt = blobs.path(await blob_of(db, "style-00", "s01"))
    corrupt.write_bytes(corrupt.read_bytes()[:50])
    second = perturbed(first, seed=3)
    with pytest.raises(ReferenceUnreadable) as info:
        await activate(db, blobs, second, current=first)
    assert (info.value.slug, info.value.sample_id, info.value.path) == ("style-00", "s01", corrupt)
    assert str(info.value).startswith(
        f"{corrupt}: the reference image of LoRA 'style-00' for sample 's01' is corrupt or truncated"
    )
    assert "delete that file and re-import the LoRA" in str(info.value)
    assert await db.run(active_label) == first.label
    assert await db.run(get_encoder, second.label) is None
    assert await db.run(get_encoder, first.label) is None

    # Adaptation reads its references in inference_service.training, where the LoRA is not known:
    # the CLI names it from the error (ImageRejected here, FileNotFoundError for a lost file).
    from inference_service.catalog.adaptation import prepare
    from inference_service.models.active import ActiveEncoder

    with pytest.raises(ImageRejected) as rejected:
        await prepare(db, blobs, ActiveEncoder(db, blobs, first))
    named = await unreadable_reference(db, blobs, rejected.value)
    assert named is not None
    assert str(named) == str(info.value)
    lost = FileNotFoundError(2, "No such file or directory", str(corrupt))
    named = await unreadable_reference(db, blobs, lost)
    assert named is not None
    assert (named.slug, named.sample_id) == ("style-00", "s01")
    assert "is missing from the blob store" in str(named)
    assert await unreadable_reference(db, blobs, FileNotFoundError(2, "gone", str(tmp_path))) is None
