"""Lookalike flags as text for the artist and the moderators' review card."""

from __future__ import annotations

from bot.core.rendering import TransferImage
from protos import findlora_pb2 as pb

_SUFFIXES = {"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp", "image/gif": ".gif"}


def evidence_transfers(flag: pb.Flag) -> list[TransferImage]:
    """The LoRA's sample transfers nearest the artwork that still have a thumbnail."""
    return [
        TransferImage(t.sample_id, f"{t.sample_id}.webp", t.thumbnail, t.mime_type, t.distance)
        for t in flag.evidence.nearest_transfers
        if t.thumbnail
    ]


def artwork_filename(number: int, content_type: str) -> str:
    return f"artwork-{number}{_SUFFIXES.get(content_type, '.img')}"


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
