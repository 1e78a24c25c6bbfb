"""The train and bench commands, through Typer, on tiny zoos (wired locally: cli.py is the lead's)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from findlora.commands import bench, train
from inference_service.models.style_encoder import load_encoder, read_metadata
from lab.zoo.style_zoo import generate_zoo


def _app() -> typer.Typer:
    app = typer.Typer()
    train.register(app)
    bench.register(app)
    return app


def test_train_then_bench_quality(
    tiny_zoo: Path, tmp_path: Path, server_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The service row makes (and drops) its scratch database on the configured server: the test's.
    monkeypatch.setenv("DATABASE_URL", server_url)
    monkeypatch.setenv("FINDLORA_DATA_DIR", str(tmp_path / "data"))
    runner = CliRunner()
    out = tmp_path / "enc.safetensors"
    result = runner.invoke(
        _app(),
        [
            "train",
            str(tiny_zoo),
            "--out",
            str(out),
            "--max-steps",
            "3",
            "--head-steps",
            "5",
            "--input-size",
            "32",
            "--threads",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "finished step 3 in" in result.output  # --max-steps caps the head-only phase too
    assert "dropped" in result.output
    assert load_encoder(out).config.input_size == 32
    assert read_metadata(out)["command"].startswith("findlora ")

    zoo = generate_zoo(
        tmp_path / "eval", n_styles=5, n_samples=4, split="eval", seed=1, progress=False, size=48, n_queries=3
    )
    report = tmp_path / "quality.json"
    chart = tmp_path / "quality.png"
    result = runner.invoke(
        _app(),
        [
            "bench",
            "quality",
            "--zoo",
            str(zoo),
            "--encoder",
            str(out),
            "--json",
            str(report),
            "--chart",
            str(chart),
            "--positive-pairs",
            "20",
            "--negative-pairs",
            "20",
            "--threads",
            "1",
            "--no-gmi",  # the GMI rows build their own 100-LoRA zoo: minutes, not seconds
            "--adapt-minutes",
            "0.25",
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(report.read_text())
    methods = [row["method"] for row in data["rows"]]
    assert methods[:3] == ["NoFine-Tuning (untrained encoder)", "Colour histogram", "Gram matrices"]
    assert {"Triplet d_avg", "Triplet d_rms", "Triplet centroid"} <= set(methods)
    multi = [row for row in data["rows"] if "-image queries" in row["method"]]
    assert [row["method"] for row in multi] == [f"Triplet d_avg, {n}-image queries" for n in (1, 2, 4)]
    single = next(row for row in data["rows"] if row["method"] == "Triplet d_avg")
    assert multi[0]["ranking"] == single["ranking"]  # 1 image: the same ranking as the d_avg row
    # The d_avg row again after adapting the encoder to the zoo's catalog, right beside it.
    adapted = data["rows"][methods.index("Triplet d_avg") + 1]
    assert adapted["method"] == "Triplet d_avg (adapted)"
    extra = adapted["extra"]
    assert extra["delta_mrr"] == pytest.approx(adapted["ranking"]["mrr"] - single["ranking"]["mrr"])
    assert extra["delta_mrr_ci"][0] <= extra["delta_mrr"] <= extra["delta_mrr_ci"][1]
    assert extra["adaptation"]["steps"] >= 1
    assert extra["adaptation"]["seconds"] <= 0.25 * 60
    assert extra["adaptation"]["reason"].startswith(("kept: ", "refused: "))
    # The zoo imported through the service and ranked in pgvector: the same ranks as in memory.
    service = next(row for row in data["rows"] if row["method"].startswith("Service: imported catalog"))
    intervals = ("mrr_ci", "hit5_ci", "query_ranks")
    assert {k: v for k, v in service["ranking"].items() if k not in intervals} == pytest.approx(
        {k: v for k, v in single["ranking"].items() if k not in intervals}
    )
    for key in intervals:  # bootstrap intervals of the same ranks with the same seed, and the ranks
        assert service["ranking"][key] == pytest.approx(single["ranking"][key])
    assert "dropped by cleansing" in service["featurizer"]
    # Then `catalog adapt` on the imported catalog, ranked through the service again: the adapted
    # encoder when validation kept it, else the same encoder and the same ranks.
    after = data["rows"][data["rows"].index(service) + 1]
    assert after["method"] == "Service: imported catalog, catalog adapt, pgvector search"
    run = after["extra"]["adaptation"]
    assert run["reason"].startswith(("kept: ", "refused: "))
    assert run["seconds"] <= 0.25 * 60
    assert run["max_minutes"] == 0.25
    assert after["extra"]["delta_mrr"] == pytest.approx(after["ranking"]["mrr"] - service["ranking"]["mrr"])
    if run["kept"]:
        assert run["activated"].startswith("adapted@")
        assert run["activated"] in after["featurizer"]
        assert run["references"] > 0  # every stored reference re-embedded by the activation
    else:
        assert run["activated"] is None
        assert after["ranking"] == service["ranking"]
    assert len(list((zoo / "queries-multi").glob("*.png"))) == 3 * 3
    for row in data["rows"]:
        assert 0.0 < row["ranking"]["mrr"] <= 1.0
        assert row["ranking"]["n_queries"] == 3
        if row not in multi and row is not service and row is not after and "(adapted)" not in row["method"]:
            # A given zoo has no validation zoo: the pairs of half the anchor images (about half
            # of the 20) choose the F1 threshold, the others' are scored.
            assert 0 < row["verification"]["n_positive"] < 20
    assert chart.stat().st_size > 0
    assert data["zoo"]["loras"] == 5
    assert data["pairs"]["threshold_from"].startswith("held-out half of the eval pairs")


def test_train_refuses_a_misspelt_choice_and_an_unusable_catalog(tiny_zoo: Path, tmp_path: Path) -> None:
    """A typo trained with the default before; a catalog with problems printed a traceback."""
    runner = CliRunner()
    out = str(tmp_path / "enc.safetensors")
    for option, value in (
        ("--mining", "hard"),
        ("--optimizer", "adam"),
        ("--backbone", "vgg"),
        ("--loss", "d"),
    ):
        result = runner.invoke(_app(), ["train", str(tiny_zoo), "--out", out, option, value])
        assert result.exit_code == 2, result.output
        assert f"'{value}' is not one of" in result.output
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "catalog.toml").write_text('name = "x"\n')
    result = runner.invoke(_app(), ["train", str(broken), "--out", out, "--max-steps", "1"])
    assert result.exit_code == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)
