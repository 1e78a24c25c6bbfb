"""Synthetic spec points for `bench spec-search` (lab/bench/spec_search.py): a family tree of
LoRAs with unit spec points, the catalog's filter columns, the queries and their exact scores,
and the binary COPY that loads them into a migrated scratch database."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import psycopg
from pgvector.psycopg import register_vector_async

from db.filters import Filters
from findlora_client.base_models import filter_group
from inference_service.catalog.platform_prompts import PLATFORM_PROMPTS
from lab.bench.load import BASE_MODELS, BASE_WEIGHTS, NSFW_FRACTION, TAKEN_DOWN_FRACTION

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class SpecShape:
    dim: int = 512
    points_per_lora: int = 30
    style_dim: int = 128
    alpha: float = 1.0  # spectrum decay of the noise
    family_size: int = 5  # lookalike LoRAs per family, on average
    families_per_group: int = 20  # families per group of related styles
    family_spread: float = 0.5  # family centre around its group's
    lora_spread: float = 0.4  # LoRA centre around its family's
    point_spread: float = 0.6  # spec points (and query images) around their LoRA's centre
    style_spread: float = 0.5  # the query's style embedding around its LoRA's style centre


class SyntheticSpecs:
    """LoRA centres in the CLIP and the style space on one family tree; spec points are drawn
    per chunk from a seed of their own, so the loader and the scorer see the same points."""

    def __init__(self, n_loras: int, shape: SpecShape, seed: int) -> None:
        self.n_loras, self.shape, self.seed = n_loras, shape, seed
        rng = np.random.default_rng(seed)
        n_families = max(1, n_loras // shape.family_size)
        n_groups = max(1, n_families // shape.families_per_group)
        group_of_family = rng.integers(0, n_groups, n_families)
        family_of_lora = rng.integers(0, n_families, n_loras)
        self.spaces = {}
        for name, dim in (("clip", shape.dim), ("style", shape.style_dim)):
            lam = np.arange(1, dim + 1, dtype=np.float64) ** -shape.alpha
            scale = np.sqrt(lam / lam.sum())
            basis = np.linalg.qr(rng.standard_normal((dim, dim)))[0]
            groups = _unit(rng.standard_normal((n_groups, dim)))
            families = _unit(
                groups[group_of_family] + shape.family_spread * self._noise(rng, n_families, scale, basis)
            )
            centres = families[family_of_lora] + shape.lora_spread * self._noise(rng, n_loras, scale, basis)
            self.spaces[name] = (centres, scale, basis)

    @staticmethod
    def _noise(rng: np.random.Generator, n: int, scale: np.ndarray, basis: np.ndarray) -> np.ndarray:
        out: np.ndarray = (rng.standard_normal((n, len(scale))) * scale) @ basis.T
        return out

    def _around(self, space: str, lora: np.ndarray, spread: float, rng: np.random.Generator) -> np.ndarray:
        centres, scale, basis = self.spaces[space]
        return _unit(centres[lora] + spread * self._noise(rng, len(lora), scale, basis)).astype(np.float32)

    def points(self, start: int, stop: int) -> np.ndarray:
        """(stop-start, points_per_lora, dim) float32 unit spec points of LoRAs start..stop-1."""
        p = self.shape.points_per_lora
        lora = np.repeat(np.arange(start, stop), p)
        rng = np.random.default_rng([self.seed, 1, start])
        return self._around("clip", lora, self.shape.point_spread, rng).reshape(stop - start, p, -1)

    def query_images(self, owner: int, count: int, rng: np.random.Generator) -> np.ndarray:
        """Unseen images of the owner's style: drawn as its spec points are."""
        return self._around("clip", np.full(count, owner), self.shape.point_spread, rng)

    def query_style(self, owner: int, rng: np.random.Generator) -> np.ndarray:
        style: np.ndarray = self._around("style", np.array([owner]), self.shape.style_spread, rng)[0]
        return style

    def style_distance(self, style: np.ndarray) -> np.ndarray:
        centres = _unit(self.spaces["style"][0])
        out: np.ndarray = np.linalg.norm(centres - style, axis=1)
        return out


def _unit(x: np.ndarray) -> np.ndarray:
    out: np.ndarray = x / np.linalg.norm(x, axis=-1, keepdims=True)
    return out


@dataclass
class BenchQuery:
    kind: str  # single | multi | filtered
    owner: int
    images: np.ndarray  # (Q, dim)
    style: np.ndarray
    filters: Filters
    nearest: np.ndarray | None = None  # (n_loras,) mean over images of the nearest spec point
    rkme: np.ndarray | None = None  # (n_loras,) RKME-CLIP of every LoRA


@dataclass(frozen=True)
class Catalog:
    base_model: list[str]
    nsfw: np.ndarray
    active: np.ndarray

    def passes(self, filters: Filters) -> np.ndarray:
        """db.filters.LORA_FILTER in numpy."""
        group = filter_group(filters.base_model)
        base = np.array(
            [
                not group.ids or b in group.ids or (group.others and b.startswith("other:"))
                for b in self.base_model
            ]
        )
        out: np.ndarray = self.active & base & (filters.allow_nsfw | ~self.nsfw)
        return out


def make_queries(specs: SyntheticSpecs, catalog: Catalog, n: int, seed: int) -> list[BenchQuery]:
    """Half single-image queries, a quarter with 2-3 images of one style, a quarter filtered to
    the owner's base model without NSFW."""
    rng = np.random.default_rng([seed, 2])
    owners = rng.choice(np.flatnonzero(catalog.active & ~catalog.nsfw), size=n)
    queries = []
    for j, owner in enumerate(owners.tolist()):
        kind = ("single", "multi", "single", "filtered")[j % 4]
        count = int(rng.integers(2, 4)) if kind == "multi" else 1
        filters = (
            Filters(base_model=catalog.base_model[owner]) if kind == "filtered" else Filters(allow_nsfw=True)
        )
        images = specs.query_images(owner, count, rng)
        queries.append(BenchQuery(kind, owner, images, specs.query_style(owner, rng), filters))
    return queries


def score_chunk(points: np.ndarray, queries: list[BenchQuery], start: int, gamma: float) -> None:
    """Each query's exact nearest-point mean and RKME-CLIP for the LoRAs of one chunk.
    RKME-CLIP (inference_service.scoring.rkme.rkme_clip), batched: mean_ij k(z_i, z_j) -
    2 mean_ij k(z_i, q_j) + mean_jk k(q_j, q_k), k(a, b) = exp(-gamma |a - b|^2), unit vectors."""
    z = points.astype(np.float64)
    sq = np.maximum(2.0 - 2.0 * np.einsum("cpd,cqd->cpq", z, z), 0.0)
    spec_term = np.exp(-gamma * sq).mean(axis=(1, 2))
    stop = start + len(points)
    for query in queries:
        q = query.images.astype(np.float64)
        d2 = np.maximum(2.0 - 2.0 * np.einsum("cpd,jd->cpj", z, q), 0.0)  # (c, P, Q)
        assert query.nearest is not None
        assert query.rkme is not None
        query.nearest[start:stop] = np.sqrt(d2.min(axis=1)).mean(axis=1)
        qq = np.maximum(2.0 - 2.0 * q @ q.T, 0.0)
        query.rkme[start:stop] = (
            spec_term - 2.0 * np.exp(-gamma * d2).mean(axis=(1, 2)) + np.exp(-gamma * qq).mean()
        )


async def load_specs(
    url: str,
    specs: SyntheticSpecs,
    queries: list[BenchQuery],
    catalog: Catalog,
    gamma: float,
    progress: Progress,
) -> float:
    """LoRAs, the platform prompts and every spec point by binary COPY, scoring each chunk for
    every query on the way; returns the load's seconds (scoring included)."""
    n, p = specs.n_loras, specs.shape.points_per_lora
    for query in queries:
        query.nearest, query.rkme = np.zeros(n), np.zeros(n)
    started = time.perf_counter()
    rng = np.random.default_rng([specs.seed, 3])
    async with await psycopg.AsyncConnection.connect(url) as conn:
        await register_vector_async(conn)
        async with conn.cursor() as cur:
            async with cur.copy("COPY loras (slug, name, base_model, nsfw, status) FROM STDIN") as copy:
                for i in range(n):
                    status = "active" if catalog.active[i] else "taken_down"
                    await copy.write_row(
                        (f"spec-{i:07d}", f"Spec {i}", catalog.base_model[i], bool(catalog.nsfw[i]), status)
                    )
            await cur.execute("SELECT id FROM loras WHERE slug LIKE 'spec-%%' ORDER BY slug")
            ids = [int(r[0]) for r in await cur.fetchall()]
            # The platform prompt set (a LoRA's points: one per prompt); the candidate step never
            # reads the text features.
            prompt_ids = []
            for local_id, text in enumerate(PLATFORM_PROMPTS[:p]):
                await cur.execute(
                    "INSERT INTO prompts (lora_id, local_id, text, text_feature)"
                    " VALUES (NULL, %s, %s, %s) RETURNING id",
                    (local_id, text, _unit(rng.standard_normal(8)).astype(np.float32)),
                )
                row = await cur.fetchone()
                assert row is not None
                prompt_ids.append(int(row[0]))
            chunk = 500
            for start in range(0, n, chunk):
                stop = min(start + chunk, n)
                points = specs.points(start, stop)
                async with cur.copy(
                    "COPY spec_points (lora_id, prompt_id, n, blob_key, image_feature)"
                    " FROM STDIN WITH (FORMAT BINARY)"
                ) as copy:
                    copy.set_types(["int8", "int8", "int4", "text", "vector"])
                    for lora, lora_points in zip(ids[start:stop], points, strict=True):
                        for j, point in enumerate(lora_points):
                            await copy.write_row(
                                (lora, prompt_ids[j % len(prompt_ids)], j // len(prompt_ids), "", point)
                            )
                score_chunk(points, queries, start, gamma)
                progress("load + score", stop, n)
        await conn.commit()
    return time.perf_counter() - started


def make_catalog(n: int, seed: int) -> Catalog:
    rng = np.random.default_rng([seed, 4])
    base = [BASE_MODELS[i] for i in rng.choice(len(BASE_MODELS), n, p=BASE_WEIGHTS)]
    return Catalog(base, rng.random(n) < NSFW_FRACTION, rng.random(n) >= TAKEN_DOWN_FRACTION)
