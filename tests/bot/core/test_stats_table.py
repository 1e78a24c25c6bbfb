"""The moderators' precision report fits one Discord message however long the vote history is."""

from __future__ import annotations

from bot.core.stats import stats_table
from protos import findlora_pb2 as pb


def row(label: str) -> pb.PrecisionRow:
    return pb.PrecisionRow(
        label=label, sessions=12, precision_at_1=0.5, precision_at_5=0.4, precision_at_10=0.3
    )


def report(weeks: int) -> pb.FeedbackStatsResponse:
    return pb.FeedbackStatsResponse(
        votes=999,
        overall=row("all"),
        by_base_model=[row(b) for b in ("sd1", "sdxl", "flux", "pony", "illustrious")],
        by_week=[row(f"{2025 + w // 52}-W{w % 52 + 1:02d}") for w in range(weeks)],
    )


def test_a_long_history_keeps_the_latest_weeks_within_a_message() -> None:
    text = stats_table(report(104))
    assert len(text) <= 2000
    assert "2026-W52" in text  # the latest week
    assert "2025-W01" not in text  # the oldest ones go first
    assert "earlier weeks left out" in text
    assert text.count("```") == 2  # the code block stays closed


def test_a_short_history_is_shown_whole() -> None:
    text = stats_table(report(3))
    assert "2025-W01" in text
    assert "2025-W03" in text
    assert "left out" not in text
