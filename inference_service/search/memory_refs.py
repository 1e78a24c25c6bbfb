"""Each LoRA's kept references in the service's memory, row by row beside the centroid index's
columns (search/memory_index.py): a search's candidates are scored exactly in numpy, where a
PostgreSQL round trip reading ~30 reference rows per candidate cost most of a search.

Held as float32 (halfvec widens exactly), only while they fit `IndexConfig.references_mb`; above
it, exact scoring stays in PostgreSQL (db.ranking.d_avg_of). Not float16: numpy widens half
precision element by element, which took 6x the rest of the scoring, and torch's vectorised
widening runs on its thread pool, whose spinning workers starved the database of the 2 cores.
The buffers are append-only like the index's columns: a LoRA whose summary changes gets a new
row and a new block, so a view's rows and blocks never change under it.
"""

from __future__ import annotations

from dataclasses import dataclass

import faiss
import numpy as np

from db.summaries import ReferenceBlocks


@dataclass(frozen=True)
class ReferenceView:
    """The references of a view's rows: row r owns embeddings[offset[r] : offset[r] + count[r]]."""

    embeddings: np.ndarray  # (references, dim) float32
    offset: np.ndarray  # int64 per row
    count: np.ndarray  # int64 per row

    @property
    def nbytes(self) -> int:
        return int(self.embeddings.nbytes + self.offset.nbytes + self.count.nbytes)

    def d_avg(self, rows: np.ndarray, queries: np.ndarray) -> np.ndarray:
        """d_avg of each row's LoRA: the mean over its references of the mean over the query
        images of |q_i - r|, in float32 per distance and float64 for the means, as
        db.ranking.d_avg_sql computes it (pgvector sums the squares in float32)."""
        counts = self.count[rows]
        if len(rows) == 0:
            return np.empty(0)
        if not np.all(counts > 0):
            raise ValueError("a row without references has no d_avg")
        ends = np.cumsum(counts)
        firsts = ends - counts
        picked = np.repeat(self.offset[rows] - firsts, counts) + np.arange(int(ends[-1]))
        squared = indexed_sq_distances(self.embeddings, picked, queries)
        np.sqrt(squared, out=squared)
        total = squared.sum(axis=0, dtype=np.float64) / len(squared)
        means: np.ndarray = np.add.reduceat(total, firsts) / counts
        return means


def indexed_sq_distances(embeddings: np.ndarray, picked: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """|q_i - embeddings[picked[j]]|^2 in float32, (images, len(picked)), read in place by faiss
    (each a float32 sum of squared differences): gathering the rows first and subtracting in numpy
    took 5x as long (0.83 against 0.15 ms for 180 LoRAs of 30 references)."""
    images = np.ascontiguousarray(queries, dtype=np.float32)
    if embeddings.dtype != np.float32 or not embeddings.flags.c_contiguous:
        raise ValueError("references must be C-contiguous float32")
    ids = np.ascontiguousarray(np.tile(picked.astype(np.int64, copy=False), len(images)))
    out = np.empty((len(images), len(picked)), np.float32)
    # faiss splits the images over OpenMP threads; one parallel region per scoring call costs more
    # than these few thousand rows, and waits for a busy core under load (8 ms measured while
    # another process held both). The setting is this thread's own: graph builds in other threads
    # keep every core.
    faiss.omp_set_num_threads(1)
    faiss.fvec_L2sqr_by_idx(
        faiss.swig_ptr(out),
        faiss.swig_ptr(images),
        faiss.swig_ptr(embeddings),
        faiss.swig_ptr(ids),
        embeddings.shape[1],
        len(images),
        len(picked),
    )
    return out


class ReferenceColumns:
    """Append-only reference blocks aligned with the index's rows (search/memory_index._Columns)."""

    def __init__(self, row_ids: np.ndarray, blocks: ReferenceBlocks, dim: int) -> None:
        total = int(blocks.counts.sum())
        self.embeddings = np.empty((total + max(30 * 1024, total // 8), dim), np.float32)
        self.offset = np.empty(len(row_ids) + max(1024, len(row_ids) // 8), np.int64)
        self.count = np.empty_like(self.offset)
        self.size = 0  # references held
        self.n = 0  # rows
        self.append(row_ids, blocks)

    def append(self, row_ids: np.ndarray, blocks: ReferenceBlocks) -> None:
        """The blocks of `row_ids` (new rows, in row order); every row must have a block."""
        at = {lora_id: i for i, lora_id in enumerate(blocks.lora_ids.tolist())}
        missing = [i for i in row_ids.tolist() if i not in at]
        if missing:
            raise ValueError(f"no kept references for LoRA(s) {missing[:5]} that have a summary")
        block = np.asarray([at[i] for i in row_ids.tolist()], dtype=np.int64)
        starts = np.cumsum(blocks.counts) - blocks.counts
        counts = blocks.counts[block]
        # Copy each row's block to the buffer's end, in row order.
        firsts = np.cumsum(counts) - counts
        picked = np.repeat(starts[block] - firsts, counts) + np.arange(int(counts.sum()))
        rows_stop, refs_stop = self.n + len(row_ids), self.size + len(picked)
        self.offset = grown_buffer(self.offset, self.n, rows_stop)
        self.count = grown_buffer(self.count, self.n, rows_stop)
        self.embeddings = grown_buffer(self.embeddings, self.size, refs_stop)
        for start in range(0, len(picked), _COPY_ROWS):  # widened a slice at a time: no full copy
            part = picked[start : start + _COPY_ROWS]
            self.embeddings[self.size + start : self.size + start + len(part)] = blocks.embeddings[part]
        self.offset[self.n : rows_stop] = self.size + firsts
        self.count[self.n : rows_stop] = counts
        self.n, self.size = rows_stop, refs_stop

    def view(self) -> ReferenceView:
        return ReferenceView(self.embeddings[: self.size], self.offset[: self.n], self.count[: self.n])


_COPY_ROWS = 1 << 18


def grown_buffer(buffer: np.ndarray, used: int, needed: int) -> np.ndarray:
    """`buffer`, or a larger copy of its first `used` rows when `needed` does not fit (views keep
    slices of the old one): the append-only growth of the index's columns and of these blocks."""
    if needed <= len(buffer):
        return buffer
    grown = np.empty((max(needed, len(buffer) * 3 // 2), *buffer.shape[1:]), buffer.dtype)
    grown[:used] = buffer[:used]
    return grown
