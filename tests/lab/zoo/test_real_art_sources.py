"""The real-art parsers on inputs the tests write in the real formats (no Debian package needed)."""

from __future__ import annotations

import string
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lab.zoo.real_art import art, debian, fonts, freeciv, icons, svg_sets
from lab.zoo.real_art.art import ArtError, render_item
from tests.lab.zoo.real_art_inputs import (
    UNIT_TAGS,
    drawing,
    write_font,
    write_icon_theme,
    write_tilespec,
    write_units_sheet,
)

ABSENT = "findlora-test-absent-package"


def test_spec_grid_cuts_tiles_by_tag_with_border_and_aliases(tmp_path: Path) -> None:
    write_units_sheet(tmp_path, "alpha", 0, UNIT_TAGS[:10])
    spec = tmp_path / "alpha" / "units.spec"
    spec.write_text(
        spec.read_text().replace('"u.unit09"', '"u.unit09",\n     "u.alias"'),  # a continued row
        encoding="utf-8",
    )
    sprites = freeciv.spec_sprites(spec, tmp_path)
    assert set(sprites) == {*UNIT_TAGS[:10], "u.alias"}
    # Row 1, column 1 with x_top_left 1, dx 16, pixel_border 1: x from 1 + 17 = 18.
    assert sprites["u.unit09"].box == (18, 18, 34, 34)
    assert sprites["u.alias"] == sprites["u.unit09"]
    expected = np.asarray(drawing(9, 0, 16))
    assert np.array_equal(np.asarray(freeciv.cut(sprites["u.unit09"])), expected)


def test_spec_sprites_table_names_one_file_per_tag(tmp_path: Path) -> None:
    (tmp_path / "buildings").mkdir()
    for index, tag in enumerate(("granary", "temple")):
        drawing(index, 1, 24).save(tmp_path / "buildings" / f"{tag}.png")
    spec = tmp_path / "large.spec"
    spec.write_text(
        '[spec]\noptions = "+Freeciv-3.0-spec"\n[extra]\nsprites =\n\t{\t"tag", "file"\n'
        '\t\t"b.granary", "buildings/granary"\n\t\t"b.temple", "buildings/temple"\n\t}\n',
        encoding="utf-8",
    )
    sprites = freeciv.spec_sprites(spec, tmp_path)
    assert sprites["b.temple"] == freeciv.Sprite(tmp_path / "buildings" / "temple.png", None)
    assert freeciv.cut(sprites["b.granary"]).size == (24, 24)


def test_tilesets_sharing_spec_files_are_one_style_and_orientation_picks_the_default(tmp_path: Path) -> None:
    write_units_sheet(tmp_path, "alpha", 0, UNIT_TAGS[:6])
    oriented = [f"u.unit{i:02d}_{d}" for i in range(6) for d in ("s", "sw")]
    write_units_sheet(tmp_path, "toon", 1, oriented)
    write_tilespec(tmp_path, "alpha", ["alpha/units.spec"])
    write_tilespec(tmp_path, "alphahex", ["alpha/units.spec"])  # reuses alpha's art
    write_tilespec(tmp_path, "toon", ["toon/units.spec"], orientation="sw")
    styles, skipped = freeciv.tileset_styles(tmp_path, package=ABSENT)
    assert skipped == []
    by_key = {style.key: style for style in styles}
    assert set(by_key) == {"units-alpha-units", "units-toon-units"}
    assert "Alpha, Alphahex" in by_key["units-alpha-units"].name
    toon = by_key["units-toon-units"]
    assert sorted(toon.items) == UNIT_TAGS[:6]
    # u.unit03 is the _sw tile: index 3 * 2 + 1 of the toon sheet.
    assert np.array_equal(np.asarray(toon.items["u.unit03"](128)), np.asarray(drawing(7, 1, 16)))
    # Pixel art is scaled by a whole factor: 16 px -> 112 px in a 160 px canvas's 128 px box.
    image = render_item(toon, "u.unit03", 160)
    assert image.size == (160, 160)
    assert image.getpixel((0, 0)) == art.BACKGROUND


def test_broken_spec_files_fail_with_their_path_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.spec"
    bad.write_text('[spec]\nname = "x"\nwhat is this\n', encoding="utf-8")
    with pytest.raises(ArtError, match=r"bad\.spec:3"):
        freeciv.parse_secfile(bad)
    unclosed = tmp_path / "unclosed.spec"
    unclosed.write_text('[grid_main]\ntiles = { "row", "column", "tag"\n 0, 0, "u.x"\n', encoding="utf-8")
    with pytest.raises(ArtError, match="not closed"):
        freeciv.parse_secfile(unclosed)
    outside = tmp_path / "outside.spec"
    drawing(0, 0, 16).save(tmp_path / "small.png")
    outside.write_text(
        '[file]\ngfx = "small"\n[grid_main]\ndx = 16\ndy = 16\ntiles = { "row", "column", "tag"\n'
        ' 3, 3, "u.far"\n}\n',
        encoding="utf-8",
    )
    with pytest.raises(ArtError, match="outside"):
        freeciv.cut(freeciv.spec_sprites(outside, tmp_path)["u.far"])


def test_freeciv_without_tilesets_says_which_package_to_install(tmp_path: Path) -> None:
    scan = freeciv.scan(tmp_path)
    assert scan.styles == []
    assert scan.missing == [
        f"freeciv: not installed: freeciv-data (no tilesets in {tmp_path}); "
        "to add it: apt-get install -y freeciv-data"
    ]


def test_icon_theme_reads_picture_contexts_and_picks_the_largest_raster(tmp_path: Path) -> None:
    names = ["folder", "user-home", "network-server"]
    root = write_icon_theme(tmp_path, "Zest", 2, names, size=64)
    theme = icons.read_theme(root)
    assert theme.name == "Zest"
    assert set(theme.icons) == set(names)  # no symbolic icon, no panel glyph, no animation
    assert {f.size for f in theme.icons["folder"]} == {16, 64}
    style = icons.theme_style(theme, ABSENT, "zest", box=128, vectors=False)
    # No raster >= 128 and no vector: the 64 px one (>= MIN_RASTER), not the 16 px one.
    with Image.open(root / "64x64" / "places" / "folder.png") as expected:
        assert np.array_equal(np.asarray(style.items["folder"](128)), np.asarray(expected.convert("RGBA")))


def test_icon_choice_prefers_large_rasters_then_vectors(tmp_path: Path) -> None:
    small = icons.IconFile(tmp_path / "a.png", 32, False)
    mid = icons.IconFile(tmp_path / "b.png", 96, False)
    large = icons.IconFile(tmp_path / "c.png", 256, False)
    vector = icons.IconFile(tmp_path / "d.svg", 48, True)
    assert icons.best_file([small, mid, large, vector], 128, vectors=True) == large
    assert icons.best_file([small, mid, vector], 128, vectors=True) == vector
    assert icons.best_file([small, mid, vector], 128, vectors=False) == mid
    assert icons.best_file([small], 128, vectors=False) is None


def test_main_theme_of_a_package_is_the_plain_one(tmp_path: Path) -> None:
    files = [tmp_path / "Set" / "index.theme", tmp_path / "Set-Dark" / "index.theme"]
    files += [tmp_path / "Set" / "48x48" / f"i{n}.png" for n in range(5)]
    files += [tmp_path / "Set-Dark" / "48x48" / f"i{n}.svg" for n in range(6)]
    assert icons.main_theme(files, tmp_path) == tmp_path / "Set"
    assert icons.main_theme(files[1:2] + files[7:], tmp_path) == tmp_path / "Set-Dark"


def test_broken_index_theme_is_reported(tmp_path: Path) -> None:
    (tmp_path / "Broken").mkdir()
    (tmp_path / "Broken" / "index.theme").write_text("Name=no header\n", encoding="utf-8")
    with pytest.raises(ArtError, match=r"index\.theme"):
        icons.read_theme(tmp_path / "Broken")


def test_svg_needs_rsvg_convert_and_says_how_to_get_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    svg = tmp_path / "icon.svg"
    svg.write_text(
        '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>'
    )
    monkeypatch.setattr(art, "RSVG", "findlora-no-such-rsvg-convert")
    with pytest.raises(ArtError, match="apt-get install -y librsvg2-bin"):
        art.render_svg(svg, width=64)
    scan = svg_sets.scan_cards(tmp_path)  # a directory exists, the renderer does not
    assert scan.styles == []
    assert any("apt-get install -y librsvg2-bin" in line for line in scan.missing)


def test_missing_packages_are_named_with_the_install_command(tmp_path: Path) -> None:
    assert debian.installed([ABSENT]) == {}
    icon_scan = icons.scan(128, packages=(ABSENT,), icon_root=tmp_path)
    assert icon_scan.styles == []
    assert icon_scan.missing[0] == (
        f"icons: not installed: {ABSENT} (1 of 1 themes); to add it: apt-get install -y {ABSENT}"
    )
    font_scan = fonts.scan(packages=(ABSENT, "findlora-test-absent-b"))
    assert font_scan.missing[0].endswith(f"apt-get install -y findlora-test-absent-b {ABSENT}")
    card_scan = svg_sets.scan_cards(tmp_path / "none")
    assert card_scan.missing == [
        f"cards: not installed: kdegames-card-data-kf5 (no {tmp_path / 'none'}); "
        "to add it: apt-get install -y kdegames-card-data-kf5"
    ]


def test_font_faces_regular_choice_coverage_and_rendering(tmp_path: Path) -> None:
    files = [
        write_font(tmp_path / "Boxy-Bold.ttf", "Boxy", "Bold", weight=700),
        write_font(tmp_path / "Boxy-Italic.ttf", "Boxy", "Italic", italic=True),
        write_font(tmp_path / "Boxy-Regular.ttf", "Boxy", "Regular"),
        write_font(tmp_path / "BoxyMono.ttf", "Boxy Mono"),  # a sister family of Boxy: skipped
        write_font(tmp_path / "BoxyMath.ttf", "Wedge Math", shape="wedge"),  # not text: skipped
        write_font(
            tmp_path / "Wedge.ttf", "Wedge", shape="wedge", characters=string.ascii_letters.replace("z", "")
        ),
    ]
    face = fonts.read_face(files[0])
    assert (face.family, face.subfamily, face.weight, face.italic) == ("Boxy", "Bold", 700, False)
    skipped: list[str] = []
    styles = fonts.package_styles(ABSENT, "boxy-fonts", files, skipped, limit=5)
    assert [style.key for style in styles] == ["boxy", "wedge"]
    assert styles[0].files == [str(tmp_path / "Boxy-Regular.ttf")]
    # Wedge has no "z": the texts with a z are not drawn in it.
    with_z = {cid for cid, text in fonts.CONTENTS.items() if "z" in text}
    assert with_z
    assert not with_z & set(styles[1].items)
    assert set(styles[0].items) == set(fonts.CONTENTS)
    content = sorted(set(styles[0].items) & set(styles[1].items))[0]
    boxy, wedge = (np.asarray(render_item(style, content, 160), dtype=np.int16) for style in styles)
    assert boxy.shape == (160, 160, 3)
    assert (boxy < 100).any()  # ink
    assert np.abs(boxy - wedge).mean() > 5  # two designs, one text: different pictures


def test_unreadable_font_is_skipped_with_its_path(tmp_path: Path) -> None:
    bad = tmp_path / "bad.ttf"
    bad.write_bytes(b"not a font")
    skipped: list[str] = []
    assert fonts.package_styles(ABSENT, "x", [bad], skipped) == []
    assert len(skipped) == 1
    assert str(bad) in skipped[0]


def test_copyright_licence_per_file_and_free_text() -> None:
    dep5 = (
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n"
        "Upstream-Name: decks\n\n"
        "Files: *\nCopyright: 2001 A\nLicense: GPL-2+\n\n"
        "Files: carddecks/svg-penguins/*\nCopyright: 2009 B\nLicense: GPL-3+\n\n"
        "Files: carddecks/svg-konqi/* tilesets/jade.*\nCopyright: 2010 C\nLicense: Expat\n\n"
        "License: GPL-2+\n text\n"
    )
    assert debian.parse_copyright(dep5).primary == "GPL-2+"
    assert debian.parse_copyright(dep5).names == ("GPL-2+", "GPL-3+", "Expat")
    penguins = debian.parse_copyright(dep5, files=["/usr/share/carddecks/svg-penguins/penguins.svgz"])
    assert penguins.primary == "GPL-3+"
    jade = debian.parse_copyright(dep5, files=["/usr/share/kmahjongglib/tilesets/jade.svgz"])
    assert jade.names == ("Expat",)
    other = debian.parse_copyright(dep5, files=["/usr/share/carddecks/svg-oxygen/oxygen.svgz"])
    assert other.primary == "GPL-2+"
    free = debian.parse_copyright("This font is under the SIL Open Font License, Version 1.1.")
    assert free.primary == "OFL-1.1"
    assert debian.licence_of(ABSENT).primary.startswith("unknown")
