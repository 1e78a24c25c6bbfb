"""Copies and derived sets among human-made styles: the near-duplicate test the real-art zoo
uses to join families and drop copies (lab/zoo/real_zoo.py applies it)."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from lab.zoo.real_art.art import BACKGROUND, ArtStyle

PROBE_CONTENTS = 12
# Mean absolute RGB difference (0..255) over the drawn pixels of two 64 px thumbnails. Measured
# on the installed sets: copies (Arimo / Liberation Sans, Rasa / Yrsa, Faenza / Obsidian icons)
# are 0-6, derived sets (GNOME / MATE icons, Oxygen deck variants) 15-20, unrelated designs 30+.
NEAR_IDENTICAL = 12.0
THUMBNAIL_SIDE = 64
INK_LEVEL = 16  # a pixel this far from the background in any channel is drawn
MIN_SHARED_PROBES = 4


def stable_hash(*parts: object) -> int:
    """A hash that is the same in every process (Python's hash() is salted)."""
    return int.from_bytes(hashlib.sha256(":".join(map(str, parts)).encode()).digest()[:8], "big")


class Families:
    """Union-find over family names."""

    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, name: str) -> str:
        self.parent.setdefault(name, name)
        while self.parent[name] != name:
            self.parent[name] = self.parent[self.parent[name]]
            name = self.parent[name]
        return name

    def join(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)  # the name that sorts first stands for the family


def probe_contents(styles: list[ArtStyle], count: int = PROBE_CONTENTS) -> list[str]:
    """The contents most styles draw (ties by a fixed hash): what near-duplicates are tested on."""
    coverage: dict[str, int] = {}
    for style in styles:
        for content in style.items:
            coverage[content] = coverage.get(content, 0) + 1
    return sorted(coverage, key=lambda c: (-coverage[c], stable_hash("probe", c)))[:count]


def near_duplicate_pairs(
    thumbs: dict[str, dict[str, np.ndarray[Any, Any]]],
) -> list[tuple[str, str, float, int]]:
    """(slug a, slug b, share of shared probes drawn near-identically, shared probes) per pair."""
    pairs = []
    slugs = sorted(thumbs)
    for i, a in enumerate(slugs):
        for b in slugs[i + 1 :]:
            shared = sorted(set(thumbs[a]) & set(thumbs[b]))
            if len(shared) < MIN_SHARED_PROBES:
                continue
            same = sum(ink_difference(thumbs[a][c], thumbs[b][c]) < NEAR_IDENTICAL for c in shared)
            pairs.append((a, b, same / len(shared), len(shared)))
    return pairs


def ink_difference(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> float:
    """Mean absolute difference over the pixels either drawing inks: small text and small cards
    are compared on what is drawn, not diluted by the shared background."""
    background = np.asarray(BACKGROUND, dtype=np.float32)
    ink = (np.abs(a - background).max(axis=2) > INK_LEVEL) | (np.abs(b - background).max(axis=2) > INK_LEVEL)
    return float(np.abs(a - b)[ink].mean()) if ink.any() else 0.0
