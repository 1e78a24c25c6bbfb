"""The eval-seed ledger (docs/eval-seeds.json): every eval zoo seed that has been scored, and by
which encoder.

An eval zoo stays an honest held-out test only until someone chooses a model by it. So a seed
already scored with one encoder is refused for a new encoder (a new fingerprint) unless the run
says `--reuse-seed`; a run with `--record-seed` appends its (zoo, seed, encoder) to the ledger.
Validation seeds (role "validation") are there to be looked at, for model selection: they are
listed but never refused.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

LEDGER = Path(__file__).resolve().parents[2] / "docs" / "eval-seeds.json"
ZooKind = Literal["procedural", "real", "heldout-family"]
# Splits whose seeds are held-out tests: the eval splits, and the procedural zoo's split of
# operator families no encoder trains on (ledger zoo "heldout-family").
TEST_SPLITS = ("eval", "heldout-family")
Role = Literal["eval", "validation"]


class SeedReuseError(ValueError):
    """The eval seed was already scored with other encoders."""


@dataclass(frozen=True)
class SeedUse:
    zoo: str  # "procedural" (style zoo, eval split), "real" (human-made art, eval split) or
    # "heldout-family" (style zoo, heldout-family split)
    seed: int
    role: str  # "eval" or "validation"
    encoder: str  # the encoder's weight fingerprint
    label: str  # a human name: v5, a file name
    date: str
    note: str = ""


def read_ledger(path: Path = LEDGER) -> list[SeedUse]:
    if not path.exists():
        return []
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        return [SeedUse(**entry) for entry in document["scored"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path} is not a seed ledger ({exc})") from exc


def check_seed(entries: list[SeedUse], zoo: ZooKind, seed: int, fingerprint: str) -> Role | None:
    """The seed's role in the ledger (None: never scored); raises SeedReuseError when an eval
    seed would be scored by an encoder that has not seen it yet."""
    same = [e for e in entries if e.zoo == zoo and e.seed == seed]
    if not same:
        return None
    if any(e.role == "eval" for e in same):
        if not any(e.encoder == fingerprint for e in same):
            seen = ", ".join(sorted({f"{e.label} ({e.encoder})" for e in same}))
            raise SeedReuseError(
                f"eval seed {seed} of the {zoo} zoo was already scored with {seen}: choosing a new "
                "encoder by it would make it a validation seed. Use an unscored --zoo-seed "
                "(docs/eval-seeds.json lists them), or pass --reuse-seed to score it anyway."
            )
        return "eval"
    return "validation"


def record_seed(path: Path, use: SeedUse) -> None:
    """Append one scored (zoo, seed, encoder) unless that exact triple is there already."""
    document: dict[str, Any] = (
        json.loads(path.read_text(encoding="utf-8"))
        if path.exists()
        else {"rule": "see docs/benchmarks.md, 'Eval seeds'", "scored": []}
    )
    scored: list[dict[str, Any]] = document["scored"]
    key = (use.zoo, use.seed, use.role, use.encoder)
    if any((e["zoo"], e["seed"], e["role"], e["encoder"]) == key for e in scored):
        return
    scored.append(asdict(use))
    path.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")


def today() -> str:
    return datetime.now(UTC).date().isoformat()


@dataclass(frozen=True)
class ScoredZoo:
    """A zoo a run scores, with its role in the ledger before the run (None: never scored)."""

    zoo: ZooKind
    split: str
    seed: int
    role: str | None

    def as_dict(self) -> dict[str, object]:
        return {
            "zoo": self.zoo,
            "split": self.split,
            "seed": self.seed,
            "ledger_role": self.role or "unscored",
        }


def check_run(
    entries: list[SeedUse],
    zoos: list[tuple[ZooKind, str, int]],
    validation: tuple[ZooKind, str, int] | None,
    fingerprint: str,
    reuse: bool,
) -> list[ScoredZoo]:
    """Check a run's eval zoos (refused when already scored by other encoders, unless `reuse`)
    and its validation zoo (refused when it is a ledger eval seed: choosing thresholds on it
    would be a look at it)."""
    if validation is not None:
        kind, split, seed = validation
        if split == "eval" and any(e.role == "eval" and (e.zoo, e.seed) == (kind, seed) for e in entries):
            raise SeedReuseError(
                f"validation seed {seed} ({kind} zoo) is an eval seed in the ledger: "
                "choose another --val-seed or --val-zoo"
            )
        if any((z_kind, z_seed) == (kind, seed) for z_kind, z_split, z_seed in zoos if z_split == split):
            raise SeedReuseError(
                f"the validation zoo ({kind}, {split} split, seed {seed}) is one of this run's eval zoos: "
                "thresholds chosen on it would be chosen on the eval pairs; choose another --val-zoo"
            )
    checked = []
    for kind, split, seed in zoos:
        role: str | None = None
        if split in TEST_SPLITS:
            try:
                role = check_seed(entries, kind, seed, fingerprint)
            except SeedReuseError:
                if not reuse:
                    raise
                role = "eval"
        checked.append(ScoredZoo(kind, split, seed, role))
    return checked


def record_run(path: Path, checked: list[ScoredZoo], fingerprint: str, label: str) -> None:
    """Append the run's eval-split zoos; a validation seed is recorded as one."""
    for scored in checked:
        if scored.split in TEST_SPLITS:
            role = "validation" if scored.role == "validation" else "eval"
            use = SeedUse(
                scored.zoo, scored.seed, role, fingerprint, label, today(), "bench quality --record-seed"
            )
            record_seed(path, use)
