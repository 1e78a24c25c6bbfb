"""Two-stage exact top-k over candidate sources with lower/upper bounds (docs/design.md 5).

Several sources may feed one ranking: a fused search takes the union of the style-distance and
RKME candidates and scores the fused value on it; a source that cannot bound that score gives
lower bound -inf and a budget instead. Within a request, asking the sources is timed as the
"walk" stage and exact scoring as "rerank" (inference_service.timing).
"""

from __future__ import annotations

import bisect
import heapq
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


class _TopK:
    """The k smallest (score, id) seen, with the k-th as the pruning threshold."""

    def __init__(self, k: int) -> None:
        self.k = k
        self._heap: list[tuple[float, int]] = []  # max-heap through negation

    def push(self, score: float, lora_id: int) -> None:
        item = (-score, -lora_id)
        if len(self._heap) < self.k:
            heapq.heappush(self._heap, item)
        elif item > self._heap[0]:
            heapq.heapreplace(self._heap, item)

    @property
    def threshold(self) -> float:
        return -self._heap[0][0] if len(self._heap) == self.k else math.inf


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
    pending: list[tuple[float, int]] = []  # (lower bound, id) ascending; unscored from `start` on
    start = 0
    bound_top = _TopK(k)  # from upper bounds: the true k-th best is at most its threshold
    exact_top = _TopK(k)
    scores: dict[int, float] = {}
    seen: set[int] = set()

    def threshold() -> float:
        return min(bound_top.threshold, exact_top.threshold)

    size = max(1, min(chunk, max(k, first_chunk or chunk)))  # under k nothing can be cut

    while True:
        # Score the most promising pending candidates while any can still enter the top k. The
        # threshold only falls, so the candidates stay sorted from one batch to the next: sorting
        # them again every round took 40 ms of a search that scored 10k of 12k candidates.
        while start < len(pending):
            tau = threshold()
            end = bisect.bisect_right(pending, (tau, math.inf), start, min(start + size, len(pending)))
            if end == start:  # the least bound left is above the cut: none can enter
                pending, start = [], 0
                break
            ids = [i for _, i in pending[start:end]]
            start = end
            size = min(chunk, 2 * size)
            with stage("rerank"):
                found = await scorer(ids)
            stats.score_calls += 1
            stats.scored += len(ids)
            for i in ids:
                if i in found:
                    scores[i] = found[i]
                    exact_top.push(found[i], i)
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
        arrived = []
        for i, lb, ub in zip(
            batch.lora_ids.tolist(), batch.lower.tolist(), batch.upper.tolist(), strict=True
        ):
            if i in seen:
                continue
            seen.add(i)
            stats.per_source[sources[index].name] += 1
            arrived.append((lb, i))
            if math.isfinite(ub):
                bound_top.push(ub, i)
        pending, start = sorted(pending[start:] + arrived), 0  # the rest is one sorted run already
    stats.candidates = len(seen)
    count("candidates", stats.candidates)
    count("scored", stats.scored)
    ranked = sorted(scores.items(), key=lambda item: (item[1], item[0]))[:k]
    return ranked, stats
