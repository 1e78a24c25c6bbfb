"""The held-out-family rows of `bench quality`: styles of operator families no encoder trains on.

A `heldout-family` zoo (`findlora bench zoo DIR --split heldout-family`) draws its styles only
from held_out_ops.HELD_OUT_PRIMARIES, so its MRR says how the encoder does on kinds of style it
never saw, next to the colour-histogram baseline on the same queries. Scored as the eval zoo is
(d_avg with a bootstrap interval; F1 threshold from a held-out half of its own pairs), and its
seed is checked and recorded in the seed ledger under the zoo name "heldout-family" (quality.py
adds it to the run's targets). Passed to run_quality as an extra-rows callable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lab.bench.features import ColourHistogram, EncoderFeaturizer
from lab.bench.quality import _zoo_summary, evaluate_row, load_eval_set
from lab.bench.quality_context import QualityContext, Row
from lab.zoo.style_zoo import read_zoo_info

HELD_OUT_SPLIT = "heldout-family"
PREFIX = "held-out families"


def check_held_out_zoo(root: Path) -> None:
    """Refuse a directory that is not a heldout-family zoo, before anything is embedded."""
    if not (root / "zoo.json").exists():
        raise ValueError(f"{root} is not a zoo: no zoo.json (build one with `findlora bench zoo`)")
    split = read_zoo_info(root).get("split")
    if split != HELD_OUT_SPLIT:
        raise ValueError(
            f"{root} is a {split} zoo; the held-out-family row needs one made with "
            f"`findlora bench zoo DIR --split {HELD_OUT_SPLIT}`"
        )


class HeldOutFamilyRows:
    """Extra-rows callable: the rows, and afterwards `summary` for the result's JSON."""

    def __init__(self) -> None:
        self.summary: dict[str, Any] | None = None
        # (context, d_avg row) for run_quality's zoo_row_hooks (e.g. the adapted row)
        self.d_avg_targets: list[tuple[QualityContext, Row]] = []

    def __call__(self, ctx: QualityContext) -> list[Row]:
        root = ctx.config.held_out_zoo
        if root is None:
            return []
        check_held_out_zoo(root)
        data = load_eval_set(root, ctx.config.cleansing_threshold)
        held = QualityContext(ctx.config, data, ctx.encoder, ctx.encoder_label, ctx.progress)
        trained = EncoderFeaturizer(f"triplet encoder [{ctx.encoder_label}]", ctx.encoder)
        rows = [
            evaluate_row(held, f"{PREFIX}: triplet d_avg", trained, "d_avg", True),
            evaluate_row(held, f"{PREFIX}: colour histogram", ColourHistogram(), "d_avg", True),
        ]
        self.d_avg_targets = [(held, rows[0])]
        info = read_zoo_info(root)
        self.summary = {
            **_zoo_summary(data, ctx.config),
            "families": info.get("families"),
            "trained_families": info.get("trained_families"),
            "threshold_from": f"held-out half of its pairs (pair seed {ctx.config.pair_seed})",
        }
        return rows
