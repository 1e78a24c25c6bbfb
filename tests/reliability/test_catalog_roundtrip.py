"""Property: import -> export -> import round-trips any valid catalog unchanged."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from db.database import Database
from inference_service.blobs import BlobStore
from inference_service.catalog.exporter import export_catalog
from inference_service.catalog.format import LoraEntry, dump_toml, lora_toml, read_catalog
from inference_service.catalog.importer import import_catalog
from inference_service.models.style_encoder import StyleEmbedder, untrained_encoder

pytestmark = pytest.mark.db

# Any text a valid catalog can hold: every code point but surrogates and NUL (refused on import).
text = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs",), exclude_characters="\x00"), max_size=30
)
slugs = st.from_regex(r"[a-z0-9][a-z0-9_-]{0,12}", fullmatch=True)
loras = st.fixed_dictionaries(
    {
        "name": text.filter(str.strip),
        "url": st.sampled_from(["", "https://civitai.com/models/1", "https://huggingface.co/x/y"]),
        "base_model": st.sampled_from(["sd1", "sdxl"]),
        "trigger_words": st.lists(text, max_size=3),
        "license": text,
        "author": text,
        "nsfw": st.booleans(),
        "seed": st.integers(0, 2**16),
        "refs": st.integers(1, 3),
    }
)
catalogs = st.dictionaries(slugs, loras, min_size=1, max_size=3)


# Sample ids may hold dots: two that differ only after one must stay two files.
SAMPLE_IDS = ("s0", "face.v2", "face.v3")


def write(root: Path, spec: dict[str, dict[str, object]]) -> Path:
    (root / "samples").mkdir(parents=True)
    (root / "catalog.toml").write_text(dump_toml({"name": "prop"}), encoding="utf-8")
    for i, sample_id in enumerate(SAMPLE_IDS):
        Image.new("RGB", (24, 24), (i * 80, 40, 200 - i * 60)).save(root / "samples" / f"{sample_id}.png")
    for slug, lora in spec.items():
        refs = root / "loras" / slug / "references"
        refs.mkdir(parents=True)
        fields = {k: v for k, v in lora.items() if k not in ("seed", "refs")}
        (root / "loras" / slug / "lora.toml").write_text(
            lora_toml(LoraEntry(slug=slug, **fields)),  # type: ignore[arg-type]
            encoding="utf-8",
        )
        rng = np.random.default_rng(int(lora["seed"]))  # type: ignore[call-overload]
        for i in range(int(lora["refs"])):  # type: ignore[call-overload]
            Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(
                refs / f"{SAMPLE_IDS[i]}.png"
            )
    return root


def snapshot(root: Path) -> dict[str, object]:
    catalog = read_catalog(root)
    return {
        "samples": {k: p.read_bytes() for k, p in catalog.samples.items()},
        "loras": {
            slug: (lora_toml(entry), {s: p.read_bytes() for s, p in entry.references.items()})
            for slug, entry in catalog.loras.items()
        },
    }


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spec=catalogs)
def test_import_export_import_round_trips(spec: dict[str, dict[str, object]], db_url: str) -> None:
    async def round_trip(work: Path) -> None:
        db = await Database.open(db_url, max_size=2)
        try:
            async with db.pool.connection() as conn:  # a clean slate per example
                await conn.execute("TRUNCATE loras, samples, catalog_meta CASCADE")
            blobs = BlobStore(work / "blobs")
            embedder = StyleEmbedder(untrained_encoder(), "untrained-test")
            original = write(work / "in", spec)
            await import_catalog(original, db, blobs, embedder)
            await export_catalog(db, blobs, work / "out")
            assert snapshot(work / "out") == snapshot(original)
            again = await import_catalog(work / "out", db, blobs, embedder)
            assert again.imported == []
            assert again.updated == []
        finally:
            await db.close()

    work = Path(tempfile.mkdtemp(prefix="rt-"))
    try:
        asyncio.run(round_trip(work))
    finally:
        shutil.rmtree(work, ignore_errors=True)
