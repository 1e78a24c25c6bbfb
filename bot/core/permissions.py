"""Who may moderate: configured role ids (Discord roles, Slack user groups) or user ids."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ModeratorPolicy:
    role_ids: frozenset[str] = field(default_factory=frozenset)
    user_ids: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def of(cls, role_ids: Iterable[object] = (), user_ids: Iterable[object] = ()) -> ModeratorPolicy:
        return cls(frozenset(str(r) for r in role_ids), frozenset(str(u) for u in user_ids))

    def allows(self, user_id: object, role_ids: Iterable[object] = ()) -> bool:
        if str(user_id) in self.user_ids:
            return True
        return any(str(role) in self.role_ids for role in role_ids)


NOT_A_MODERATOR = "Only findlora moderators can do that."
