"""`findlora bench ...`: benchmarks. `bench_app` is shared: other modules add their commands to it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from findlora.commands.bench_search import emit_json
from findlora.console import check_chart, check_json_out

bench_app = typer.Typer(help="Benchmarks (JSON to stdout or --json FILE).", no_args_is_help=True)


@bench_app.command("quality")
def quality_cmd(
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write the JSON here (default: stdout).")
    ] = None,
    chart: Annotated[Path, typer.Option(help="PNG chart of MRR, hit@10 and F1 per method.")] = Path(
        ".bench/quality.png"
    ),
    zoo: Annotated[
        Path | None,
        typer.Option(
            exists=True, file_okay=False, help="An existing eval-split zoo (default: generate and cache one)."
        ),
    ] = None,
    cache_dir: Annotated[Path, typer.Option(help="Where generated zoos are cached.")] = Path(".bench"),
    encoder: Annotated[
        Path | None,
        typer.Option(exists=True, dir_okay=False, help="Encoder to evaluate (default: the shipped one)."),
    ] = None,
    no_cleansing_encoder: Annotated[
        Path | None, typer.Option(exists=True, dir_okay=False, help="An encoder trained with --no-cleansing.")
    ] = None,
    styles: Annotated[int, typer.Option(help="Eval LoRAs.")] = 100,
    samples: Annotated[int, typer.Option(help="Reference samples per LoRA.")] = 30,
    queries: Annotated[
        int, typer.Option(help="Queries on unseen content (one per LoRA, then further rounds).")
    ] = 200,
    zoo_seed: Annotated[
        int, typer.Option(help="Seed of the eval zoo (checked against docs/eval-seeds.json).")
    ] = 0,
    val_zoo: Annotated[
        Path | None,
        typer.Option(exists=True, file_okay=False, help="An existing validation zoo for the F1 thresholds."),
    ] = None,
    val_seed: Annotated[
        int, typer.Option(help="Seed of the generated validation zoo for the F1 thresholds.")
    ] = 7,
    val_zoo_pairs: Annotated[
        bool,
        typer.Option(
            "--val-zoo-pairs/--held-out-pairs",
            help="F1 thresholds from a validation zoo, or from a held-out half of the eval pairs.",
        ),
    ] = True,
    real_zoo: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            file_okay=False,
            help="A human-made-art eval zoo (bench zoo --source real --split eval): real-art rows.",
        ),
    ] = None,
    held_out_zoo: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            file_okay=False,
            help="A zoo of held-out style families (bench zoo --split heldout-family): held-out-family rows.",
        ),
    ] = None,
    bootstrap: Annotated[int, typer.Option(min=1, help="Bootstrap resamples for the intervals.")] = 1000,
    reuse_seed: Annotated[
        bool, typer.Option(help="Score an eval seed that the ledger lists for other encoders.")
    ] = False,
    record_seed: Annotated[
        bool, typer.Option(help="Append this run's eval seeds and encoder to docs/eval-seeds.json.")
    ] = False,
    positive_pairs: Annotated[int, typer.Option(help="Positive pairs for F1.")] = 10_000,
    negative_pairs: Annotated[int, typer.Option(help="Negative pairs for F1.")] = 10_100,
    threads: Annotated[int | None, typer.Option(help="torch CPU threads.")] = None,
    adapt_minutes: Annotated[
        float | None,
        typer.Option(
            min=0.05,
            help="Also score each d_avg zoo row after adapting the encoder to that zoo's catalog "
            "(as `catalog adapt` does) within this many minutes; with the service row, also run "
            "`catalog adapt` itself on the imported catalog and rank through the service again.",
        ),
    ] = None,
    multi_image: Annotated[bool, typer.Option(help="Add rows for 2- and 4-image queries.")] = True,
    gmi: Annotated[
        bool, typer.Option(help="Add RKME-CLIP, weighted RKME and fused rows (prompt-conditioned zoo).")
    ] = True,
    service: Annotated[
        bool,
        typer.Option(
            help="Add a row that imports the eval zoo into a scratch database and ranks through the service."
        ),
    ] = True,
) -> None:
    """The style-distance quality protocol (docs/design.md 8) with every baseline, in one run."""
    import torch

    from inference_service.training.adapt import AdaptConfig
    from lab.bench.quality import run_quality
    from lab.bench.quality_context import QualityConfig, QualityContext, Row
    from lab.bench.quality_report import render_table, save_chart
    from lab.bench.seed_ledger import SeedReuseError

    check_json_out(json_out)  # both written after a run of many minutes: checked before it
    check_chart(chart, "--chart")
    if threads:
        torch.set_num_threads(threads)
    config = QualityConfig(
        zoo=zoo,
        cache_dir=cache_dir,
        n_styles=styles,
        n_samples=samples,
        n_queries=queries,
        zoo_seed=zoo_seed,
        val_zoo=val_zoo,
        val_seed=val_seed,
        val_zoo_pairs=val_zoo_pairs,
        real_zoo=real_zoo,
        held_out_zoo=held_out_zoo,
        bootstrap_resamples=bootstrap,
        reuse_seed=reuse_seed,
        record_seed=record_seed,
        n_positive=positive_pairs,
        n_negative=negative_pairs,
        encoder=encoder,
        no_cleansing_encoder=no_cleansing_encoder,
    )
    # With JSON on stdout, the table and progress go to stderr so the output stays parseable.
    console = Console(stderr=json_out is None)
    if not console.is_terminal:
        console.width = max(console.width, 150)  # logs and pipes: keep the table readable
    from lab.bench.held_out_rows import HeldOutFamilyRows, check_held_out_zoo
    from lab.bench.multi_image import multi_image_rows
    from lab.bench.service_rows import imported_catalog_rows, imported_catalog_rows_adapted

    held_out_rows = HeldOutFamilyRows()
    extra_rows: list[Callable[[QualityContext], list[Row]]] = [multi_image_rows] if multi_image else []
    if held_out_zoo is not None:
        try:
            check_held_out_zoo(held_out_zoo)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--held-out-zoo") from exc
        extra_rows.append(held_out_rows)
    adapt = None if adapt_minutes is None else AdaptConfig(max_minutes=adapt_minutes, threads=threads or 0)
    if service:
        # With --adapt-minutes, the service row is followed by one after `catalog adapt` itself.
        extra_rows.append(imported_catalog_rows if adapt is None else imported_catalog_rows_adapted(adapt))
    hooks = []
    if adapt is not None:
        from lab.bench.adapt_rows import adapted_rows_hook

        hooks.append(adapted_rows_hook(adapt))
    try:
        result = run_quality(config, extra_rows=extra_rows, zoo_row_hooks=hooks)
    except SeedReuseError as exc:
        Console(stderr=True).print(f"[red]{exc}[/red]", highlight=False)
        raise typer.Exit(2) from exc
    except ValueError as exc:  # a directory that is not a zoo, a broken ledger
        Console(stderr=True).print(f"[red]{exc}[/red]", highlight=False)
        raise typer.Exit(1) from exc
    if held_out_rows.summary is not None:
        result["held_out_zoo"] = held_out_rows.summary
    if gmi:
        from lab.bench.gmi_rows import run as run_gmi

        # The GMI branch needs spec images made from prompts: its own zoo, the same encoder.
        result["gmi"] = run_gmi(
            n_styles=100,
            n_samples=12,
            n_queries=40,
            seed=0,
            size=128,
            encoder=encoder,
            progress=not console.is_terminal,
        )
        result["rows"].extend(
            {**row, "method": f"{row['method']} (prompt zoo)"} for row in result["gmi"]["rows"]
        )
    result["chart"] = str(chart)
    save_chart(result, chart)
    console.print(render_table(result))
    console.print(f"chart: {chart}; {result['seconds']} s", markup=False)
    emit_json(result, json_out, indent=1)  # with --json, `console` is stdout too


@bench_app.command("zoo")
def zoo_cmd(
    out: Annotated[Path, typer.Argument(help="Directory to write the catalog to.")],
    source: Annotated[
        str,
        typer.Option(help="procedural (parametric styles) or real (human-made art from Debian packages)."),
    ] = "procedural",
    split: Annotated[
        str,
        typer.Option(
            help="procedural: train, train-wide (train plus six more families), eval, demo or "
            "heldout-family (styles of families no encoder trains on); real: train, val or eval."
        ),
    ] = "train",
    styles: Annotated[int, typer.Option(help="Number of styles (LoRAs; procedural).")] = 600,
    samples: Annotated[
        int | None, typer.Option(help="Samples per style (procedural, 48) or per source (real, 30).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed.")] = 1,
    size: Annotated[int, typer.Option(help="Image size in pixels.")] = 160,
    queries: Annotated[
        int | None,
        typer.Option(
            help="Queries (eval/demo/val splits; procedural 40; real: one per style, more in rounds)."
        ),
    ] = None,
    split_seed: Annotated[
        int | None,
        typer.Option(help="real: seed that places families in splits (default: --seed; queries use --seed)."),
    ] = None,
    real_sources: Annotated[
        str, typer.Option(help="real: comma-separated sources (icons, fonts, freeciv, cards, mahjongg).")
    ] = "icons,fonts,freeciv,cards,mahjongg",
) -> None:
    """Generate a style-zoo catalog (the training data of the shipped encoder, or an eval set)."""
    if source == "real":
        _real_zoo(out, split, samples, seed, size, queries, real_sources, split_seed)
        return
    if source != "procedural":
        raise typer.BadParameter("source must be procedural or real", param_hint="--source")
    from lab.zoo.style_zoo import SPLITS, generate_zoo

    if split not in SPLITS:
        raise typer.BadParameter(f"split must be one of {', '.join(SPLITS)}", param_hint="--split")
    root = generate_zoo(
        out,
        n_styles=styles,
        n_samples=48 if samples is None else samples,
        split=split,  # type: ignore[arg-type]
        seed=seed,
        size=size,
        n_queries=40 if queries is None else queries,
    )
    Console().print(f"wrote {root}")


def _real_zoo(
    out: Path,
    split: str,
    samples: int | None,
    seed: int,
    size: int,
    queries: int | None,
    sources: str,
    split_seed: int | None,
) -> None:
    from lab.zoo.real_art.art import art_box
    from lab.zoo.real_zoo import (
        DEFAULT_SAMPLES,
        SCANNERS,
        SPLITS,
        NoArtError,
        build_real_zoo,
        read_real_zoo_summary,
        scan_sources,
    )

    if split not in SPLITS:
        raise typer.BadParameter("split must be train, val or eval for --source real", param_hint="--split")
    names = [name.strip() for name in sources.split(",") if name.strip()]
    unknown = [name for name in names if name not in SCANNERS]
    if unknown or not names:
        raise typer.BadParameter(
            f"unknown source(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(SCANNERS)}",
            param_hint="--real-sources",
        )
    console = Console(stderr=True)
    try:
        scans = scan_sources(names, art_box(size))
        for scan in scans:
            for line in scan.missing:
                console.print(f"[yellow]{line}[/yellow]", highlight=False)
        root = build_real_zoo(
            out,
            split=split,  # type: ignore[arg-type]
            seed=seed,
            size=size,
            n_samples=DEFAULT_SAMPLES if samples is None else samples,
            n_queries=queries,
            scans=scans,
            split_seed=split_seed,
        )
    except NoArtError as exc:
        console.print(f"[red]{exc}[/red]", highlight=False)
        raise typer.Exit(1) from exc
    console.print(read_real_zoo_summary(root), highlight=False)
    console.print(f"wrote {root}")


def register(app: typer.Typer) -> None:
    from findlora.commands.bench_search import register_bench

    register_bench(bench_app)
    app.add_typer(bench_app, name="bench")
