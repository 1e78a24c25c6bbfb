"""The rows the db modules return and take: plain frozen dataclasses, numpy for vectors."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

import numpy as np


@dataclass(frozen=True)
class LoraRow:
    id: int
    slug: str
    name: str
    page_url: str
    source_url: str
    base_model: str
    trigger_words: list[str]
    nsfw: bool
    status: str
    catalog_fingerprint: str = ""
    license: str = ""
    author: str = ""


@dataclass(frozen=True)
class NewLora:
    slug: str
    name: str
    base_model: str
    page_url: str = ""
    source_url: str = ""
    trigger_words: list[str] = field(default_factory=list)
    license: str = ""
    author: str = ""
    nsfw: bool = False
    sha256: str | None = None
    created_by: str = ""
    catalog_fingerprint: str = ""


@dataclass(frozen=True)
class ReferenceRow:
    sample_id: str
    blob_key: str
    thumb_key: str
    sha256: str
    embedding: np.ndarray
    kept: bool
    transfer_mse: float


@dataclass(frozen=True)
class NearestReference:
    lora_id: int
    sample_id: str
    blob_key: str
    thumb_key: str
    distance: float


@dataclass(frozen=True)
class FlagRow:
    id: uuid.UUID
    lora_id: int
    slug: str
    lora_name: str
    reporter: str
    note: str
    evidence: dict[str, Any]
    status: str
    reviewer: str
    created_at: datetime
    decided_at: datetime | None
    nsfw: bool  # the flagged LoRA's


class AuditEntry(NamedTuple):
    actor: str  # who the caller says acted (a bot's moderator id)
    action: str
    subject: str
    details: dict[str, Any]
    client: str | None  # the authenticated client; None for operator commands on the database


@dataclass(frozen=True)
class FlagEvidenceRow:
    """How close artwork is to one LoRA: its d_avg, its rank among the catalog, the catalog size."""

    style_distance: float
    rank: int
    catalog_size: int


@dataclass(frozen=True)
class SpecPointRow:
    prompt_local_id: int  # id in the catalog: platform prompt line, or continuing in spec/prompts.txt
    n: int
    blob_key: str
    image_feature: np.ndarray


@dataclass(frozen=True)
class SpecRow:
    """A spec point as stored: its prompt's row id (prompts.id)."""

    prompt_id: int
    n: int
    blob_key: str
    image_feature: np.ndarray | None = None  # CLIP feature when the worker has the GMI models


@dataclass(frozen=True)
class Prompt:
    id: int
    local_id: int
    text: str


@dataclass(frozen=True)
class LoraSpec:
    """One LoRA's GMI specification: image features and, row by row, their prompts' text features."""

    lora_id: int
    image_features: np.ndarray  # (N, D)
    prompt_features: np.ndarray  # (N, T)
    prompt_ids: list[int]


@dataclass(frozen=True)
class FeedbackVote:
    search_id: str
    voter: str  # the voter's pseudonym on this search (migration 006), never a user id
    rank: int  # 1-based rank of the voted result in its search
    vote: int  # +1 up, -1 down
    base_model: str  # of the voted LoRA
    at: datetime


@dataclass(frozen=True)
class CentroidCandidates:
    """LoRAs in increasing distance of their centroid to the mean query embedding, with the
    per-image bounds on d_avg of docs/design.md 5 (averaged over the query images)."""

    lora_ids: np.ndarray  # int64
    distance: np.ndarray  # |mean(q) - c|: the scan order, a lower bound of `lower`
    lower: np.ndarray  # mean_i |q_i - c|  <= d_avg (Jensen)
    upper: np.ndarray  # mean_i min(|q_i - c| + r, sqrt(|q_i - c|^2 + v))  >= d_avg
    exact_scan: bool  # False: the HNSW index answered (approximate order)


@dataclass(frozen=True)
class StoredSearch:
    id: uuid.UUID
    query_embedding: np.ndarray
    pseudo_prompt: str
    ranking: list[dict[str, Any]]
    filters: dict[str, Any]
    expires_at: datetime
    expired: bool
    encoder: str | None = None  # the style encoder of query_embedding (None: made before versioning)


def as_array(value: Any) -> np.ndarray:
    """A pgvector value (Vector object or array) as float32 numpy."""
    return np.asarray(value.to_numpy() if hasattr(value, "to_numpy") else value, dtype=np.float32)
