"""`findlora train CATALOG [CATALOG ...] --out model.safetensors`: train the triplet style encoder."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from findlora.console import fail

console = Console()


def train_cmd(
    catalogs: Annotated[
        list[Path],
        typer.Argument(
            help="Catalog directories with references (e.g. a train-split procedural zoo and a "
            "train-split real-art zoo); several are trained on together, their LoRAs kept apart."
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="Where to write the trained encoder (.safetensors).")],
    paper: Annotated[
        bool, typer.Option("--paper", help="Paper setting: VGG19, SGD lr 0.001, batch 20, 12 epochs.")
    ] = False,
    backbone: Annotated[str, typer.Option(help="stats (CPU default) or vgg19.")] = "stats",
    backbone_weights: Annotated[
        Path | None, typer.Option(help="VGG19 ImageNet weights as .safetensors (optional).")
    ] = None,
    mining: Annotated[
        str, typer.Option(help="batch-all (K LoRAs x the same P samples) or triplet.")
    ] = "batch-all",
    epochs: Annotated[float | None, typer.Option(help="Passes over the references.")] = None,
    max_steps: Annotated[int | None, typer.Option(help="Cap on optimisation steps.")] = None,
    styles_per_batch: Annotated[int, typer.Option(help="K LoRAs per batch (batch-all).")] = 12,
    samples_per_batch: Annotated[int, typer.Option(help="P samples per batch (batch-all).")] = 4,
    batch_size: Annotated[int | None, typer.Option(help="Triplets per step (triplet mining).")] = None,
    optimizer: Annotated[str | None, typer.Option(help="adamw or sgd.")] = None,
    lr: Annotated[float | None, typer.Option(help="Learning rate.")] = None,
    margin: Annotated[float, typer.Option(help="Triplet margin.")] = 0.2,
    loss: Annotated[
        str,
        typer.Option(
            help="batch-all objective: triplet, davg (triplet loss on in-batch d_avg) or davg-softmax."
        ),
    ] = "triplet",
    temperature: Annotated[float, typer.Option(help="Temperature of davg-softmax.")] = 0.1,
    proxy_weight: Annotated[
        float,
        typer.Option(
            help="Weight of a normalised-softmax term over all training styles (one proxy each); 0: off."
        ),
    ] = 0.0,
    proxy_scale: Annotated[float, typer.Option(help="Logit scale of the proxy term.")] = 16.0,
    input_size: Annotated[int | None, typer.Option(help="Encoder input size in pixels.")] = None,
    cleansing_threshold: Annotated[
        float, typer.Option(help="Eq. 1 threshold (RGB 0..255 squared error).")
    ] = 0.01,
    no_cleansing: Annotated[
        bool, typer.Option("--no-cleansing", help="Keep failed transfers (NoCleansing).")
    ] = False,
    seed: Annotated[int, typer.Option(help="Seed for initialisation and batch sampling.")] = 0,
    checkpoint: Annotated[
        Path | None, typer.Option(help="Checkpoint path (default: OUT stem + .ckpt.safetensors).")
    ] = None,
    fresh: Annotated[
        bool, typer.Option("--fresh", help="Ignore an existing checkpoint instead of resuming.")
    ] = False,
    init_from: Annotated[
        Path | None,
        typer.Option(help="Start from this trained encoder's weights (same architecture), not from scratch."),
    ] = None,
    max_minutes: Annotated[
        float | None, typer.Option(help="Stop (with a checkpoint) after this many minutes.")
    ] = None,
    refs_cache: Annotated[
        list[Path] | None,
        typer.Option(
            help="Cache of the decoded references (.safetensors); reused when present. Once for all "
            "catalogs together, or once per catalog in the same order."
        ),
    ] = None,
    head_steps: Annotated[int | None, typer.Option(help="Phase-1 steps training the head alone.")] = None,
    head_styles_per_batch: Annotated[
        int | None, typer.Option(help="K LoRAs per phase-1 batch (head alone).")
    ] = None,
    stem_width: Annotated[int | None, typer.Option(help="Full-resolution stem conv width (0: none).")] = None,
    threads: Annotated[int | None, typer.Option(help="torch CPU threads.")] = None,
) -> None:
    """Train on the catalogs' references; resumes from the checkpoint when one exists."""
    from dataclasses import replace

    import torch

    from inference_service.catalog.format import CatalogError
    from inference_service.training.trainer import TrainConfig, train

    # A misspelt choice would otherwise train with the default silently.
    for option, given, choices in (
        ("--backbone", backbone, ("stats", "vgg19")),
        ("--mining", mining, ("batch-all", "triplet")),
        ("--optimizer", optimizer or "adamw", ("adamw", "sgd")),
        ("--loss", loss, ("triplet", "davg", "davg-softmax")),
    ):
        if given not in choices:
            raise typer.BadParameter(f"{given!r} is not one of {', '.join(choices)}", param_hint=option)
    for catalog in catalogs:
        if not (catalog / "catalog.toml").is_file():
            raise typer.BadParameter(f"{catalog} is not a catalog directory (no catalog.toml)")
    if refs_cache and len(refs_cache) not in {1, len(catalogs)}:
        raise typer.BadParameter(
            f"{len(refs_cache)} --refs-cache for {len(catalogs)} catalogs: give one, or one per catalog"
        )
    if threads:
        torch.set_num_threads(threads)
    config = TrainConfig.paper() if paper or backbone == "vgg19" else TrainConfig()
    changes: dict[str, object] = {
        "mining": mining if not paper else config.mining,
        "styles_per_batch": styles_per_batch,
        "samples_per_batch": samples_per_batch,
        "margin": margin,
        "loss": loss,
        "temperature": temperature,
        "proxy_weight": proxy_weight,
        "proxy_scale": proxy_scale,
        "seed": seed,
        "cleansing_threshold": None if no_cleansing else cleansing_threshold,
        "max_steps": max_steps,
    }
    for key, value in (
        ("epochs", epochs),
        ("batch_size", batch_size),
        ("optimizer", optimizer),
        ("lr", lr),
        ("head_steps", head_steps),
        ("head_styles_per_batch", head_styles_per_batch),
    ):
        if value is not None:
            changes[key] = value
    encoder = config.encoder
    if input_size is not None:
        encoder = replace(encoder, input_size=input_size)
    if stem_width is not None:
        encoder = replace(encoder, stem_width=stem_width)
    changes["encoder"] = encoder
    config = replace(config, **changes)  # type: ignore[arg-type]
    command = "findlora " + shlex.join(sys.argv[1:])
    try:
        result = train(
            catalogs,
            out,
            config,
            checkpoint=checkpoint,
            resume=not fresh,
            backbone_weights=backbone_weights,
            init_from=init_from,
            max_minutes=max_minutes,
            refs_cache=refs_cache,
            provenance={"command": command},
        )
    except (CatalogError, ValueError, OSError) as exc:  # a catalog, checkpoint or path the user gave
        fail(str(exc))
    report = result.cleansing
    console.print(
        f"cleansing (Eq. 1, threshold {report.threshold}): "
        f"dropped {report.dropped} of {report.transfers} transfers"
        + (f", {report.missing} missing" if report.missing else "")
    )
    state = "stopped early at" if result.stopped_early else "finished"
    console.print(
        f"{state} step {result.steps} in {result.seconds / 60:.1f} min; final loss "
        f"{(sum(result.losses[-50:]) / max(1, len(result.losses[-50:]))):.4f}\n"
        f"model: {result.model_path} ({result.model_path.stat().st_size / 1e6:.2f} MB)\n"
        f"checkpoint: {result.checkpoint_path}\nloss curve: {result.loss_curve_path}"
    )


def register(app: typer.Typer) -> None:
    app.command("train")(train_cmd)
