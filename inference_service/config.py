"""Service configuration from the environment (prefix FINDLORA_) and an optional .env file."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATA_DIR = Path(".findlora")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FINDLORA_", env_file=".env", extra="ignore")

    data_dir: Path = Field(DEFAULT_DATA_DIR, description="Embedded database and blob store live here.")
    database_url: str | None = Field(
        None,
        validation_alias="DATABASE_URL",
        description="External PostgreSQL with pgvector; unset means the embedded server under data_dir.",
    )
    listen: str = Field("127.0.0.1:50051", description="gRPC listen address of the inference service.")
    style_encoder: Path | None = Field(
        None, description="Style encoder .safetensors; unset means the shipped default."
    )
    device: str = Field("cpu", description="torch device for the models: cpu, cuda, cuda:1 ...")
    torch_threads: int = Field(0, description="torch intra-op threads; 0 keeps torch's default.")

    default_top_k: int = 10
    max_top_k: int = 50
    stored_ranking_size: int = Field(100, description="How many results a search keeps for paging.")
    search_ttl_hours: float = 24.0
    search_ef_search: int = Field(400, description="HNSW ef_search of the centroid walk (two-stage search).")
    search_exact_below: int = Field(
        2000, description="Catalogs with fewer LoRAs scan every centroid exactly instead of the HNSW index."
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
    max_image_pixels: int = 40_000_000
    max_grpc_message_bytes: int = 64 * 1024 * 1024
    cleansing_threshold: float = Field(0.01, description="Eq. 1 MSE below which a transfer is dropped.")

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
        0.5, description="Fused = α·n(d_avg) + (1−α)·n(RKME); tuned on the bench validation split."
    )
    fusion_normalisation: str = Field("rank", description="rank | robust_z (picked by benchmark).")
    model_batch_size: int = 16

    grace_seconds: float = Field(5.0, description="Graceful shutdown: time given to in-flight RPCs.")
    db_pool_max: int = 8

    @model_validator(mode="after")
    def _database_url_from_secret_file(self) -> Settings:
        """DATABASE_URL_FILE (a Docker/Kubernetes secret) when DATABASE_URL itself is unset."""
        secret = os.environ.get("DATABASE_URL_FILE")
        if self.database_url is None and secret:
            self.database_url = Path(secret).read_text(encoding="utf-8").strip()
        return self

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"

    @property
    def pg_dir(self) -> Path:
        return self.data_dir / "pg"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
