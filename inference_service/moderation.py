"""Moderation: LoRA status changes, artists' lookalike flags and their review (docs/design.md 13).

Every decision lands in audit_log in the same transaction as the change.
"""

from __future__ import annotations

import asyncio
import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image

from db import catalog, moderation, ranking
from db.database import Database
from db.encoders import EncoderChanged, label_guard
from db.rows import FlagRow, LoraRow
from findlora_client.protocol import MAX_NOTE_CHARS, Reason
from inference_service.config import Settings
from inference_service.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, parse_id
from inference_service.models.active import ActiveEncoder, UnknownEncoder

LORA_STATUSES = ("active", "hidden", "taken_down")
FLAG_STATUSES = ("open", "approved", "dismissed")
MAX_ARTWORKS = 4
_SLUG_IN_URL = re.compile(r"/([a-z0-9][a-z0-9._-]{0,99})/?$")


@dataclass(frozen=True)
class StatusChange:
    lora: LoraRow
    previous: str
    status: str


class Moderation:
    def __init__(self, db: Database, encoders: ActiveEncoder, settings: Settings) -> None:
        self.db = db
        self.encoders = encoders
        self.settings = settings

    async def resolve_lora(self, ref: str) -> LoraRow:
        """A LoRA by slug, numeric id, or page/download URL (or a URL ending in its slug)."""
        ref = ref.strip()
        if not ref:
            raise InvalidArgument("name the LoRA by slug, link or id")
        lora: LoraRow | None
        async with self.db.connection() as conn:
            if ref.isascii() and ref.isdigit() and len(ref) <= 18:  # a bigint id ("²" is a digit too)
                lora = await catalog.lora_by_id(conn, int(ref))
            elif ref.startswith(("http://", "https://")):
                lora = await catalog.lora_by_url(conn, ref)
                match = _SLUG_IN_URL.search(ref.lower())
                if lora is None and match:
                    lora = await catalog.lora_by_slug(conn, match.group(1))
            else:
                lora = await catalog.lora_by_slug(conn, ref.lower())
        if lora is None:
            raise NotFound(f"no LoRA matches {ref!r}")
        return lora

    async def set_status(
        self, ref: str, status: str, moderator: str, reason: str, *, client: str | None = None
    ) -> StatusChange:
        if status not in LORA_STATUSES:
            raise InvalidArgument(f"status must be one of {', '.join(LORA_STATUSES)}")
        if not moderator:
            raise InvalidArgument("moderator is required")
        lora = await self.resolve_lora(ref)
        # A takedown (copyright, lookalike) is final: nothing brings the LoRA back into results.
        if lora.status == "taken_down" and status != "taken_down":
            raise FailedPrecondition(f"{lora.slug} was taken down; a takedown cannot be undone")
        try:
            previous = await self.db.run(
                moderation.set_lora_status,
                lora.id,
                status,
                actor=moderator,
                action=f"lora_{status}",
                details={"reason": reason},
                client=client,
            )
        except moderation.TakedownIsFinal as exc:  # taken down since the check above
            raise FailedPrecondition(str(exc)) from None
        return StatusChange(lora, previous, status)

    async def flag_lookalike(
        self,
        ref: str,
        artworks: Sequence[Image.Image],
        note: str,
        reporter: str,
        *,
        client: str | None = None,
    ) -> FlagRow:
        if not reporter:
            raise InvalidArgument("reporter is required")
        if not 1 <= len(artworks) <= MAX_ARTWORKS:
            raise InvalidArgument(f"send 1 to {MAX_ARTWORKS} images of your artwork")
        if len(note) > MAX_NOTE_CHARS:
            raise InvalidArgument(f"the note is longer than {MAX_NOTE_CHARS} characters")
        lora = await self.resolve_lora(ref)
        if lora.status != "active":
            # As if it did not exist: a hidden or taken-down LoRA's name, slug and references are
            # not for the caller (and an id loop would list them all).
            raise NotFound(f"no LoRA matches {ref.strip()!r}")
        for _ in range(3):  # an activation between embedding and comparing: embed again
            try:
                embedder = await self.encoders.current()
            except UnknownEncoder as exc:
                raise FailedPrecondition(exc.message) from None
            embeddings = await asyncio.to_thread(embedder.embed, list(artworks))
            try:
                async with self.db.search_connection(label_guard(embedder.label)) as conn:
                    evidence = await moderation.evidence_for(conn, list(embeddings), lora.id)
                    if evidence is None:
                        raise FailedPrecondition(
                            f"{lora.slug} has no reference images to compare your artwork with"
                        )
                    centre = embeddings.mean(axis=0)
                    nearest = await ranking.nearest_references(
                        conn, centre, [lora.id], self.settings.transfers_per_match
                    )
                break
            except EncoderChanged:
                continue
        else:
            raise FailedPrecondition("the style encoder is being switched; flag again in a moment")
        insert = functools.partial(
            moderation.insert_flag,
            lora_id=lora.id,
            reporter=reporter,
            client=client,
            note=note.strip(),
            evidence={
                "style_distance": evidence.style_distance,
                "rank": evidence.rank,
                "catalog_size": evidence.catalog_size,
                "artworks": len(artworks),
                "nearest": [
                    {
                        "sample_id": ref.sample_id,
                        "key": ref.blob_key,
                        "thumb_key": ref.thumb_key,
                        "distance": ref.distance,
                    }
                    for ref in nearest.get(lora.id, [])
                ],
            },
        )
        try:
            return await self.db.run(insert)
        except moderation.LoraNotFlaggable:
            raise NotFound(f"no LoRA matches {ref.strip()!r}") from None
        except moderation.FlagAlreadyOpen as exc:
            raise AlreadyExists(
                f"you have already reported {lora.slug} (flag {exc.flag_id}); the moderators will "
                "review it, and a second report would not add to it"
            ) from None

    async def list_flags(self, status: str | None, limit: int) -> list[FlagRow]:
        if status is not None and status not in FLAG_STATUSES:
            raise InvalidArgument(f"flag status must be one of {', '.join(FLAG_STATUSES)}")
        if limit < 0:
            raise InvalidArgument("limit must be >= 0")
        return await self.db.run(moderation.list_flags, status, min(limit or 50, 200))

    async def review(
        self, flag_id: str, approve: bool, moderator: str, reason: str, *, client: str | None = None
    ) -> FlagRow:
        if not moderator:
            raise InvalidArgument("moderator is required")
        parsed = parse_id(flag_id, "flag id")
        try:
            flag, decided_now = await self.db.run(
                moderation.decide_flag,
                parsed,
                status="approved" if approve else "dismissed",
                moderator=moderator,
                reason=reason,
                client=client,
            )
        except moderation.OwnFlag:
            raise FailedPrecondition(
                "you filed this report, so another moderator has to approve it (you can dismiss it)",
                reason=Reason.OWN_FLAG,
            ) from None
        if flag is None:
            raise NotFound(f"no flag {flag_id}")
        if not decided_now:
            by = f" by {flag.reviewer}" if flag.reviewer else ""
            raise FailedPrecondition(f"this flag was already {flag.status}{by}")
        return flag
