"""The real-art zoo built from test-written icon themes and freeciv tilesets: splits by family,
copies dropped, queries on held-out content, and both readers (bench quality, training) take it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from inference_service.catalog.format import read_catalog
from inference_service.scoring.cleansing import DEFAULT_THRESHOLD
from inference_service.training.references import load_reference_set
from lab.bench.quality import load_eval_set, run_quality
from lab.bench.quality_context import QualityConfig
from lab.metrics import pair_capacity
from lab.zoo import real_zoo
from lab.zoo.real_art import freeciv, icons
from lab.zoo.real_art.art import ArtStyle, SourceScan, art_box, render_item
from lab.zoo.real_art.queries import EXTRA_PER_QUERY, pixel_digest, write_queries
from tests.lab.zoo.real_art_inputs import UNIT_TAGS, write_icon_theme, write_tilespec, write_units_sheet

SIZE = 64
ICON_NAMES = [f"icon-{n:03d}" for n in range(40)]
SPLITS = ("train", "val", "eval")


def _scans(root: Path) -> list[SourceScan]:
    """Six icon themes in five families (one more theme is a file-for-file copy of the first) and
    three freeciv unit sheets (a fourth tileset's sheet is a copy of the first's)."""
    icon_root = root / "icons"
    styles = []
    for index in range(5):
        theme = icons.read_theme(write_icon_theme(icon_root, f"theme{index}", index, ICON_NAMES, size=48))
        styles.append(
            icons.theme_style(theme, f"test-icons-{index}", f"test-icons-{index}", art_box(SIZE), False)
        )
    # A sister set of theme2 (one family): the split theme2 lands in has negative pairs.
    sister = icons.read_theme(write_icon_theme(icon_root, "theme5", 5, ICON_NAMES, size=48))
    styles.append(icons.theme_style(sister, "test-icons-5", "test-icons-2", art_box(SIZE), False))
    shutil.copytree(icon_root / "theme0", icon_root / "copy")
    copy = icons.read_theme(icon_root / "copy")
    styles.append(icons.theme_style(copy, "test-icons-copy", "test-icons-copy", art_box(SIZE), False))
    data = root / "freeciv"
    for name, palette in (("alpha", 0), ("beta", 2), ("gamma", 4)):
        write_units_sheet(data, name, palette, UNIT_TAGS)
        write_tilespec(data, name, [f"{name}/units.spec"])
    write_units_sheet(data, "copycat", 0, UNIT_TAGS)  # alpha's drawings under another name
    write_tilespec(data, "copycat", ["copycat/units.spec"])
    civ, skipped = freeciv.tileset_styles(data, package="test-freeciv")
    assert skipped == []
    return [SourceScan("icons", styles), SourceScan("freeciv", civ)]


@pytest.fixture(scope="module")
def zoos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("real-zoo")
    scans = _scans(root / "art")
    return {
        split: real_zoo.build_real_zoo(
            root / split, split=split, seed=5, size=SIZE, n_samples=12, progress=False, scans=scans
        )
        for split in SPLITS
    }


def _info(root: Path) -> dict[str, object]:
    info: dict[str, object] = json.loads((root / "zoo.json").read_text(encoding="utf-8"))
    return info


def test_splits_are_disjoint_by_family(zoos: dict[str, Path]) -> None:
    infos = {split: _info(root) for split, root in zoos.items()}
    slugs = {split: set(read_catalog(root).loras) for split, root in zoos.items()}
    assert all(slugs.values())
    for first, second in (("train", "val"), ("train", "eval"), ("val", "eval")):
        assert not slugs[first] & slugs[second]
    assignment = infos["eval"]["split_assignment"]
    assert infos["train"]["split_assignment"] == assignment == infos["val"]["split_assignment"]
    for split, info in infos.items():
        styles: dict[str, dict[str, str]] = info["styles"]  # type: ignore[assignment]
        assert set(styles) == slugs[split]
        for style in styles.values():
            assert assignment[style["family"]] == split  # type: ignore[index]
    # Five icon families (the copy joins theme0's), three freeciv ones: each split gets one of each
    # source at least, eval and val one each.
    families: dict[str, dict[str, str]] = infos["eval"]["families"]  # type: ignore[assignment]
    by_source = {(meta["source"], meta["split"]) for meta in families.values()}
    assert by_source == {(source, split) for source in ("icons", "freeciv") for split in SPLITS}
    assert sum(1 for meta in families.values() if meta["source"] == "icons") == 5


def test_copies_are_dropped_and_joined_to_their_original(zoos: dict[str, Path]) -> None:
    info = _info(zoos["eval"])
    dropped: dict[str, str] = info["dropped_styles"]  # type: ignore[assignment]
    pairs: list[dict[str, object]] = info["near_duplicates"]  # type: ignore[assignment]
    assert {(p["a"], p["b"]) for p in pairs} == {
        ("icons-copy", "icons-theme0"),
        ("freeciv-units-alpha-units", "freeciv-units-copycat-units"),
    }
    assert all(p["share"] == 1.0 for p in pairs)
    # Of each pair exactly one is dropped (equal item counts: the first by name is kept).
    assert set(dropped) == {"icons-theme0", "freeciv-units-copycat-units"}
    assert "near-duplicate of icons-copy" in dropped["icons-theme0"]
    kept = {slug for root in zoos.values() for slug in read_catalog(root).loras}
    assert {"icons-copy", "freeciv-units-alpha-units"} <= kept


def test_queries_are_held_out_content_of_the_split_styles(zoos: dict[str, Path]) -> None:
    all_samples = {sid for root in zoos.values() for sid in read_catalog(root).samples}
    for split in ("val", "eval"):
        root = zoos[split]
        catalog = read_catalog(root)
        records = json.loads((root / "queries.json").read_text(encoding="utf-8"))
        assert {r["slug"] for r in records} == set(catalog.loras)  # one query per style
        for number, record in enumerate(records):
            contents = [record["source"], *record["extra"].split(",")]
            assert len(set(contents)) == 1 + EXTRA_PER_QUERY
            for content in contents:
                source, cid = content.split(":", 1)
                assert real_zoo.in_query_pool(source, cid)
                assert real_zoo.sample_id(source, cid) not in all_samples  # no split references it
            for j in range(EXTRA_PER_QUERY):
                assert (root / "queries-multi" / f"q{number:03d}-{j}.png").exists()
    assert not (zoos["train"] / "queries.json").exists()


def test_a_fresh_query_seed_keeps_the_split_and_rounds_add_queries(
    zoos: dict[str, Path], tmp_path: Path
) -> None:
    """--split-seed fixes which families are eval (the ones training never saw) while --seed draws
    new queries; asking for more queries than styles adds rounds, each query on a first image of
    its own, as many per style as its held-out contents allow."""
    scans = _scans(tmp_path / "art")
    fresh = real_zoo.build_real_zoo(
        tmp_path / "fresh", split="eval", seed=99, split_seed=5, size=SIZE, n_samples=12,
        n_queries=50, progress=False, scans=scans,
    )  # fmt: skip
    info = _info(fresh)
    assert (info["split_seed"], info["seed"]) == (5, 99)
    assert set(read_catalog(fresh).loras) == set(read_catalog(zoos["eval"]).loras)
    records = json.loads((fresh / "queries.json").read_text(encoding="utf-8"))
    n_styles = len(read_catalog(fresh).loras)
    assert n_styles < len(records) <= 50  # a second round at least
    per_style = Counter(r["slug"] for r in records)
    assert max(per_style.values()) <= -(-50 // n_styles)  # no style fills the row
    styles = {p.slug: p.style for p in real_zoo.survey(scans, 5, SIZE).placed}
    for slug, count in per_style.items():
        firsts = [r["source"] for r in records if r["slug"] == slug]
        assert len(firsts) == len(set(firsts))  # no query repeats another's first image
        for r in records:
            if r["slug"] == slug:
                assert len({r["source"], *r["extra"].split(",")}) == 1 + EXTRA_PER_QUERY
        # Extras may be other queries' firsts, so a style gives a query per held-out content.
        held_out = [c for c in styles[slug].items if real_zoo.in_query_pool(styles[slug].source, c)]
        assert count == min(len(held_out), -(-50 // n_styles))
    seed5 = json.loads((zoos["eval"] / "queries.json").read_text(encoding="utf-8"))
    first = {r["slug"]: r["source"] for r in reversed(records[:n_styles])}
    assert first != {r["slug"]: r["source"] for r in seed5}  # the query seed drew other contents


def test_bench_quality_and_training_read_the_zoo(zoos: dict[str, Path]) -> None:
    data = load_eval_set(zoos["eval"], DEFAULT_THRESHOLD)
    assert len(data.queries) == len(data.slugs)
    assert data.kept.all()  # a sample is never a style's drawing: cleansing drops nothing
    assert [data.slugs[t] for t in data.truth] == [q.slug for q in data.queries]
    assert data.references[0].size == (SIZE, SIZE)
    refs = load_reference_set(zoos["train"], 32, progress=False)
    train_info = _info(zoos["train"])
    styles: dict[str, dict[str, int]] = train_info["styles"]  # type: ignore[assignment]
    assert int(refs.valid.sum()) == sum(style["references"] for style in styles.values())
    assert refs.report.dropped == 0


def test_bench_quality_runs_on_the_splits_with_the_pairs_they_have(zoos: dict[str, Path]) -> None:
    # eval: theme2 and its sister set draw the same samples: fewer negative pairs than the default
    # asks for, so all of them are used.
    result = run_quality(QualityConfig(zoo=zoos["eval"]), progress=False)
    assert result["zoo"]["loras"] == result["zoo"]["queries"] == 3
    colour = next(row for row in result["rows"] if row["method"] == "Colour histogram")
    data = load_eval_set(zoos["eval"], DEFAULT_THRESHOLD)
    positives, negatives = pair_capacity(data.labels, data.contents)
    assert 0 < negatives < QualityConfig().n_negative
    # No validation zoo is given: the pairs of half the anchor images choose the threshold, the
    # others' pairs are scored (about half of each kind).
    used_positives = min(positives, QualityConfig().n_positive)
    scored_positive, scored_negative = (
        colour["verification"]["n_positive"],
        colour["verification"]["n_negative"],
    )
    assert 0.3 * used_positives < scored_positive < 0.7 * used_positives
    assert 0.3 * negatives < scored_negative < 0.7 * negatives
    assert result["pairs"]["threshold_from"].startswith("held-out half of the eval pairs")
    # val: one style per source, no two styles draw one sample: ranking only, no F1.
    val = run_quality(QualityConfig(zoo=zoos["val"]), progress=False)
    assert val["zoo"]["loras"] == 2
    assert all(row["verification"] == {} for row in val["rows"])
    assert all(0 < row["ranking"]["mrr"] <= 1 for row in val["rows"])


def test_zoo_records_provenance(zoos: dict[str, Path]) -> None:
    info = _info(zoos["train"])
    styles: dict[str, dict[str, object]] = info["styles"]  # type: ignore[assignment]
    style = (
        styles["freeciv-units-beta-units"]
        if "freeciv-units-beta-units" in styles
        else next(iter(styles.values()))
    )
    assert style["version"] == "not installed via dpkg"
    assert str(style["license"]).startswith("unknown")
    assert style["files"]
    sources = (zoos["train"] / "SOURCES.md").read_text(encoding="utf-8")
    for slug in styles:
        assert f"`{slug}`" in sources
    assert "Split rule" in sources


def test_no_installed_source_names_every_install_command(tmp_path: Path) -> None:
    scans = [freeciv.scan(tmp_path / "none"), icons.scan(128, packages=("findlora-absent-theme",))]
    with pytest.raises(real_zoo.NoArtError) as failure:
        real_zoo.build_real_zoo(tmp_path / "zoo", split="eval", seed=1, scans=scans, progress=False)
    message = str(failure.value)
    assert "apt-get install -y freeciv-data" in message
    assert "apt-get install -y findlora-absent-theme" in message
    assert not (tmp_path / "zoo").exists()


def test_cli_rejects_unknown_sources_and_splits(tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "findlora",
                "bench",
                "zoo",
                str(tmp_path / "z"),
                "--source",
                "real",
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    bad_source = run("--real-sources", "icons,paintings")
    assert bad_source.returncode == 2
    assert "paintings" in bad_source.stderr
    bad_split = run("--split", "demo")
    assert bad_split.returncode == 2
    assert "train, val or eval" in bad_split.stderr


def test_samples_are_shared_out_so_every_style_draws_some() -> None:
    def style(key: str, contents: list[str]) -> ArtStyle:
        made = ArtStyle("freeciv", key, key, "test", key, [])
        made.items = {c: (lambda box: Image.new("RGBA", (box, box))) for c in contents}
        return made

    units = [f"u.unit{n:02d}" for n in range(40)]
    buildings = [f"b.building{n:02d}" for n in range(10)]
    placed = [
        real_zoo.Placed(style("units-a", units), "a", "train"),
        real_zoo.Placed(style("units-b", units), "b", "train"),
        real_zoo.Placed(style("buildings", buildings), "c", "train"),
    ]
    chosen = real_zoo.choose_samples(placed, 12)["freeciv"]
    assert len(chosen) == 12
    assert not any(real_zoo.in_query_pool("freeciv", c) for c in chosen)
    # By coverage alone all 12 would be units (two styles draw each); shared out, the buildings
    # style gets a fair part.
    assert sum(c.startswith("b.") for c in chosen) >= 4


def test_bench_quality_adds_real_art_rows(zoos: dict[str, Path], tmp_path: Path) -> None:
    config = QualityConfig(
        cache_dir=tmp_path,
        n_styles=4,
        n_samples=4,
        n_queries=4,
        zoo_seed=424242,
        image_size=SIZE,
        real_zoo=zoos["eval"],
        seed_ledger=tmp_path / "ledger.json",
        bootstrap_resamples=200,
    )
    result = run_quality(config, progress=False)
    real_rows = {row["method"]: row for row in result["rows"] if row["method"].startswith("real-art")}
    assert set(real_rows) == {"real-art: triplet d_avg", "real-art: colour histogram"}
    assert result["real_zoo"]["loras"] == result["real_zoo"]["queries"] == 3
    for row in real_rows.values():
        ranking = row["ranking"]
        assert ranking["n_queries"] == 3
        assert ranking["mrr_ci"][0] <= ranking["mrr"] <= ranking["mrr_ci"][1]
        assert ranking["hit5_ci"][0] <= ranking["hit5"] <= ranking["hit5_ci"][1]
    assert {"zoo": "real", "split": "eval", "seed": 5, "ledger_role": "unscored"} in result["seeds"]


def test_a_held_out_content_drawn_exactly_as_a_reference_is_no_query(tmp_path: Path) -> None:
    """Icon themes link one file under several names, so a held-out name could draw a reference's
    very picture: that query was a copy of the answer's own reference."""

    def disc(radius: int) -> Callable[[int], Image.Image]:
        def draw(box: int) -> Image.Image:
            image = Image.new("RGBA", (box, box), (0, 0, 0, 0))
            ImageDraw.Draw(image).ellipse((0, 0, radius, radius), fill=(200, 30, 30, 255))
            return image

        return draw

    # "alias" draws exactly what the reference "ref" draws; the others differ.
    items = {"ref": disc(40), "alias": disc(40), **{f"c{n}": disc(10 + 5 * n) for n in range(4)}}
    style = ArtStyle("icons", "theme", "Theme", "pkg", "icons:theme", [], items)

    @dataclass
    class Placed:
        style: ArtStyle
        slug: str = "icons-theme"

    reference = {"icons-theme": {pixel_digest(render_item(style, "ref", 64))}}
    records, _, copies = write_queries(
        tmp_path, [Placed(style)], 1, "eval", 64, 5, lambda source, content: content != "ref", reference
    )
    used = {r["source"] for r in records} | {c for r in records for c in r["extra"].split(",")}
    assert "icons:alias" not in used
    assert copies == ["icons-theme/icons:alias"]
    assert len(records) == 4  # one query per held-out content drawn: the four that are not copies
