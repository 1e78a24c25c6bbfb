"""`findlora eval feedback`: retrieval quality as judged by users' votes."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from findlora.console import check_chart, check_writable, console, fail, run

if TYPE_CHECKING:
    from inference_service.feedback_report import FeedbackReport

eval_app = typer.Typer(help="Evaluate retrieval quality.", no_args_is_help=True)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


async def _load_report(since: datetime | None) -> FeedbackReport:
    import asyncio

    from db import searches
    from db.database import Database
    from db.migrate import ready_url
    from inference_service.config import Settings
    from inference_service.feedback_report import build_report

    settings = Settings()
    # As the other database commands: a fresh embedded database is created and migrated first.
    url = await asyncio.to_thread(ready_url, settings.database_url, settings.pg_dir)
    async with await Database.open(url, max_size=1) as db:
        return build_report(await db.run(searches.feedback_votes, since))


def _print(report: FeedbackReport) -> None:
    table = Table(title=f"user-judged precision ({report.votes} votes)")
    for column in ("group", "sessions", "p@1", "p@5", "p@10"):
        table.add_column(column, justify="left" if column == "group" else "right")
    for row in [report.overall, *report.by_base_model, *report.by_week]:
        table.add_row(row.label, str(row.sessions), *(_fmt(row.precision[k]) for k in (1, 5, 10)))
    table.add_row("paper (human p@k)", "", "0.55", "0.42", "0.35", style="dim")
    console.print(table)


@eval_app.command("feedback")
def feedback(
    since: str = typer.Option("", help="Only votes from this date on (YYYY-MM-DD)."),
    json_path: Path | None = typer.Option(None, "--json", help="Also write the report as JSON."),
    chart: Path | None = typer.Option(None, "--chart", help="Write a PNG trend chart per week."),
) -> None:
    """precision@1/5/10 as judged by users' 👍/👎, overall, per base model and per week."""
    start = None
    if since:
        try:
            start = datetime.fromisoformat(since).replace(tzinfo=UTC)
        except ValueError:
            fail(f"--since must be a date like 2026-11-01, not {since!r}")
    from inference_service.feedback_report import report_json

    if json_path is not None:
        check_writable(json_path, "--json")
    if chart is not None:
        check_chart(chart, "--chart")  # a suffix matplotlib cannot write, too
    report = run(_load_report(start))
    _print(report)
    if json_path:
        json_path.write_text(json.dumps(report_json(report), indent=2), encoding="utf-8")
    if chart:
        from lab.charts import trend_chart

        trend_chart(report, chart)
        console.print(f"trend chart: {chart}", markup=False)


def register(app: typer.Typer) -> None:
    app.add_typer(eval_app, name="eval")
