"""Freeciv tilesets: the same units and buildings (tags such as u.warriors, b.granary) drawn by
different artists.

A .tilespec lists the .spec files it uses; a .spec cuts tagged sprites from a PNG sheet on a
grid (`[grid_*]`: x_top_left, y_top_left, dx, dy, pixel_border and a row/column/tag table) or
names one PNG per tag (`sprites = {"tag", "file" ...}`). Tilesets that use the same .spec
files share their art, so a style here is a set of .spec files (for units, or for buildings),
named after the tilesets that use it: trident, isotrident, hex2t and isophex are one units
style, not four. Oriented unit sheets (u.warriors_s, ...) stand for u.warriors in the tileset's
`unit_default_orientation`.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from lab.zoo.real_art import debian
from lab.zoo.real_art.art import ArtError, ArtStyle, SourceScan, load_png

SOURCE = "freeciv"
PACKAGE = "freeciv-data"
DATA_DIR = Path("/usr/share/games/freeciv")
KINDS = {"u.": "units", "b.": "buildings"}
ORIENTATIONS = ("n", "ne", "e", "se", "s", "sw", "w", "nw")

_TOKEN = re.compile(
    r"""(?P<string>"(?:[^"\\]|\\[\s\S])*")
      | _\(\s*(?P<gettext>"(?:[^"\\]|\\[\s\S])*")\s*\)
      | (?P<section>^\[[^\]\n]+\])
      | (?P<number>-?\d+)(?![\w.])
      | (?P<ident>[A-Za-z_][\w.]*)
      | (?P<punct>[=,{}])
      | (?P<newline>\n)
      | (?P<comment>[;#][^\n]*|^\*include[^\n]*)
      | (?P<space>[ \t\r]+)
      | (?P<other>.)""",
    re.VERBOSE | re.MULTILINE,
)


@dataclass
class Table:
    header: list[str]
    rows: list[list[str | int]]


@dataclass
class Secfile:
    """A parsed freeciv registry file: sections of key -> values (a key may repeat)."""

    path: Path
    sections: dict[str, dict[str, list[object]]] = field(default_factory=dict)

    def get(self, section: str, key: str, default: object = None) -> object:
        values = self.sections.get(section, {}).get(key)
        return values[0] if values else default

    def strings(self, section: str, key: str) -> list[str]:
        values = self.sections.get(section, {}).get(key, [])
        return [v for v in values if isinstance(v, str)]


def _tokens(text: str, path: Path) -> list[tuple[str, object, int]]:
    tokens: list[tuple[str, object, int]] = []
    line = 1
    for match in _TOKEN.finditer(text):
        kind = match.lastgroup or "other"
        raw = match.group()
        if kind == "other":
            raise ArtError(f"{path}:{line}: unexpected {raw!r}")
        if kind in ("string", "gettext"):
            quoted = match.group(kind)
            tokens.append(("string", _unescape(quoted[1:-1]), line))
        elif kind == "section":
            tokens.append(("section", raw[1:-1].strip(), line))
        elif kind == "number":
            tokens.append(("number", int(raw), line))
        elif kind == "ident":
            tokens.append(("ident", raw, line))
        elif kind == "punct":
            tokens.append((raw, raw, line))
        elif kind == "newline":
            tokens.append(("newline", "\n", line))
        line += raw.count("\n")
    return tokens


def _unescape(body: str) -> str:
    """A quoted string's text: a backslash before a newline joins the lines, before any other
    character it stands for that character."""
    return re.sub(r"\\(\n|.)", lambda m: "" if m.group(1) == "\n" else m.group(1), body)


def parse_secfile(path: Path) -> Secfile:
    """Parse the subset of freeciv's registry format that tilesets use."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise ArtError(f"{path}: cannot read ({exc})") from exc
    tokens = _tokens(text, path)
    secfile = Secfile(path)
    section: dict[str, list[object]] | None = None
    i = 0

    def skip_newlines(j: int) -> int:
        while j < len(tokens) and tokens[j][0] == "newline":
            j += 1
        return j

    while i < len(tokens):
        kind, value, line = tokens[i]
        if kind == "newline":
            i += 1
        elif kind == "section":
            section = secfile.sections.setdefault(str(value), {})
            i += 1
        elif kind == "ident" and i + 1 < len(tokens) and tokens[i + 1][0] == "=":
            if section is None:
                raise ArtError(f"{path}:{line}: {value} = ... before any [section]")
            i = skip_newlines(i + 2)
            values: list[object] = []
            while True:
                item, i = _value(tokens, i, path)
                values.append(item)
                if i < len(tokens) and tokens[i][0] == ",":  # a list may continue on the next line
                    i = skip_newlines(i + 1)
                    continue
                break
            section.setdefault(str(value), []).extend(values)
        else:
            raise ArtError(f"{path}:{line}: expected 'key = value' or [section], got {value!r}")
    return secfile


def _value(tokens: list[tuple[str, object, int]], i: int, path: Path) -> tuple[object, int]:
    if i >= len(tokens):
        raise ArtError(f"{path}: value missing at the end of the file")
    kind, value, line = tokens[i]
    if kind in ("string", "number"):
        return value, i + 1
    if kind == "ident" and str(value).upper() in ("TRUE", "FALSE"):
        return str(value).upper() == "TRUE", i + 1
    if kind == "{":
        return _table(tokens, i + 1, path, line)
    raise ArtError(f"{path}:{line}: expected a value, got {value!r}")


def _table(tokens: list[tuple[str, object, int]], i: int, path: Path, start: int) -> tuple[Table, int]:
    rows: list[list[str | int]] = [[]]
    while i < len(tokens) and tokens[i][0] != "}":
        kind, value, line = tokens[i]
        if kind == "newline":
            if rows[-1] and tokens[i - 1][0] != ",":  # a trailing comma continues the row
                rows.append([])
        elif kind in ("string", "number"):
            rows[-1].append(value if isinstance(value, int) else str(value))
        elif kind != ",":
            raise ArtError(f"{path}:{line}: unexpected {value!r} in a table")
        i += 1
    if i >= len(tokens):
        raise ArtError(f"{path}:{start}: table not closed with '}}'")
    rows = [row for row in rows if row]
    if not rows or not all(isinstance(cell, str) for cell in rows[0]):
        raise ArtError(f"{path}:{start}: a table starts with its column names")
    return Table([str(cell) for cell in rows[0]], rows[1:]), i + 1


@dataclass(frozen=True)
class Sprite:
    sheet: Path
    box: tuple[int, int, int, int] | None  # None: the whole file


def spec_sprites(spec: Path, data_dir: Path) -> dict[str, Sprite]:
    """Every tag a .spec file defines, with where its pixels are."""
    secfile = parse_secfile(spec)
    sprites: dict[str, Sprite] = {}
    gfx = secfile.get("file", "gfx")
    for name, section in secfile.sections.items():
        if name.startswith("grid"):
            if not isinstance(gfx, str):
                raise ArtError(f'{spec}: [{name}] needs [file] gfx = "..."')
            sheet = data_dir / f"{gfx}.png"
            x0, y0, dx, dy, border = (
                _number(section, key, spec, name)
                for key in ("x_top_left", "y_top_left", "dx", "dy", "pixel_border")
            )
            step_x, step_y = dx + border, dy + border
            if dx <= 0 or dy <= 0:
                raise ArtError(f"{spec}: [{name}] dx and dy must be positive")
            for table in section.get("tiles", []):
                if not isinstance(table, Table) or table.header[:2] != ["row", "column"]:
                    raise ArtError(f'{spec}: [{name}] tiles must be a {{"row", "column", "tag"}} table')
                for row in table.rows:
                    if len(row) < 3 or not isinstance(row[0], int) or not isinstance(row[1], int):
                        raise ArtError(f"{spec}: [{name}] bad tiles row {row}")
                    left, top = x0 + row[1] * step_x, y0 + row[0] * step_y
                    for tag in row[2:]:  # extra columns are more tags for the same tile
                        sprites[str(tag)] = Sprite(sheet, (left, top, left + dx, top + dy))
        for table in section.get("sprites", []):
            if not isinstance(table, Table) or table.header[:2] != ["tag", "file"]:
                raise ArtError(f'{spec}: [{name}] sprites must be a {{"tag", "file"}} table')
            for row in table.rows:
                if len(row) >= 2:
                    sprites[str(row[0])] = Sprite(data_dir / f"{row[1]}.png", None)
    return sprites


def _number(section: dict[str, list[object]], key: str, spec: Path, name: str) -> int:
    value = section.get(key, [0])[0]
    if not isinstance(value, int) or isinstance(value, bool):
        raise ArtError(f"{spec}: [{name}] {key} must be a whole number, not {value!r}")
    return value


@functools.lru_cache(maxsize=64)
def _sheet(path: Path) -> Image.Image:
    return load_png(path)


def cut(sprite: Sprite) -> Image.Image:
    sheet = _sheet(sprite.sheet)
    if sprite.box is None:
        return sheet.copy()
    right, bottom = sprite.box[2], sprite.box[3]
    if right > sheet.width or bottom > sheet.height:
        raise ArtError(
            f"{sprite.sheet}: tile {sprite.box} lies outside the {sheet.width}x{sheet.height} sheet"
        )
    return sheet.crop(sprite.box)


@dataclass
class _ArtSet:
    kind: str
    tilesets: list[str]
    sprites: dict[str, tuple[str, Sprite]]  # tag -> (.spec file, sprite)


def tileset_styles(data_dir: Path, package: str = PACKAGE) -> tuple[list[ArtStyle], list[str]]:
    """One style per distinct set of .spec files drawing a kind of content; and what was skipped."""
    skipped: list[str] = []
    sets: dict[tuple[str, tuple[str, ...]], _ArtSet] = {}
    spec_cache: dict[str, dict[str, Sprite]] = {}
    for tilespec in sorted(data_dir.glob("*.tilespec")):
        try:
            secfile = parse_secfile(tilespec)
        except ArtError as exc:
            skipped.append(str(exc))
            continue
        orientation = secfile.get("tilespec", "unit_default_orientation")
        files = secfile.strings("tilespec", "files")
        by_kind: dict[str, dict[str, tuple[str, Sprite]]] = {kind: {} for kind in KINDS.values()}
        for spec_name in files:
            if spec_name not in spec_cache:
                try:
                    spec_cache[spec_name] = spec_sprites(data_dir / spec_name, data_dir)
                except ArtError as exc:
                    skipped.append(str(exc))
                    spec_cache[spec_name] = {}
            for tag, sprite in spec_cache[spec_name].items():
                content = _content_tag(tag, orientation if isinstance(orientation, str) else None)
                if content is None:
                    continue
                kind = KINDS[content[:2]]
                by_kind[kind].setdefault(content, (spec_name, sprite))
        name = str(secfile.get("tilespec", "name", tilespec.stem))
        for kind, tags in by_kind.items():
            if not tags:
                continue
            specs = tuple(sorted({spec for spec, _ in tags.values()}))
            sets.setdefault((kind, specs), _ArtSet(kind, [], tags)).tilesets.append(name)
    styles = []
    for (kind, specs), art in sorted(sets.items()):
        counts = Counter(spec for spec, _ in art.sprites.values())
        main = max(specs, key=lambda spec: (counts[spec], spec))
        key = f"{kind}-{re.sub(r'[^a-z0-9]+', '-', main.removesuffix('.spec').lower()).strip('-')}"
        style = ArtStyle(
            source=SOURCE,
            key=key,
            name=f"Freeciv {kind} ({', '.join(art.tilesets)})",
            package=package,
            family=key,
            files=[str(data_dir / spec) for spec in specs],
            pixel_art=True,
            note=f"tilesets: {', '.join(art.tilesets)}",
        )
        for tag, (_, sprite) in sorted(art.sprites.items()):
            style.items[tag] = functools.partial(_render, sprite)
        styles.append(style)
    return styles, skipped


def _render(sprite: Sprite, box: int) -> Image.Image:
    del box  # pixel art: the zoo scales it by a whole factor
    return cut(sprite)


def _content_tag(tag: str, orientation: str | None) -> str | None:
    """The content a tag draws (u.warriors for u.warriors_s when "s" is the default), or None."""
    if tag[:2] not in KINDS:
        return None
    base, _, suffix = tag.rpartition("_")
    if tag.startswith("u.") and base and suffix in ORIENTATIONS:
        return base if suffix == orientation else None
    return tag


def scan(data_dir: Path = DATA_DIR) -> SourceScan:
    packages = debian.installed([PACKAGE])
    if not any(data_dir.glob("*.tilespec")):
        missing = [] if PACKAGE in packages else [PACKAGE]
        hint = debian.missing_message(SOURCE, missing or [PACKAGE], f"no tilesets in {data_dir}")
        return SourceScan(SOURCE, [], [hint])
    styles, skipped = tileset_styles(data_dir)
    return SourceScan(SOURCE, styles, [], skipped)
