"""Latency vs catalog size from `bench search` JSON files (one per size)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from lab.charts import png_chart


def load_runs(files: list[Path]) -> list[dict[str, Any]]:
    runs = [json.loads(f.read_text()) for f in files]
    return sorted(runs, key=lambda r: int(r["n_loras"]))


def growth_exponent(runs: list[dict[str, Any]], path: str, small: int, large: int) -> float:
    """b in latency ∝ N^b between two catalog sizes (p50)."""
    by_n = {int(r["n_loras"]): float(r[path]["p50_ms"]) for r in runs}
    return math.log(by_n[large] / by_n[small]) / math.log(large / small)


def plot_search(files: list[Path], out: Path) -> None:
    runs = load_runs(files)
    sizes = [int(r["n_loras"]) for r in runs]
    with png_chart(out, (6, 4), dpi=120) as (_, ax):
        for path, label in (
            ("exhaustive", "exhaustive d_avg (SQL)"),
            ("two_stage", "two-stage (HNSW + exact d_avg)"),
        ):
            for stat, style in (("p50_ms", "-o"), ("p95_ms", ":")):
                ax.plot(sizes, [r[path][stat] for r in runs], style, label=f"{label} {stat[:3]}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("LoRAs in catalog (30 references each)")
        ax.set_ylabel("latency per query (ms)")
        ax.set_title("Search latency vs catalog size (2 CPU cores, warm p50/p95)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
