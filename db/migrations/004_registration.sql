-- LoRA registration jobs (RegisterLora / WatchJob). The queue itself is procrastinate's schema,
-- applied by db/migrate.py; these tables hold what the moderator watches and what a resumed job
-- reuses, so a crashed worker's successor continues where it stopped.
CREATE TABLE registration_jobs (
    id            uuid PRIMARY KEY,
    -- An https URL, or 'staged:<sha256>' for a file an operator staged with the CLI.
    source_url    text NOT NULL,
    metadata      jsonb NOT NULL,
    slug          text NOT NULL,
    requested_by  text NOT NULL DEFAULT '',
    state         text NOT NULL DEFAULT 'queued'
                  CHECK (state IN ('queued', 'running', 'succeeded', 'failed')),
    step          text NOT NULL DEFAULT '',
    progress      real NOT NULL DEFAULT 0,
    message       text NOT NULL DEFAULT '',
    attempts      integer NOT NULL DEFAULT 0,
    queue_job_id  bigint,
    file_sha256   text,                 -- set by the fetch step
    lora_info     jsonb,                -- set by the validate step
    lora_id       bigint REFERENCES loras (id) ON DELETE SET NULL,
    lookalikes    jsonb NOT NULL DEFAULT '[]',
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz
);
-- One live job per source and per slug: a double click must not register a LoRA twice.
CREATE UNIQUE INDEX registration_jobs_live_source ON registration_jobs (source_url)
    WHERE state IN ('queued', 'running');
CREATE UNIQUE INDEX registration_jobs_live_slug ON registration_jobs (slug)
    WHERE state IN ('queued', 'running');

-- Generated images of a job, committed one by one: the resumable part of the work.
CREATE TABLE registration_artifacts (
    job_id     uuid NOT NULL REFERENCES registration_jobs (id) ON DELETE CASCADE,
    kind       text NOT NULL CHECK (kind IN ('reference', 'spec')),
    item       text NOT NULL,  -- sample id, or '<prompt id>-<n>'
    blob_key   text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, kind, item)
);
