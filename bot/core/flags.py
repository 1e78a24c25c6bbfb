"""Lookalike flags as text for the artist and the moderators' review card."""

from __future__ import annotations

from protos import findlora_pb2 as pb


def evidence_text(flag: pb.Flag) -> str:
    evidence = flag.evidence
    return (
        f"Among {evidence.catalog_size} LoRAs, `{flag.slug}` ranks **#{evidence.rank}** for your artwork "
        f"(style distance {evidence.style_distance:.3f}; lower is closer)."
    )


def outcome_text(flag: pb.Flag) -> str:
    if flag.status == pb.FLAG_STATUS_APPROVED:
        return f"Your lookalike report about `{flag.slug}` was approved: the LoRA has been taken down."
    if flag.status == pb.FLAG_STATUS_DISMISSED:
        return f"Your lookalike report about `{flag.slug}` was reviewed and dismissed; the LoRA stays listed."
    return f"Your lookalike report about `{flag.slug}` is waiting for review."


def status_label(flag: pb.Flag) -> str:
    return pb.FlagStatus.Name(flag.status).removeprefix("FLAG_STATUS_").lower()
