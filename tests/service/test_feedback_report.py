"""User-judged precision@k: hand-computed values on seeded votes; duplicate votes count once."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from db.rows import FeedbackVote
from findlora_client import FindLoraClient, QueryImage
from inference_service.feedback_report import build_report, precision_row

MON = datetime(2026, 11, 16, 12, tzinfo=UTC)  # ISO week 2026-W47
NEXT_MON = datetime(2026, 11, 23, 12, tzinfo=UTC)  # 2026-W48


def v(search: str, user: str, rank: int, vote: int, base: str = "sd1", at: datetime = MON) -> FeedbackVote:
    return FeedbackVote(search, user, rank, vote, base, at)


VOTES = [
    # search A, user 1: 👍 at rank 1, 👎 at 3, 👍 at 7 -> p@1 1, p@5 1/2, p@10 2/3
    v("A", "u1", 1, +1),
    v("A", "u1", 3, -1),
    v("A", "u1", 7, +1),
    # search A, user 2: 👎 at rank 2 -> p@1 none, p@5 0, p@10 0
    v("A", "u2", 2, -1),
    # search B, user 1 (next week, an SDXL LoRA at rank 1): 👍 at 1, 👍 at 12 (beyond k)
    v("B", "u1", 1, +1, "sdxl", NEXT_MON),
    v("B", "u1", 12, +1, "sd1", NEXT_MON),
]


def test_precision_by_hand() -> None:
    report = build_report(VOTES)
    assert report.votes == 6
    overall = report.overall
    assert overall.sessions == 3
    assert overall.precision[1] == pytest.approx((1 + 1) / 2)
    assert overall.precision[5] == pytest.approx((0.5 + 0 + 1) / 3)
    assert overall.precision[10] == pytest.approx((2 / 3 + 0 + 1) / 3)
    assert overall.judged == {1: 2, 5: 3, 10: 3}

    by_model = {r.label: r for r in report.by_base_model}
    assert set(by_model) == {"sd1", "sdxl"}
    # sd1: A-u1 (1, 1/2, 2/3), A-u2 (-, 0, 0), B-u1 only rank 12 (counts for no k <= 10)
    assert by_model["sd1"].precision == pytest.approx({1: 1.0, 5: 0.25, 10: 1 / 3})
    assert by_model["sdxl"].precision == {1: 1.0, 5: 1.0, 10: 1.0}

    by_week = {r.label: r for r in report.by_week}
    assert list(by_week) == ["2026-W47", "2026-W48"]
    assert by_week["2026-W47"].sessions == 2
    assert by_week["2026-W48"].precision == {1: 1.0, 5: 1.0, 10: 1.0}


def test_no_votes_gives_no_precision() -> None:
    row = precision_row("empty", [])
    assert row.sessions == 0
    assert row.precision == {1: None, 5: None, 10: None}


@pytest.mark.db
async def test_votes_through_the_service_and_cli(
    client: FindLoraClient, catalog_dir: Path, settings: object, tmp_path: Path
) -> None:
    query = [QueryImage((catalog_dir / "loras" / "style-04" / "references" / "s02.png").read_bytes())]
    first = await client.search(query, top_k=10)
    second = await client.search(query, top_k=10)
    ids = [m.lora_id for m in first.matches]
    await client.record_feedback(first.search_id, ids[0], up=True, user="u1")
    await client.record_feedback(first.search_id, ids[2], up=False, user="u1")
    await client.record_feedback(first.search_id, ids[2], up=False, user="u1")  # a duplicate
    await client.record_feedback(second.search_id, ids[0], up=False, user="u1")
    await client.record_feedback(second.search_id, ids[0], up=True, user="u1")  # replaces the 👎
    stats = await client.feedback_stats()
    assert stats.votes == 3
    assert stats.overall.sessions == 2
    assert stats.overall.precision_at_1 == pytest.approx(1.0)
    assert stats.overall.precision_at_5 == pytest.approx((0.5 + 1.0) / 2)
    assert [r.label for r in stats.by_base_model] == ["sd1"]
    future = await client.feedback_stats(since=datetime(2100, 1, 1, tzinfo=UTC))
    assert future.votes == 0
    assert not future.overall.HasField("precision_at_1")

    from tests.test_cli import cli_env, findlora

    code, out, err = await findlora(
        "eval",
        "feedback",
        "--json",
        str(tmp_path / "r.json"),
        "--chart",
        str(tmp_path / "t.png"),
        env=cli_env(settings),
    )  # type: ignore[arg-type]
    assert code == 0, err
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["overall"]["p@5"] == pytest.approx(0.75)
    assert (tmp_path / "t.png").exists()
    assert "user-judged precision (3 votes)" in out
