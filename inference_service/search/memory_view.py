"""One generation of the in-memory centroid index and the candidate sources over it.

A CentroidView is immutable: the index (search/memory_index.py) makes a new one for every
generation it reaches, and a search keeps the one that matches its snapshot for all its batches.
Its sources keep the contract of inference_service/scoring/two_stage.CandidateSource with the
bounds of db.ranking.nearest_centroids (search/centroid_hnsw.centroid_bounds), so the exact
scoring in PostgreSQL (db.ranking.d_avg_of) and rank_two_stage are unchanged:

- ExactScan: every admitted centroid, in increasing mean_i |c - q_i| (the per-image lower bound
  itself, far tighter than the mean-query walk), frontier = the next lower bound not yielded.
  Exact. Several images, few admitted rows (a small catalog, a narrow filter).
- HnswWalk: faiss HNSW around the single query image, k doubling per batch (efSearch
  TwoStageOptions.memory_ef_search over the admitted share), rows not admitted skipped through a
  bitmap selector, frontier = the last distance returned. Approximate as any HNSW walk (a missed
  lookalike family is one the beam never reached, not a row the graph cannot reach). One image
  whose filters admit MIN_WALK_SHARE of the graph and enough rows (exact_below, each counted at
  the admitted share).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property

import faiss
import numpy as np

from db.filters import Filters
from db.ranking import vectors
from inference_service.scoring.two_stage import CandidateBatch
from inference_service.search.centroid_hnsw import (
    Beam,
    build_hnsw,
    centroid_bounds,
    graph_bytes,
    lower_slack,
    stored_error,
    walk_ef,
)
from inference_service.search.memory_refs import ReferenceView
from inference_service.search.options import TwoStageOptions

# Work (centroids x query images) above which the exact scan's matrix product leaves the event loop.
_THREAD_ABOVE = 100_000
# The least share of the rows a walk may admit. The beam sees the rows it skips too, so a walk that
# admits a share s widens efSearch to ef / s to find as many admitted rows, costing about 1 / s
# walks; below 0.4 that costs more than the exact scan's one matrix product at 1M rows (15 ms with
# one image, where a whole single-image search with its PostgreSQL scoring took 22).
MIN_WALK_SHARE = 0.4
MAX_CACHED_MASKS = 32  # filter masks a view keeps (each a byte per row)


@dataclass
class HnswGraph:
    """The faiss graph over rows 0..rows-1 of one load and its deltas (row i is label i). Rows
    appended later are added in a thread; meanwhile no walk may run (faiss does not search and
    add at once), so sources scan exactly while `busy`."""

    index: faiss.IndexHNSW
    rows: int
    # max |c - stored c| over the graph's rows (float16 storage): a walk's frontier, a distance
    # to stored vectors, bounds the true distances only once this is subtracted.
    stored_error: float = 0.0
    busy: bool = False
    failed: bool = False  # an add failed half way: never walked again (the next rebuild replaces it)

    @classmethod
    def over(cls, centroids: np.ndarray, *, full_level0: bool = True) -> HnswGraph:
        """A graph over `centroids` (slow: call it in a thread); level 0 as centroid_hnsw.new_hnsw."""
        index = build_hnsw(centroids, full_level0=full_level0)
        return cls(index, len(centroids), stored_error(index, centroids, 0))

    @property
    def walkable(self) -> bool:
        return not (self.busy or self.failed)

    def add(self, centroids: np.ndarray) -> None:
        """Add `centroids` as the graph's next rows (slow: in a thread, while `busy`)."""
        start = self.rows
        self.index.add(np.ascontiguousarray(centroids, dtype=np.float32))
        self.stored_error = max(self.stored_error, stored_error(self.index, centroids, start))
        self.rows = start + len(centroids)


@dataclass(frozen=True)
class CentroidView:
    """The summaries of one catalog generation, row by row: a row of a LoRA that changed or left
    since the load is dead (alive False) and its new row, if any, appended."""

    generation: int
    lora_ids: np.ndarray  # int64
    centroids: np.ndarray  # (n, dim) float32
    # The same centroids, one row per dimension (dim, n; a slice of a wider buffer): the exact
    # scan's product (images x dim) @ (dim x n) runs at 2-4 images in 3.6-4.4 ms at 100k against
    # 5-6.5 for (n x dim) @ (dim x images), which OpenBLAS packs first.
    by_dim: np.ndarray
    sqnorm: np.ndarray  # |c|^2, float32 (summed in float64): what rounded_lower_bounds adds
    mean_radius: np.ndarray  # float32
    mean_sq_radius: np.ndarray  # float32
    searchable: np.ndarray  # bool: loras.status = 'active'
    nsfw: np.ndarray  # bool
    base_code: np.ndarray  # int32 index into base_names
    base_names: tuple[str, ...]
    alive: np.ndarray  # bool, this view's own copy
    graph: HnswGraph
    exact_below: int  # fewer admitted rows than this: ExactScan even for one image
    references: ReferenceView | None = None  # None: PostgreSQL scores the candidates
    # Filter masks, one byte per row each: bounded, since every unknown base model a client names
    # is a filter of its own (1 MB per name at 1M LoRAs, for the view's whole life).
    _masks: dict[tuple[object, ...], np.ndarray] = field(default_factory=dict, compare=False, repr=False)

    def __len__(self) -> int:
        return len(self.lora_ids)

    @property
    def live(self) -> int:
        return int(np.count_nonzero(self.alive))

    @property
    def nbytes(self) -> int:
        """What the view holds: its columns and the faiss graph over the centroids."""
        columns = (
            self.lora_ids,
            self.centroids,
            self.by_dim,
            self.sqnorm,
            self.mean_radius,
            self.mean_sq_radius,
            self.searchable,
            self.nsfw,
            self.base_code,
            self.alive,
        )
        held = 0 if self.references is None else self.references.nbytes
        return sum(a.nbytes for a in columns) + graph_bytes(self.graph.index) + held

    def admitted(self, filters: Filters) -> np.ndarray:
        """Rows db.filters.SUMMARY_FILTER admits, as a mask: live, searchable, base model in the
        filter's compatibility group (or 'other:...' where the group takes those), NSFW allowed."""
        params = filters.params()
        bases = frozenset(params["bases"])
        key = (bases, bool(params["other_bases"]), bool(params["nsfw"]))
        if key not in self._masks:
            mask = self.alive & self.searchable
            if bases:
                allowed = np.array(
                    [b in bases or (key[1] and b.startswith("other:")) for b in self.base_names], dtype=bool
                )
                mask &= allowed[self.base_code]
            if not key[2]:
                mask &= ~self.nsfw
            self._masks[key] = mask
            while len(self._masks) > MAX_CACHED_MASKS:  # the least recently used goes
                del self._masks[next(iter(self._masks))]
        else:
            self._masks[key] = self._masks.pop(key)  # most recently used last
        return self._masks[key]

    def source(
        self, queries: Sequence[np.ndarray], filters: Filters, k: int, options: TwoStageOptions
    ) -> ExactScan | HnswWalk:
        """The candidate source of one search over this view (module docstring)."""
        q = np.stack(vectors(queries))
        admitted = self.admitted(filters)
        walk = HnswWalk(self, admitted, q, k, options) if len(q) == 1 else None
        # A walk admitting a share s of the rows costs about 1 / s unfiltered walks, so its rows
        # count for s each against exact_below (bench crossover: scanning beats walking half of 200k rows).
        if (
            walk is not None
            and walk.share >= MIN_WALK_SHARE
            and walk.count * walk.share >= max(self.exact_below, 1)
            and self.graph.walkable
        ):
            return walk
        return ExactScan(self, np.flatnonzero(admitted), q, k, options, {})

    def bounds_of(self, rows: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return centroid_bounds(
            self.centroids[rows], self.mean_radius[rows], self.mean_sq_radius[rows], queries
        )


def candidate_batch(
    view: CentroidView, rows: np.ndarray, queries: np.ndarray, frontier: float, row_of: dict[int, int]
) -> CandidateBatch:
    """The rows as candidates with their bounds, each remembered in `row_of` for exact scoring."""
    lora_ids = view.lora_ids[rows]
    row_of.update(zip(lora_ids.tolist(), rows.tolist(), strict=True))
    lower, upper = view.bounds_of(rows, queries)
    return CandidateBatch(lora_ids, lower, upper, frontier)


def gathers(rows: int, of: int, images: int) -> bool:
    """Whether rounded_lower_bounds copies its rows out before the product instead of multiplying all
    `of` rows and picking: copying a row costs about seven products of it with one image and four
    with 2-4. At 100k the product of every row took 1.2-1.5 ms with one image and 3.6-4.4 with
    2-4; copying 10 % of the rows took 0.7-0.9 and 2 ms, 20 % 2.5 and 4.4."""
    copy_cost = 7 if images == 1 else 4
    return rows * (copy_cost + 1) < of


def rounded_lower_bounds(view: CentroidView, rows: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """mean_i |c - q_i| of the rows in float32, a bound from below once lower_slack widens it
    (a monotone map: these order the rows as the bounds do), so a LoRA is never ordered after a
    frontier it beats. Through one float32 matrix product: |c|^2 + |q|^2 - 2 c.q less its worst
    rounding. All in float32 (float64 copies of an (images x LoRAs) matrix took twice the
    product): the product's rounding is dim terms of unit roundoff each, the sums and the
    subtraction add a few more, all scaled by |c|^2 + |q|^2; the sqrt and the mean round by a few
    units in the last place, inside lower_slack's 1e-5."""
    gather = gathers(len(rows), len(view), len(queries))
    q = np.ascontiguousarray(queries, dtype=np.float32)
    shrink = np.float32(1.0 - 1.01 * (view.centroids.shape[1] + 8) * float(np.finfo(np.float32).eps) / 2)
    # d2 = shrink (|c|^2 + |q|^2) - 2 c.q, one row per image, each finished in place before the
    # rows are summed into the mean (no (LoRAs x images) temporaries).
    if gather:  # rows copied out of the row-major centroids: picking columns of by_dim is slower
        d2 = np.ascontiguousarray((view.centroids[rows] @ np.ascontiguousarray(-2.0 * q.T)).T)
    else:
        d2 = (-2.0 * q) @ view.by_dim
    shrunk_sqnorm = shrink * (view.sqnorm[rows] if gather else view.sqnorm)
    shrunk_q = shrink * np.einsum("ij,ij->i", q, q)
    for image, row in enumerate(d2):
        row += shrunk_sqnorm
        row += shrunk_q[image]
        np.maximum(row, 0.0, out=row)
        np.sqrt(row, out=row)
    mean: np.ndarray = d2[0] if len(q) == 1 else d2.sum(axis=0) * np.float32(1.0 / len(q))
    return mean if gather else mean[rows]


class ExactScan:
    """Every admitted centroid, in increasing lower bound; batches grow as the pgvector walk's."""

    name = "centroid"
    exact_scan = True

    def __init__(
        self,
        view: CentroidView,
        rows: np.ndarray,
        queries: np.ndarray,
        k: int,
        options: TwoStageOptions,
        row_of: dict[int, int],
    ) -> None:
        self.view, self.queries, self.options = view, queries, options
        self.row_of = row_of  # LoRA id -> the view's row, of every candidate yielded
        self.limit = max(options.first_batch, 2 * k)
        self.remaining = rows
        self.lower: np.ndarray | None = None  # rounded_lower_bounds of `remaining`, once computed
        self.rest: np.ndarray | None = None  # positions in `remaining` not yielded yet, when not all

    async def next_batch(self) -> CandidateBatch:
        if self.lower is None:
            if len(self.remaining) * len(self.queries) > _THREAD_ABOVE:
                self.lower = await asyncio.to_thread(
                    rounded_lower_bounds, self.view, self.remaining, self.queries
                )
            else:
                self.lower = rounded_lower_bounds(self.view, self.remaining, self.queries)
        if self.rest is not None:  # copied only when asked: most searches stop after one batch
            self.remaining, self.lower, self.rest = self.remaining[self.rest], self.lower[self.rest], None
        if len(self.remaining) <= self.limit:
            rows, frontier = self.remaining, math.inf
            self.remaining, self.lower = self.remaining[:0], self.lower[:0]
        else:
            order = np.argpartition(self.lower, self.limit)
            rows, self.rest = self.remaining[order[: self.limit]], order[self.limit :]
            frontier = float(lower_slack(self.lower[order[self.limit : self.limit + 1]])[0])
        self.limit *= self.options.growth
        return candidate_batch(self.view, rows, self.queries, frontier, self.row_of)


class HnswWalk:
    """faiss HNSW around one query image; rows appended since the graph's last add (its tail)
    are yielded whole in the first batch, so the frontier only speaks for rows in the graph.
    Later batches read the first walk's beam while it holds them (centroid_hnsw.Beam)."""

    name = "centroid"

    def __init__(
        self,
        view: CentroidView,
        admitted: np.ndarray,
        query: np.ndarray,
        k: int,
        options: TwoStageOptions,
    ) -> None:
        self.view, self.admitted, self.query, self.options = view, admitted, query, options
        self.count = int(np.count_nonzero(admitted))
        self.share = self.count / max(len(view), 1)  # of the rows the beam passes through
        self.limit = max(options.first_batch, 2 * k)
        self.k = k
        self.yielded = np.zeros(len(view), dtype=bool)
        self.row_of: dict[int, int] = {}  # LoRA id -> the view's row, of every candidate yielded
        self.exact_scan = False
        self.fallback: ExactScan | None = None
        self.beam = Beam()

    @cached_property
    def rows(self) -> np.ndarray:
        """The admitted rows (a walk over a graph that holds them all never needs them)."""
        return np.flatnonzero(self.admitted)

    def _scan_instead(self) -> ExactScan:
        """An exact scan of what is left: the graph is busy, or the walk starved."""
        self.exact_scan = True
        left = self.rows[~self.yielded[self.rows]]
        self.fallback = ExactScan(self.view, left, self.query, self.k, self.options, self.row_of)
        self.fallback.limit = self.limit
        return self.fallback

    async def next_batch(self) -> CandidateBatch:
        graph = self.view.graph
        if self.fallback is None and not graph.walkable:
            self._scan_instead()
        if self.fallback is not None:
            return await self.fallback.next_batch()
        n = len(self.view)
        covered = min(graph.rows, n)
        if covered == n:
            tail, in_graph = np.empty(0, np.int64), self.count
        else:
            tail = self.rows[(self.rows >= covered) & ~self.yielded[self.rows]]
            in_graph = self.count - int(np.count_nonzero(self.rows >= covered))
        labels, dist = self._nearest(covered) if in_graph else (np.empty(0, np.int64), np.empty(0))
        if len(labels) < min(self.limit, in_graph):  # the walk starved before the graph ran out
            return await self._scan_instead().next_batch()
        frontier = (
            math.inf if len(labels) < self.limit else float(lower_slack(dist[-1:])[0]) - graph.stored_error
        )
        self.limit *= self.options.growth
        rows = np.concatenate([labels[~self.yielded[labels]], tail]).astype(np.int64)
        self.yielded[rows] = True
        return candidate_batch(self.view, rows, self.query, frontier, self.row_of)

    def _nearest(self, covered: int) -> tuple[np.ndarray, np.ndarray]:
        """The graph's `limit` admitted rows nearest the query: (rows, distances) ascending, from
        the last walk while it was asked for as many."""
        ef = walk_ef(math.ceil(self.options.memory_ef_search / self.share), self.limit)
        return self.beam.first(self.limit, ef, lambda k, ef: self._walk(covered, k, ef))

    def _walk(self, covered: int, k: int, ef: int) -> tuple[np.ndarray, np.ndarray]:
        """The graph's `k` admitted rows nearest the query (ascending), by a beam of `ef`."""
        graph = self.view.graph
        # The selector's size is in bytes and bounds its ids: labels past `covered` (rows another
        # view appended) are never members.
        bits = np.packbits(self.admitted[:covered], bitorder="little")
        params = faiss.SearchParametersHNSW()
        params.efSearch = ef
        params.sel = faiss.IDSelectorBitmap(len(bits), faiss.swig_ptr(bits))
        dist2, labels = graph.index.search(self.query, k, params=params)
        found = labels[0] >= 0
        return labels[0][found], np.sqrt(np.maximum(dist2[0][found], 0.0))
