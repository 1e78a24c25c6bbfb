"""read_catalog reports every structural problem with its path, before anything is imported."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from inference_service.catalog.format import CatalogError, read_catalog
from tests.helpers.catalogs import write_catalog


@pytest.fixture
def catalog(tmp_path: Path) -> Path:
    return write_catalog(tmp_path / "cat", n_loras=3, n_samples=4)


def problems_of(root: Path) -> list[str]:
    with pytest.raises(CatalogError) as info:
        read_catalog(root)
    return info.value.problems


def test_reads_a_valid_catalog(catalog: Path) -> None:
    parsed = read_catalog(catalog)
    assert sorted(parsed.loras) == ["style-00", "style-01", "style-02"]
    assert sorted(parsed.samples) == ["s00", "s01", "s02", "s03"]
    entry = parsed.loras["style-01"]
    assert entry.trigger_words == ["trig1"]
    assert entry.url == "https://example.org/style-01"
    assert sorted(entry.references) == ["s00", "s01", "s02", "s03"]


def test_missing_samples_dir(catalog: Path) -> None:
    shutil.rmtree(catalog / "samples")
    problems = problems_of(catalog)
    assert any(p.startswith(str(catalog / "samples")) and "missing" in p for p in problems)
    # Every reference now names an unknown sample: all are reported, not just the first.
    assert sum("unknown sample id" in p for p in problems) == 12


def test_unknown_sample_id(catalog: Path) -> None:
    shutil.copy(catalog / "samples" / "s00.png", catalog / "loras" / "style-00" / "references" / "zz.png")
    problems = problems_of(catalog)
    assert problems == [
        f"{catalog}/loras/style-00/references/zz.png: unknown sample id 'zz' (no samples/zz.*)"
    ]


def test_bad_toml_is_reported_with_its_path(catalog: Path) -> None:
    (catalog / "loras" / "style-02" / "lora.toml").write_text('name = "unterminated\n')
    (catalog / "loras" / "style-01" / "lora.toml").write_text('name = "ok"\nbase_model = 9\n')
    problems = problems_of(catalog)
    assert any(p.startswith(f"{catalog}/loras/style-02/lora.toml: invalid TOML") for p in problems)
    assert f"{catalog}/loras/style-01/lora.toml: base_model must be a string" in problems


def test_duplicate_slug_differing_in_case(catalog: Path) -> None:
    shutil.copytree(catalog / "loras" / "style-00", catalog / "loras" / "Style-00")
    problems = problems_of(catalog)
    assert any("duplicate slug" in p or "slug must be lower-case" in p for p in problems)


def test_duplicate_sample_id_with_two_extensions(catalog: Path) -> None:
    shutil.copy(catalog / "samples" / "s00.png", catalog / "samples" / "s00.jpg")
    assert any("duplicate sample id 's00'" in p for p in problems_of(catalog))


def test_non_image_files_are_named(catalog: Path) -> None:
    (catalog / "samples" / "notes.txt").write_text("hello")
    assert any(p.startswith(f"{catalog}/samples/notes.txt: not a sample image") for p in problems_of(catalog))


def test_nul_characters_are_refused_before_import(catalog: Path) -> None:
    (catalog / "loras" / "style-00" / "lora.toml").write_text('name = "ok"\nauthor = "a\\u0000b"\n')
    (catalog / "loras" / "style-01" / "lora.toml").write_text('trigger_words = ["x\\u0000"]\n')
    problems = problems_of(catalog)
    assert f"{catalog}/loras/style-00/lora.toml: author contains a NUL character" in problems
    assert f"{catalog}/loras/style-01/lora.toml: trigger_words contains a NUL character" in problems
