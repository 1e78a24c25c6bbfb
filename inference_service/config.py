"""Service configuration from the environment (prefix FINDLORA_) and an optional .env file."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from findlora_client.credentials import DEFAULT_DATA_DIR
from findlora_client.listen import parse_listen
from findlora_client.protocol import DEFAULT_ADDRESS, MAX_IMAGE_PIXELS, MAX_MESSAGE_BYTES
from inference_service.scoring.fusion import Normalisation


class Settings(BaseSettings):
    # hide_input_in_errors: a rejected value (a DATABASE_URL with its password) is never echoed.
    model_config = SettingsConfigDict(
        env_prefix="FINDLORA_", env_file=".env", extra="ignore", hide_input_in_errors=True
    )

    data_dir: Path = Field(DEFAULT_DATA_DIR, description="Embedded database and blob store live here.")
    database_url: str | None = Field(
        None,
        validation_alias="DATABASE_URL",
        description="External PostgreSQL with pgvector; unset means the embedded server under data_dir.",
        repr=False,  # it carries a password
    )
    database_url_file: str | None = Field(
        None,
        validation_alias="DATABASE_URL_FILE",
        description="A secret file holding DATABASE_URL (Docker/Kubernetes secrets); DATABASE_URL wins.",
    )
    listen: str = Field(DEFAULT_ADDRESS, description="gRPC listen address of the inference service.")
    tls_cert: Path | None = Field(None, description="PEM certificate chain of the gRPC port (TLS on).")
    tls_key: Path | None = Field(None, description="PEM private key of tls_cert.")
    tls_client_ca: Path | None = Field(
        None, description="PEM CA: clients must present a certificate it signed (mutual TLS)."
    )
    style_encoder: Path | None = Field(
        None, description="Style encoder .safetensors; unset means the shipped default."
    )
    device: str = Field("cpu", description="torch device for the models: cpu, cuda, cuda:1 ...")
    torch_threads: int = Field(0, description="torch intra-op threads; 0 keeps torch's default.")

    default_top_k: int = 10
    max_top_k: int = 50
    stored_ranking_size: int = Field(100, description="How many results a search keeps for paging.")
    search_ttl_hours: float = Field(
        24.0, gt=0, description="A search can be paged this long, then it is deleted (fractions allowed)."
    )
    search_ef_search: int = Field(
        800,
        ge=1,
        le=1000,  # pgvector's hnsw.ef_search range: a larger value fails every search that walks it
        description="HNSW ef_search of the centroid walk (two-stage search); 400 missed families at 100k",
    )
    search_memory_ef_search: int = Field(
        800,
        ge=10,
        description="efSearch of the memory index's faiss walk (one query image); narrower beams miss "
        "the nearest lookalike family of queries far from every centroid (docs/design.md 5)",
    )
    search_exact_below: int = Field(
        2000, description="Catalogs with fewer LoRAs scan every centroid exactly instead of the HNSW index."
    )
    centroid_index: Literal["memory", "database"] = Field(
        "memory",
        description="Two-stage search candidates: 'memory' holds the centroids in the service, kept "
        "current by the catalog generation (pgvector's walk serves until it is built); 'database' "
        "walks pgvector's HNSW index.",
    )
    centroid_index_exact_below: int = Field(
        120_000,  # measured: `findlora bench crossover` (docs/bench-results/crossover-seed0.json)
        ge=0,
        description="Memory index: a single-image search without a base-model filter walks its HNSW "
        "graph from this many admitted LoRAs on; anything else scans every centroid exactly.",
    )
    centroid_index_delta_rows: int = Field(
        20_000,
        ge=0,
        description="Memory index: a search applies up to max(this, delta_fraction x LoRAs) changed "
        "summaries itself; more rebuild the index in the background (pgvector serves meanwhile).",
    )
    centroid_index_delta_fraction: float = Field(
        0.05, ge=0, description="Memory index: see centroid_index_delta_rows."
    )
    centroid_index_references_mb: int = Field(
        4096,
        ge=0,
        description="Memory index: hold the kept references too (float32), scoring candidates exactly "
        "in the service, when they take at most this many MB; above it, or 0, PostgreSQL scores them.",
    )
    dynamic_batching: bool = Field(True, description="Group concurrent requests into one encoder run.")
    batch_max_size: int = Field(32, description="Most images per encoder run.")
    batch_max_wait_ms: float = Field(5.0, description="Longest a request waits for others to join its batch.")
    batch_queue_max: int = Field(
        256, description="Queued requests beyond this are refused (RESOURCE_EXHAUSTED)."
    )
    transfers_per_match: int = 3
    thumbnail_px: int = 256

    max_image_bytes: int = 20 * 1024 * 1024
    max_image_pixels: int = Field(
        MAX_IMAGE_PIXELS,
        description="Largest upload, checked from the header; SD outputs themselves are at most "
        "about 2048x2048 (4.2 MP).",
    )
    max_request_image_bytes: int = Field(
        40_000_000, description="All images of one request together, checked before any decode."
    )
    max_grpc_message_bytes: int = MAX_MESSAGE_BYTES
    cleansing_threshold: float = Field(0.01, description="Eq. 1 MSE below which a transfer is dropped.")

    # --- bounded work per request and per process ---------------------------------------------
    decode_workers: int = Field(
        2, description="Threads decoding uploads: at most this many full-size images exist at once."
    )
    decode_queue_max: int = Field(
        64, description="Images waiting for or in decoding; a request beyond it gets RESOURCE_EXHAUSTED."
    )
    decode_working_pixels: int = Field(
        1024 * 1024,
        description="Decoded uploads larger than this are reduced to it (aspect kept) in the decode "
        "worker; the models need at most a 384 px shorter side (BLIP), and SD/SDXL outputs up to "
        "1024x1024 stay untouched.",
    )
    max_concurrent_rpcs: int = Field(
        64, description="RPCs the server runs at once (health checks included); 0: no limit."
    )
    max_watch_streams: int = Field(
        16,
        ge=1,
        description="WatchJob streams open at once: each may last as long as its job, and without a "
        "bound they could hold every RPC slot, leaving none for searches and health checks.",
    )
    rate_limit_per_s: float = Field(
        0.5, description="Image requests (Search, FlagLookalike) per second per requester; 0: off."
    )
    rate_limit_burst: int = Field(
        10, description="Requests a requester may send at once before the rate applies."
    )
    rate_limit_max_keys: int = Field(
        10_000, description="Requesters tracked at once per client (idle ones are dropped first)."
    )
    rate_limit_client_per_s: float | None = Field(
        None,
        description="Image requests per second per client, all its requesters together (a client "
        "naming a new requester per request is still limited); unset: 10 x rate_limit_per_s; 0: off.",
    )
    rate_limit_client_burst: int | None = Field(
        None, description="Requests a client may send at once; unset: 10 x rate_limit_burst."
    )
    search_statement_timeout_ms: int = Field(
        10_000, description="PostgreSQL statement_timeout of each search query; 0: none."
    )

    metrics_listen: str = Field("", description="host:port for Prometheus /metrics; empty disables it.")
    otel_enabled: bool = Field(False, description="OpenTelemetry tracing of gRPC (needs the otel extra).")

    # --- GMI branch (weighted RKME on CLIP features) and fusion ---------------------------------
    gmi: bool = Field(
        False, description="Load CLIP (+ captioner) and fuse weighted RKME with d_avg in search."
    )
    clip_model: str = Field("ViT-L-14", description="open_clip model name (SD1.x-era LoRAs: ViT-L-14).")
    clip_pretrained: str = Field(
        "openai", description="open_clip pretrained tag, or a local .safetensors checkpoint path."
    )
    clip_config_dir: Path | None = Field(
        None, description="Directory of extra open_clip model config JSONs (custom or offline models)."
    )
    text_encoder: str = Field(
        "clip", description="Prompt features: 'clip' (CLIP text tower) or 'minilm' (text-only fallback)."
    )
    captioner: str | None = Field(
        "Salesforce/blip-image-captioning-large",
        description="BLIP captioner: transformers id or local directory; empty disables pseudo-prompts.",
    )
    caption_beams: int = Field(1, description="Beam search width for captions (1 = greedy).")
    caption_max_tokens: int = 30
    rkme_gamma: float = Field(1.0, description="RBF kernel width γ of the RKME score.")
    fusion_alpha: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Fused = α·n(d_avg) + (1−α)·n(RKME); tuned on the bench validation split.",
    )
    fusion_normalisation: Normalisation = Field("rank", description="rank | robust_z (picked by benchmark).")
    gmi_exact_below: int = Field(
        20_000,
        ge=0,
        description="Fused search's GMI candidates: below this many spec points an exact scan, above "
        "it HNSW walks over the spec points' index (db/spec_search.py; bench spec-search).",
    )
    fusion_candidates: int = Field(
        100,
        description="Fused search: each branch proposes its top this-many LoRAs (d_avg, nearest spec "
        "points) and only their union is scored exactly; never fewer than the stored ranking. 100 = "
        "the stored ranking's length; on the 100-LoRA bench zoo 40 already held the whole exhaustive "
        "fused top-10 (bench gmi_rows union_search).",
    )
    model_batch_size: int = 16

    # --- LoRA registration (issue 7) -------------------------------------------------------
    registration_allowed_hosts: list[str] = Field(
        default_factory=lambda: [
            "civitai.com",
            "*.civitai.com",
            # Civitai's download redirects land on its R2 bucket (one account, not all of R2).
            "*.5ac0637cfd0766c97916cefa3764fbdf.r2.cloudflarestorage.com",
            "huggingface.co",
            "*.huggingface.co",
            "*.hf.co",
        ],
        description="Hosts a LoRA may be downloaded from, checked on every redirect hop; '*.x' = subdomains.",
    )
    registration_max_bytes: int = Field(2 * 1024**3, description="Largest LoRA file accepted (streamed cap).")
    registration_max_header_bytes: int = Field(1024**2, description="Largest safetensors header parsed.")
    registration_connect_timeout: float = 10.0
    registration_read_timeout: float = 60.0
    registration_total_timeout: float = Field(3600.0, description="Whole download, all redirects included.")
    registration_max_redirects: int = 5
    registration_allowed_ports: list[int] = Field(
        default_factory=lambda: [443], description="Ports a download URL (and each redirect) may name."
    )
    sd1_base_model: str = Field(
        "stable-diffusion-v1-5/stable-diffusion-v1-5", description="SD1.x pipeline: hub id or local dir."
    )
    sd1_controlnet: str = Field(
        "lllyasviel/control_v11p_sd15_lineart", description="Lineart/scribble ControlNet."
    )
    sdxl_base_model: str = "stabilityai/stable-diffusion-xl-base-1.0"
    sdxl_controlnet: str = "xinsir/controlnet-scribble-sdxl-1.0"
    derivative_base_models: dict[str, str] = Field(
        default_factory=dict,
        description="Checkpoints (hub id or local dir) of SD1/SDXL derivative families, such as "
        '{"pony": "...", "illustrious": "..."}: their LoRAs show their style only there, so a '
        "family's LoRAs register only once its checkpoint is named (docs/design.md, Base models).",
    )
    hed_weights: Path | None = Field(
        None, description="HED line detector weights (.safetensors); unset: a classical edge detector."
    )
    reference_px: int = Field(512, description="Side of generated reference and spec images.")
    reference_steps: int = 20
    reference_guidance: float = Field(
        1.0, description="CFG scale; with the empty prompt 1.0 (none) is exact."
    )
    controlnet_scale: float = 1.0
    lora_scale: float = 1.0
    registration_seed: int = Field(20240607, description="Base seed: each sample/prompt derives its own.")
    spec_steps: int = 20
    spec_guidance: float = 7.0
    spec_images_per_prompt: int = 1
    lookalike_quantile: float = Field(
        0.05,
        description="A new LoRA closer to an existing one than this quantile of the catalog's own "
        "nearest-neighbour centroid distances is reported as a likely lookalike.",
    )
    lookalike_min_catalog: int = Field(5, description="Fewer LoRAs than this: no lookalike threshold yet.")
    lookalike_sample: int = Field(500, description="LoRAs sampled to estimate the distance distribution.")
    worker_concurrency: int = Field(1, ge=1, description="Jobs one worker runs at once.")
    worker_heartbeat_seconds: float = Field(10.0, gt=0, description="How often a worker says it is alive.")
    worker_stalled_after_seconds: float = Field(
        60.0,
        gt=0,
        description="A job whose worker sent no heartbeat for this long is resumed by another worker; "
        "at least twice the heartbeat, or a live worker's job would be run a second time beside it.",
    )
    watch_poll_seconds: float = 0.5

    # --- catalog adaptation on the worker (`findlora catalog adapt` as a job) ------------------
    adapt_every_registrations: int = Field(
        0, ge=0, description="Adapt the style encoder after this many new registrations; 0: off."
    )
    adapt_cron: str = Field(
        "", description="Also adapt on this cron schedule (e.g. '0 3 * * 0'); empty: off."
    )
    adapt_max_minutes: float = Field(5.0, gt=0, description="Time budget of one adaptation job.")
    adapt_max_references: int = Field(
        40_000,
        ge=10,
        description="References adaptation holds in memory (about 50 KB each at 128 px, held up to three "
        "times over); a larger catalog is adapted on whole LoRAs drawn up to this many.",
    )

    # --- retention and privacy (README "What findlora keeps") --------------------------------
    purge_interval_s: float = Field(300.0, gt=0, description="How often expired searches are deleted.")
    readiness_interval_s: float = Field(
        10.0, gt=0, description="How often the health of findlora.v1.FindLora checks the database."
    )
    feedback_key: SecretStr | None = Field(
        None, description="HMAC key of voters' pseudonyms in feedback (32+ characters)."
    )
    feedback_key_file: Path | None = Field(
        None, description="File holding feedback_key; neither set: a key generated under data_dir."
    )
    runtime_role: str | None = Field(
        None, description="`findlora db migrate` grants this role the service's DML (least privilege)."
    )

    grace_seconds: float = Field(5.0, description="Graceful shutdown: time given to in-flight RPCs.")
    db_pool_max: int = 8

    @field_validator("adapt_cron")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        value = value.strip()
        if not value:
            return value
        from croniter import CroniterBadDateError, croniter  # procrastinate's own: its cron syntax

        if not croniter.is_valid(value):
            raise ValueError(f"FINDLORA_ADAPT_CRON {value!r} is not a cron schedule (e.g. '0 3 * * 0')")
        try:  # valid syntax can still name no date ('0 0 30 2 *'): the worker's scheduler would die
            schedule = croniter(value)
            schedule.get_next(float)
            schedule.get_prev(float)
        except CroniterBadDateError:
            raise ValueError(f"FINDLORA_ADAPT_CRON {value!r} names no date that exists") from None
        return value

    @model_validator(mode="after")
    def _heartbeat_within_the_stall_timeout(self) -> Settings:
        if self.worker_stalled_after_seconds < 2 * self.worker_heartbeat_seconds:
            raise ValueError(
                f"FINDLORA_WORKER_STALLED_AFTER_SECONDS ({self.worker_stalled_after_seconds:g}) must be at "
                f"least twice FINDLORA_WORKER_HEARTBEAT_SECONDS ({self.worker_heartbeat_seconds:g}): a "
                "worker between two heartbeats would look stalled and its job would run twice"
            )
        return self

    @model_validator(mode="after")
    def _database_url_from_secret_file(self) -> Settings:
        """DATABASE_URL_FILE (a Docker/Kubernetes secret) when DATABASE_URL itself is unset."""
        if self.database_url is None and self.database_url_file:
            self.database_url = Path(self.database_url_file).read_text(encoding="utf-8").strip()
        return self

    @field_validator("database_url")
    @classmethod
    def _valid_database_url(cls, value: str | None) -> str | None:
        """Malformed, psycopg's own error would quote it, password included, in a traceback. (A URL
        from DATABASE_URL_FILE is read after this; findlora.console maps psycopg's error for it.)"""
        if not value:
            return value
        try:
            from psycopg import ProgrammingError
            from psycopg.conninfo import conninfo_to_dict
        except ImportError:  # a client-only install never connects
            return value
        try:
            conninfo_to_dict(value)
        except ProgrammingError:  # its text quotes the URL: never shown
            raise ValueError(
                "not a valid PostgreSQL connection URL (postgresql://USER:PASSWORD@HOST:PORT/DBNAME, "
                "or key=value pairs); its value is not shown as it may hold a password"
            ) from None
        return value

    @field_validator("metrics_listen")
    @classmethod
    def _valid_metrics_listen(cls, value: str) -> str:
        """host:port, checked when read rather than by a traceback when the endpoint starts."""
        value = value.strip()
        if value:
            parse_listen(value)  # its ValueError says what is wrong
        return value

    @property
    def worker_alive_seconds(self) -> float:
        """A worker counts as live while its last heartbeat is younger than this (status, and the
        CLI's warning that no worker will take a queued job)."""
        return max(self.worker_stalled_after_seconds, 3 * self.worker_heartbeat_seconds)

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"

    @property
    def lora_dir(self) -> Path:
        """Fetched and staged LoRA files, by sha256 (shared by replicas like the blob store)."""
        return self.data_dir / "loras"

    @property
    def pg_dir(self) -> Path:
        return self.data_dir / "pg"
