-- Who may call the inference service: one row per client (a bot, the CLI, an operator's script).
-- A token is fl_<token_id>_<secret>: the row is found by its public token_id and only the whole
-- token's sha256 is stored, compared in constant time. Roles are stored expanded (admin also
-- holds moderate and search). A revoked client stays for the audit trail; its name is not reused.
CREATE TABLE clients (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name         text NOT NULL UNIQUE,
    token_id     text NOT NULL UNIQUE,
    token_sha256 bytea NOT NULL CHECK (length(token_sha256) = 32),
    roles        text[] NOT NULL CHECK (roles <@ ARRAY['search', 'moderate', 'admin']),
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz
);

-- The authenticated client beside the actor (the moderator id a bot asserts). NULL for operator
-- commands that hold the database themselves (catalog import, lora register, auth).
ALTER TABLE audit_log ADD COLUMN client text;
-- Registration audits are written by a worker when the job ends: the job keeps its client.
ALTER TABLE registration_jobs ADD COLUMN client text;
