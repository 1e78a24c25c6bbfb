"""How the two-stage search asks for candidates (search/centroids.py, search/memory_view.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class TwoStageOptions:
    ef_search: int = 800  # HNSW candidate list (400 lost whole families at 100k: bench search)
    # The in-memory walk's candidate list (faiss has no pgvector's cap of 1000). A query image far
    # from every centroid sits in a shell of equidistant ones, and its nearest lookalike family
    # hangs off that shell by few links: a beam of 800 missed the family outright in 0.4 % of the
    # true top-10 at 100k LoRAs on a graph of M 32. On the index's graph (M 64, full level-0
    # lists) 800 reaches recall@10 1.000 at 100k, 0.997 at 300k and 0.9965 at 1M on bench beam's
    # catalog (seed 7); 550 keeps that recall up to 300k for an eighth less walk time. At 1M it is
    # unmeasured, so 800 serves every size (docs/design.md 5, "Memory index").
    memory_ef_search: int = 800
    exact_below: int = 2000  # catalogs smaller than this scan every centroid exactly
    first_batch: int = 256  # centroids asked first; each further ask is `growth` times larger
    growth: int = 2
    chunk: int = 256  # candidates scored exactly per round trip, at most
    # The first round trip scores this many; each next one twice as many (up to `chunk`): the
    # first exact scores tighten the cut, so fewer candidates are scored at all (bench search).
    first_chunk: int = 32
    # Several query images: one walk around their mean, or one walk per image (docs/design.md 5,
    # "Several images"; bench search measures both).
    walk: Literal["mean", "per_image"] = "mean"
