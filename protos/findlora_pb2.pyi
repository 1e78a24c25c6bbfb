import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Vote(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VOTE_UNSPECIFIED: _ClassVar[Vote]
    VOTE_UP: _ClassVar[Vote]
    VOTE_DOWN: _ClassVar[Vote]

class JobState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STATE_UNSPECIFIED: _ClassVar[JobState]
    JOB_STATE_QUEUED: _ClassVar[JobState]
    JOB_STATE_RUNNING: _ClassVar[JobState]
    JOB_STATE_SUCCEEDED: _ClassVar[JobState]
    JOB_STATE_FAILED: _ClassVar[JobState]

class LoraStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LORA_STATUS_UNSPECIFIED: _ClassVar[LoraStatus]
    LORA_STATUS_ACTIVE: _ClassVar[LoraStatus]
    LORA_STATUS_HIDDEN: _ClassVar[LoraStatus]
    LORA_STATUS_TAKEN_DOWN: _ClassVar[LoraStatus]

class FlagStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FLAG_STATUS_UNSPECIFIED: _ClassVar[FlagStatus]
    FLAG_STATUS_OPEN: _ClassVar[FlagStatus]
    FLAG_STATUS_APPROVED: _ClassVar[FlagStatus]
    FLAG_STATUS_DISMISSED: _ClassVar[FlagStatus]

class FlagDecision(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FLAG_DECISION_UNSPECIFIED: _ClassVar[FlagDecision]
    FLAG_DECISION_APPROVE: _ClassVar[FlagDecision]
    FLAG_DECISION_DISMISS: _ClassVar[FlagDecision]
VOTE_UNSPECIFIED: Vote
VOTE_UP: Vote
VOTE_DOWN: Vote
JOB_STATE_UNSPECIFIED: JobState
JOB_STATE_QUEUED: JobState
JOB_STATE_RUNNING: JobState
JOB_STATE_SUCCEEDED: JobState
JOB_STATE_FAILED: JobState
LORA_STATUS_UNSPECIFIED: LoraStatus
LORA_STATUS_ACTIVE: LoraStatus
LORA_STATUS_HIDDEN: LoraStatus
LORA_STATUS_TAKEN_DOWN: LoraStatus
FLAG_STATUS_UNSPECIFIED: FlagStatus
FLAG_STATUS_OPEN: FlagStatus
FLAG_STATUS_APPROVED: FlagStatus
FLAG_STATUS_DISMISSED: FlagStatus
FLAG_DECISION_UNSPECIFIED: FlagDecision
FLAG_DECISION_APPROVE: FlagDecision
FLAG_DECISION_DISMISS: FlagDecision

class Image(_message.Message):
    __slots__ = ("data", "filename", "content_type")
    DATA_FIELD_NUMBER: _ClassVar[int]
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    filename: str
    content_type: str
    def __init__(self, data: _Optional[bytes] = ..., filename: _Optional[str] = ..., content_type: _Optional[str] = ...) -> None: ...

class SearchRequest(_message.Message):
    __slots__ = ("images", "top_k", "base_model", "allow_nsfw", "prompt", "requested_by", "exact")
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    BASE_MODEL_FIELD_NUMBER: _ClassVar[int]
    ALLOW_NSFW_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_BY_FIELD_NUMBER: _ClassVar[int]
    EXACT_FIELD_NUMBER: _ClassVar[int]
    images: _containers.RepeatedCompositeFieldContainer[Image]
    top_k: int
    base_model: str
    allow_nsfw: bool
    prompt: str
    requested_by: str
    exact: bool
    def __init__(self, images: _Optional[_Iterable[_Union[Image, _Mapping]]] = ..., top_k: _Optional[int] = ..., base_model: _Optional[str] = ..., allow_nsfw: _Optional[bool] = ..., prompt: _Optional[str] = ..., requested_by: _Optional[str] = ..., exact: _Optional[bool] = ...) -> None: ...

class SampleTransfer(_message.Message):
    __slots__ = ("sample_id", "key", "thumbnail", "mime_type", "distance")
    SAMPLE_ID_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    THUMBNAIL_FIELD_NUMBER: _ClassVar[int]
    MIME_TYPE_FIELD_NUMBER: _ClassVar[int]
    DISTANCE_FIELD_NUMBER: _ClassVar[int]
    sample_id: str
    key: str
    thumbnail: bytes
    mime_type: str
    distance: float
    def __init__(self, sample_id: _Optional[str] = ..., key: _Optional[str] = ..., thumbnail: _Optional[bytes] = ..., mime_type: _Optional[str] = ..., distance: _Optional[float] = ...) -> None: ...

class Match(_message.Message):
    __slots__ = ("rank", "lora_id", "slug", "name", "url", "base_model", "score", "style_distance", "rkme_score", "suggested_prompt", "transfers", "nsfw", "trigger_words")
    RANK_FIELD_NUMBER: _ClassVar[int]
    LORA_ID_FIELD_NUMBER: _ClassVar[int]
    SLUG_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    BASE_MODEL_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    STYLE_DISTANCE_FIELD_NUMBER: _ClassVar[int]
    RKME_SCORE_FIELD_NUMBER: _ClassVar[int]
    SUGGESTED_PROMPT_FIELD_NUMBER: _ClassVar[int]
    TRANSFERS_FIELD_NUMBER: _ClassVar[int]
    NSFW_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_WORDS_FIELD_NUMBER: _ClassVar[int]
    rank: int
    lora_id: int
    slug: str
    name: str
    url: str
    base_model: str
    score: float
    style_distance: float
    rkme_score: float
    suggested_prompt: str
    transfers: _containers.RepeatedCompositeFieldContainer[SampleTransfer]
    nsfw: bool
    trigger_words: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, rank: _Optional[int] = ..., lora_id: _Optional[int] = ..., slug: _Optional[str] = ..., name: _Optional[str] = ..., url: _Optional[str] = ..., base_model: _Optional[str] = ..., score: _Optional[float] = ..., style_distance: _Optional[float] = ..., rkme_score: _Optional[float] = ..., suggested_prompt: _Optional[str] = ..., transfers: _Optional[_Iterable[_Union[SampleTransfer, _Mapping]]] = ..., nsfw: _Optional[bool] = ..., trigger_words: _Optional[_Iterable[str]] = ...) -> None: ...

class SearchResponse(_message.Message):
    __slots__ = ("search_id", "pseudo_prompt", "matches", "offset", "total", "expires_at")
    SEARCH_ID_FIELD_NUMBER: _ClassVar[int]
    PSEUDO_PROMPT_FIELD_NUMBER: _ClassVar[int]
    MATCHES_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    search_id: str
    pseudo_prompt: str
    matches: _containers.RepeatedCompositeFieldContainer[Match]
    offset: int
    total: int
    expires_at: _timestamp_pb2.Timestamp
    def __init__(self, search_id: _Optional[str] = ..., pseudo_prompt: _Optional[str] = ..., matches: _Optional[_Iterable[_Union[Match, _Mapping]]] = ..., offset: _Optional[int] = ..., total: _Optional[int] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetPageRequest(_message.Message):
    __slots__ = ("search_id", "offset", "limit", "allow_nsfw")
    SEARCH_ID_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    ALLOW_NSFW_FIELD_NUMBER: _ClassVar[int]
    search_id: str
    offset: int
    limit: int
    allow_nsfw: bool
    def __init__(self, search_id: _Optional[str] = ..., offset: _Optional[int] = ..., limit: _Optional[int] = ..., allow_nsfw: _Optional[bool] = ...) -> None: ...

class RecordFeedbackRequest(_message.Message):
    __slots__ = ("search_id", "lora_id", "vote", "user")
    SEARCH_ID_FIELD_NUMBER: _ClassVar[int]
    LORA_ID_FIELD_NUMBER: _ClassVar[int]
    VOTE_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    search_id: str
    lora_id: int
    vote: Vote
    user: str
    def __init__(self, search_id: _Optional[str] = ..., lora_id: _Optional[int] = ..., vote: _Optional[_Union[Vote, str]] = ..., user: _Optional[str] = ...) -> None: ...

class RecordFeedbackResponse(_message.Message):
    __slots__ = ("counted",)
    COUNTED_FIELD_NUMBER: _ClassVar[int]
    counted: bool
    def __init__(self, counted: _Optional[bool] = ...) -> None: ...

class LoraMetadata(_message.Message):
    __slots__ = ("slug", "name", "base_model", "trigger_words", "license", "author", "nsfw", "page_url")
    SLUG_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    BASE_MODEL_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_WORDS_FIELD_NUMBER: _ClassVar[int]
    LICENSE_FIELD_NUMBER: _ClassVar[int]
    AUTHOR_FIELD_NUMBER: _ClassVar[int]
    NSFW_FIELD_NUMBER: _ClassVar[int]
    PAGE_URL_FIELD_NUMBER: _ClassVar[int]
    slug: str
    name: str
    base_model: str
    trigger_words: _containers.RepeatedScalarFieldContainer[str]
    license: str
    author: str
    nsfw: bool
    page_url: str
    def __init__(self, slug: _Optional[str] = ..., name: _Optional[str] = ..., base_model: _Optional[str] = ..., trigger_words: _Optional[_Iterable[str]] = ..., license: _Optional[str] = ..., author: _Optional[str] = ..., nsfw: _Optional[bool] = ..., page_url: _Optional[str] = ...) -> None: ...

class RegisterLoraRequest(_message.Message):
    __slots__ = ("source_url", "metadata", "requested_by")
    SOURCE_URL_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_BY_FIELD_NUMBER: _ClassVar[int]
    source_url: str
    metadata: LoraMetadata
    requested_by: str
    def __init__(self, source_url: _Optional[str] = ..., metadata: _Optional[_Union[LoraMetadata, _Mapping]] = ..., requested_by: _Optional[str] = ...) -> None: ...

class RegisterLoraResponse(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class WatchJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class LookalikeWarning(_message.Message):
    __slots__ = ("similar_slug", "centroid_distance", "threshold")
    SIMILAR_SLUG_FIELD_NUMBER: _ClassVar[int]
    CENTROID_DISTANCE_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    similar_slug: str
    centroid_distance: float
    threshold: float
    def __init__(self, similar_slug: _Optional[str] = ..., centroid_distance: _Optional[float] = ..., threshold: _Optional[float] = ...) -> None: ...

class JobEvent(_message.Message):
    __slots__ = ("job_id", "state", "step", "progress", "message", "lora_id", "slug", "lookalikes")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    LORA_ID_FIELD_NUMBER: _ClassVar[int]
    SLUG_FIELD_NUMBER: _ClassVar[int]
    LOOKALIKES_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    state: JobState
    step: str
    progress: float
    message: str
    lora_id: int
    slug: str
    lookalikes: _containers.RepeatedCompositeFieldContainer[LookalikeWarning]
    def __init__(self, job_id: _Optional[str] = ..., state: _Optional[_Union[JobState, str]] = ..., step: _Optional[str] = ..., progress: _Optional[float] = ..., message: _Optional[str] = ..., lora_id: _Optional[int] = ..., slug: _Optional[str] = ..., lookalikes: _Optional[_Iterable[_Union[LookalikeWarning, _Mapping]]] = ...) -> None: ...

class SetLoraStatusRequest(_message.Message):
    __slots__ = ("lora", "status", "moderator", "reason")
    LORA_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    MODERATOR_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    lora: str
    status: LoraStatus
    moderator: str
    reason: str
    def __init__(self, lora: _Optional[str] = ..., status: _Optional[_Union[LoraStatus, str]] = ..., moderator: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class SetLoraStatusResponse(_message.Message):
    __slots__ = ("slug", "status")
    SLUG_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    slug: str
    status: LoraStatus
    def __init__(self, slug: _Optional[str] = ..., status: _Optional[_Union[LoraStatus, str]] = ...) -> None: ...

class FlagEvidence(_message.Message):
    __slots__ = ("style_distance", "rank", "catalog_size", "nearest_transfers")
    STYLE_DISTANCE_FIELD_NUMBER: _ClassVar[int]
    RANK_FIELD_NUMBER: _ClassVar[int]
    CATALOG_SIZE_FIELD_NUMBER: _ClassVar[int]
    NEAREST_TRANSFERS_FIELD_NUMBER: _ClassVar[int]
    style_distance: float
    rank: int
    catalog_size: int
    nearest_transfers: _containers.RepeatedCompositeFieldContainer[SampleTransfer]
    def __init__(self, style_distance: _Optional[float] = ..., rank: _Optional[int] = ..., catalog_size: _Optional[int] = ..., nearest_transfers: _Optional[_Iterable[_Union[SampleTransfer, _Mapping]]] = ...) -> None: ...

class Flag(_message.Message):
    __slots__ = ("flag_id", "lora_id", "slug", "lora_name", "reporter", "note", "evidence", "status", "reviewer", "created_at", "decided_at", "nsfw")
    FLAG_ID_FIELD_NUMBER: _ClassVar[int]
    LORA_ID_FIELD_NUMBER: _ClassVar[int]
    SLUG_FIELD_NUMBER: _ClassVar[int]
    LORA_NAME_FIELD_NUMBER: _ClassVar[int]
    REPORTER_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REVIEWER_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    DECIDED_AT_FIELD_NUMBER: _ClassVar[int]
    NSFW_FIELD_NUMBER: _ClassVar[int]
    flag_id: str
    lora_id: int
    slug: str
    lora_name: str
    reporter: str
    note: str
    evidence: FlagEvidence
    status: FlagStatus
    reviewer: str
    created_at: _timestamp_pb2.Timestamp
    decided_at: _timestamp_pb2.Timestamp
    nsfw: bool
    def __init__(self, flag_id: _Optional[str] = ..., lora_id: _Optional[int] = ..., slug: _Optional[str] = ..., lora_name: _Optional[str] = ..., reporter: _Optional[str] = ..., note: _Optional[str] = ..., evidence: _Optional[_Union[FlagEvidence, _Mapping]] = ..., status: _Optional[_Union[FlagStatus, str]] = ..., reviewer: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., decided_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., nsfw: _Optional[bool] = ...) -> None: ...

class FlagLookalikeRequest(_message.Message):
    __slots__ = ("lora", "artworks", "note", "reporter")
    LORA_FIELD_NUMBER: _ClassVar[int]
    ARTWORKS_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    REPORTER_FIELD_NUMBER: _ClassVar[int]
    lora: str
    artworks: _containers.RepeatedCompositeFieldContainer[Image]
    note: str
    reporter: str
    def __init__(self, lora: _Optional[str] = ..., artworks: _Optional[_Iterable[_Union[Image, _Mapping]]] = ..., note: _Optional[str] = ..., reporter: _Optional[str] = ...) -> None: ...

class FlagLookalikeResponse(_message.Message):
    __slots__ = ("flag",)
    FLAG_FIELD_NUMBER: _ClassVar[int]
    flag: Flag
    def __init__(self, flag: _Optional[_Union[Flag, _Mapping]] = ...) -> None: ...

class ListFlagsRequest(_message.Message):
    __slots__ = ("status", "limit")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    status: FlagStatus
    limit: int
    def __init__(self, status: _Optional[_Union[FlagStatus, str]] = ..., limit: _Optional[int] = ...) -> None: ...

class ListFlagsResponse(_message.Message):
    __slots__ = ("flags",)
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    flags: _containers.RepeatedCompositeFieldContainer[Flag]
    def __init__(self, flags: _Optional[_Iterable[_Union[Flag, _Mapping]]] = ...) -> None: ...

class ReviewFlagRequest(_message.Message):
    __slots__ = ("flag_id", "decision", "moderator", "reason")
    FLAG_ID_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    MODERATOR_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    flag_id: str
    decision: FlagDecision
    moderator: str
    reason: str
    def __init__(self, flag_id: _Optional[str] = ..., decision: _Optional[_Union[FlagDecision, str]] = ..., moderator: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class ReviewFlagResponse(_message.Message):
    __slots__ = ("flag",)
    FLAG_FIELD_NUMBER: _ClassVar[int]
    flag: Flag
    def __init__(self, flag: _Optional[_Union[Flag, _Mapping]] = ...) -> None: ...

class FeedbackStatsRequest(_message.Message):
    __slots__ = ("since",)
    SINCE_FIELD_NUMBER: _ClassVar[int]
    since: _timestamp_pb2.Timestamp
    def __init__(self, since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class PrecisionRow(_message.Message):
    __slots__ = ("label", "sessions", "precision_at_1", "precision_at_5", "precision_at_10")
    LABEL_FIELD_NUMBER: _ClassVar[int]
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    PRECISION_AT_1_FIELD_NUMBER: _ClassVar[int]
    PRECISION_AT_5_FIELD_NUMBER: _ClassVar[int]
    PRECISION_AT_10_FIELD_NUMBER: _ClassVar[int]
    label: str
    sessions: int
    precision_at_1: float
    precision_at_5: float
    precision_at_10: float
    def __init__(self, label: _Optional[str] = ..., sessions: _Optional[int] = ..., precision_at_1: _Optional[float] = ..., precision_at_5: _Optional[float] = ..., precision_at_10: _Optional[float] = ...) -> None: ...

class FeedbackStatsResponse(_message.Message):
    __slots__ = ("votes", "overall", "by_base_model", "by_week")
    VOTES_FIELD_NUMBER: _ClassVar[int]
    OVERALL_FIELD_NUMBER: _ClassVar[int]
    BY_BASE_MODEL_FIELD_NUMBER: _ClassVar[int]
    BY_WEEK_FIELD_NUMBER: _ClassVar[int]
    votes: int
    overall: PrecisionRow
    by_base_model: _containers.RepeatedCompositeFieldContainer[PrecisionRow]
    by_week: _containers.RepeatedCompositeFieldContainer[PrecisionRow]
    def __init__(self, votes: _Optional[int] = ..., overall: _Optional[_Union[PrecisionRow, _Mapping]] = ..., by_base_model: _Optional[_Iterable[_Union[PrecisionRow, _Mapping]]] = ..., by_week: _Optional[_Iterable[_Union[PrecisionRow, _Mapping]]] = ...) -> None: ...

class CreateClientRequest(_message.Message):
    __slots__ = ("name", "role", "users")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    USERS_FIELD_NUMBER: _ClassVar[int]
    name: str
    role: str
    users: str
    def __init__(self, name: _Optional[str] = ..., role: _Optional[str] = ..., users: _Optional[str] = ...) -> None: ...

class CreateClientResponse(_message.Message):
    __slots__ = ("name", "token", "roles", "users")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    ROLES_FIELD_NUMBER: _ClassVar[int]
    USERS_FIELD_NUMBER: _ClassVar[int]
    name: str
    token: str
    roles: _containers.RepeatedScalarFieldContainer[str]
    users: str
    def __init__(self, name: _Optional[str] = ..., token: _Optional[str] = ..., roles: _Optional[_Iterable[str]] = ..., users: _Optional[str] = ...) -> None: ...

class ListClientsRequest(_message.Message):
    __slots__ = ("include_revoked",)
    INCLUDE_REVOKED_FIELD_NUMBER: _ClassVar[int]
    include_revoked: bool
    def __init__(self, include_revoked: _Optional[bool] = ...) -> None: ...

class ClientInfo(_message.Message):
    __slots__ = ("name", "roles", "created_at", "revoked_at", "users")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ROLES_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    REVOKED_AT_FIELD_NUMBER: _ClassVar[int]
    USERS_FIELD_NUMBER: _ClassVar[int]
    name: str
    roles: _containers.RepeatedScalarFieldContainer[str]
    created_at: _timestamp_pb2.Timestamp
    revoked_at: _timestamp_pb2.Timestamp
    users: str
    def __init__(self, name: _Optional[str] = ..., roles: _Optional[_Iterable[str]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., revoked_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., users: _Optional[str] = ...) -> None: ...

class ListClientsResponse(_message.Message):
    __slots__ = ("clients",)
    CLIENTS_FIELD_NUMBER: _ClassVar[int]
    clients: _containers.RepeatedCompositeFieldContainer[ClientInfo]
    def __init__(self, clients: _Optional[_Iterable[_Union[ClientInfo, _Mapping]]] = ...) -> None: ...

class RevokeClientRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class RevokeClientResponse(_message.Message):
    __slots__ = ("revoked",)
    REVOKED_FIELD_NUMBER: _ClassVar[int]
    revoked: bool
    def __init__(self, revoked: _Optional[bool] = ...) -> None: ...

class ServiceStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ServiceStatusResponse(_message.Message):
    __slots__ = ("active_loras", "loras", "samples", "encoder", "catalog_encoder", "database", "schema_version", "registration_enabled", "jobs_queued", "jobs_running", "live_workers")
    ACTIVE_LORAS_FIELD_NUMBER: _ClassVar[int]
    LORAS_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    ENCODER_FIELD_NUMBER: _ClassVar[int]
    CATALOG_ENCODER_FIELD_NUMBER: _ClassVar[int]
    DATABASE_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    REGISTRATION_ENABLED_FIELD_NUMBER: _ClassVar[int]
    JOBS_QUEUED_FIELD_NUMBER: _ClassVar[int]
    JOBS_RUNNING_FIELD_NUMBER: _ClassVar[int]
    LIVE_WORKERS_FIELD_NUMBER: _ClassVar[int]
    active_loras: int
    loras: int
    samples: int
    encoder: str
    catalog_encoder: str
    database: str
    schema_version: int
    registration_enabled: bool
    jobs_queued: int
    jobs_running: int
    live_workers: int
    def __init__(self, active_loras: _Optional[int] = ..., loras: _Optional[int] = ..., samples: _Optional[int] = ..., encoder: _Optional[str] = ..., catalog_encoder: _Optional[str] = ..., database: _Optional[str] = ..., schema_version: _Optional[int] = ..., registration_enabled: _Optional[bool] = ..., jobs_queued: _Optional[int] = ..., jobs_running: _Optional[int] = ..., live_workers: _Optional[int] = ...) -> None: ...
