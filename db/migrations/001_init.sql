-- Data model of docs/design.md 4. Schema changes only through new numbered files.
CREATE EXTENSION IF NOT EXISTS vector;

CREATE TABLE loras (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    slug         text NOT NULL UNIQUE,
    name         text NOT NULL,
    source_url   text NOT NULL DEFAULT '',
    page_url     text NOT NULL DEFAULT '',
    base_model   text NOT NULL,
    trigger_words text[] NOT NULL DEFAULT '{}',
    license      text NOT NULL DEFAULT '',
    author       text NOT NULL DEFAULT '',
    sha256       text UNIQUE,
    nsfw         boolean NOT NULL DEFAULT false,
    status       text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'hidden', 'taken_down')),
    created_by   text NOT NULL DEFAULT '',
    -- Hash of the catalog entry (lora.toml + reference bytes): makes re-imports idempotent.
    catalog_fingerprint text NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX loras_status_base ON loras (status, base_model);

-- Which style encoder embedded the stored references: a service with another encoder must
-- not rank against them (re-embed first).
CREATE TABLE catalog_meta (
    key   text PRIMARY KEY,
    value text NOT NULL
);

-- The sample set S: the images every LoRA's reference set restyles.
CREATE TABLE samples (
    id         text PRIMARY KEY,
    blob_key   text NOT NULL,
    sha256     text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- t(s, m): sample s restyled by LoRA m, with its style embedding.
CREATE TABLE reference_images (
    lora_id       bigint NOT NULL REFERENCES loras (id) ON DELETE CASCADE,
    sample_id     text NOT NULL REFERENCES samples (id),
    blob_key      text NOT NULL,
    thumb_key     text NOT NULL,
    sha256        text NOT NULL,
    embedding     vector(128) NOT NULL,
    -- Eq. 1: false when the transfer barely changed the sample; such references do not rank.
    kept          boolean NOT NULL DEFAULT true,
    transfer_mse  real NOT NULL,
    PRIMARY KEY (lora_id, sample_id)
);

-- Per-LoRA summary for sub-linear search: d_avg >= |q - c| and d_avg <= |q - c| + r.
CREATE TABLE lora_style_summary (
    lora_id        bigint PRIMARY KEY REFERENCES loras (id) ON DELETE CASCADE,
    centroid       vector(128) NOT NULL,
    mean_radius    real NOT NULL,
    mean_sq_radius real NOT NULL,
    n_refs         integer NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX lora_style_summary_centroid ON lora_style_summary USING hnsw (centroid vector_l2_ops);

-- Prompt sets: the platform set (lora_id NULL) and model-specific prompts.
CREATE TABLE prompts (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    lora_id      bigint REFERENCES loras (id) ON DELETE CASCADE,
    local_id     integer NOT NULL,
    text         text NOT NULL,
    text_feature vector,
    UNIQUE NULLS NOT DISTINCT (lora_id, local_id)
);

-- GMI specification: CLIP image features of images a LoRA generated from prompts.
CREATE TABLE spec_points (
    lora_id       bigint NOT NULL REFERENCES loras (id) ON DELETE CASCADE,
    prompt_id     bigint NOT NULL REFERENCES prompts (id) ON DELETE CASCADE,
    n             integer NOT NULL,
    blob_key      text NOT NULL,
    image_feature vector,
    PRIMARY KEY (lora_id, prompt_id, n)
);

-- A search keeps only its embedding, pseudo-prompt and ranking (never the query image).
CREATE TABLE searches (
    id              uuid PRIMARY KEY,
    query_embedding vector(128) NOT NULL,
    pseudo_prompt   text NOT NULL DEFAULT '',
    ranking         jsonb NOT NULL,
    filters         jsonb NOT NULL DEFAULT '{}',
    requested_by    text NOT NULL DEFAULT '',
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL
);
CREATE INDEX searches_expires ON searches (expires_at);

CREATE TABLE feedback (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    search_id  uuid NOT NULL,
    lora_id    bigint NOT NULL REFERENCES loras (id) ON DELETE CASCADE,
    user_id    text NOT NULL,
    vote       smallint NOT NULL CHECK (vote IN (-1, 1)),
    rank       integer,
    base_model text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (search_id, lora_id, user_id)
);

CREATE TABLE flags (
    id          uuid PRIMARY KEY,
    lora_id     bigint NOT NULL REFERENCES loras (id) ON DELETE CASCADE,
    reporter    text NOT NULL,
    note        text NOT NULL DEFAULT '',
    evidence    jsonb NOT NULL,
    status      text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'approved', 'dismissed')),
    reviewer    text,
    decided_at  timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX flags_status ON flags (status, created_at);

CREATE TABLE audit_log (
    id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at       timestamptz NOT NULL DEFAULT now(),
    actor    text NOT NULL,
    action   text NOT NULL,
    subject  text NOT NULL,
    details  jsonb NOT NULL DEFAULT '{}'
);
