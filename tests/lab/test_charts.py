"""The feedback report's weekly trend chart renders a PNG."""

from __future__ import annotations

from pathlib import Path

from inference_service.feedback_report import build_report
from lab.charts import trend_chart
from tests.service.test_feedback_report import VOTES


def test_trend_chart_is_a_png(tmp_path: Path) -> None:
    trend_chart(build_report(VOTES), tmp_path / "trend.png")
    assert (tmp_path / "trend.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
