"""Queries of a real-art zoo's val/eval split: held-out content drawn in each style's hand.

A query is one held-out content of a style plus EXTRA_PER_QUERY more of the same style (the
multi-image rows). Round 0 gives every style one query, in a seeded order; each further round
gives every style that has a held-out content left one more, so `limit` can ask for more queries
than there are styles. A style's queries never share their first image; a query's extra images
are the next contents of the style's seeded ring, so they may be other queries' first images:
a typeface draws ~10 held-out contents, which give 2 queries of 4 disjoint images but up to 10
this way (a real-art eval split has ~33 styles; 200 queries need ~7 each). No style gets more
than ceil(limit / styles) queries: a source with large content pools (icon themes) would
otherwise fill the row and weigh its styles above the rest.

A held-out content whose drawing is pixel-identical to one of the style's references, or to a
held-out content drawn before it, is skipped: icon themes link one file under several names
(tango's `harddrive` is its `gnome-dev-harddisk-1394`), and a tileset may draw two tiles alike, so
the held-out name alone let a query be a copy of a reference.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image

from lab.zoo.real_art.art import ArtError, ArtStyle, render_item
from lab.zoo.real_art.copies import stable_hash
from lab.zoo.style_zoo import QUERIES_FILE

EXTRA_PER_QUERY = 3  # as bench/multi_image.py reads them: queries-multi/qNNN-{0,1,2}.png


class QueryStyle(Protocol):
    @property
    def style(self) -> ArtStyle: ...

    @property
    def slug(self) -> str: ...


def pixel_digest(image: Image.Image) -> str:
    return hashlib.sha256(f"{image.mode}{image.size}".encode() + image.tobytes()).hexdigest()


def _drawings(
    p: QueryStyle,
    seed: int,
    size: int,
    in_pool: Callable[[str, str], bool],
    wanted: int,
    seen: set[str],
    copies: list[str],
) -> Iterator[list[tuple[str, Image.Image]]]:
    """Up to `wanted` groups of 1 + EXTRA_PER_QUERY drawable held-out contents: group k starts
    at the k-th content in seeded order and goes on around the ring of the contents drawn."""
    pool = sorted(c for c in p.style.items if in_pool(p.style.source, c))
    rng = np.random.default_rng([seed, stable_hash(p.slug) % 2**32])
    rng.shuffle(pool)
    drawn: list[tuple[str, Image.Image]] = []
    for content in pool:  # only as many as the groups need: an icon theme holds hundreds
        if len(drawn) >= max(wanted, 1 + EXTRA_PER_QUERY):
            break
        try:
            image = render_item(p.style, content, size)
        except ArtError:
            continue
        digest = pixel_digest(image)
        if digest in seen:  # the same picture as a reference (or an earlier held-out content)
            copies.append(f"{p.slug}/{p.style.source}:{content}")
            continue
        seen.add(digest)
        drawn.append((content, image))
    if len(drawn) < 1 + EXTRA_PER_QUERY:
        return
    for k in range(min(wanted, len(drawn))):
        yield [drawn[(k + j) % len(drawn)] for j in range(1 + EXTRA_PER_QUERY)]


def write_queries(
    out_dir: Path,
    placed: list[QueryStyle],
    seed: int,
    split: str,
    size: int,
    limit: int | None,
    in_pool: Callable[[str, str], bool],
    reference_digests: dict[str, set[str]] | None = None,
) -> tuple[list[dict[str, str]], list[str], list[str]]:
    """queries/, queries-multi/ and queries.json: one round per style, more rounds up to `limit`.
    Returns the records, the styles left without a query, and the held-out contents skipped as
    copies of a reference (`reference_digests`: pixel_digest of each style's references)."""
    (out_dir / "queries").mkdir(exist_ok=True)
    (out_dir / "queries-multi").mkdir(exist_ok=True)
    order = sorted(placed, key=lambda p: (stable_hash(seed, split, "query", p.slug), p.slug))
    rounds = 1 if limit is None else math.ceil(limit / max(1, len(order)))
    digests = reference_digests or {}
    copies: list[str] = []
    streams = {
        p.slug: _drawings(p, seed, size, in_pool, rounds, set(digests.get(p.slug, ())), copies) for p in order
    }
    records: list[dict[str, str]] = []
    unqueried: list[str] = []
    active = list(order)
    first_round = True
    for _ in range(rounds):
        if not active or (limit is not None and len(records) >= limit):
            break
        still: list[QueryStyle] = []
        for p in active:
            if limit is not None and len(records) >= limit:
                break
            group = next(streams[p.slug], None)
            if group is None:
                if first_round:
                    unqueried.append(f"{p.slug}: fewer than {1 + EXTRA_PER_QUERY} held-out contents drawn")
                continue
            still.append(p)
            number = len(records)
            (content, first), *extra = group
            first.save(out_dir / "queries" / f"q{number:03d}.png")
            for j, (_, image) in enumerate(extra):
                image.save(out_dir / "queries-multi" / f"q{number:03d}-{j}.png")
            records.append(
                {
                    "file": f"queries/q{number:03d}.png",
                    "slug": p.slug,
                    "source": f"{p.style.source}:{content}",
                    "extra": ",".join(f"{p.style.source}:{c}" for c, _ in extra),
                }
            )
        active, first_round = still, False
    (out_dir / QUERIES_FILE).write_text(json.dumps(records, indent=1), encoding="utf-8")
    return records, unqueried, copies
