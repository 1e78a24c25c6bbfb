"""PNG charts of offline results, one headless matplotlib figure each (never imported by the service)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from inference_service.feedback_report import KS, FeedbackReport


@contextmanager
def png_chart(path: Path, size: tuple[float, float], dpi: int) -> Iterator[tuple[Figure, Axes]]:
    """A figure with one axes; on exit it is laid out, written to `path` and closed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=size)
    yield figure, axes
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=dpi)
    plt.close(figure)


def trend_chart(report: FeedbackReport, path: Path) -> None:
    """The feedback report's p@1/5/10 per week as a line chart."""
    weeks = [r.label for r in report.by_week]
    with png_chart(path, (8, 4), dpi=100) as (figure, axes):
        for k in KS:
            values = [r.precision.get(k) for r in report.by_week]
            axes.plot(weeks, [float("nan") if v is None else v for v in values], marker="o", label=f"p@{k}")
        axes.set_ylim(0, 1)
        axes.set_ylabel("precision judged by users")
        axes.set_title("findlora: user-judged precision per week")
        axes.legend()
        axes.grid(alpha=0.3)
        figure.autofmt_xdate()
