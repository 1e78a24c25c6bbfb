"""What `bench search` measures the service against, on the same vectors in the same run.

- The exact truth: d_avg top-k of every query in float64, accumulated while the catalog streams
  by chunk by chunk (no SQL scan, no catalog held whole), the yardstick of every path's recall.
- `numpy`: the in-memory exhaustive d_avg someone would write first, every reference in one
  (N, S, 128) float32 array, filters as boolean masks.
- `faiss_hnsw`: the in-memory ANN a team without a database would build: faiss HNSW over the
  centroids (the service's memory index graph, inference_service/search/centroid_hnsw.py: M 64,
  efConstruction 128, level 0's link lists filled), filters as faiss ID selectors, candidates
  reranked exactly in numpy under the service's own bound rule
  (inference_service/scoring/two_stage.py: first batch 256 centroids per query image, doubling
  until no unseen LoRA can enter the top k). Unlike the service's index it is built from the
  synthetic references, without a database.

Memory: the peers hold their arrays in this process, so they run only where those fit a budget
(`plan_peers`); the report says what each would need where it was skipped.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import faiss
import numpy as np
import psutil

from db.filters import Filters
from inference_service.scoring.two_stage import CandidateBatch, RankStats, rank_two_stage
from inference_service.search.centroid_hnsw import (
    HNSW_M,
    Beam,
    build_hnsw,
    centroid_bounds,
    graph_bytes,
    walk_ef,
)
from inference_service.search.centroids import TwoStageOptions
from lab.bench.load import CatalogMeta
from lab.bench.synthetic import SyntheticCatalog, summarise

Ranked = list[tuple[int, float]]  # (synthetic LoRA index, d_avg), ascending, ties by index
KINDS = ("single", "multi", "filtered")
BUDGET_FRACTION = 0.25  # of physical memory, for the in-memory peers' arrays


@dataclass(frozen=True)
class Query:
    embeddings: list[np.ndarray]
    filters: Filters
    kind: str  # single | multi | filtered


def make_queries(
    catalog: SyntheticCatalog, base: list[str], active: np.ndarray, n: int, seed: int
) -> list[Query]:
    """Half single-image queries, a quarter with 2-4 images of one style, a quarter filtered to
    the owner's base model without NSFW."""
    rng = np.random.default_rng(seed + 11)
    owners = rng.choice(np.flatnonzero(active), size=n, replace=n > int(active.sum()))
    queries = []
    for j, owner in enumerate(owners.tolist()):
        kind = ("single", "single", "multi", "filtered")[j % 4]
        images = int(rng.integers(2, 5)) if kind == "multi" else 1
        emb = catalog.queries(np.full(images, owner), rng)
        filters = Filters(base_model=base[owner]) if kind == "filtered" else Filters(allow_nsfw=True)
        queries.append(Query(list(emb), filters, kind))
    return queries


class FilterMasks:
    """The LoRAs a filter admits, as a boolean mask over the synthetic indices: the numpy twin
    of db.filters.LORA_FILTER (active, base-model group, NSFW), one mask per distinct filter."""

    def __init__(self, meta: CatalogMeta) -> None:
        self.base = np.asarray(meta.base_model)
        self.nsfw, self.active = meta.nsfw, meta.active
        self._masks: dict[Filters, np.ndarray] = {}

    def __call__(self, filters: Filters) -> np.ndarray:
        if filters not in self._masks:
            params = filters.params()
            mask = self.active.copy()
            if params["bases"]:
                admitted = np.isin(self.base, params["bases"])
                if params["other_bases"]:
                    admitted |= np.char.startswith(self.base, "other:")
                mask &= admitted
            if not params["nsfw"]:
                mask &= ~self.nsfw
            self._masks[filters] = mask
        return self._masks[filters]

    @property
    def nbytes(self) -> int:
        return sum(m.nbytes for m in self._masks.values())


def top_k(d: np.ndarray, k: int, index: np.ndarray | None = None) -> Ranked:
    """The k smallest finite d ascending, ties by index (default: position)."""
    index = np.arange(len(d)) if index is None else index
    finite = np.isfinite(d)
    d, index = d[finite], index[finite]
    if len(d) > k:
        keep = np.argpartition(d, k - 1)[:k]
        # Keep every tie of the k-th value, so the tie-break by index decides as SQL does.
        keep = np.flatnonzero(d <= d[keep].max())
        d, index = d[keep], index[keep]
    order = np.lexsort((index, d))[:k]
    return [(int(index[i]), float(d[i])) for i in order]


class ExactTruth:
    """The exact d_avg top-k of each query, fed the catalog chunk by chunk (float64)."""

    def __init__(self, queries: Sequence[Query], masks: FilterMasks, k: int) -> None:
        self.k, self.masks, self.queries = k, masks, queries
        self.vectors = np.concatenate([np.stack(q.embeddings) for q in queries]).astype(np.float64)
        self.sq = (self.vectors**2).sum(axis=1)
        self.bounds = np.cumsum([0] + [len(q.embeddings) for q in queries])
        self.best: list[Ranked] = [[] for _ in queries]

    def add(self, start: int, refs: np.ndarray) -> None:
        count, n_refs, dim = refs.shape
        flat = refs.reshape(-1, dim).astype(np.float64)
        d2 = (flat**2).sum(axis=1)[:, None] + self.sq[None, :] - 2.0 * (flat @ self.vectors.T)
        dist = np.sqrt(np.maximum(d2, 0.0)).reshape(count, n_refs, -1).mean(axis=1)
        index = np.arange(start, start + count)
        for j, query in enumerate(self.queries):
            d = dist[:, self.bounds[j] : self.bounds[j + 1]].mean(axis=1)
            d[~self.masks(query.filters)[start : start + count]] = np.inf
            merged = top_k(d, self.k, index) + self.best[j]
            self.best[j] = sorted(merged, key=lambda item: (item[1], item[0]))[: self.k]


@dataclass
class ReferenceStore:
    """Every reference in memory (float32, or float16 where float32 does not fit the budget),
    with the centroid summary the ANN peer's bounds need."""

    refs: np.ndarray  # (N, S, dim)
    radius: np.ndarray = field(init=False)
    sq_radius: np.ndarray = field(init=False)
    centroids: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        n = len(self.refs)
        self.radius = np.empty(n, np.float32)
        self.sq_radius = np.empty(n, np.float32)
        self.centroids = np.empty((n, self.refs.shape[2]), np.float32)

    @classmethod
    def empty(cls, n: int, n_refs: int, dim: int, dtype: np.dtype[Any]) -> ReferenceStore:
        return cls(np.empty((n, n_refs, dim), dtype))

    def add(self, start: int, refs: np.ndarray) -> None:
        stop = start + len(refs)
        self.refs[start:stop] = refs
        # Bounds describe the values held, so float16 storage keeps them valid.
        centroids, radius, sq_radius = summarise(self.refs[start:stop].astype(np.float32))
        self.centroids[start:stop], self.radius[start:stop], self.sq_radius[start:stop] = (
            centroids,
            radius,
            sq_radius,
        )


@dataclass(frozen=True)
class PeerPlan:
    numpy: bool
    faiss: bool
    ref_dtype: str  # float32 | float16 | "" (nothing held)
    budget_bytes: int
    needs_bytes: dict[str, int]
    skipped: dict[str, str]


def hnsw_bytes(n: int, dim: int, m: int = HNSW_M) -> int:
    """faiss IndexHNSWFlat: the vectors, 2m links at level 0 plus m per upper level (1/m of the
    nodes reach level 1, 1/m^2 level 2...), offsets and levels."""
    links = 2 * m + m / (m - 1)
    return int(n * (dim * 4 + links * 4 + 8 + 4))


def plan_peers(mode: str, n: int, n_refs: int, dim: int, budget_bytes: int | None = None) -> PeerPlan:
    """Which peers run: `on` both (float32), `off` neither, `auto` what fits the budget (default
    a quarter of physical memory): both in float32, else the ANN peer alone on float16
    references, else neither."""
    if mode not in ("auto", "on", "off"):
        raise ValueError(f"peers must be auto, on or off, not {mode!r}")
    budget = (
        budget_bytes if budget_bytes is not None else int(BUDGET_FRACTION * psutil.virtual_memory().total)
    )
    refs32 = n * n_refs * dim * 4
    index = hnsw_bytes(n, dim) + 2 * n * 4
    needs = {
        "numpy": refs32 + n * n_refs * 4,
        "faiss_hnsw": refs32 + index,
        "faiss_hnsw_float16": refs32 // 2 + index,
    }
    both = refs32 + n * n_refs * 4 + index  # they share the float32 references
    if mode == "off":
        return PeerPlan(
            False, False, "", budget, needs, dict.fromkeys(("numpy", "faiss_hnsw"), "--peers off")
        )

    def short(key: str) -> str:
        return f"needs {needs[key] / 1e9:.1f} GB (budget {budget / 1e9:.1f} GB)"

    if mode == "on" or both <= budget:
        return PeerPlan(True, True, "float32", budget, needs, {})
    if needs["faiss_hnsw_float16"] <= budget:
        return PeerPlan(False, True, "float16", budget, needs, {"numpy": short("numpy")})
    return PeerPlan(
        False,
        False,
        "",
        budget,
        needs,
        {"numpy": short("numpy"), "faiss_hnsw": short("faiss_hnsw_float16") + " with float16 references"},
    )


def stream_truth(
    catalog: SyntheticCatalog,
    n_refs: int,
    queries: Sequence[Query],
    masks: FilterMasks,
    k: int,
    store: ReferenceStore | None,
    progress: Callable[[int], None] = lambda done: None,
) -> tuple[list[Ranked], float]:
    """The exact truth of every query (and the peers' store filled, when given) in one pass
    over the catalog; with the seconds it took."""
    started = time.perf_counter()
    truth = ExactTruth(queries, masks, k)
    for start, refs in catalog.iter_references(n_refs):
        truth.add(start, refs)
        if store is not None:
            store.add(start, refs)
        progress(start + len(refs))
    return truth.best, time.perf_counter() - started


class NumpyExhaustive:
    """d_avg of every LoRA per query from one (N, S, dim) float32 array: |q - r|^2 expanded as
    |r|^2 + |q|^2 - 2 q.r, so each query image is one matrix-vector product over N x S rows."""

    name = "numpy"

    def __init__(self, refs: np.ndarray) -> None:
        started = time.perf_counter()
        self.n, self.n_refs, dim = refs.shape
        self.flat = refs.reshape(-1, dim)
        self.sq = np.einsum("ij,ij->i", self.flat, self.flat)
        self.build_s = time.perf_counter() - started
        self.nbytes = self.flat.nbytes + self.sq.nbytes

    def rank(self, query: Query, mask: np.ndarray, k: int) -> Ranked:
        q = np.stack(query.embeddings).astype(np.float32)
        d2 = self.flat @ q.T
        d2 *= -2.0
        d2 += self.sq[:, None]
        d2 += (q * q).sum(axis=1)[None, :]
        np.sqrt(np.maximum(d2, 0.0, out=d2), out=d2)
        d = d2.reshape(self.n, -1).mean(axis=1)  # mean over references and query images alike
        d[~mask] = np.inf
        return top_k(d, k)


class FaissCentroids:
    """faiss HNSW over the centroids, exact rerank from the reference store; the candidate
    rule, bounds and frontier are the service's (inference_service/search/centroids.py), with
    faiss in place of pgvector. A filtered walk that returns fewer centroids than asked (faiss
    HNSW drops filtered-out nodes from its result, not from its walk) falls back to faiss's flat
    scan of the admitted centroids, as the service falls back to an exact scan."""

    name = "faiss_hnsw"

    def __init__(self, store: ReferenceStore, options: TwoStageOptions, *, full_level0: bool = True) -> None:
        self.store, self.options = store, options
        dim = store.centroids.shape[1]
        started = time.perf_counter()
        # what a user would build: float32
        self.index = build_hnsw(store.centroids, half=False, full_level0=full_level0)
        self.build_s = time.perf_counter() - started
        self.flat = faiss.downcast_index(self.index.storage)
        # The centroids faiss holds, read in place: the store's copy is dropped, not kept twice.
        self.centroids = faiss.rev_swig_ptr(self.flat.get_xb(), store.centroids.size).reshape(-1, dim)
        store.centroids = np.empty((0, dim), np.float32)
        self._selectors: dict[int, tuple[Any, np.ndarray]] = {}
        self.fallbacks = 0
        self.nbytes = (
            graph_bytes(self.index) + store.refs.nbytes + store.radius.nbytes + store.sq_radius.nbytes
        )

    def selector(self, mask: np.ndarray) -> Any:
        key = id(mask)  # masks are cached per filter, so one selector per distinct filter
        if key not in self._selectors:
            bits = np.packbits(mask, bitorder="little")  # the selector reads it, so keep it alive
            self._selectors[key] = (faiss.IDSelectorBitmap(len(mask), faiss.swig_ptr(bits)), bits)
        return self._selectors[key][0]

    async def rank(self, query: Query, mask: np.ndarray, k: int) -> tuple[Ranked, RankStats]:
        q = np.stack(query.embeddings).astype(np.float32)
        source = _FaissSource(self, q, mask, k)

        async def score(ids: Sequence[int]) -> dict[int, float]:
            refs = self.store.refs[np.asarray(ids, dtype=np.int64)].astype(np.float32)
            dist = np.linalg.norm(refs[:, :, None, :] - q[None, None, :, :], axis=3)
            return dict(zip(ids, dist.mean(axis=(1, 2)).tolist(), strict=True))

        ranked, stats = await rank_two_stage(
            [source], score, k, chunk=self.options.chunk, first_chunk=self.options.first_chunk
        )
        stats.details["exact_scan"] = source.exact_scan
        return [(int(i), float(d)) for i, d in ranked], stats


class _FaissSource:
    name = "centroid"

    def __init__(self, peer: FaissCentroids, q: np.ndarray, mask: np.ndarray, k: int) -> None:
        self.peer, self.q, self.mask = peer, q, mask
        self.limit = max(peer.options.first_batch, 2 * k)
        self.exact_scan = False
        self.beam = Beam()  # one walk per beam, as the service's HnswWalk

    async def next_batch(self) -> CandidateBatch:
        options, selector = self.peer.options, self.peer.selector(self.mask)

        def search(k: int, ef: int) -> tuple[np.ndarray, np.ndarray]:
            params = faiss.SearchParametersHNSW()
            params.efSearch = ef
            params.sel = selector
            dist2, found = self.peer.index.search(self.q, k, params=params)
            return dist2, found

        dist2, found = self.beam.first(self.limit, walk_ef(options.memory_ef_search, self.limit), search)
        if (found < 0).any() and int(self.mask.sum()) > (found >= 0).sum(axis=1).min():
            self.exact_scan = True
            self.peer.fallbacks += 1
            dist2, found = self.peer.flat.search(
                self.q, self.limit, params=faiss.SearchParameters(sel=selector)
            )
        walks = [np.sqrt(np.maximum(d[i >= 0], 0.0)) for d, i in zip(dist2, found, strict=True)]
        frontier = 0.0
        for walk in walks:
            if len(walk) < self.limit:  # this walk saw every admitted LoRA: nothing is unseen
                frontier = math.inf
                break
            frontier += float(walk[-1]) / len(walks)
        self.limit *= options.growth
        ids = np.unique(found[found >= 0])
        store = self.peer.store
        lower, upper = centroid_bounds(
            self.peer.centroids[ids], store.radius[ids], store.sq_radius[ids], self.q
        )
        return CandidateBatch(ids.astype(np.int64), lower, upper, frontier)
