"""The centroid HNSW graph and the centroid bounds on d_avg, in memory: shared by the service's
centroid index (search/memory_index.py) and bench search's faiss peer
(lab/bench/search_peers.FaissCentroids), so both walk the same graph under the same bounds as
db.ranking.nearest_centroids computes in SQL (docs/design.md 5)."""

from __future__ import annotations

from collections.abc import Callable

import faiss
import numpy as np

# Denser than migration 003's pgvector index (32): per millisecond of walk, M 64 misses fewer of a
# far-off query's nearest family (docs/design.md 5, "Memory index"), for 256 more bytes of links
# per LoRA and about a tenth more build time.
HNSW_M = 64
HNSW_EF_CONSTRUCTION = 128
MAX_WALK_EF = 1000  # the candidate list grows with the batch asked, up to this
_ERROR_CHUNK = 65_536  # rows read back at a time by stored_error

# PostgreSQL computes d_avg in float32 (pgvector sums the squares in single precision) and
# stores centroids and radii rounded to float32, so a bound computed exactly can miss the value
# db.ranking.d_avg_of returns by a few 1e-6 (relative). Widening every bound by this much keeps
# it a bound of what is scored; the pruning it costs is invisible.
RELATIVE_SLACK = 1e-5
ABSOLUTE_SLACK = 1e-6


def new_hnsw(dim: int, *, half: bool = True, full_level0: bool = True) -> faiss.IndexHNSW:
    """The graph's index: the vectors stored as float16 (`half`) or float32, level 0's link lists
    filled (`full_level0`, below) or as faiss prunes them. Half precision halves
    the bytes a walk reads per visited row: at 100k rows, efSearch 800, a walk took 1.7-1.9 ms
    against 2.4-2.8 ms in float32, its top 200 the same to 0.998 (docs/benchmarks-search.md).
    Its distances are those of the rounded vectors: walk frontiers subtract stored_error."""
    index: faiss.IndexHNSW
    if half:
        index = faiss.IndexHNSWSQ(dim, faiss.ScalarQuantizer.QT_fp16, HNSW_M)
    else:
        index = faiss.IndexHNSWFlat(dim, HNSW_M)
    index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    # Every row keeps all 2M links at level 0, not only the few (about 29 of 128) that faiss's
    # pruning keeps: a far-off query's beam settles in a shell of nearly equidistant centroids,
    # and the extra links are what cross from that shell into the query's nearest family
    # (docs/design.md 5, "Memory index"). At most half the misses of the true top 10 at 100k-1M, for
    # 1.2x the walk time and about 3x the build time (bench beam --graphs pruned,full).
    index.keep_max_size_level0 = full_level0
    return index


def build_hnsw(centroids: np.ndarray, *, half: bool = True, full_level0: bool = True) -> faiss.IndexHNSW:
    """An HNSW graph over the centroids; row i is label i. Slow (seconds per 100k): call it in a
    thread, never on the event loop."""
    index = new_hnsw(centroids.shape[1], half=half, full_level0=full_level0)
    if len(centroids):
        index.add(np.ascontiguousarray(centroids, dtype=np.float32))
    return index


def stored_error(index: faiss.IndexHNSW, centroids: np.ndarray, start: int) -> float:
    """max |c - stored c| over rows start.. (`centroids` are those rows as added): how far a walk's
    distance, computed on the stored vectors, may exceed the true |q - c| (triangle inequality).
    Read back from faiss, so it is the rounding faiss did, whatever its encoder."""
    worst = 0.0
    for at in range(0, len(centroids), _ERROR_CHUNK):
        block = np.asarray(centroids[at : at + _ERROR_CHUNK], dtype=np.float64)
        stored = index.reconstruct_n(start + at, len(block)).astype(np.float64)
        worst = max(worst, float(np.sqrt(np.max(np.einsum("ij,ij->i", block - stored, block - stored)))))
    return worst


def graph_bytes(index: faiss.IndexHNSW) -> int:
    """Bytes the graph holds: its stored vectors and its links (neighbours, offsets, levels)."""
    hnsw = index.hnsw
    links = 4 * hnsw.neighbors.size() + 8 * hnsw.offsets.size() + 4 * hnsw.levels.size()
    return int(faiss.downcast_index(index.storage).codes.size() + links)


def walk_ef(ef_search: int, limit: int) -> int:
    """efSearch of a walk asking `limit` centroids, as db.ranking.nearest_centroids sets hnsw.ef_search."""
    return max(ef_search, min(limit, MAX_WALK_EF))


class Beam:
    """One walk's results, read again by later batches: faiss explores the same rows for any k up
    to efSearch, so a walk asked for efSearch rows holds the first `limit` of every later batch's
    walk, and only a batch past it walks again (wider). A second batch used to cost a whole walk."""

    def __init__(self) -> None:
        self.found: tuple[np.ndarray, np.ndarray] | None = None  # the walk's two arrays, ascending
        self.asked = 0  # the k that walk was asked for

    def first(
        self, limit: int, ef: int, walk: Callable[[int, int], tuple[np.ndarray, np.ndarray]]
    ) -> tuple[np.ndarray, np.ndarray]:
        """The first `limit` of `walk(k, ef)`'s results (along their last axis), walking only when
        the beam held fewer."""
        if self.found is None or self.asked < limit:
            self.asked = max(limit, ef)  # k up to efSearch: the same rows explored
            self.found = walk(self.asked, ef)
        first, second = self.found
        return first[..., :limit], second[..., :limit]


def lower_slack(distance: np.ndarray) -> np.ndarray:
    return np.asarray(distance * (1.0 - RELATIVE_SLACK) - ABSOLUTE_SLACK, dtype=np.float64)


def upper_slack(distance: np.ndarray) -> np.ndarray:
    return np.asarray(distance * (1.0 + RELATIVE_SLACK) + ABSOLUTE_SLACK, dtype=np.float64)


def centroid_distances(centroids: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """|c - q_i| for every centroid (rows) and query image (columns), in float64 through
    |c|^2 + |q|^2 - 2 c.q (its rounding, ~1e-8 for unit vectors, is inside the slack)."""
    c = np.asarray(centroids, dtype=np.float64)
    q = np.asarray(queries, dtype=np.float64)
    d2: np.ndarray = np.einsum("ij,ij->i", c, c)[:, None] + np.einsum("ij,ij->i", q, q)[None, :]
    d2 -= 2.0 * (c @ q.T)
    np.maximum(d2, 0.0, out=d2)
    np.sqrt(d2, out=d2)
    return d2


def centroid_bounds(
    centroids: np.ndarray, radius: np.ndarray, sq_radius: np.ndarray, queries: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(lower, upper) bounds of d_avg for each centroid's LoRA over the query images:
    mean_i |c - q_i| and mean_i min(|c - q_i| + r, sqrt(|c - q_i|^2 + v)), widened by the slack."""
    d = centroid_distances(centroids, queries)
    r = np.asarray(radius, dtype=np.float64)[:, None]
    v = np.asarray(sq_radius, dtype=np.float64)[:, None]
    upper = np.minimum(d + r, np.sqrt(d**2 + v))
    return lower_slack(d.mean(axis=1)), upper_slack(upper.mean(axis=1))
