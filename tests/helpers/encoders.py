"""Second style encoders for activation tests, and what a ranking with one of them must be."""

from __future__ import annotations

import copy
import io

import numpy as np
import torch
from PIL import Image

from db.database import Database
from inference_service.blobs import BlobStore
from inference_service.imaging import load_image_file
from inference_service.models.style_encoder import (
    EncoderConfig,
    StyleEmbedder,
    encoder_fingerprint,
    untrained_encoder,
)

# dim 128 (the database's vector column); otherwise as small as the trainer tests' encoder.
TINY = EncoderConfig(
    widths=(8, 16), dim=128, input_size=32, stem_width=4, hist_bins=4, joint_bins=3, hidden=32
)


def labelled(model: torch.nn.Module, kind: str) -> StyleEmbedder:
    """An embedder labelled as the service labels encoders: kind@fingerprint of its weights."""
    return StyleEmbedder(model, f"{kind}@{encoder_fingerprint(model)}")  # type: ignore[arg-type]


def tiny_embedder() -> StyleEmbedder:
    return labelled(untrained_encoder(TINY), "tiny")


def perturbed(embedder: StyleEmbedder, seed: int = 1, scale: float = 0.5) -> StyleEmbedder:
    """A copy of the encoder whose head is pushed off by seeded noise: other embeddings, same shape."""
    model = copy.deepcopy(embedder.model)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.head.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * scale * parameter.std())
    return labelled(model.eval(), "perturbed")


def as_stored(embeddings: np.ndarray) -> np.ndarray:
    """Embeddings as the database keeps references: half precision (migration 009)."""
    return np.asarray(embeddings, dtype=np.float32).astype(np.float16).astype(np.float32)


async def stored_embeddings(db: Database) -> dict[tuple[str, str], np.ndarray]:
    """(slug, sample id) -> stored reference embedding."""
    async with db.connection() as conn:
        cur = await conn.execute(
            "SELECT l.slug, r.sample_id, r.embedding FROM reference_images r JOIN loras l ON l.id = r.lora_id"
        )
        return {(r[0], r[1]): np.asarray(r[2].to_numpy(), dtype=np.float32) for r in await cur.fetchall()}


async def expected_d_avg(
    db: Database, blobs: BlobStore, embedder: StyleEmbedder, query: bytes
) -> dict[str, float]:
    """slug -> d_avg of the query to the LoRA's kept references, everything embedded by `embedder`."""
    async with db.connection() as conn:
        cur = await conn.execute(
            "SELECT l.slug, r.blob_key FROM reference_images r JOIN loras l ON l.id = r.lora_id WHERE r.kept"
        )
        rows = await cur.fetchall()
    refs = as_stored(embedder.embed([load_image_file(blobs.path(key)) for _, key in rows]))
    q = embedder.embed([Image.open(io.BytesIO(query)).convert("RGB")])[0]
    distances: dict[str, list[float]] = {}
    for (slug, _), ref in zip(rows, refs, strict=True):
        distances.setdefault(slug, []).append(float(np.linalg.norm(q - ref)))
    return {slug: float(np.mean(d)) for slug, d in distances.items()}
