"""Two-stage exact top-k over candidate sources with lower/upper bounds (docs/design.md 5).

Several sources may feed one ranking: a fused search takes the union of the style-distance and
RKME candidates and scores the fused value on it; a source that cannot bound that score gives
lower bound -inf and a budget instead. Within a request, asking the sources is timed as the
"walk" stage and exact scoring as "rerank" (inference_service.timing).
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from inference_service.timing import count, stage


@dataclass(frozen=True)
class CandidateBatch:
    lora_ids: np.ndarray  # int64
    lower: np.ndarray  # lower bound of each candidate's score
    upper: np.ndarray  # upper bound of each candidate's score (inf when unknown)
    frontier: float  # lower bound of every candidate not yielded yet; inf: exhausted


class CandidateSource(Protocol):
    name: str

    async def next_batch(self) -> CandidateBatch:
        """The next candidates (any order, repeats allowed); a batch with frontier inf is the last."""
        ...


# Exact scores of some LoRAs (lower is better); ids it does not return are not rankable.
ExactScorer = Callable[[Sequence[int]], Awaitable[dict[int, float]]]


@dataclass
class RankStats:
    candidates: int = 0  # distinct candidates the sources yielded
    scored: int = 0  # exact scores computed
    batches: int = 0  # source round trips
    score_calls: int = 0  # scorer round trips
    exhausted: bool = False  # every source ran out (small or heavily filtered catalog)
    per_source: dict[str, int] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)  # source-specific facts


class _KSmallest:
    """The k smallest values seen, with the k-th as the pruning threshold."""

    def __init__(self, k: int) -> None:
        self.k = k
        self.values = np.empty(0)

    def add(self, values: np.ndarray) -> None:
        if len(values):
            both = np.concatenate([self.values, values])
            self.values = both if len(both) <= self.k else np.partition(both, self.k - 1)[: self.k]

    @property
    def threshold(self) -> float:
        return float(self.values.max()) if len(self.values) == self.k else math.inf


async def rank_two_stage(
    sources: Sequence[CandidateSource],
    scorer: ExactScorer,
    k: int,
    *,
    chunk: int = 256,
    first_chunk: int | None = None,
) -> tuple[list[tuple[int, float]], RankStats]:
    """The exact top-k (id, score) ascending, ties by id, as an exhaustive ranking would give if
    each source's order and bounds hold; with stats on how much work it took.

    Scoring rounds start at `first_chunk` candidates (default: `chunk`; at least k) and double up
    to `chunk`: the first round's exact scores set the pruning threshold, so a small first round
    leaves most of the remaining candidates above the cut, unscored."""
    stats = RankStats(per_source={s.name: 0 for s in sources})
    frontiers = dict.fromkeys(range(len(sources)), -math.inf)
    # Unscored candidates from `start` on, ascending by (lower bound, id).
    pending_lower, pending_ids, start = np.empty(0), np.empty(0, np.int64), 0
    bound_top = _KSmallest(k)  # of upper bounds: the true k-th best is at most its threshold
    exact_top = _KSmallest(k)
    # Exact scores as arrays, and every id yielded so far: numpy, where a dict, a set and a sort
    # of Python tuples were a tenth of a single-image search at 100k LoRAs.
    scored_ids, scored_values = [np.empty(0, np.int64)], [np.empty(0)]
    seen = np.empty(0, np.int64)

    def threshold() -> float:
        return min(bound_top.threshold, exact_top.threshold)

    size = max(1, min(chunk, max(k, first_chunk or chunk)))  # under k nothing can be cut

    while True:
        # Score the most promising pending candidates while any can still enter the top k. The
        # threshold only falls, so the candidates stay sorted from one batch to the next: sorting
        # them again every round took 40 ms of a search that scored 10k of 12k candidates.
        while start < len(pending_ids):
            stop = min(start + size, len(pending_ids))
            end = start + int(np.searchsorted(pending_lower[start:stop], threshold(), side="right"))
            if end == start:  # the least bound left is above the cut: none can enter
                start = len(pending_ids)
                break
            ids = pending_ids[start:end].tolist()
            start = end
            size = min(chunk, 2 * size)
            with stage("rerank"):
                found = await scorer(ids)
            stats.score_calls += 1
            stats.scored += len(ids)
            rankable = [i for i in ids if i in found]
            exact_ids = np.asarray(rankable, dtype=np.int64)
            exact = np.fromiter((found[i] for i in rankable), dtype=np.float64, count=len(rankable))
            scored_ids.append(exact_ids)
            scored_values.append(exact)
            exact_top.add(exact)
        open_sources = [n for n, f in frontiers.items() if f != math.inf]
        if not open_sources or min(frontiers[n] for n in open_sources) > threshold():
            stats.exhausted = not open_sources
            break
        # Ask the source whose frontier is lowest: it bounds what is still unseen.
        index = min(open_sources, key=lambda n: frontiers[n])
        with stage("walk"):
            batch = await sources[index].next_batch()
        stats.batches += 1
        frontiers[index] = batch.frontier
        batch_ids = np.asarray(batch.lora_ids, dtype=np.int64)
        # Positions in the batch of ids never seen before (the first of any repeats), in order.
        fresh = np.sort(np.unique(batch_ids, return_index=True)[1])
        fresh = fresh[~np.isin(batch_ids[fresh], seen)]
        seen = np.concatenate([seen, batch_ids[fresh]])
        stats.per_source[sources[index].name] += len(fresh)
        upper = np.asarray(batch.upper, dtype=np.float64)[fresh]
        bound_top.add(upper[np.isfinite(upper)])
        lower = np.concatenate([pending_lower[start:], np.asarray(batch.lower, dtype=np.float64)[fresh]])
        ids_left = np.concatenate([pending_ids[start:], batch_ids[fresh]])
        order = np.lexsort((ids_left, lower))
        pending_lower, pending_ids, start = lower[order], ids_left[order], 0
    stats.candidates = len(seen)
    count("candidates", stats.candidates)
    count("scored", stats.scored)
    ids, values = np.concatenate(scored_ids), np.concatenate(scored_values)
    top = np.lexsort((ids, values))[:k]  # by score, ties by id
    return list(zip(ids[top].tolist(), values[top].tolist(), strict=True)), stats
