"""Freedesktop icon themes: the same icon names (folder, user-trash, text-x-generic, ...) drawn
by different artists.

A theme directory has an `index.theme` (`[Icon Theme] Directories=` and, per directory, its
`Size`, `Scale`, `Context`); icons are `<directory>/<name>.png|.svg`. A style is one theme; its
drawing of a name is the largest raster at or above the zoo's size, else the largest vector,
else the largest raster of at least MIN_RASTER pixels. Symbolic (monochrome UI) icons and
contexts that are not pictures of things are left out.
"""

from __future__ import annotations

import configparser
import functools
import re
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from lab.zoo.real_art import debian
from lab.zoo.real_art.art import (
    RSVG_PACKAGE,
    ArtError,
    ArtStyle,
    SourceScan,
    have_rsvg,
    load_png,
    render_svg,
)

SOURCE = "icons"
ICON_ROOT = Path("/usr/share/icons")
PACKAGES = (
    "adwaita-icon-theme",
    "breeze-icon-theme",
    "deepin-icon-theme",
    "elementary-icon-theme",
    "elementary-xfce-icon-theme",
    "faba-icon-theme",
    "faenza-icon-theme",
    "gnome-brave-icon-theme",
    "gnome-human-icon-theme",
    "gnome-icon-theme",
    "gnome-icon-theme-gartoon",
    "gnome-icon-theme-nuovo",
    "gnome-icon-theme-suede",
    "gnome-icon-theme-yasis",
    "lxde-icon-theme",
    "mate-icon-theme",
    "moka-icon-theme",
    "numix-icon-theme",
    "numix-icon-theme-circle",
    "obsidian-icon-theme",
    "oxygen-icon-theme",
    "paper-icon-theme",
    "papirus-icon-theme",
    "sugar-icon-theme",
    "suru-icon-theme",
    "tango-icon-theme",
)
# Derivations the packages state (forks, variants, one designer's sets): one family each.
# Near-duplicate drawings found in the data merge further families (real_zoo.py).
KNOWN_FAMILIES = {
    "obsidian-icon-theme": "faenza",  # "Faenza-like", built from Faenza
    "faenza-icon-theme": "faenza",
    "elementary-xfce-icon-theme": "elementary",  # elementary modified for Xfce
    "elementary-icon-theme": "elementary",
    "numix-icon-theme-circle": "numix",
    "numix-icon-theme": "numix",
    "moka-icon-theme": "snwh",  # Moka, Faba, Paper, Suru: one designer's sets
    "faba-icon-theme": "snwh",
    "paper-icon-theme": "snwh",
    "suru-icon-theme": "snwh",
    "mate-icon-theme": "gnome",  # MATE's icons are a fork of GNOME 2's
    "gnome-icon-theme": "gnome",
}
CONTEXTS = {"places", "mimetypes", "devices", "applications", "apps", "categories", "status", "actions"}
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,80}$")
VARIANT_RE = re.compile(r"(?i)(dark|light|mono|ambiance|radiance)")
MIN_RASTER = 48
MIN_ICONS = 24  # a theme drawing fewer of the shared names is a variant, not a style


@dataclass(frozen=True)
class IconFile:
    path: Path
    size: int  # pixels (Size x Scale) for rasters, the directory's nominal size for vectors
    vector: bool


@dataclass
class IconTheme:
    root: Path
    name: str
    icons: dict[str, list[IconFile]]


def read_theme(root: Path) -> IconTheme:
    """Parse `root/index.theme` and list the picture icons of every directory it declares."""
    index = root / "index.theme"
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    try:
        parser.read_string(index.read_text(encoding="utf-8", errors="replace"), str(index))
    except (OSError, configparser.Error) as exc:
        raise ArtError(f"{index}: not a readable index.theme ({exc})") from exc
    if not parser.has_section("Icon Theme"):
        raise ArtError(f"{index}: no [Icon Theme] section")
    head = parser["Icon Theme"]
    directories = [
        d.strip()
        for key in ("Directories", "ScaledDirectories")
        for d in head.get(key, "").split(",")
        if d.strip()
    ]
    icons: dict[str, list[IconFile]] = {}
    for directory in dict.fromkeys(directories):
        if not parser.has_section(directory):
            continue
        section = parser[directory]
        context = section.get("Context", "").strip().lower()
        # A "panel" directory (Faba, Paper, Numix, Papirus, elementary-xfce) holds the status
        # glyphs drawn for a dark panel, white and monochrome: another style, like symbolic icons.
        folders = directory.lower().split("/")
        if context not in CONTEXTS or "symbolic" in directory.lower() or "panel" in folders:
            continue
        try:
            size = int(section.get("Size", "0")) * int(section.get("Scale", "1"))
        except ValueError as exc:
            raise ArtError(f"{index}: [{directory}] Size and Scale must be whole numbers") from exc
        folder = root / directory
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            suffix = path.suffix.lower()
            name = path.name[: -len(suffix)] if suffix else path.name
            # Symbolic icons are monochrome glyphs the desktop recolours: another style than the
            # theme's pictures, named "x-symbolic", "x-symbolic.symbolic" or "x-symbolic-rtl".
            if suffix not in (".png", ".svg") or "symbolic" in name or not NAME_RE.match(name):
                continue
            if not path.exists():  # a dangling link
                continue
            icons.setdefault(name, []).append(IconFile(path, size, suffix == ".svg"))
    return IconTheme(root, head.get("Name", root.name).strip() or root.name, icons)


def best_file(files: list[IconFile], box: int, vectors: bool) -> IconFile | None:
    """The file to draw from: a raster >= box, else the largest vector, else a raster >= MIN_RASTER."""
    rasters = sorted((f for f in files if not f.vector), key=lambda f: f.size)
    large = [f for f in rasters if f.size >= box]
    if large:
        return large[0]
    if vectors:
        vector = max((f for f in files if f.vector), key=lambda f: f.size, default=None)
        if vector is not None:
            return vector
    return rasters[-1] if rasters and rasters[-1].size >= MIN_RASTER else None


def theme_style(theme: IconTheme, package: str, family: str, box: int, vectors: bool) -> ArtStyle:
    key = re.sub(r"[^a-z0-9]+", "-", theme.root.name.lower()).strip("-")
    style = ArtStyle(SOURCE, key, f"{theme.name} icon theme", package, family, [str(theme.root)])
    for name, files in sorted(theme.icons.items()):
        chosen = best_file(files, box, vectors)
        if chosen is not None:
            style.items[name] = functools.partial(_render, chosen)
    return style


def _render(icon: IconFile, box: int) -> Image.Image:
    if icon.vector:
        return render_svg(icon.path, width=box)
    return load_png(icon.path)


def scan(box: int, packages: tuple[str, ...] = PACKAGES, icon_root: Path = ICON_ROOT) -> SourceScan:
    """The main theme of every installed package of `packages`, and what is missing."""
    found = debian.installed(list(packages))
    missing = [p for p in packages if p not in found]
    result = SourceScan(SOURCE, [])
    if missing:
        result.missing.append(
            debian.missing_message(SOURCE, missing, f"{len(missing)} of {len(packages)} themes")
        )
    vectors = have_rsvg()
    if not vectors:
        result.missing.append(
            f"{SOURCE}: SVG icons are skipped without rsvg-convert; to add them: "
            f"{debian.install_hint([RSVG_PACKAGE])}"
        )
    for package, info in sorted(found.items()):
        root = main_theme(debian.package_files(package), icon_root)
        if root is None:
            result.skipped.append(f"{package}: no index.theme under {icon_root}")
            continue
        try:
            theme = read_theme(root)
        except ArtError as exc:
            result.skipped.append(str(exc))
            continue
        family = KNOWN_FAMILIES.get(package, info.source)
        style = theme_style(theme, package, family, box, vectors)
        if len(style.items) >= MIN_ICONS:
            result.styles.append(style)
        else:
            result.skipped.append(f"{root}: {len(style.items)} picture icons (< {MIN_ICONS})")
    return result


def main_theme(files: list[Path], icon_root: Path) -> Path | None:
    """The package's theme with the most icon files: the others (dark, light, recoloured) are its
    variants, the same drawings."""
    counts: dict[Path, int] = {}
    indexes = {
        path.parent for path in files if path.name == "index.theme" and path.parent.parent == icon_root
    }
    for path in files:
        parts = path.relative_to(icon_root).parts if path.is_relative_to(icon_root) else ()
        if len(parts) >= 2 and icon_root / parts[0] in indexes:
            counts[icon_root / parts[0]] = counts.get(icon_root / parts[0], 0) + (
                path.suffix.lower() in (".png", ".svg") and "symbolic" not in path.name
            )
    # Ties and near-ties go to the plain theme: breeze, not breeze-dark.
    return (
        max(sorted(counts), key=lambda root: (not VARIANT_RE.search(root.name), counts[root]))
        if counts
        else None
    )
