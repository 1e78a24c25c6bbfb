"""Small inputs in the real file formats, written by the tests: freeciv tilesets (.tilespec,
.spec, PNG sheets), freedesktop icon themes (index.theme + PNGs) and TrueType fonts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from fontTools.fontBuilder import FontBuilder  # type: ignore[import-untyped]
from fontTools.pens.ttGlyphPen import TTGlyphPen  # type: ignore[import-untyped]
from PIL import Image, ImageDraw

# Distinct, saturated colours: styles drawn in them never look alike to the near-duplicate test.
PALETTES = [
    ((200, 30, 30), (30, 30, 160)),
    ((20, 150, 40), (230, 200, 20)),
    ((120, 40, 170), (20, 180, 190)),
    ((240, 120, 10), (60, 60, 60)),
    ((10, 90, 200), (240, 80, 160)),
    ((140, 90, 30), (150, 230, 120)),
]


def drawing(content: int, palette: int, size: int) -> Image.Image:
    """A picture of `content` in `palette`'s manner: the shape says what, the colours say who."""
    fill, line = PALETTES[palette % len(PALETTES)]
    image = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    rng = np.random.default_rng(content)
    points = [(int(x), int(y)) for x, y in rng.integers(1, size - 1, size=(3 + content % 4, 2))]
    draw.polygon(points, fill=(*fill, 255), outline=(*line, 255), width=max(1, size // 16 + palette % 3))
    inset = size // 4 + content % (size // 4)
    draw.ellipse((inset // 2, inset // 2, size - inset, size - inset), outline=(*line, 255), width=2)
    return image


UNIT_TAGS = [f"u.unit{i:02d}" for i in range(40)]


def write_units_sheet(data_dir: Path, name: str, palette: int, tags: list[str], tile: int = 16) -> None:
    """name/units.png (a grid with a 1 px border) and name/units.spec cutting it by tag."""
    folder = data_dir / name
    folder.mkdir(parents=True, exist_ok=True)
    columns = 8
    rows = (len(tags) + columns - 1) // columns
    sheet = Image.new("RGBA", (1 + columns * (tile + 1), 1 + rows * (tile + 1)), (0, 0, 0, 0))
    lines = []
    for index, tag in enumerate(tags):
        row, column = divmod(index, columns)
        sheet.paste(drawing(index, palette, tile), (1 + column * (tile + 1), 1 + row * (tile + 1)))
        lines.append(f'  {row}, {column}, "{tag}"')
    sheet.save(folder / "units.png")
    (folder / "units.spec").write_text(
        "\n".join(
            [
                "[spec]",
                'options = "+Freeciv-3.0-spec"',
                "[info]",
                f'artists = "\n    Artist {name}\n"',
                "[file]",
                f'gfx = "{name}/units"',
                "[grid_main]",
                "x_top_left = 1",
                "y_top_left = 1",
                f"dx = {tile}",
                f"dy = {tile}",
                "pixel_border = 1",
                'tiles = { "row", "column", "tag"',
                *lines,
                "}",
            ]
        )
        + "\n",
        encoding="utf-8",
    )


def write_tilespec(data_dir: Path, name: str, specs: list[str], orientation: str | None = None) -> None:
    files = ",\n  ".join(f'"{spec}"' for spec in specs)
    orient = f'unit_default_orientation = "{orientation}"\n' if orientation else ""
    (data_dir / f"{name}.tilespec").write_text(
        f'[tilespec]\noptions = "+Freeciv-3.0-tilespec"\nname = "{name.title()}"\n'
        f'summary = _("\\\nA test tileset.\\\n")\n{orient}'
        f"; a comment\nfiles =\n  {files}\n",
        encoding="utf-8",
    )


def write_icon_theme(
    icon_root: Path, name: str, palette: int, names: list[str], size: int = 64, extra: bool = True
) -> Path:
    """An icon theme: index.theme and <size>x<size>/places/<name>.png for every name (plus a small
    copy in 16x16, symbolic icons, panel glyphs and a non-picture context when `extra`)."""
    root = icon_root / name
    big = root / f"{size}x{size}" / "places"
    big.mkdir(parents=True)
    for index, icon in enumerate(names):
        drawing(index, palette, size).save(big / f"{icon}.png")
    directories = [f"{size}x{size}/places"]
    sections = [f"[{size}x{size}/places]\nSize={size}\nContext=Places\nType=Fixed\n"]
    if extra:
        small = root / "16x16" / "places"
        small.mkdir(parents=True)
        for index, icon in enumerate(names):
            drawing(index, palette, 16).save(small / f"{icon}.png")
        for symbolic in ("folder-symbolic", "folder-symbolic.symbolic", "go-up-symbolic-rtl"):
            drawing(99, palette, size).save(big / f"{symbolic}.png")
        anim = root / "22x22" / "animations"
        anim.mkdir(parents=True)
        drawing(98, palette, 22).save(anim / "process-working.png")
        panel = root / "24x24" / "panel"  # a status context that holds the panel's glyphs
        panel.mkdir(parents=True)
        drawing(97, palette, 24).save(panel / "battery-low.png")
        directories += ["16x16/places", "22x22/animations", "24x24/panel"]
        sections += [
            "[16x16/places]\nSize=16\nContext=Places\nType=Fixed\n",
            "[22x22/animations]\nSize=22\nContext=Animations\nType=Fixed\n",
            "[24x24/panel]\nSize=24\nContext=Status\nType=Fixed\n",
        ]
    (root / "index.theme").write_text(
        f"[Icon Theme]\nName={name.title()}\nName[de]=Thema\nComment=test\nInherits=hicolor\n"
        f"Directories={','.join(directories)}\n\n" + "\n".join(sections),
        encoding="utf-8",
    )
    return root


def write_font(
    path: Path,
    family: str,
    style: str = "Regular",
    weight: int = 400,
    italic: bool = False,
    characters: str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
    shape: str = "box",
) -> Path:
    """A TrueType font whose glyphs are simple outlines: "box" (a rectangle) or "wedge" (a
    triangle), each letter a different height so texts differ."""
    glyph_names = [".notdef", "space", *(f"g{ord(c)}" for c in characters)]
    builder = FontBuilder(1000, isTTF=True)
    builder.setupGlyphOrder(glyph_names)
    builder.setupCharacterMap({32: "space", **{ord(c): f"g{ord(c)}" for c in characters}})
    glyphs = {}
    for name in glyph_names:
        pen = TTGlyphPen(None)
        if name.startswith("g"):
            top = 300 + (int(name[1:]) * 37) % 500
            if shape == "box":
                pen.moveTo((50, 0))
                pen.lineTo((50, top))
                pen.lineTo((450, top))
                pen.lineTo((450, 0))
            else:
                pen.moveTo((20, 0))
                pen.lineTo((250, top))
                pen.lineTo((480, 0))
            pen.closePath()
        glyphs[name] = pen.glyph()
    builder.setupGlyf(glyphs)
    builder.setupHorizontalMetrics({name: (500, 0) for name in glyph_names})
    builder.setupHorizontalHeader(ascent=800, descent=-200)
    builder.setupNameTable({"familyName": family, "styleName": style})
    builder.setupOS2(usWeightClass=weight, fsSelection=0x01 if italic else 0x40)
    builder.updateHead(macStyle=0x02 if italic else 0)
    builder.setupPost()
    path.parent.mkdir(parents=True, exist_ok=True)
    builder.save(str(path))
    return path
