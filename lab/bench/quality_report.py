"""The table and chart of a `bench quality` result (the JSON dict `run_quality` returns)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from lab.charts import png_chart


def render_table(result: dict[str, Any]) -> Any:
    from rich.table import Table

    zoo = result["zoo"]
    table = Table(
        title=f"bench quality: {zoo['loras']} unseen LoRAs x {zoo['samples']} refs, "
        f"{zoo['queries']} queries, {result['pairs']['positive']}/{result['pairs']['negative']} pairs",
        caption="\\[low, high]: 95 % bootstrap interval over styles (their queries together); "
        f"F1 threshold from {result['pairs'].get('threshold_from', 'the eval pairs')}",
    )
    for column in (
        "method",
        "MRR",
        "hit@1",
        "hit@5",
        "hit@10",
        "top-2",
        "top-3",
        "top-4",
        "avg rank",
        "F1",
        "AUC",
    ):
        table.add_column(column, justify="left" if column == "method" else "right")
    for row in result["rows"]:
        r, v = row["ranking"], row["verification"]
        table.add_row(
            row["method"],
            f"{r['mrr']:.3f}{_interval(r.get('mrr_ci'), 2)}",
            f"{r['hit1']:.2f}",
            f"{r['hit5']:.2f}{_interval(r.get('hit5_ci'), 2)}",
            f"{r['hit10']:.2f}",
            f"{r['top2']:.2f}",
            f"{r['top3']:.2f}",
            f"{r['top4']:.2f}",
            f"{r['avg_rank']:.2f}",
            f"{v['f1']:.1f}" if "f1" in v else "-",  # rows without the pair protocol
            f"{v['auc']:.3f}" if "auc" in v else "-",
        )
    return table


def _interval(bounds: list[float] | None, digits: int) -> str:
    """ " [low, high]" for a row with a bootstrap interval (rows from older JSON have none)."""
    return f" [{bounds[0]:.{digits}f}, {bounds[1]:.{digits}f}]" if bounds else ""


def save_chart(result: dict[str, Any], path: Path) -> None:
    rows = result["rows"]
    names = [row["method"] for row in rows]
    series = {
        "MRR": [row["ranking"]["mrr"] for row in rows],
        "hit@10": [row["ranking"]["hit10"] for row in rows],
        "F1 / 100": [row["verification"].get("f1", 0.0) / 100 for row in rows],
    }
    x = np.arange(len(rows))
    width = 0.27
    with png_chart(path, (max(8, 1.3 * len(rows)), 4.8), dpi=110) as (_, ax):
        mrr_error = np.array(
            [
                [
                    mrr - row["ranking"].get("mrr_ci", [mrr, mrr])[0],
                    row["ranking"].get("mrr_ci", [mrr, mrr])[1] - mrr,
                ]
                for mrr, row in zip(series["MRR"], rows, strict=True)
            ]
        ).T  # the 95 % bootstrap interval as an error bar (rows without one: none)
        for offset, (label, values) in enumerate(series.items()):
            error = mrr_error if label == "MRR" else None
            ax.bar(x + (offset - 1) * width, values, width, label=label, yerr=error, capsize=2)
        ax.set_xticks(x, names, rotation=25, ha="right", fontsize=8)
        ax.set_ylim(0, 1)
        ax.set_title(
            f"style zoo quality ({result['zoo']['loras']} unseen LoRAs, {result['zoo']['queries']} queries)"
        )
        ax.legend()
