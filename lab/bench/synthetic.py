"""Synthetic style-embedding catalogs shaped like a trained encoder's, bulk-loaded by binary COPY.

Shape (why: docs/design.md 5 warns that loose isotropic clusters gave recall 0.4 and tell nothing):
variance along a power-law spectrum (λ_i ∝ i^-alpha over a random basis, so a few directions
dominate, as in a trained encoder), LoRAs grouped in families of near-lookalikes (derivative
LoRAs), references and queries spread along the same spectrum (content leaks into the embedding
along the directions styles differ in), all unit vectors. The defaults reproduce, at 100 LoRAs,
what docs/design.md 5 measured with the trained encoder: MRR about 0.7 and 14–27 of 100 candidates
needed to guarantee the exact d_avg top-10 (see `calibration`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Shape:
    dim: int = 128
    alpha: float = 1.0  # spectrum decay
    family_size: int = 5  # LoRAs per lookalike family, on average
    family_spread: float = 0.3  # LoRA latent centre around its family centre
    ref_spread: float = 0.5  # references around their LoRA's centre
    query_spread: float = 1.0  # an unseen query image around its LoRA's centre


class SyntheticCatalog:
    """LoRA latent centres for n_loras; references and queries are drawn on demand."""

    def __init__(self, n_loras: int, shape: Shape = Shape(), seed: int = 0) -> None:
        self.n_loras, self.shape, self.seed = n_loras, shape, seed
        self.rng = np.random.default_rng(seed)
        lam = np.arange(1, shape.dim + 1, dtype=np.float64) ** -shape.alpha
        self.scale = np.sqrt(lam / lam.sum())  # E|noise|^2 = 1
        self.basis = np.linalg.qr(self.rng.standard_normal((shape.dim, shape.dim)))[0]
        families = self._unit(self._noise(max(1, n_loras // shape.family_size)))
        member = self.rng.integers(0, len(families), n_loras)
        # Filled in slices (the same draws as one call): the centres are the only N x dim array
        # held, without full-size temporaries beside them at a million LoRAs.
        self.centres = np.empty((n_loras, shape.dim))
        for start in range(0, n_loras, 100_000):
            stop = min(start + 100_000, n_loras)
            self.centres[start:stop] = families[member[start:stop]] + shape.family_spread * self._noise(
                stop - start
            )

    def _noise(self, n: int, rng: np.random.Generator | None = None) -> np.ndarray:
        z = (rng or self.rng).standard_normal((n, self.shape.dim)) * self.scale
        out: np.ndarray = z @ self.basis.T
        return out

    @staticmethod
    def _unit(x: np.ndarray) -> np.ndarray:
        out: np.ndarray = x / np.linalg.norm(x, axis=-1, keepdims=True)
        return out

    def references(
        self, start: int, stop: int, n_refs: int, rng: np.random.Generator | None = None
    ) -> np.ndarray:
        """(stop-start, n_refs, dim) float32 unit vectors of LoRAs start..stop-1."""
        count = stop - start
        noise = self._noise(count * n_refs, rng).reshape(count, n_refs, -1)
        refs = self.centres[start:stop, None, :] + self._spread(start, stop) * noise
        return self._unit(refs).astype(np.float32)

    def _spread(self, start: int, stop: int) -> float | np.ndarray:
        """How far references lie from their LoRA's centre (broadcast over LoRAs start..stop-1)."""
        return self.shape.ref_spread

    def iter_references(self, n_refs: int, chunk: int = 2000) -> Iterator[tuple[int, np.ndarray]]:
        """Every LoRA's references, `chunk` LoRAs at a time: the same vectors on every call and
        for any chunk size (each pass draws one stream from its own generator), so one catalog
        streams identically into the exact truth, the in-memory peers and each storage layout
        without ever being held whole."""
        rng = np.random.default_rng([self.seed, n_refs])
        for start in range(0, self.n_loras, chunk):
            yield start, self.references(start, min(start + chunk, self.n_loras), n_refs, rng)

    def queries(self, lora_indices: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One unseen query image per given LoRA index: (n, dim) float32 unit vectors."""
        noise = self._noise(len(lora_indices), rng)
        return self._unit(self.centres[lora_indices] + self.shape.query_spread * noise).astype(np.float32)


@dataclass(frozen=True)
class Anchoring:
    """Where AnchoredCatalog puts its synthetic LoRAs. Lengths are in units of the real styles'
    spread: the rms distance of their centroids from the centroids' mean."""

    family_size: int = 5  # LoRAs per lookalike family, on average
    family_spread: float = 0.3  # a LoRA's centre around its family's
    family_distance: tuple[float, float] = (0.5, 1.5)  # a derived family from its real style (uniform)
    isotropic: float = 0.5  # share of a displacement's variance spread over every direction, the
    # rest along the few directions the real styles differ in (they span only styles - 1)


class AnchoredCatalog(SyntheticCatalog):
    """A catalog that lives where a real encoder's embeddings live, built around the real
    reference embeddings of a few styles (`anchors`: per style, its references as the encoder
    embeds them, unit vectors).

    LoRA `anchor_index[s]` carries style s's real references (repeated in turn up to n_refs), so
    a real query of style s has its true LoRA in the catalog. The others are synthetic, in
    families: each real style heads one family of lookalikes (its derivative LoRAs), and every
    further family is centred on a real style's centroid displaced by `family_distance`. A
    displacement follows the measured spread between the real centroids (plus an isotropic part,
    see Anchoring) and a centre keeps its style's centroid norm. A synthetic LoRA's references
    are its centre plus noise drawn from the real styles' pooled within-style covariance, scaled
    to its real style's own spread, unit-normalised like the encoder's outputs.

    Same interface as SyntheticCatalog (n_loras, centres, references, iter_references, queries),
    so lab.bench.load loads it unchanged."""

    def __init__(
        self, n_loras: int, anchors: Sequence[np.ndarray], anchoring: Anchoring = Anchoring(), seed: int = 0
    ) -> None:
        styles = len(anchors)
        if styles < 2:
            raise ValueError("anchoring needs the references of at least 2 styles")
        if n_loras < styles:
            raise ValueError(f"{n_loras} LoRAs cannot hold the {styles} real ones")
        if any(len(refs) < 2 for refs in anchors):
            raise ValueError("every anchor style needs at least 2 references")
        self.anchors = [np.asarray(refs, dtype=np.float32) for refs in anchors]
        dim = self.anchors[0].shape[1]
        # The base class's fields where they apply (only dim: the noise here is not its spectrum).
        self.n_loras, self.shape, self.seed, self.anchoring = n_loras, Shape(dim=dim), seed, anchoring
        self.rng = np.random.default_rng(seed)
        real = [refs.astype(np.float64) for refs in self.anchors]
        self.style_centroids = np.stack([refs.mean(axis=0) for refs in real])
        residuals = np.concatenate([refs - c for refs, c in zip(real, self.style_centroids, strict=True)])
        # Gaussian noise with the pooled within-style covariance (unbiased): g @ residuals.
        self.residuals = residuals / np.sqrt(len(residuals) - styles)
        pooled = float(np.sqrt((self.residuals**2).sum()))
        self.style_spread = np.array(
            [
                np.sqrt(((r - c) ** 2).sum(axis=1).sum() / (len(r) - 1))
                for r, c in zip(real, self.style_centroids, strict=True)
            ]
        )
        deviations = self.style_centroids - self.style_centroids.mean(axis=0)
        self.between_rms = float(np.sqrt((deviations**2).sum(axis=1).mean()))
        self._deviations = deviations / np.sqrt(styles - 1)  # g @ this: the between-style covariance
        self.within_rms = pooled

        # Real LoRAs spread through the id range; every other LoRA is synthetic.
        self.anchor_index = (np.arange(styles) * (n_loras // styles)).astype(np.int64)
        n_families = max(styles, n_loras // anchoring.family_size)
        parent = np.concatenate([np.arange(styles), self.rng.integers(0, styles, n_families - styles)])
        distance = np.concatenate(
            [np.zeros(styles), self.rng.uniform(*anchoring.family_distance, n_families - styles)]
        )
        families = self.style_centroids[parent] + distance[:, None] * self._displacement(n_families)
        member = self.rng.integers(0, n_families, n_loras)
        member[self.anchor_index] = np.arange(styles)
        self.parent_style = parent[member]
        self.ref_scale = self.style_spread[self.parent_style] / pooled
        self.centres = np.empty((n_loras, dim))
        norms = np.linalg.norm(self.style_centroids, axis=1)
        for start in range(0, n_loras, 100_000):
            stop = min(start + 100_000, n_loras)
            centres = families[member[start:stop]] + anchoring.family_spread * self._displacement(
                stop - start
            )
            self.centres[start:stop] = self._unit(centres) * norms[self.parent_style[start:stop], None]
        self.centres[self.anchor_index] = self.style_centroids

    def _displacement(self, n: int) -> np.ndarray:
        """n displacements of rms length between_rms (one unit of Anchoring's lengths)."""
        iso = self.anchoring.isotropic
        along = self.rng.standard_normal((n, len(self._deviations))) @ self._deviations
        everywhere = self.rng.standard_normal((n, self.shape.dim)) * (
            self.between_rms / np.sqrt(self.shape.dim)
        )
        out: np.ndarray = np.sqrt(1 - iso) * along + np.sqrt(iso) * everywhere
        return out

    def _spread(self, start: int, stop: int) -> float | np.ndarray:
        return self.ref_scale[start:stop, None, None]  # type: ignore[no-any-return]

    def _noise(self, n: int, rng: np.random.Generator | None = None) -> np.ndarray:
        """Within-style noise at the pooled spread."""
        out: np.ndarray = (rng or self.rng).standard_normal((n, len(self.residuals))) @ self.residuals
        return out

    def references(
        self, start: int, stop: int, n_refs: int, rng: np.random.Generator | None = None
    ) -> np.ndarray:
        out = super().references(start, stop, n_refs, rng)
        for style, index in enumerate(self.anchor_index.tolist()):
            if start <= index < stop:
                real = self.anchors[style]
                out[index - start] = real[np.arange(n_refs) % len(real)]
        return out

    def queries(self, lora_indices: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        noise = self._noise(len(lora_indices), rng) * self.ref_scale[lora_indices, None]
        return self._unit(self.centres[lora_indices] + noise).astype(np.float32)

    def describe(self, n_refs: int, sample: int = 200) -> dict[str, float | int]:
        """How the construction came out: the real spreads it was fitted to, and the mean
        radius of the real and of `sample` synthetic LoRAs' references (alike when the
        synthetic ones have the real within-style spread)."""
        synthetic = np.setdiff1d(np.arange(self.n_loras), self.anchor_index)[:sample]
        rng = np.random.default_rng([self.seed, n_refs, 1])
        radii = [summarise(self.references(int(i), int(i) + 1, n_refs, rng))[1][0] for i in synthetic]
        real = [float(np.linalg.norm(r - r.mean(axis=0), axis=1).mean()) for r in self.anchors]
        return {
            "real_loras": len(self.anchors),
            "real_refs_per_style": int(np.median([len(r) for r in self.anchors])),
            "within_style_rms": round(self.within_rms, 4),
            "between_style_rms": round(self.between_rms, 4),
            "real_mean_radius": round(float(np.mean(real)), 4),
            "synthetic_mean_radius": round(float(np.mean(radii)), 4) if radii else 0.0,
        }


def summarise(refs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centroid (float32, as pgvector's avg), mean radius, mean squared radius per LoRA."""
    centroids = refs.astype(np.float64).mean(axis=1).astype(np.float32)
    dist = np.linalg.norm(refs.astype(np.float64) - centroids[:, None, :], axis=2)
    return centroids, dist.mean(axis=1), (dist**2).mean(axis=1)


def calibration(
    shape: Shape = Shape(), n_loras: int = 100, n_refs: int = 30, seed: int = 1
) -> dict[str, float]:
    """Statistics of the shape at `n_loras` (numpy, exact): mean radius, mean nearest-centroid
    distance, MRR of the query's own LoRA by d_avg, candidates needed to guarantee the exact
    top-10 (lower bound below the 10th d_avg), and top-10 overlap of d_avg and d_rms."""
    catalog = SyntheticCatalog(n_loras, shape, seed)
    refs = catalog.references(0, n_loras, n_refs)
    centroids, radius, sq_radius = summarise(refs)
    rng = np.random.default_rng(seed + 1)
    owners = rng.choice(n_loras, size=min(40, n_loras), replace=False)
    queries = catalog.queries(owners, rng)
    rr, needed, overlap = [], [], []
    for query, owner in zip(queries, owners, strict=True):
        d_avg = np.linalg.norm(refs - query, axis=2).mean(axis=1)
        lower = np.linalg.norm(centroids - query, axis=1)
        order = np.argsort(d_avg)
        rr.append(1.0 / (1 + int(np.flatnonzero(order == owner)[0])))
        needed.append(int((lower < d_avg[order[9]]).sum()))
        d_rms = np.sqrt(lower**2 + sq_radius)
        overlap.append(len(set(order[:10].tolist()) & set(np.argsort(d_rms)[:10].tolist())) / 10)
    pair = np.linalg.norm(centroids[:, None, :] - centroids[None, :, :], axis=2)
    np.fill_diagonal(pair, np.inf)
    return {
        "n_loras": n_loras,
        "mean_radius": float(radius.mean()),
        "mean_nearest_centroid_distance": float(pair.min(axis=1).mean()),
        "mean_query_to_own_centroid": float(np.linalg.norm(queries - centroids[owners], axis=1).mean()),
        "mrr_d_avg": float(np.mean(rr)),
        "candidates_for_exact_top10_median": float(np.median(needed)),
        "candidates_for_exact_top10_p90": float(np.percentile(needed, 90)),
        "top10_overlap_d_avg_d_rms": float(np.mean(overlap)),
    }
