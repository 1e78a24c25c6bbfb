"""Typefaces: the same words set in each typeface.

A style is one typeface family at its regular face (upright, weight nearest 400); every
typeface that a Debian package ships is of that package's family (one designer or one
foundry), so weights, widths and sister families never straddle splits. A content is a fixed
two-word text; a typeface draws it when its character map covers every letter.
"""

from __future__ import annotations

import functools
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path

from fontTools.ttLib import TTFont, TTLibError  # type: ignore[import-untyped]
from PIL import Image, ImageDraw, ImageFont

from lab.zoo.real_art import debian
from lab.zoo.real_art.art import ArtError, ArtStyle, SourceScan

SOURCE = "fonts"
FONT_SUFFIXES = (".ttf", ".otf")
MAX_FAMILIES_PER_PACKAGE = 2
# Families that set letters as something else (formulas, key caps, dingbats, phonetics).
NOT_TEXT_RE = re.compile(r"(?i)(math|keyboard|symbol|dingbat|d050000l|icon|emoji|phon|caps|titling)")
LAYOUT_SIZE = 64  # font size the layout is measured at before it is fitted to the box
PACKAGES = (
    "fonts-adf-accanthis", "fonts-adf-baskervald", "fonts-adf-berenis", "fonts-adf-gillius",
    "fonts-adf-ikarius", "fonts-adf-irianis", "fonts-adf-libris", "fonts-adf-mekanus",
    "fonts-adf-oldania", "fonts-adf-romande", "fonts-adf-solothurn", "fonts-adf-switzera",
    "fonts-adf-tribun", "fonts-adf-universalis", "fonts-adf-verana", "fonts-aenigma",
    "fonts-arapey", "fonts-averia-gwf", "fonts-averia-sans-gwf", "fonts-averia-serif-gwf",
    "fonts-b612", "fonts-bebas-neue", "fonts-beteckna", "fonts-blankenburg", "fonts-breip",
    "fonts-cabin", "fonts-cabinsketch", "fonts-cantarell", "fonts-cardo", "fonts-century-catalogue",
    "fonts-cherrybomb", "fonts-cmu", "fonts-comfortaa", "fonts-comic-neue", "fonts-courier-prime",
    "fonts-creep2", "fonts-croscore", "fonts-dancingscript", "fonts-dejavu-core", "fonts-dejavu-extra",
    "fonts-dkg-handwriting", "fonts-dosis", "fonts-dustin", "fonts-ebgaramond", "fonts-ecolier-court",
    "fonts-elstob", "fonts-essays1743", "fonts-fanwood", "fonts-fantasque-sans", "fonts-femkeklaver",
    "fonts-firacode", "fonts-freefont-ttf", "fonts-gfs-bodoni-classic", "fonts-gfs-didot",
    "fonts-gnutypewriter", "fonts-go", "fonts-gotico-antiqua", "fonts-goudybookletter", "fonts-hack",
    "fonts-humor-sans", "fonts-inconsolata", "fonts-inter", "fonts-isabella", "fonts-jetbrains-mono",
    "fonts-junicode", "fonts-karla", "fonts-karmilla", "fonts-kaushanscript", "fonts-klaudia-berenika",
    "fonts-kristi", "fonts-lato", "fonts-le-murmure", "fonts-league-spartan", "fonts-leckerli-one",
    "fonts-lemonada", "fonts-levien-museum", "fonts-levien-typoscript", "fonts-liberation2",
    "fonts-lindenhill", "fonts-linex", "fonts-linuxlibertine", "fonts-lmodern", "fonts-lobster",
    "fonts-lobstertwo", "fonts-manrope", "fonts-monofur", "fonts-mononoki", "fonts-national-park",
    "fonts-ocr-a", "fonts-oldstandard", "fonts-open-sans", "fonts-opendyslexic", "fonts-oxygen",
    "fonts-paratype", "fonts-play", "fonts-prociono", "fonts-quattrocento", "fonts-quicksand",
    "fonts-radisnoir", "fonts-reggae", "fonts-roadgeek", "fonts-roboto-unhinted", "fonts-rocknroll",
    "fonts-rufscript", "fonts-sil-andika", "fonts-sil-charis", "fonts-sil-gentiumplus", "fonts-sixtyfour",
    "fonts-sjfonts", "fonts-sora", "fonts-staypuft", "fonts-stix", "fonts-summersby", "fonts-texgyre",
    "fonts-tiresias", "fonts-tomsontalks", "fonts-tuffy", "fonts-urw-base35", "fonts-vollkorn",
    "fonts-yanone-kaffeesatz", "fonts-yrsa-rasa", "fonts-3270",
)  # fmt: skip
WORDS = (
    "amber", "basket", "candle", "donkey", "engine", "forest", "garden", "harbor", "island", "jacket",
    "kettle", "ladder", "marble", "needle", "orange", "pepper", "quartz", "rabbit", "saddle", "timber",
    "umpire", "velvet", "walnut", "yellow", "zipper", "bridge", "copper", "desert", "falcon", "glider",
    "hollow", "jigsaw", "kingdom", "lantern", "meadow", "nickel", "oyster", "pillow", "quiver", "ribbon",
    "silver", "turnip", "vessel", "window", "wizard", "anchor", "beacon", "cobalt", "dragon", "ember",
    "fabric", "goblet", "hazard", "igloo", "jungle", "kayak", "lizard", "mirror", "nectar", "oxygen",
    "puzzle", "quaint", "rocket", "sphinx", "thrush", "unique", "voyage", "whisky", "yogurt", "zenith",
    "bishop", "cactus", "dazzle", "equinox", "frozen", "gravel", "hybrid", "jovial", "knight", "legacy",
)  # fmt: skip
CONTENTS = {
    f"{WORDS[i]}-{WORDS[i + 1]}": f"{WORDS[i].title()}\n{WORDS[i + 1]}" for i in range(0, len(WORDS) - 1, 2)
}


@dataclass(frozen=True)
class Face:
    path: Path
    family: str
    subfamily: str
    weight: int
    italic: bool
    characters: frozenset[int]


def read_face(path: Path) -> Face:
    """A font file's family, face and character map (the first font of a collection)."""
    logging.getLogger("fontTools").setLevel(logging.ERROR)  # minor table quirks are not our problem
    try:
        with TTFont(str(path), lazy=True, fontNumber=0) as font:
            names = font["name"]
            family = names.getDebugName(16) or names.getDebugName(1) or path.stem
            subfamily = names.getDebugName(17) or names.getDebugName(2) or ""
            os2 = font.get("OS/2")
            weight = int(os2.usWeightClass) if os2 is not None else 400
            italic = bool(os2.fsSelection & 1) if os2 is not None else False
            italic = italic or "italic" in subfamily.lower() or "oblique" in subfamily.lower()
            cmap = font.getBestCmap() or {}
    except (OSError, TTLibError, KeyError, AssertionError) as exc:
        raise ArtError(f"{path}: not a readable font ({exc})") from exc
    return Face(path, family.strip(), subfamily.strip(), weight, italic, frozenset(cmap))


def regular_face(faces: list[Face]) -> Face:
    """The family's upright face nearest weight 400 (Regular/Book/Roman before other names)."""

    def rank(face: Face) -> tuple[bool, int, bool, str]:
        plain = face.subfamily.lower() in ("regular", "book", "roman", "normal", "medium", "")
        return (face.italic, abs(face.weight - 400), not plain, face.path.name)

    return min(faces, key=rank)


def covers(face: Face, text: str) -> bool:
    return all(ord(char) in face.characters for char in text if not char.isspace())


def render_text(path: Path, text: str, box: int) -> Image.Image:
    """`text` centred, black on transparent, sized to fill box x box."""
    layout = _font(path, LAYOUT_SIZE)
    left, top, right, bottom = ImageDraw.Draw(Image.new("L", (1, 1))).multiline_textbbox(
        (0, 0), text, font=layout, align="center", spacing=LAYOUT_SIZE // 6
    )
    if right <= left or bottom <= top:
        raise ArtError(f"{path}: draws nothing for {text!r}")
    size = max(8, int(LAYOUT_SIZE * min(box / (right - left), box / (bottom - top))))
    font = _font(path, size)
    draw = ImageDraw.Draw(Image.new("L", (1, 1)))
    bbox = draw.multiline_textbbox((0, 0), text, font=font, align="center", spacing=size // 6)
    left, top, right, bottom = (
        math.floor(bbox[0]),
        math.floor(bbox[1]),
        math.ceil(bbox[2]),
        math.ceil(bbox[3]),
    )
    image = Image.new("RGBA", (right - left + 4, bottom - top + 4), (0, 0, 0, 0))
    ImageDraw.Draw(image).multiline_text(
        (2 - left, 2 - top), text, font=font, fill=(20, 20, 20, 255), align="center", spacing=size // 6
    )
    return image


@functools.lru_cache(maxsize=32)
def _font(path: Path, size: int) -> ImageFont.FreeTypeFont:
    try:
        return ImageFont.truetype(str(path), size)
    except OSError as exc:
        raise ArtError(f"{path}: FreeType cannot load it ({exc})") from exc


def package_styles(
    package: str, family: str, files: list[Path], skipped: list[str], limit: int = MAX_FAMILIES_PER_PACKAGE
) -> list[ArtStyle]:
    """Up to `limit` typeface families of one package, each at its regular face."""
    by_family: dict[str, list[Face]] = {}
    for path in sorted(files):
        if path.suffix.lower() not in FONT_SUFFIXES or not path.is_file():
            continue
        try:
            face = read_face(path)
        except ArtError as exc:
            skipped.append(str(exc))
            continue
        by_family.setdefault(face.family, []).append(face)
    styles: list[ArtStyle] = []
    # Shortest names first, and none that extends a chosen one: "DejaVu Sans" and "DejaVu Serif",
    # not "DejaVu Sans Mono" or "Accanthis ADF Std No2" (sister cuts of a chosen family).
    for name in sorted(by_family, key=lambda n: (len(n), n)):
        if NOT_TEXT_RE.search(name) or any(name.startswith(style.name.split(" (")[0]) for style in styles):
            continue
        face = regular_face(by_family[name])
        drawable = {cid: text for cid, text in CONTENTS.items() if covers(face, text)}
        if len(drawable) < len(CONTENTS) // 2:
            skipped.append(f"{face.path}: {name} lacks the letters of most texts")
            continue
        key = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
        style = ArtStyle(
            SOURCE, key, f"{name} ({face.subfamily or 'regular'})", package, family, [str(face.path)]
        )
        for cid, text in drawable.items():
            style.items[cid] = functools.partial(render_text, face.path, text)
        styles.append(style)
        if len(styles) == limit:
            break
    return styles


def scan(packages: tuple[str, ...] = PACKAGES) -> SourceScan:
    found = debian.installed(list(packages))
    missing = [p for p in packages if p not in found]
    result = SourceScan(SOURCE, [])
    if missing:
        result.missing.append(
            debian.missing_message(SOURCE, missing, f"{len(missing)} of {len(packages)} typeface packages")
        )
    seen: set[str] = set()
    for package, info in sorted(found.items()):
        for style in package_styles(package, info.source, debian.package_files(package), result.skipped):
            if style.key not in seen:  # one typeface shipped by two packages counts once
                seen.add(style.key)
                result.styles.append(style)
    return result
