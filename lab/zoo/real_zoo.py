"""The real-art zoo: human-made drawings from free-licensed Debian packages as a style catalog.

A "LoRA" is one artist's or one set's style (an icon theme, a typeface, a freeciv unit sheet,
a card deck, a mahjongg tileset); a sample is one content that every style of its source
draws (an icon name, a text, a unit tag, a card, a tile); the reference t(s, m) is content s
as style m draws it, centred on one plain canvas. The directory is the catalog import format
(docs/design.md 6) plus, as the procedural zoo (style_zoo.py) writes them, zoo.json, and for the
val and eval splits queries/ + queries.json (+ queries-multi/ for the multi-image rows), so
`findlora bench quality --zoo` and `findlora train` read it unchanged.

Rules, in order:
- Families. A style's family starts from what the data states (the Debian source package, a
  declared fork or variant, a shared artist); then every two styles of a source that draw more
  than DERIVED_SHARE of the probe contents near-identically are joined (union-find), and one
  of two that draw more than DUPLICATE_SHARE so is dropped as a copy.
- Splits are by family: per source, families are ordered by a seeded hash of their name and
  the first EVAL_SHARE go to eval, the next VAL_SHARE to val, the rest to train. No style,
  and no family of derived styles, is in two splits.
- Content is split once, without the seed: a fixed QUERY_SHARE of each source's contents is
  the query pool, never a reference sample in any split, so eval queries are held-out content.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image, ImageFilter
from tqdm import tqdm  # type: ignore[import-untyped]

from inference_service.catalog.format import LoraEntry, dump_toml, lora_toml
from lab.zoo.real_art import debian, fonts, freeciv, icons, svg_sets
from lab.zoo.real_art.art import (
    ArtError,
    ArtStyle,
    SourceScan,
    art_box,
    render_item,
    thumbnail,
)
from lab.zoo.real_art.copies import (
    THUMBNAIL_SIDE,
    Families,
    near_duplicate_pairs,
    probe_contents,
)
from lab.zoo.real_art.copies import stable_hash as _hash
from lab.zoo.real_art.queries import pixel_digest, write_queries
from lab.zoo.style_zoo import ZOO_FILE

RealSplit = Literal["train", "val", "eval"]
SPLITS: tuple[RealSplit, ...] = ("train", "val", "eval")
EVAL_SHARE = 0.2
VAL_SHARE = 0.2
QUERY_SHARE = 0.25
QUERY_SALT = "findlora-real-art-query-pool"  # fixed: the content split never moves with the seed
DERIVED_SHARE = 0.25
DUPLICATE_SHARE = 0.6
DEFAULT_SIZE = 160
DEFAULT_SAMPLES = 30  # reference samples per source
SOURCES_FILE = "SOURCES.md"

Scanner = Callable[[int], SourceScan]
SCANNERS: dict[str, Scanner] = {
    "icons": lambda box: icons.scan(box),
    "fonts": lambda box: fonts.scan(),
    "freeciv": lambda box: freeciv.scan(),
    "cards": lambda box: svg_sets.scan_cards(),
    "mahjongg": lambda box: svg_sets.scan_mahjongg(),
}


class NoArtError(Exception):
    """None of the requested sources is installed: the message says what to install."""


@dataclass
class Placed:
    """A style with its final family and split."""

    style: ArtStyle
    family: str
    split: RealSplit

    @property
    def slug(self) -> str:
        return style_slug(self.style)


@dataclass
class Survey:
    """Every source's styles after the near-duplicate analysis, with their families and splits."""

    scans: list[SourceScan]
    placed: list[Placed]
    families: dict[str, dict[str, Any]]
    near_duplicates: list[dict[str, Any]] = field(default_factory=list)
    dropped: dict[str, str] = field(default_factory=dict)  # slug -> why
    lookalikes: dict[str, str] = field(default_factory=dict)  # slug -> the kept style it derives from


def style_slug(style: ArtStyle) -> str:
    return f"{style.source}-{style.key}"[:100]


def sample_id(source: str, content: str) -> str:
    return f"{source}.{content}"


def in_query_pool(source: str, content: str) -> bool:
    return _hash(QUERY_SALT, source, content) / 2**64 < QUERY_SHARE


def scan_sources(names: Iterable[str], box: int) -> list[SourceScan]:
    scans = []
    for name in names:
        if name not in SCANNERS:
            raise ValueError(f"unknown real-art source {name!r}; choose from {', '.join(SCANNERS)}")
        scans.append(SCANNERS[name](box))
    return require_art(scans)


def require_art(scans: list[SourceScan]) -> list[SourceScan]:
    """The scans, if any found a style; else NoArtError naming every apt-get install to run."""
    if not any(scan.styles for scan in scans):
        lines = [line for scan in scans for line in scan.missing] or [
            f"{scan.source}: installed, but no style could be read" for scan in scans
        ]
        raise NoArtError("no real-art source is installed:\n  " + "\n  ".join(lines))
    return scans


def survey(scans: list[SourceScan], seed: int, size: int, progress: bool = False) -> Survey:
    """Render every style's probes, find copies and derived sets, and place families in splits."""
    kept: list[ArtStyle] = []
    result = Survey(scans, [], {})
    unions = Families()
    for scan in scans:
        probes = probe_contents(scan.styles)
        thumbs: dict[str, dict[str, np.ndarray[Any, Any]]] = {}
        usable: list[ArtStyle] = []
        for style in tqdm(scan.styles, desc=f"probe {scan.source}", unit="style", disable=not progress):
            try:
                thumbs[style_slug(style)] = {
                    c: thumbnail(render_item(style, c, size), THUMBNAIL_SIDE)
                    for c in probes
                    if c in style.items
                }
            except ArtError as exc:  # a set rsvg or FreeType cannot draw: left out, said why
                result.dropped[style_slug(style)] = f"cannot be drawn: {exc}"
                continue
            usable.append(style)
            unions.find(f"{style.source}:{style.family}")
        by_slug = {style_slug(style): style for style in usable}
        for a, b, share, shared in near_duplicate_pairs(thumbs):
            if share < DERIVED_SHARE:
                continue
            first, second = by_slug[a], by_slug[b]
            unions.join(f"{first.source}:{first.family}", f"{second.source}:{second.family}")
            action = "same family"
            if share >= DUPLICATE_SHARE:
                # Keep the one drawing more contents; the other is a copy.
                keep, drop = (a, b) if len(first.items) >= len(second.items) else (b, a)
                if drop not in result.dropped:
                    result.dropped[drop] = f"near-duplicate of {keep} ({share:.0%} of {shared} probes)"
                action = f"dropped {drop}"
            result.near_duplicates.append(
                {"a": a, "b": b, "share": round(share, 3), "probes": shared, "action": action}
            )
        for pair in result.near_duplicates:
            a, b = pair["a"], pair["b"]
            if a in by_slug and b in by_slug and a not in result.dropped and b not in result.dropped:
                result.lookalikes.setdefault(b, a)
        kept.extend(style for slug, style in by_slug.items() if slug not in result.dropped)
    families: dict[str, list[ArtStyle]] = {}
    for style in kept:
        families.setdefault(unions.find(f"{style.source}:{style.family}"), []).append(style)
    splits = assign_splits(families, seed)
    for family, members in sorted(families.items()):
        result.families[family] = {
            "source": members[0].source,
            "split": splits[family],
            "styles": sorted(style_slug(style) for style in members),
            "packages": sorted({style.package for style in members}),
        }
        result.placed.extend(Placed(style, family, splits[family]) for style in members)
    result.placed.sort(key=lambda p: p.slug)
    return result


def assign_splits(families: dict[str, list[ArtStyle]], seed: int) -> dict[str, RealSplit]:
    """Per source, families in seeded-hash order: EVAL_SHARE to eval, VAL_SHARE to val, rest train.

    A source with 3 or more families has at least one in each split; with 2, one in train and
    one in eval; with 1, it trains.
    """
    by_source: dict[str, list[str]] = {}
    for family, members in families.items():
        by_source.setdefault(members[0].source, []).append(family)
    splits: dict[str, RealSplit] = {}
    for source, names in by_source.items():
        ordered = sorted(names, key=lambda name: (_hash(seed, source, name), name))
        n = len(ordered)
        n_eval = max(1, round(n * EVAL_SHARE)) if n >= 3 else (1 if n == 2 else 0)
        n_val = max(1, round(n * VAL_SHARE)) if n >= 3 else 0
        for index, name in enumerate(ordered):
            splits[name] = "eval" if index < n_eval else "val" if index < n_eval + n_val else "train"
    return splits


def choose_samples(placed: list[Placed], n_samples: int) -> dict[str, list[str]]:
    """Per source, `n_samples` reference-pool contents, chosen greedily so that every style of
    the split draws as many as it can: each pick is the content whose drawing styles have the
    fewest picks so far (weights 1 / (1 + picks)); ties by a fixed hash."""
    chosen: dict[str, list[str]] = {}
    for source in sorted({p.style.source for p in placed}):
        styles = [p.style for p in placed if p.style.source == source]
        pool = {c for style in styles for c in style.items if not in_query_pool(source, c)}
        candidates = sorted(pool, key=lambda c: (_hash("sample", source, c), c))
        draws = np.array([[c in style.items for style in styles] for c in candidates], dtype=bool)
        picks = np.zeros(len(styles))
        picked: list[str] = []
        for _ in range(min(n_samples, len(candidates))):
            scores = draws @ (1.0 / (1.0 + picks))
            best = int(np.argmax(scores))
            picked.append(candidates[best])
            picks += draws[best]
            draws[best] = False
        chosen[source] = sorted(picked)
    return chosen


def build_real_zoo(
    out_dir: Path,
    *,
    split: RealSplit,
    seed: int,
    sources: Iterable[str] = tuple(SCANNERS),
    size: int = DEFAULT_SIZE,
    n_samples: int = DEFAULT_SAMPLES,
    n_queries: int | None = None,
    progress: bool = True,
    scans: list[SourceScan] | None = None,
    split_seed: int | None = None,
) -> Path:
    """Write the `split` of the real-art zoo to `out_dir` (catalog + zoo.json + SOURCES.md).

    `split_seed` (default: `seed`) places families in splits; `seed` draws the queries, so a
    fresh eval seed can keep the family split an encoder was trained against."""
    split_seed = seed if split_seed is None else split_seed
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}")
    scans = require_art(scans) if scans is not None else scan_sources(sources, art_box(size))
    found = survey(scans, split_seed, size, progress)
    placed = [p for p in found.placed if p.split == split]
    if not placed:
        raise NoArtError(f"the {split} split has no styles with the installed sources (seed {split_seed})")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "samples").mkdir(exist_ok=True)
    samples = choose_samples(placed, n_samples)
    drawn: dict[str, list[Image.Image]] = {}
    skipped_items: list[str] = []
    references: dict[str, int] = {}
    digests: dict[str, set[str]] = {}  # each style's references, for the queries' copy check
    bar = tqdm(
        total=sum(len(samples[p.style.source]) for p in placed),
        desc=f"real zoo {split}",
        unit="img",
        disable=not progress,
    )
    for p in placed:
        lora_dir = out_dir / "loras" / p.slug
        (lora_dir / "references").mkdir(parents=True, exist_ok=True)
        (lora_dir / "lora.toml").write_text(lora_toml(_entry(p)), encoding="utf-8")
        for content in samples[p.style.source]:
            bar.update()
            if content not in p.style.items:
                continue
            sid = sample_id(p.style.source, content)
            try:
                image = render_item(p.style, content, size)
            except ArtError as exc:
                skipped_items.append(f"{p.slug}/{sid}: {exc}")
                continue
            image.save(lora_dir / "references" / f"{sid}.png")
            digests.setdefault(p.slug, set()).add(pixel_digest(image))
            drawn.setdefault(sid, []).append(image)
            references[p.slug] = references.get(p.slug, 0) + 1
        if p.slug not in references:  # a catalog LoRA needs references: leave it out, say why
            shutil.rmtree(lora_dir)
            found.dropped[p.slug] = "draws none of the split's reference samples"
    bar.close()
    placed = [p for p in placed if p.slug in references]
    for sid, images in sorted(drawn.items()):
        content_image(images).save(out_dir / "samples" / f"{sid}.png")
    (out_dir / "catalog.toml").write_text(
        dump_toml(
            {
                "name": f"real-art zoo ({split}, seed {seed})",
                "base_model": "other",
                "note": f"human-made art from Debian packages: {len(placed)} styles, "
                f"{len(drawn)} samples at {size} px (see {SOURCES_FILE})",
            }
        ),
        encoding="utf-8",
    )
    queries: list[dict[str, str]] = []
    unqueried: list[str] = []
    copies: list[str] = []
    if split != "train":
        queries, unqueried, copies = write_queries(
            out_dir, list(placed), seed, split, size, n_queries, in_query_pool, digests
        )
    info = _zoo_info(found, placed, split, seed, size, drawn, references, queries, unqueried, skipped_items)
    info["split_seed"] = split_seed
    info["query_copies_skipped"] = copies  # held-out contents drawn exactly as a reference
    (out_dir / ZOO_FILE).write_text(json.dumps(info, indent=1), encoding="utf-8")
    (out_dir / SOURCES_FILE).write_text(sources_markdown(info), encoding="utf-8")
    return out_dir


def content_image(images: list[Image.Image]) -> Image.Image:
    """The sample image of a content: the per-pixel median of the split's drawings of it, blurred.

    No style drew it, so cleansing (Eq. 1) never mistakes a reference for an unchanged sample.
    """
    stack = np.stack([np.asarray(image, dtype=np.uint8) for image in images])
    median = np.median(stack, axis=0).astype(np.uint8)
    return Image.fromarray(median, "RGB").filter(ImageFilter.GaussianBlur(2))


def _entry(p: Placed) -> LoraEntry:
    licence = _licence(p.style)
    return LoraEntry(
        slug=p.slug,
        name=p.style.name,
        author=f"Debian package {p.style.package}",
        license=licence.primary,
    )


def _licence(style: ArtStyle) -> debian.Licence:
    return debian.licence_for_files(style.package, style.files)


def _zoo_info(
    found: Survey,
    placed: list[Placed],
    split: RealSplit,
    seed: int,
    size: int,
    drawn: dict[str, list[Image.Image]],
    references: dict[str, int],
    queries: list[dict[str, str]],
    unqueried: list[str],
    skipped_items: list[str],
) -> dict[str, Any]:
    packages = debian.installed(sorted({p.style.package for p in found.placed}))
    styles: dict[str, dict[str, Any]] = {}
    for p in placed:
        licence = _licence(p.style)
        package = packages.get(p.style.package)
        styles[p.slug] = {
            "source": p.style.source,
            "key": p.style.key,
            "name": p.style.name,
            "package": p.style.package,
            "version": package.version if package else "not installed via dpkg",
            "source_package": package.source if package else "",
            "license": licence.primary,
            "licenses_in_copyright": list(licence.names),
            "copyright_file": licence.copyright_file,
            "files": p.style.files,
            "family": p.family,
            "split": p.split,
            "note": p.style.note,
            "items": len(p.style.items),
            "references": references.get(p.slug, 0),
            "lookalike_of": found.lookalikes.get(p.slug),
        }
    return {
        "kind": "real-art",
        "split": split,
        "seed": seed,
        "size": size,
        "n_styles": len(placed),
        "n_samples": len(drawn),
        "split_rule": (
            f"per source, families ordered by sha256(seed, source, family): first {EVAL_SHARE:.0%} eval, "
            f"next {VAL_SHARE:.0%} val, rest train; query pool: {QUERY_SHARE:.0%} of each source's "
            "contents by a fixed hash, never a reference sample"
        ),
        "split_assignment": {family: meta["split"] for family, meta in found.families.items()},
        "families": found.families,
        "near_duplicates": found.near_duplicates,
        "dropped_styles": found.dropped,
        "sources": {
            scan.source: {
                "styles_found": len(scan.styles),
                "styles_in_split": sum(1 for p in placed if p.style.source == scan.source),
                "missing": scan.missing,
                "skipped": scan.skipped,
            }
            for scan in found.scans
        },
        "styles": styles,
        "samples": {sid: sid.replace(".", ":", 1) for sid in sorted(drawn)},
        "skipped_items": skipped_items,
        "unqueried_styles": unqueried,
        "failed_transfers": [],
        "queries": queries,
    }


def sources_markdown(info: dict[str, Any]) -> str:
    """SOURCES.md: where every style of this split comes from, under which licence."""
    lines = [
        f"# Real-art zoo: {info['split']} split (seed {info['seed']})",
        "",
        "Human-made drawings read from installed Debian packages; nothing here is redistributed",
        "beyond this local directory. Each style keeps its package's licence (below, from",
        "/usr/share/doc/<package>/copyright).",
        "",
        f"Split rule: {info['split_rule']}.",
        "",
        f"{info['n_styles']} styles, {info['n_samples']} samples, {len(info['queries'])} queries.",
        "",
        "| style | source | package | version | licence | family | references |",
        "|---|---|---|---|---|---|---|",
    ]
    for slug, style in sorted(info["styles"].items()):
        lines.append(
            f"| {style['name']} (`{slug}`) | {style['source']} | {style['package']} | {style['version']} "
            f"| {style['license']} | {style['family']} | {style['references']} |"
        )
    lines += ["", "## Files read", ""]
    for slug, style in sorted(info["styles"].items()):
        lines.append(f"- `{slug}`: " + ", ".join(f"`{path}`" for path in style["files"]))
    missing = [line for meta in info["sources"].values() for line in meta["missing"]]
    if missing:
        lines += ["", "## Not installed", "", *(f"- {line}" for line in missing)]
    if info["dropped_styles"]:
        lines += ["", "## Left out", ""]
        lines += [f"- `{slug}`: {why}" for slug, why in sorted(info["dropped_styles"].items())]
    return "\n".join(lines) + "\n"


def read_real_zoo_summary(root: Path) -> str:
    """Styles, references and queries per source of a written real-art zoo, one line each."""
    info = json.loads((root / ZOO_FILE).read_text(encoding="utf-8"))
    lines = [
        f"{info['split']} split, seed {info['seed']}: {info['n_styles']} styles, {info['n_samples']} samples"
    ]
    for source in sorted(info["sources"]):
        slugs = [slug for slug, style in info["styles"].items() if style["source"] == source]
        families = {info["styles"][slug]["family"] for slug in slugs}
        refs = sum(info["styles"][slug]["references"] for slug in slugs)
        n_queries = sum(1 for q in info["queries"] if info["styles"][q["slug"]]["source"] == source)
        lines.append(
            f"  {source}: {len(slugs)} styles ({len(families)} families), "
            f"{refs} references, {n_queries} queries"
        )
    return "\n".join(lines)
