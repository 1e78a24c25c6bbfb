"""`findlora catalog import`: validate everything first, then commit LoRA by LoRA.

Idempotent and resumable through each LoRA's catalog fingerprint (docs/design.md 6).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image

from db import catalog as db_catalog
from db import encoders as db_encoders
from db.database import Database
from db.encoders import EncoderChanged
from db.rows import NewLora, ReferenceRow
from inference_service.blobs import BlobStore
from inference_service.catalog.encoders import missing_reference_blobs
from inference_service.catalog.format import Catalog, CatalogError, LoraEntry, lora_toml, scan_catalog
from inference_service.imaging import ImageRejected, decode_image_file, load_image_file, thumbnail_webp
from inference_service.models.active import ActiveEncoder, UnknownEncoder, as_active
from inference_service.models.style_encoder import StyleEmbedder
from inference_service.scoring.cleansing import transfer_mse

if TYPE_CHECKING:
    from inference_service.gmi import GmiModels

ProgressCallback = Callable[[str, int, int], None]


@dataclass
class ImportReport:
    imported: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    samples_added: int = 0
    references: int = 0
    dropped_by_cleansing: int = 0
    specs: int = 0  # LoRA specs (GMI) embedded and stored by this run
    specs_skipped: int = 0  # LoRAs with a spec/ folder left out: no CLIP model configured
    restored: list[str] = field(default_factory=list)  # unchanged, but reference blobs were missing
    warnings: list[str] = field(default_factory=list)  # imported anyway (unknown base-model names)


def fingerprint(entry: LoraEntry) -> str:
    digest = hashlib.sha256(lora_toml(entry).encode())
    for sample_id in sorted(entry.references):
        digest.update(sample_id.encode() + b"\0" + entry.references[sample_id].read_bytes())
    return digest.hexdigest()


def _check_images(catalog: Catalog, problems: list[str]) -> set[Path]:
    """Decode every image once; returns those that failed (each reported): nothing reads them again."""
    paths = list(catalog.samples.values())
    for entry in catalog.loras.values():
        paths.extend(entry.references.values())
        paths.extend(spec.path for spec in entry.spec)
    failed = set()
    for path in paths:
        try:
            load_image_file(path)
            continue
        except ImageRejected as exc:
            problems.append(str(exc))
        except OSError as exc:
            problems.append(f"{path}: unreadable ({exc.strerror or exc}): make it readable to this user")
        failed.add(path)
    return failed


async def validate(
    catalog_dir: Path, db: Database, encoders: ActiveEncoder, update: bool, gmi: GmiModels | None = None
) -> tuple[Catalog, dict[str, str]]:
    """Every problem, each with its path, before anything is written. Returns the catalog and
    the fingerprints of its LoRAs."""
    catalog, problems = scan_catalog(catalog_dir)
    failed = _check_images(catalog, problems)
    stored_samples = await db.run(db_catalog.samples)
    for sample_id, path in catalog.samples.items():
        stored = stored_samples.get(sample_id)
        if path in failed or stored is None:
            continue
        if stored != hashlib.sha256(path.read_bytes()).hexdigest():
            problems.append(f"{path}: sample id {sample_id!r} is already stored with different content")
    try:
        await encoders.current()
    except UnknownEncoder as exc:
        problems.append(
            f"the database was embedded with encoder {exc.stored!r} but this process runs "
            f"{encoders.configured.label!r}: run `findlora catalog reembed` first"
        )
    # Only LoRAs whose references all read: the others are reported above, and the import
    # will not start while they are.
    prints = {
        slug: fingerprint(entry)
        for slug, entry in catalog.loras.items()
        if failed.isdisjoint(entry.references.values())
    }
    if not update:
        stored_prints = await db.run(db_catalog.fingerprints)
        for slug, value in prints.items():
            if slug in stored_prints and stored_prints[slug] != value:
                problems.append(
                    f"{catalog.root / 'loras' / slug}: slug {slug!r} already exists with different "
                    "content (use --update to replace it)"
                )
    if gmi is not None:
        from inference_service.catalog.spec_import import spec_problems

        problems.extend(await spec_problems(catalog, db, gmi, update))
    if problems:
        raise CatalogError(problems)
    return catalog, prints


@dataclass(frozen=True)
class Transfer:
    """One reference image t(sample, LoRA) as stored: its decoded image and its file bytes."""

    sample_id: str
    image: Image.Image
    data: bytes
    suffix: str


def build_reference_rows(
    transfers: Sequence[Transfer],
    samples: dict[str, Image.Image],
    blobs: BlobStore,
    embedder: StyleEmbedder,
    threshold: float,
    thumb_px: int,
) -> list[ReferenceRow]:
    """Embed, cleanse (Eq. 1 against the sample) and store references with their thumbnails;
    shared by catalog import and LoRA registration."""
    embeddings = embedder.embed([t.image for t in transfers])
    rows = []
    for transfer, embedding in zip(transfers, embeddings, strict=True):
        mse = transfer_mse(transfer.image, samples[transfer.sample_id])
        rows.append(
            ReferenceRow(
                sample_id=transfer.sample_id,
                blob_key=blobs.put(transfer.data, transfer.suffix),
                thumb_key=blobs.put(thumbnail_webp(transfer.image, thumb_px), ".webp"),
                sha256=hashlib.sha256(transfer.data).hexdigest(),
                embedding=embedding,
                kept=mse >= threshold,
                transfer_mse=mse,
            )
        )
    return rows


async def _lost_blobs(db: Database, blobs: BlobStore) -> set[str]:
    """Slugs with a reference whose blob is missing from the store (a lost volume, a partial
    restore): imported again even when unchanged, which writes the blobs back; this is the
    remedy an activation or adaptation stopped by a missing blob names."""
    lost = {lora_id for lora_id, _, _ in await missing_reference_blobs(db, blobs)}
    if not lost:
        return set()
    slugs = {
        row.id: row.slug for row in await db.run(db_catalog.list_loras, ("active", "hidden", "taken_down"))
    }
    return {slugs[lid] for lid in lost if lid in slugs}


def _reference_rows(
    entry: LoraEntry,
    samples: dict[str, Image.Image],
    blobs: BlobStore,
    embedder: StyleEmbedder,
    threshold: float,
    thumb_px: int,
) -> list[ReferenceRow]:
    transfers = []
    for sample_id in sorted(entry.references):
        path = entry.references[sample_id]
        data = path.read_bytes()  # read once: decoded here, stored as the blob
        transfers.append(Transfer(sample_id, decode_image_file(path, data), data, path.suffix))
    return build_reference_rows(transfers, samples, blobs, embedder, threshold, thumb_px)


async def import_catalog(
    catalog_dir: Path,
    db: Database,
    blobs: BlobStore,
    embedder: StyleEmbedder | ActiveEncoder,
    *,
    cleansing_threshold: float = 0.01,
    thumb_px: int = 256,
    update: bool = False,
    progress: ProgressCallback | None = None,
    gmi: GmiModels | None = None,
) -> ImportReport:
    """Import samples and LoRAs; with GMI models also the prompt set and the LoRAs' specs.
    References are embedded with the catalog's active encoder (`embedder` is the holder, or the
    encoder an empty catalog starts with)."""
    encoders = as_active(embedder, db, blobs)
    catalog, prints = await validate(catalog_dir, db, encoders, update, gmi)
    report = ImportReport(warnings=list(catalog.warnings))
    stored_samples = await db.run(db_catalog.samples)
    for sample_id, path in catalog.samples.items():
        if sample_id not in stored_samples:
            data = path.read_bytes()
            await db.run(
                db_catalog.add_sample,
                sample_id,
                blobs.put(data, path.suffix),
                hashlib.sha256(data).hexdigest(),
            )
            report.samples_added += 1
    await db.run(db_encoders.claim_label, (await encoders.current()).label)
    stored_prints = await db.run(db_catalog.fingerprints)
    lost = await _lost_blobs(db, blobs)
    samples = {sid: load_image_file(path) for sid, path in catalog.samples.items()}
    todo = sorted(catalog.loras)
    for done, slug in enumerate(todo, start=1):
        entry = catalog.loras[slug]
        unchanged = stored_prints.get(slug) == prints[slug]
        if unchanged and slug not in lost:
            report.unchanged.append(slug)
        else:
            lora = NewLora(
                slug=slug,
                name=entry.name,
                base_model=entry.base_model,
                page_url=entry.url,
                trigger_words=entry.trigger_words,
                license=entry.license,
                author=entry.author,
                nsfw=entry.nsfw,
                created_by=f"catalog:{catalog.name}",
                catalog_fingerprint=prints[slug],
            )
            for _ in range(3):  # an activation committed meanwhile: embed again with its encoder
                current = await encoders.current()
                rows = _reference_rows(entry, samples, blobs, current, cleansing_threshold, thumb_px)
                try:
                    await db.run(db_catalog.replace_lora, lora, rows, current.label)
                    break
                except EncoderChanged:
                    continue
            else:
                raise CatalogError(
                    [f"{slug}: the style encoder kept changing during the import; run it again"]
                )
            if unchanged:
                report.restored.append(slug)
            else:
                (report.updated if slug in stored_prints else report.imported).append(slug)
            report.references += len(rows)
            report.dropped_by_cleansing += sum(not r.kept for r in rows)
        if progress is not None:
            progress(slug, done, len(todo))
    if gmi is not None:
        from inference_service.catalog.spec_import import import_specs

        ids = {
            row.slug: row.id
            for row in await db.run(db_catalog.list_loras, ("active", "hidden", "taken_down"))
        }
        report.specs = await import_specs(catalog, ids, db, blobs, gmi, progress)
    else:
        report.specs_skipped = sum(bool(entry.spec) for entry in catalog.loras.values())
    return report


async def reembed(
    db: Database,
    blobs: BlobStore,
    embedder: StyleEmbedder,
    progress: ProgressCallback | None = None,
    batch: int = 256,
) -> int:
    """Recompute every reference embedding with `embedder` (after a model change) and make it
    the catalog's encoder: an activation (inference_service.catalog.encoders)."""
    from inference_service.catalog.encoders import activate

    current = await as_active(embedder, db, blobs).current_or_none()
    done = await activate(
        db, blobs, embedder, current=current, note="catalog reembed", progress=progress, batch=batch
    )
    return done.references
