"""`findlora catalog export`: the stored catalog back in the directory format.

Taken-down LoRAs are never exported; hidden ones are (the format has no status field).
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

from db import catalog as db_catalog
from db.database import Database
from inference_service.blobs import BlobStore
from inference_service.catalog.format import LoraEntry, dump_toml, lora_toml


def _copy_blob(blobs: BlobStore, key: str, target_stem: Path) -> None:
    source = blobs.path(key)
    # Not with_suffix: a sample id may hold a dot ("face.v2"), which it would cut off.
    shutil.copyfile(source, target_stem.with_name(target_stem.name + source.suffix))


def _write(
    directory: Path,
    name: str,
    blobs: BlobStore,
    samples: dict[str, str],
    loras: list[tuple[LoraEntry, dict[str, str]]],
) -> None:
    if directory.exists() and any(directory.iterdir()):
        raise FileExistsError(f"{directory} is not empty: export into a new or empty directory")
    (directory / "samples").mkdir(parents=True, exist_ok=True)
    (directory / "loras").mkdir(exist_ok=True)
    (directory / "catalog.toml").write_text(dump_toml({"name": name}), encoding="utf-8")
    for sample_id, key in samples.items():
        _copy_blob(blobs, key, directory / "samples" / sample_id)
    for entry, references in loras:
        lora_dir = directory / "loras" / entry.slug
        (lora_dir / "references").mkdir(parents=True)
        (lora_dir / "lora.toml").write_text(lora_toml(entry), encoding="utf-8")
        for sample_id, key in references.items():
            _copy_blob(blobs, key, lora_dir / "references" / sample_id)


async def export_catalog(db: Database, blobs: BlobStore, directory: Path, name: str = "") -> int:
    loras = []
    for lora in await db.run(db_catalog.list_loras):
        entry = LoraEntry(
            slug=lora.slug,
            name=lora.name,
            url=lora.page_url,
            base_model=lora.base_model,
            trigger_words=lora.trigger_words,
            license=lora.license,
            author=lora.author,
            nsfw=lora.nsfw,
        )
        loras.append((entry, await db.run(db_catalog.reference_blobs, lora.id)))
    samples = await db.run(db_catalog.sample_blobs)
    await asyncio.to_thread(_write, directory, name or directory.name, blobs, samples, loras)
    return len(loras)
