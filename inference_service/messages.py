"""Domain rows to protobuf messages: what the servicer answers with."""

from __future__ import annotations

import asyncio
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from db import clients
from db.rows import FlagRow
from inference_service.blobs import BlobStore
from inference_service.feedback_report import PrecisionRow
from inference_service.search.engine import SearchPage
from protos import findlora_pb2 as pb

FLAG_TO_PROTO = {
    "open": pb.FLAG_STATUS_OPEN,
    "approved": pb.FLAG_STATUS_APPROVED,
    "dismissed": pb.FLAG_STATUS_DISMISSED,
}
FLAG_FROM_PROTO = {value: key for key, value in FLAG_TO_PROTO.items()}


def timestamp(value: Any) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def page_to_proto(page: SearchPage) -> pb.SearchResponse:
    return pb.SearchResponse(
        search_id=str(page.search_id),
        pseudo_prompt=page.pseudo_prompt,
        offset=page.offset,
        total=page.total,
        expires_at=timestamp(page.expires_at),
        matches=[
            pb.Match(
                rank=m.rank,
                lora_id=m.lora.id,
                slug=m.lora.slug,
                name=m.lora.name,
                url=m.lora.page_url,
                base_model=m.lora.base_model,
                score=m.score,
                style_distance=m.style_distance,
                rkme_score=m.rkme_score,
                suggested_prompt=m.suggested_prompt,
                nsfw=m.lora.nsfw,
                trigger_words=m.lora.trigger_words,
                transfers=[
                    pb.SampleTransfer(
                        sample_id=t.sample_id,
                        key=t.key,
                        thumbnail=t.thumbnail,
                        mime_type="image/webp" if t.thumbnail else "",
                        distance=t.distance,
                    )
                    for t in m.transfers
                ],
            )
            for m in page.matches
        ],
    )


async def flag_to_proto(flag: FlagRow, blobs: BlobStore) -> pb.Flag:
    evidence = flag.evidence
    nearest = evidence.get("nearest", [])
    thumbnails = await asyncio.to_thread(blobs.get_or_empty, [near["thumb_key"] for near in nearest])
    transfers = [
        pb.SampleTransfer(
            sample_id=near["sample_id"],
            key=near["key"],
            thumbnail=thumbnail,
            mime_type="image/webp" if thumbnail else "",
            distance=float(near["distance"]),
        )
        for near, thumbnail in zip(nearest, thumbnails, strict=True)
    ]
    message = pb.Flag(
        flag_id=str(flag.id),
        lora_id=flag.lora_id,
        slug=flag.slug,
        lora_name=flag.lora_name,
        reporter=flag.reporter,
        note=flag.note,
        status=FLAG_TO_PROTO[flag.status],
        reviewer=flag.reviewer,
        created_at=timestamp(flag.created_at),
        nsfw=flag.nsfw,
        evidence=pb.FlagEvidence(
            style_distance=float(evidence.get("style_distance", 0.0)),
            rank=int(evidence.get("rank", 0)),
            catalog_size=int(evidence.get("catalog_size", 0)),
            nearest_transfers=transfers,
        ),
    )
    if flag.decided_at is not None:
        message.decided_at.CopyFrom(timestamp(flag.decided_at))
    return message


def client_to_proto(row: clients.ClientRow) -> pb.ClientInfo:
    message = pb.ClientInfo(
        name=row.name, roles=list(row.roles), created_at=timestamp(row.created_at), users=row.users
    )
    if row.revoked_at is not None:
        message.revoked_at.CopyFrom(timestamp(row.revoked_at))
    return message


def precision_to_proto(row: PrecisionRow) -> pb.PrecisionRow:
    return pb.PrecisionRow(
        label=row.label,
        sessions=row.sessions,
        precision_at_1=row.precision.get(1),
        precision_at_5=row.precision.get(5),
        precision_at_10=row.precision.get(10),
    )
