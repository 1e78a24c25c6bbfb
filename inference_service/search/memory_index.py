"""The centroid index held in the service's memory, kept current by the catalog generation
(migration 010; docs/design.md 5, "Memory index").

A search calls `sync(conn)` first, on its own search connection (one REPEATABLE READ snapshot):
it reads the snapshot's catalog generation and returns the view of exactly that generation, after
applying what committed since the index's own (a few rows: deltas), or None when the index
cannot match the snapshot (not built yet, rebuilding, or the snapshot is older than the index);
the search then walks pgvector as before. A view equals the snapshot's summaries, so a taken-down
LoRA is gone from the very search whose snapshot saw the takedown, and no view ever mixes two
style encoders (an activation rewrites every summary in the transaction that switches the label
the search's guard checks). Exact d_avg comes from the view's own copy of the kept references
(search/memory_refs.py) while they fit `IndexConfig.references_mb`, else from PostgreSQL
(db.ranking.d_avg_of).

Concurrency: searches share one event loop. Views are immutable (rows in append-only buffers,
each view with its own alive mask), and a delta is applied without an await, so a search never
sees a half-applied one. Loads, graph builds and graph additions run in threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import structlog

from db import summaries
from db.database import Connection, Database
from db.encoders import Guard, LabelGuard
from db.summaries import ReferenceBlocks, SummaryArrays, SummaryChanges
from inference_service.search.memory_refs import ReferenceColumns, grown_buffer
from inference_service.search.memory_view import CentroidView, HnswGraph

if TYPE_CHECKING:
    from inference_service.config import Settings

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class IndexConfig:
    exact_below: int = 120_000  # fewer admitted LoRAs: exact scan even for one image (bench crossover)
    # A delta of more rows (changed + removed) than max(delta_rows, delta_fraction x live rows) is
    # not applied: the index is rebuilt in the background and searches walk pgvector meanwhile.
    # As many dead rows (superseded by deltas) trigger a rebuild too, while the index serves on.
    delta_rows: int = 20_000
    delta_fraction: float = 0.05
    retry_s: float = 30.0  # after a failed build
    # The kept references are held too (exact d_avg in numpy, search/memory_refs.py) when they
    # take at most this many MB at load; 0: never. Otherwise PostgreSQL scores the candidates.
    references_mb: int = 4096

    @classmethod
    def from_settings(cls, settings: Settings) -> IndexConfig:
        return cls(
            exact_below=settings.centroid_index_exact_below,
            delta_rows=settings.centroid_index_delta_rows,
            delta_fraction=settings.centroid_index_delta_fraction,
            references_mb=settings.centroid_index_references_mb,
        )

    def most_changes(self, live: int) -> int:
        return max(self.delta_rows, int(self.delta_fraction * live))


class _Columns:
    """Append-only rows: views hold slices [:n] that later appends never write into (a full
    buffer is copied into a larger one; old views keep the old one)."""

    def __init__(self, rows: SummaryArrays) -> None:
        n, dim = rows.centroids.shape
        self.n, self.dim = 0, dim
        capacity = n + max(1024, n // 8)
        self.lora_ids = np.empty(capacity, np.int64)
        self.centroids = np.empty((capacity, dim), np.float32)
        self.by_dim = np.empty((dim, capacity), np.float32)  # the same, a row per dimension
        self.sqnorm = np.empty(capacity, np.float32)  # |c|^2 summed in float64, rounded once
        self.mean_radius = np.empty(capacity, np.float32)
        self.mean_sq_radius = np.empty(capacity, np.float32)
        self.searchable = np.empty(capacity, bool)
        self.nsfw = np.empty(capacity, bool)
        self.base_code = np.empty(capacity, np.int32)
        self.base_names: list[str] = []
        self._codes: dict[str, int] = {}
        self.append(rows)

    _ARRAYS = (
        "lora_ids",
        "centroids",
        "sqnorm",
        "mean_radius",
        "mean_sq_radius",
        "searchable",
        "nsfw",
        "base_code",
    )

    def append(self, rows: SummaryArrays) -> None:
        start, stop = self.n, self.n + len(rows)
        for name in self._ARRAYS:
            setattr(self, name, grown_buffer(getattr(self, name), start, stop))
        if self.by_dim.shape[1] < len(self.centroids):  # grown as the rows were, along its columns
            by_dim = np.empty((self.dim, len(self.centroids)), np.float32)
            by_dim[:, :start] = self.by_dim[:, :start]
            self.by_dim = by_dim
        for name in rows.base_model:
            self._codes.setdefault(name, len(self._codes))
        if len(self.base_names) < len(self._codes):
            self.base_names = list(self._codes)
        centroids = rows.centroids.astype(np.float32, copy=False)
        self.lora_ids[start:stop] = rows.lora_ids
        self.centroids[start:stop] = centroids
        self.by_dim[:, start:stop] = centroids.T
        wide = centroids.astype(np.float64)
        self.sqnorm[start:stop] = np.einsum("ij,ij->i", wide, wide)
        self.mean_radius[start:stop] = rows.mean_radius
        self.mean_sq_radius[start:stop] = rows.mean_sq_radius
        self.searchable[start:stop] = rows.searchable
        self.nsfw[start:stop] = rows.nsfw
        self.base_code[start:stop] = [self._codes[b] for b in rows.base_model]
        self.n = stop

    def view(
        self,
        generation: int,
        alive: np.ndarray,
        graph: HnswGraph,
        exact_below: int,
        references: ReferenceColumns | None,
    ) -> CentroidView:
        n = self.n
        return CentroidView(
            generation,
            self.lora_ids[:n],
            self.centroids[:n],
            self.by_dim[:, :n],
            self.sqnorm[:n],
            self.mean_radius[:n],
            self.mean_sq_radius[:n],
            self.searchable[:n],
            self.nsfw[:n],
            self.base_code[:n],
            tuple(self.base_names),
            alive,
            graph,
            exact_below,
            None if references is None else references.view(),
        )


class _Lineage:
    """One full load and the deltas applied to it since: the rows, the graph over them, and
    where each LoRA's current row is (the load's rows by sorted id, appended rows by dict)."""

    def __init__(self, rows: SummaryArrays, blocks: ReferenceBlocks | None) -> None:
        self.columns = _Columns(rows)
        dim = rows.centroids.shape[1]
        self.references = None if blocks is None else ReferenceColumns(rows.lora_ids, blocks, dim)
        self.graph = HnswGraph.over(rows.centroids)
        self.sorted_rows = np.argsort(rows.lora_ids, kind="stable")
        self.sorted_ids = rows.lora_ids[self.sorted_rows]
        self.appended: dict[int, int] = {}
        self.dead = 0

    def rows_of(self, lora_ids: np.ndarray) -> np.ndarray:
        """Every row that ever held one of these LoRAs (dead ones included)."""
        at = np.searchsorted(self.sorted_ids, lora_ids)
        at = at[at < len(self.sorted_ids)]
        loaded = self.sorted_rows[at][np.isin(self.sorted_ids[at], lora_ids)]
        later = [self.appended[i] for i in lora_ids.tolist() if i in self.appended]
        return np.concatenate([loaded, np.asarray(later, dtype=np.int64)]).astype(np.int64)


def standalone_view(rows: SummaryArrays, blocks: ReferenceBlocks | None, exact_below: int) -> CentroidView:
    """A view of `rows` with no database behind it (generation 0, every row alive), built as the
    index builds one (graph included: slow, call it in a thread): bench crossover times it."""
    lineage = _Lineage(rows, blocks)
    return lineage.columns.view(0, np.ones(len(rows), bool), lineage.graph, exact_below, lineage.references)


class CentroidIndex:
    """The in-memory centroid index of one service: `start()` builds it in the background,
    `sync(conn)` gives each search the view of its snapshot (or None: walk pgvector)."""

    def __init__(self, db: Database, config: IndexConfig | None = None) -> None:
        self.db = db
        self.config = config or IndexConfig()
        self._view: CentroidView | None = None
        self._lineage: _Lineage | None = None
        self._building: asyncio.Task[None] | None = None
        self._extending: asyncio.Task[None] | None = None
        self._closed = False
        self._failed_at = -float("inf")
        self._tasks: set[asyncio.Task[None]] = set()
        self.rebuilds = 0  # builds finished, the first included

    @property
    def ready(self) -> bool:
        return self._view is not None

    @property
    def view(self) -> CentroidView | None:
        """The newest view (None while not built or stale)."""
        return self._view

    def start(self) -> None:
        """Build in the background (searches walk pgvector until it is ready)."""
        if self._closed:
            return
        if self._building is None and time.monotonic() - self._failed_at >= self.config.retry_s:
            self._building = self._spawn(self._build_in_background())

    async def wait_ready(self) -> None:
        """Until the build and the graph additions under way (if any) have finished."""
        while (task := self._building or self._extending) is not None:
            await asyncio.shield(task)

    async def build(self) -> CentroidView:
        """Read every summary in one snapshot and build the index now; installs and returns it."""
        started = time.perf_counter()
        async with self.db.connection() as conn:
            await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            generation, rows = await summaries.load_summaries(conn)
            blocks = await self._load_references(conn, rows.centroids.shape[1])
        loaded = time.perf_counter()
        lineage = await asyncio.to_thread(_Lineage, rows, blocks)
        view = lineage.columns.view(
            generation, np.ones(len(rows), bool), lineage.graph, self.config.exact_below, lineage.references
        )
        self._lineage, self._view = lineage, view
        self.rebuilds += 1
        log.info(
            "centroid_index_built",
            rows=len(rows),
            searchable=int(np.count_nonzero(rows.searchable)),
            references=None if blocks is None else int(blocks.counts.sum()),
            generation=generation,
            load_s=round(loaded - started, 3),
            build_s=round(time.perf_counter() - loaded, 3),
        )
        return view

    async def current(self, guard: Guard | None) -> CentroidView | None:
        """The newest view when it is the catalog's current generation and scores in memory (it
        holds the references), read with the guard's label by one statement in one round trip:
        a search then needs no other (sync's snapshot took three). None otherwise (the catalog
        changed, a guard of another kind...): sync instead. Raises EncoderChanged as the guard."""
        view = self._view
        if view is None or view.references is None or not (guard is None or isinstance(guard, LabelGuard)):
            return None
        generation, active = await summaries.generation_and_label(self.db)
        if guard is not None:
            guard.verify(active)
        return view if generation == view.generation else None

    async def sync(self, conn: Connection) -> CentroidView | None:
        """The view of `conn`'s snapshot (its transaction must be REPEATABLE READ, so the
        exact scoring that follows reads the same catalog), or None when there is none."""
        view = self._view
        if view is None:
            self.start()
            return None
        generation = await summaries.catalog_generation(conn)
        if generation == view.generation:
            return view
        if generation < view.generation:  # an older snapshot than the index: not this one's view
            return None
        limit = self.config.most_changes(view.live)
        dim = view.centroids.shape[1]
        changes = await summaries.summary_changes(conn, view.generation, dim=dim, limit=limit)
        current = self._view  # another search may have moved it meanwhile
        if changes is None:
            if current is view:
                self._go_stale(f"more than {limit} rows changed after generation {view.generation}")
            return None
        if current is None or not changes.since <= current.generation <= generation:
            return None
        blocks = None
        if self._lineage is not None and self._lineage.references is not None and len(changes.changed):
            blocks = await summaries.load_reference_blocks(conn, dim, changes.changed.lora_ids)
            current = self._view  # the await may have let another search move it again
            if current is None or not changes.since <= current.generation <= generation:
                return None
        if current.generation < generation:
            current = self._apply(current, changes, blocks, generation)
        return current

    async def aclose(self) -> None:
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._view = self._lineage = None

    # --- inside ---------------------------------------------------------------------------

    def _spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _build_in_background(self) -> None:
        try:
            await self.build()
        except Exception as exc:  # never fatal: searches walk pgvector, and a later search retries
            self._failed_at = time.monotonic()
            log.warning(
                "centroid_index_build_failed",
                error=type(exc).__name__,
                detail=str(exc).splitlines()[0] if str(exc) else "",
                retry_in_s=self.config.retry_s,
            )
        finally:
            self._building = None

    def _go_stale(self, why: str) -> None:
        """Drop the index (its memory too) and rebuild; searches walk pgvector meanwhile."""
        log.info("centroid_index_stale", reason=why)
        self._view = self._lineage = None
        self.start()

    async def _load_references(self, conn: Connection, dim: int) -> ReferenceBlocks | None:
        """Every kept reference when they fit `references_mb`, else None (PostgreSQL scores)."""
        if self.config.references_mb <= 0:
            return None
        need = await summaries.kept_reference_bytes(conn, dim)
        if need > self.config.references_mb * 2**20:
            log.info(
                "centroid_index_references_in_database",
                need_mb=need >> 20,
                limit_mb=self.config.references_mb,
            )
            return None
        return await summaries.load_reference_blocks(conn, dim)

    def _apply(
        self, view: CentroidView, changes: SummaryChanges, blocks: ReferenceBlocks | None, generation: int
    ) -> CentroidView:
        """The view of `generation`: `view` (the newest) with what `changes` holds after its own
        generation. No await: the new view is installed before any other search runs."""
        lineage = self._lineage
        assert lineage is not None
        assert len(view) == lineage.columns.n
        changed = changes.changed.take(changes.changed.generation > view.generation)
        removed = changes.removed[changes.removed[:, 1] > view.generation, 0]
        alive = view.alive.copy()
        if changes.truncated > view.generation:
            alive[:] = False
        gone = lineage.rows_of(np.concatenate([changed.lora_ids, removed]))
        alive[gone] = False
        lineage.dead += view.live - int(np.count_nonzero(alive))
        start = lineage.columns.n
        lineage.columns.append(changed)
        if lineage.references is not None and len(changed):
            if blocks is None:  # a rebuild that holds references replaced the lineage meanwhile
                raise RuntimeError("changed summaries arrived without their references")
            lineage.references.append(changed.lora_ids, blocks)
        lineage.appended.update(zip(changed.lora_ids.tolist(), range(start, lineage.columns.n), strict=True))
        alive = np.concatenate([alive, np.ones(len(changed), bool)])
        new = lineage.columns.view(
            generation, alive, lineage.graph, self.config.exact_below, lineage.references
        )
        self._view = new
        log.debug(
            "centroid_index_delta",
            generation=generation,
            changed=len(changed),
            removed=len(removed),
            truncated=changes.truncated > view.generation,
        )
        if self._extending is None:
            self._extending = self._spawn(self._extend_graph(lineage))
        if lineage.dead > self.config.most_changes(new.live):
            log.info("centroid_index_compacting", dead=lineage.dead, live=new.live)
            lineage.dead = 0  # one rebuild per crossing
            self.start()
        return new

    async def _extend_graph(self, lineage: _Lineage) -> None:
        """Add appended rows to the graph in a thread; walks wait (scan exactly) meanwhile."""
        graph = lineage.graph
        try:
            while graph.rows < lineage.columns.n and lineage is self._lineage and not graph.failed:
                block = lineage.columns.centroids[graph.rows : lineage.columns.n].copy()
                graph.busy = True
                try:
                    await asyncio.to_thread(graph.add, block)
                except BaseException:
                    graph.failed = True  # the graph may hold part of the block: never walked again
                    raise
                finally:
                    graph.busy = False
        finally:
            self._extending = None
            current = self._lineage  # a rebuild may have replaced `lineage` meanwhile
            if current is not None and current.graph.rows < current.columns.n and not self._closed:
                self._extending = self._spawn(self._extend_graph(current))
