"""Import the GMI part of a catalog: the platform prompt set and each LoRA's spec/ images.

A LoRA's spec is re-embedded only when its fingerprint (own prompts, spec image bytes, model
label) changed (docs/design.md 6).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Sequence

import numpy as np
import structlog

from db import catalog as db_catalog
from db import specs as db_specs
from db.database import Database
from db.rows import SpecPointRow
from db.spec_index import ensure_spec_index_async
from inference_service.blobs import BlobStore
from inference_service.catalog.format import Catalog, LoraEntry
from inference_service.catalog.platform_prompts import PLATFORM_PROMPTS
from inference_service.gmi import GmiModels
from inference_service.imaging import load_image_file

ProgressCallback = Callable[[str, int, int], None]
log = structlog.get_logger(__name__)


def platform_set(catalog: Catalog) -> list[str]:
    return list(catalog.prompts) or list(PLATFORM_PROMPTS)


def spec_fingerprint(entry: LoraEntry, label: str) -> str:
    if not entry.spec:
        return ""
    digest = hashlib.sha256(label.encode() + b"\0" + "\n".join(entry.own_prompts).encode())
    for spec in sorted(entry.spec, key=lambda s: (s.prompt_id, s.n)):
        digest.update(f"{spec.prompt_id}-{spec.n}\0".encode() + spec.path.read_bytes())
    return digest.hexdigest()


async def spec_problems(catalog: Catalog, db: Database, models: GmiModels, update: bool) -> list[str]:
    """What would make the GMI import wrong, found before anything is written."""
    problems = []
    stored = {p.local_id: p.text for p in await db.run(db_specs.platform_prompts)}
    wanted = platform_set(catalog)
    changed = [i for i, text in enumerate(wanted) if i in stored and stored[i] != text]
    if changed and not update:
        where = catalog.root / "prompts.txt" if catalog.prompts else "the default platform prompt set"
        problems.append(
            f"{where}: prompt ids {changed[:5]} differ from the stored platform prompts "
            "(use --update to replace them; existing specs refer to those ids)"
        )
    for entry in catalog.loras.values():
        for spec in entry.spec:
            if spec.prompt_id >= len(wanted) + len(entry.own_prompts):
                problems.append(f"{spec.path}: prompt id {spec.prompt_id} is not in the platform set")
    stored_label = await db.run(db_catalog.get_meta, db_catalog.GMI_ENCODER_KEY)
    if stored_label is not None and stored_label != models.label and not update:
        problems.append(
            f"the specs were embedded with {stored_label!r} but this process runs {models.label!r}: "
            "re-import with --update"
        )
    return problems


async def fill_spec_features(
    db: Database,
    blobs: BlobStore,
    models: GmiModels,
    progress: ProgressCallback | None = None,
    batch: int = 64,
) -> int:
    """Embed the stored spec points and prompts that have no feature yet, from their blobs and
    texts: LoRAs registered by a worker without the GMI models, or outside this catalog
    directory when the CLIP model changed. Returns how many spec points were filled."""
    prompts = await db.run(db_specs.prompts_without_features)
    if prompts:
        texts = [text for _, text in prompts]
        await db.run(db_specs.set_prompt_features, [i for i, _ in prompts], _embed_texts(models, texts))
    filled = 0
    last: db_specs.PointKey | None = None
    while points := await db.run(db_specs.points_without_features, last, batch):
        last = points[-1]
        readable, images = [], []
        for point in points:
            try:
                images.append(load_image_file(blobs.path(point[3])))
                readable.append(point)
            except (OSError, ValueError):  # a lost blob: that point stays unused, the rest go on
                log.warning("spec_image_unreadable", lora_id=point[0], blob_key=point[3])
        if readable:
            features = await asyncio.to_thread(models.image.encode_images, images)
            await db.run(db_specs.set_point_features, readable, features)
        filled += len(readable)
        if progress is not None:
            progress("spec features", filled, filled)
    return filled


def _embed_texts(models: GmiModels, texts: Sequence[str]) -> np.ndarray:
    return models.text.encode_texts(list(texts)) if texts else np.zeros((0, 1), dtype=np.float32)


async def import_specs(
    catalog: Catalog,
    lora_ids: dict[str, int],
    db: Database,
    blobs: BlobStore,
    models: GmiModels,
    progress: ProgressCallback | None = None,
) -> int:
    """Store the platform prompts and every changed spec; returns how many specs were written."""
    prompts = platform_set(catalog)
    async with db.connection() as conn:
        stored = {p.local_id: p.text for p in await db_specs.platform_prompts(conn)}
        stored_label = await db_catalog.get_meta(conn, db_catalog.GMI_ENCODER_KEY)
    if [stored.get(i) for i in range(len(prompts))] != prompts or stored_label != models.label:
        features = _embed_texts(models, prompts)
        async with db.transaction() as conn:
            # The label first: its row lock makes a registration committing features meanwhile
            # either finish before the forgetting below (which then sees them) or wait and see
            # this label (db.registration.complete).
            await db_catalog.set_meta(conn, db_catalog.GMI_ENCODER_KEY, models.label)
            if stored_label is not None and stored_label != models.label:
                # Another CLIP model: every stored feature goes, in the same commit as the label, so
                # a search never compares two models' features; this import refills them.
                await db_specs.forget_features(conn)
            await db_specs.upsert_platform_prompts(conn, prompts, features)
    stored_prints = await db.run(db_catalog.fingerprints, "spec")
    written = 0
    slugs = sorted(slug for slug, entry in catalog.loras.items() if entry.spec)
    for done, slug in enumerate(slugs, start=1):
        entry = catalog.loras[slug]
        wanted = spec_fingerprint(entry, models.label)
        if stored_prints.get(slug) != wanted:
            specs = sorted(entry.spec, key=lambda s: (s.prompt_id, s.n))
            features = models.image.encode_images([load_image_file(s.path) for s in specs])
            points = [
                SpecPointRow(s.prompt_id, s.n, blobs.put(s.path.read_bytes(), s.path.suffix), f)
                for s, f in zip(specs, features, strict=True)
            ]
            await db.run(
                db_specs.replace_spec,
                lora_ids[slug],
                entry.own_prompts,
                _embed_texts(models, entry.own_prompts),
                len(prompts),
                points,
                wanted,
            )
            written += 1
        if progress is not None:
            progress(f"spec {slug}", done, len(slugs))
    filled = await fill_spec_features(db, blobs, models, progress)
    if written or filled:
        # The catalog's CLIP model is known now: index its spec points (built once, after the
        # points, which is far faster than maintaining it point by point).
        await ensure_spec_index_async(db.url)
    return written
