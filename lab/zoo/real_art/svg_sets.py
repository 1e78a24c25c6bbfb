"""Card decks and mahjongg tilesets from KDE Games: one SVG per set, one element id per card or
tile, the same ids in every set (1_club ... king_spade; BAMBOO_1 ... SEASON_4).

Each set is a style, drawn element by element by rsvg-convert (`--export-id`). The zoom that
makes a set's cards about the zoo's size is measured once per set on its first element.
Families: decks whose directory names share their first word (oxygen, oxygen-air,
oxygen-white; nicu-ornamental, nicu-white; xskat-french, xskat-german) are one designer's;
tilesets whose `Author=` lines share a name are one artist's.
"""

from __future__ import annotations

import configparser
import functools
import gzip
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from lab.zoo.real_art import debian
from lab.zoo.real_art.art import (
    RSVG_PACKAGE,
    ArtError,
    ArtStyle,
    SourceScan,
    crop_to_ink,
    have_rsvg,
    render_svg,
)

CARD_PACKAGE = "kdegames-card-data-kf5"
CARD_ROOT = Path("/usr/share/carddecks")
CARD_IDS = tuple(
    f"{rank}_{suit}"
    for suit in ("club", "diamond", "heart", "spade")
    for rank in (*map(str, range(1, 11)), "jack", "queen", "king")
)
MAHJONGG_PACKAGE = "kdegames-mahjongg-data-kf5"
MAHJONGG_ROOT = Path("/usr/share/kmahjongglib/tilesets")
MAHJONGG_IDS = (
    *(f"{suit}_{n}" for suit in ("CHARACTER", "ROD", "BAMBOO") for n in range(1, 10)),
    *(f"DRAGON_{n}" for n in range(1, 4)),
    *(f"{suit}_{n}" for suit in ("WIND", "FLOWER", "SEASON") for n in range(1, 5)),
)


def read_desktop(path: Path, group: str) -> dict[str, str]:
    """The untranslated keys of one group of a .desktop file."""
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    try:
        parser.read_string(path.read_text(encoding="utf-8", errors="replace"), str(path))
    except (OSError, configparser.Error) as exc:
        raise ArtError(f"{path}: not a readable .desktop file ({exc})") from exc
    if not parser.has_section(group):
        raise ArtError(f"{path}: no [{group}] group")
    return {key: value for key, value in parser[group].items() if "[" not in key}


def svg_ids(path: Path) -> set[str]:
    """Every id="..." in an SVG or gzip-compressed SVGZ file."""
    try:
        raw = path.read_bytes()
        text = (gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw).decode("utf-8", "replace")
    except (OSError, EOFError) as exc:
        raise ArtError(f"{path}: cannot read ({exc})") from exc
    return set(re.findall(r'\sid="([^"]+)"', text))


@dataclass
class _Zoom:
    """The zoom that draws one of a set's elements about `box` pixels tall, found once."""

    svg: Path
    probe: str
    values: dict[int, float] = field(default_factory=dict)

    def __call__(self, box: int) -> float:
        if box not in self.values:
            ink = crop_to_ink(render_svg(self.svg, element=self.probe, zoom=1.0))
            self.values[box] = min(8.0, max(0.05, box / max(ink.width, ink.height)))
        return self.values[box]


def _render(svg: Path, element: str, zoom: _Zoom, tile: str | None, box: int) -> Image.Image:
    face = crop_to_ink(render_svg(svg, element=element, zoom=zoom(box)))
    if tile is None:
        return face
    # Mahjongg faces are drawn for their set's tile (some are white glyphs for a dark tile).
    base = crop_to_ink(render_svg(svg, element=tile, zoom=zoom(box)))
    base.alpha_composite(face, ((base.width - face.width) // 2, (base.height - face.height) // 2))
    return base


def svg_set_style(
    source: str,
    key: str,
    name: str,
    package: str,
    family: str,
    svg: Path,
    wanted: tuple[str, ...],
    tile: str | None = None,
) -> ArtStyle:
    ids = svg_ids(svg)
    present = [element for element in wanted if element in ids]
    style = ArtStyle(source, key, name, package, family, [str(svg)])
    if present:
        zoom = _Zoom(svg, tile if tile in ids else present[0])
        for element in present:
            item = functools.partial(_render, svg, element, zoom, tile if tile in ids else None)
            style.items[element.lower()] = item
    return style


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def card_styles(root: Path, package: str = CARD_PACKAGE) -> tuple[list[ArtStyle], list[str]]:
    styles: list[ArtStyle] = []
    skipped: list[str] = []
    for desktop in sorted(root.glob("*/index.desktop")):
        try:
            meta = read_desktop(desktop, "KDE Backdeck")
            if "SVG" not in meta:
                raise ArtError(f"{desktop}: no SVG= key (a bitmap deck)")
            key = _slug(desktop.parent.name.removeprefix("svg-"))
            style = svg_set_style(
                "cards",
                key,
                f"{meta.get('Name', key)} card deck",
                package,
                key.split("-")[0],
                desktop.parent / meta["SVG"],
                CARD_IDS,
            )
        except ArtError as exc:
            skipped.append(str(exc))
            continue
        if style.items:
            styles.append(style)
        else:
            skipped.append(f"{desktop}: no card ids in {meta['SVG']}")
    return styles, skipped


def mahjongg_styles(root: Path, package: str = MAHJONGG_PACKAGE) -> tuple[list[ArtStyle], list[str]]:
    styles: list[ArtStyle] = []
    skipped: list[str] = []
    authors: dict[str, set[str]] = {}
    for desktop in sorted(root.glob("*.desktop")):
        try:
            meta = read_desktop(desktop, "KMahjonggTileset")
            key = _slug(desktop.stem)
            style = svg_set_style(
                "mahjongg",
                key,
                f"{meta.get('Name', key)} mahjongg tileset",
                package,
                key,
                desktop.parent / meta.get("FileName", f"{desktop.stem}.svgz"),
                MAHJONGG_IDS,
                tile="TILE_1",
            )
        except ArtError as exc:
            skipped.append(str(exc))
            continue
        if not style.items:
            skipped.append(f"{desktop}: no tile ids")
            continue
        authors[key] = {
            part.strip().lower()
            for part in re.split(r"[&,\[\]/]| and ", meta.get("Author", ""))
            if part.strip()
        }
        style.note = f"author: {meta.get('Author', 'unknown')}"
        styles.append(style)
    # One artist, one family: join sets whose author lists share a name.
    for i, style in enumerate(styles):
        for other in styles[:i]:
            if authors[style.key] & authors[other.key]:
                style.family = other.family
                break
    return styles, skipped


StylesOf = Callable[[Path, str], tuple[list[ArtStyle], list[str]]]


def _scan(source: str, package: str, root: Path, styles_of: StylesOf) -> SourceScan:
    result = SourceScan(source, [])
    if not root.is_dir():
        result.missing.append(debian.missing_message(source, [package], f"no {root}"))
        return result
    if not have_rsvg():
        result.missing.append(
            f"{source}: its sets are SVG and need rsvg-convert; "
            f"to add it: {debian.install_hint([RSVG_PACKAGE])}"
        )
        return result
    styles, skipped = styles_of(root, package)
    result.styles, result.skipped = styles, skipped
    return result


def scan_cards(root: Path = CARD_ROOT) -> SourceScan:
    return _scan("cards", CARD_PACKAGE, root, card_styles)


def scan_mahjongg(root: Path = MAHJONGG_ROOT) -> SourceScan:
    return _scan("mahjongg", MAHJONGG_PACKAGE, root, mahjongg_styles)
