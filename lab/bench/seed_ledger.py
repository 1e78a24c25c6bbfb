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
ZooKind = Literal["procedural", "real"]
Role = Literal["eval", "validation"]


class SeedReuseError(ValueError):
    """The eval seed was already scored with other encoders."""


@dataclass(frozen=True)
class SeedUse:
    zoo: str  # "procedural" (style zoo, eval split) or "real" (human-made art, eval split)
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
