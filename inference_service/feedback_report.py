"""Retrieval quality as judged by users: precision@k from 👍/👎 votes.

The paper's human evaluation (Table 2: p@1/5/10 = 0.55/0.42/0.35) had judges rate every one of
the top k results. Users vote on only some results, so a *judging session* is one user's votes
on one search, and p@k of a session is the share of 👍 among its votes on ranks 1..k (sessions
without a vote in the top k do not count for that k). The report averages sessions, overall,
per base model of the voted LoRA, and per ISO week of the session's first vote. Votes are
already one per user, search and LoRA in the database (a new vote replaces the old one).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from db.rows import FeedbackVote

KS = (1, 5, 10)


@dataclass(frozen=True)
class PrecisionRow:
    label: str
    sessions: int
    precision: dict[int, float | None]  # k -> p@k (None: no session voted within the top k)
    judged: dict[int, int]  # k -> sessions that count for p@k


@dataclass(frozen=True)
class FeedbackReport:
    votes: int
    overall: PrecisionRow
    by_base_model: list[PrecisionRow]
    by_week: list[PrecisionRow]


def _sessions(votes: Iterable[FeedbackVote]) -> dict[tuple[str, str], list[FeedbackVote]]:
    grouped: dict[tuple[str, str], list[FeedbackVote]] = defaultdict(list)
    for vote in votes:
        grouped[(vote.search_id, vote.voter)].append(vote)
    return grouped


def precision_row(label: str, votes: Sequence[FeedbackVote], ks: Sequence[int] = KS) -> PrecisionRow:
    sessions = _sessions(votes)
    precision: dict[int, float | None] = {}
    judged: dict[int, int] = {}
    for k in ks:
        shares = []
        for session in sessions.values():
            top = [v for v in session if v.rank <= k]
            if top:
                shares.append(sum(v.vote > 0 for v in top) / len(top))
        judged[k] = len(shares)
        precision[k] = sum(shares) / len(shares) if shares else None
    return PrecisionRow(label, len(sessions), precision, judged)


def _week(vote: FeedbackVote) -> str:
    year, week, _ = vote.at.isocalendar()
    return f"{year}-W{week:02d}"


def build_report(votes: Sequence[FeedbackVote], ks: Sequence[int] = KS) -> FeedbackReport:
    by_model: dict[str, list[FeedbackVote]] = defaultdict(list)
    for vote in votes:
        by_model[vote.base_model].append(vote)
    by_week: dict[str, list[FeedbackVote]] = defaultdict(list)
    for session in _sessions(votes).values():
        by_week[_week(min(session, key=lambda v: v.at))].extend(session)
    return FeedbackReport(
        votes=len(votes),
        overall=precision_row("all", votes, ks),
        by_base_model=[precision_row(m, by_model[m], ks) for m in sorted(by_model)],
        by_week=[precision_row(w, by_week[w], ks) for w in sorted(by_week)],
    )


def report_json(report: FeedbackReport) -> dict[str, object]:
    def row(r: PrecisionRow) -> dict[str, object]:
        return {
            "label": r.label,
            "sessions": r.sessions,
            **{f"p@{k}": v for k, v in r.precision.items()},
            **{f"judged@{k}": v for k, v in r.judged.items()},
        }

    return {
        "votes": report.votes,
        "overall": row(report.overall),
        "by_base_model": [row(r) for r in report.by_base_model],
        "by_week": [row(r) for r in report.by_week],
        "paper_human_precision": {"p@1": 0.55, "p@5": 0.42, "p@10": 0.35},
    }
