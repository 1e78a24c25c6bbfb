"""Community rules for NSFW LoRAs (docs/design.md 9): only where the channel allows it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class NsfwPolicy:
    """Discord: age-restricted channels allow NSFW. Slack has no such flag: channels opt in by id."""

    allowed_channel_ids: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def of(cls, channel_ids: Iterable[object] = ()) -> NsfwPolicy:
        return cls(frozenset(str(c) for c in channel_ids))

    def allows(self, channel_id: object, age_restricted: bool = False) -> bool:
        # A private (ephemeral) answer does not change where it is shown, so it gets no exception.
        return age_restricted or str(channel_id) in self.allowed_channel_ids
