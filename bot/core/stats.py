"""User-judged precision, rendered as a monospace table any chat platform can show."""

from __future__ import annotations

from protos import findlora_pb2 as pb

PAPER_LINE = "paper (human)          0.55  0.42  0.35"


def _cell(row: pb.PrecisionRow, field: str) -> str:
    return f"{getattr(row, field):5.2f}" if row.HasField(field) else "    -"


def _line(row: pb.PrecisionRow) -> str:
    cells = " ".join(_cell(row, f) for f in ("precision_at_1", "precision_at_5", "precision_at_10"))
    return f"{row.label[:12]:<12} {row.sessions:>8}  {cells}"


def stats_table(stats: pb.FeedbackStatsResponse) -> str:
    """A code block: overall, per base model, per week, and the paper's human p@k to compare."""
    if stats.votes == 0:
        return "No votes yet: 👍/👎 on results is what this report is made of."
    lines = [f"{'group':<12} {'sessions':>8}   p@1   p@5  p@10", _line(stats.overall)]
    lines += [_line(row) for row in stats.by_base_model]
    lines += [_line(row) for row in stats.by_week]
    lines.append(PAPER_LINE)
    return f"User-judged precision from {stats.votes} votes:\n```\n" + "\n".join(lines) + "\n```"
