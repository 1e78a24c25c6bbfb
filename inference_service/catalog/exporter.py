"""`findlora catalog export`: the stored catalog back in the directory format.

Taken-down LoRAs are never exported; hidden ones are (the format has no status field). The
GMI part goes too: the platform prompt set as `prompts.txt`, each LoRA's spec images and own
prompts under `spec/`, renumbered the way the format counts them, so an import of the export
stores the same specs. A LoRA's `.safetensors` file is not copied (its references are).
"""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from db import catalog as db_catalog
from db import specs as db_specs
from db.database import Database
from inference_service.blobs import BlobStore
from inference_service.catalog.format import LoraEntry, dump_toml, lora_toml


@dataclass(frozen=True)
class _Lora:
    entry: LoraEntry
    references: dict[str, str]  # sample id -> blob key
    spec: dict[str, str] = field(default_factory=dict)  # "<prompt id>-<n>" -> blob key
    own_prompts: list[str] = field(default_factory=list)


def _copy_blob(blobs: BlobStore, key: str, target_stem: Path) -> None:
    source = blobs.path(key)
    # Not with_suffix: a sample id may hold a dot ("face.v2"), which it would cut off.
    shutil.copyfile(source, target_stem.with_name(target_stem.name + source.suffix))


def _lines(texts: list[str]) -> str:
    return "".join(f"{text}\n" for text in texts)


def _write(
    directory: Path,
    name: str,
    blobs: BlobStore,
    samples: dict[str, str],
    prompts: list[str],
    loras: list[_Lora],
) -> None:
    if directory.exists() and any(directory.iterdir()):
        raise FileExistsError(f"{directory} is not empty: export into a new or empty directory")
    (directory / "samples").mkdir(parents=True, exist_ok=True)
    (directory / "loras").mkdir(exist_ok=True)
    (directory / "catalog.toml").write_text(dump_toml({"name": name}), encoding="utf-8")
    if prompts:
        (directory / "prompts.txt").write_text(_lines(prompts), encoding="utf-8")
    for sample_id, key in samples.items():
        _copy_blob(blobs, key, directory / "samples" / sample_id)
    for lora in loras:
        lora_dir = directory / "loras" / lora.entry.slug
        (lora_dir / "references").mkdir(parents=True)
        (lora_dir / "lora.toml").write_text(lora_toml(lora.entry), encoding="utf-8")
        for sample_id, key in lora.references.items():
            _copy_blob(blobs, key, lora_dir / "references" / sample_id)
        if lora.spec or lora.own_prompts:
            (lora_dir / "spec").mkdir()
            for stem, key in lora.spec.items():
                _copy_blob(blobs, key, lora_dir / "spec" / stem)
        if lora.own_prompts:
            (lora_dir / "spec" / "prompts.txt").write_text(_lines(lora.own_prompts), encoding="utf-8")


async def _spec(db: Database, lora_id: int, platform: dict[int, int]) -> tuple[dict[str, str], list[str]]:
    """A LoRA's spec images by the file stem the format gives them, and its own prompts. Prompt
    ids are the line numbers of the exported prompts.txt, then of its own spec/prompts.txt."""
    own = await db.run(db_specs.own_prompts, lora_id)
    numbers = platform | {prompt.id: len(platform) + j for j, prompt in enumerate(own)}
    points = await db.run(db_specs.spec_blobs, lora_id)
    return {f"{numbers[prompt_id]}-{n}": key for prompt_id, n, key in points}, [p.text for p in own]


async def export_catalog(db: Database, blobs: BlobStore, directory: Path, name: str = "") -> int:
    platform_prompts = await db.run(db_specs.platform_prompts)
    platform = {prompt.id: line for line, prompt in enumerate(platform_prompts)}
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
        spec, own = await _spec(db, lora.id, platform)
        loras.append(_Lora(entry, await db.run(db_catalog.reference_blobs, lora.id), spec, own))
    samples = await db.run(db_catalog.sample_blobs)
    texts = [prompt.text for prompt in platform_prompts]
    await asyncio.to_thread(_write, directory, name or directory.name, blobs, samples, texts, loras)
    return len(loras)
