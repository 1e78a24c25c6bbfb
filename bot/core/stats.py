"""User-judged precision, rendered as a monospace table any chat platform can show."""

from __future__ import annotations

from protos import findlora_pb2 as pb

PAPER_LINE = "paper (human)          0.55  0.42  0.35"


def _cell(row: pb.PrecisionRow, field: str) -> str:
    return f"{getattr(row, field):5.2f}" if row.HasField(field) else "    -"


def _line(row: pb.PrecisionRow) -> str:
    cells = " ".join(_cell(row, f) for f in ("precision_at_1", "precision_at_5", "precision_at_10"))
    return f"{row.label[:12]:<12} {row.sessions:>8}  {cells}"


def stats_table(stats: pb.FeedbackStatsResponse, max_chars: int = 2000) -> str:
    """A code block: overall, per base model, per week, and the paper's human p@k to compare.
    Within `max_chars` (a Discord message's limit): the latest weeks that fit, and a line naming
    how many earlier ones were left out."""
    if stats.votes == 0:
        return "No votes yet: 👍/👎 on results is what this report is made of."
    head = [f"{'group':<12} {'sessions':>8}   p@1   p@5  p@10", _line(stats.overall)]
    head += [_line(row) for row in stats.by_base_model]
    weeks = [_line(row) for row in stats.by_week]

    def render(shown: list[str], left_out: int) -> str:
        note = f"\n{left_out} earlier weeks left out: narrow it with `since`." if left_out else ""
        table = "\n".join([*head, *shown, PAPER_LINE])
        return f"User-judged precision from {stats.votes} votes:\n```\n{table}\n```{note}"

    for start in range(len(weeks) + 1):  # drop the oldest week until it fits
        text = render(weeks[start:], start)
        if len(text) <= max_chars:
            return text
    return text[: max_chars - 1] + "…"  # the fixed rows alone are over: never sent too long
