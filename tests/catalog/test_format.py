"""read_catalog reports every structural problem with its path, before anything is imported."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from inference_service.catalog.format import CatalogError, read_catalog
from tests.helpers.catalogs import unreadable, write_catalog


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


def spec_dir(catalog: Path, *names: str, slug: str = "style-00") -> Path:
    """A LoRA's spec/ folder holding a copy of a sample under each name."""
    spec = catalog / "loras" / slug / "spec"
    spec.mkdir()
    for name in names:
        shutil.copy(catalog / "samples" / "s00.png", spec / name)
    return spec


def test_spec_image_names_are_canonical_and_fit_an_integer(catalog: Path) -> None:
    """00-1 and 0-01 were both spec point (0, 1), 0-99999999999 overflowed PostgreSQL's integer:
    the import crashed half-way (UniqueViolation, out of range), at the same LoRA on every rerun."""
    spec = spec_dir(catalog, "0-1.png", "00-1.png", "0-01.png", "0-1.jpg", "1-2147483647.png")
    spec_dir_names = ["1-2147483648.png", "1-99999999999.png", "x-1.png"]
    for name in spec_dir_names:
        shutil.copy(spec / "0-1.png", spec / name)
    problems = problems_of(catalog)
    assert sorted(problems) == sorted(
        [
            f"{spec}/00-1.png: leading zeros in a spec image name: rename it 0-1.png",
            f"{spec}/0-01.png: leading zeros in a spec image name: rename it 0-1.png",
            f"{spec}/0-1.png: duplicate spec id '0-1' (also 0-1.jpg)",
            f"{spec}/1-2147483648.png: a number in its name is over 2147483647: renumber it",
            f"{spec}/1-99999999999.png: a number in its name is over 2147483647: renumber it",
            f"{spec}/x-1.png: spec images are named <prompt_id>-<n> (such as 0-1.png): rename it",
        ]
    )
    for name in ["00-1.png", "0-01.png", "0-1.png", *spec_dir_names]:
        (spec / name).unlink()
    points = read_catalog(catalog).loras["style-00"].spec
    assert [(p.prompt_id, p.n, p.path.name) for p in points] == [
        (0, 1, "0-1.jpg"),
        (1, 2147483647, "1-2147483647.png"),
    ]


def test_nul_in_catalog_toml_and_prompt_lines_is_refused_with_the_line(catalog: Path) -> None:
    """PostgreSQL text cannot hold NUL: the import crashed after committing part of the catalog."""
    (catalog / "catalog.toml").write_text('name = "te\\u0000st"\nnote = "\\u0000"\n')
    (catalog / "prompts.txt").write_text("a cat\n\na d\x00og\n")
    spec = spec_dir(catalog, "0-1.png")
    (spec / "prompts.txt").write_text("\x00\n")
    assert problems_of(catalog) == [
        f"{catalog}/prompts.txt: line 3 contains a NUL character: remove it",
        f"{spec}/prompts.txt: line 1 contains a NUL character: remove it",
        f"{catalog}/catalog.toml: name contains a NUL character",
        f"{catalog}/catalog.toml: note contains a NUL character",
    ]


def test_symbolic_links_are_refused_wherever_the_scan_looks(catalog: Path, tmp_path: Path) -> None:
    """A link in a catalog (someone's archive) made the import store, and search show, any file
    the operator can read. Links inside the catalog are refused too (see format._linked)."""
    outside = tmp_path / "private"
    outside.mkdir()
    secret = outside / "id.png"
    shutil.copy(catalog / "samples" / "s01.png", secret)
    lora = catalog / "loras" / "style-00"
    (lora / "references" / "s01.png").unlink()
    (lora / "references" / "s01.png").symlink_to(secret)
    (lora / "references" / "s02.png").unlink()
    (lora / "references" / "s02.png").symlink_to(Path("../../..") / "samples" / "s02.png")
    shutil.copytree(catalog / "loras" / "style-01", outside / "lora")
    shutil.rmtree(catalog / "loras" / "style-01")
    (catalog / "loras" / "style-01").symlink_to(outside / "lora")
    (outside / "lora.toml").write_text('name = "x"\n')
    (catalog / "loras" / "style-02" / "lora.toml").unlink()
    (catalog / "loras" / "style-02" / "lora.toml").symlink_to(outside / "lora.toml")
    (outside / "spec").mkdir()
    (lora / "spec").symlink_to(outside / "spec")
    (outside / "prompts.txt").write_text("a cat\n")
    (catalog / "prompts.txt").symlink_to(outside / "prompts.txt")
    problems = problems_of(catalog)
    link = (
        "a symbolic link (to {}); the catalog must hold its own files: "
        "replace the link with a copy of what it points to"
    )
    assert sorted(problems) == sorted(
        [
            f"{catalog}/prompts.txt: " + link.format(outside / "prompts.txt"),
            f"{lora}/references/s01.png: " + link.format(secret),
            f"{lora}/references/s02.png: " + link.format("../../../samples/s02.png"),
            f"{lora}/spec: " + link.format(outside / "spec"),
            f"{catalog}/loras/style-01: " + link.format(outside / "lora"),
            f"{catalog}/loras/style-02/lora.toml: " + link.format(outside / "lora.toml"),
        ]
    )
    # A linked samples/ or references/ folder is named, and not also reported missing.
    shutil.move(catalog / "samples", outside / "samples")
    (catalog / "samples").symlink_to(outside / "samples")
    assert f"{catalog}/samples: " + link.format(outside / "samples") in problems_of(catalog)
    assert not any("samples: missing" in p for p in problems_of(catalog))


def test_text_files_that_do_not_read_as_utf8_are_problems_not_tracebacks(catalog: Path) -> None:
    (catalog / "loras" / "style-00" / "lora.toml").write_bytes('name = "Café"\n'.encode("latin-1"))
    (catalog / "loras" / "style-01" / "lora.toml").unlink()
    (catalog / "loras" / "style-01" / "lora.toml").mkdir()
    (catalog / "prompts.txt").write_bytes("a café\n".encode("latin-1"))
    spec = spec_dir(catalog, "0-1.png", slug="style-02")
    (spec / "prompts.txt").mkdir()
    assert sorted(problems_of(catalog)) == sorted(
        [
            f"{catalog}/loras/style-00/lora.toml: not UTF-8 text (byte 11): save it as UTF-8",
            f"{catalog}/loras/style-01/lora.toml: not a regular file: make it a UTF-8 text file",
            f"{catalog}/prompts.txt: not UTF-8 text (byte 5): save it as UTF-8",
            f"{spec}/prompts.txt: not a regular file: make it a UTF-8 text file",
        ]
    )


def test_a_byte_order_mark_is_not_part_of_the_text(catalog: Path) -> None:
    """It became part of prompt 0's text (and made a TOML file invalid)."""
    (catalog / "prompts.txt").write_text("\ufeffa cat\na dog\n", encoding="utf-8")
    (catalog / "catalog.toml").write_text('\ufeffname = "bom"\n', encoding="utf-8")
    parsed = read_catalog(catalog)
    assert (parsed.prompts, parsed.name) == (["a cat", "a dog"], "bom")


def test_an_unreadable_toml_file_is_named(catalog: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """(As root a mode-000 file still reads: the refusal is simulated.)"""
    path = catalog / "loras" / "style-00" / "lora.toml"
    unreadable(monkeypatch, path)
    assert problems_of(catalog) == [f"{path}: unreadable (Permission denied): make it readable to this user"]
