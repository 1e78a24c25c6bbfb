-- Signed download links carry a token in their query: registration_jobs.source_url keeps only the
-- redacted URL (scheme, host, port, path) that is shown and logged, and fetch_url holds the link as
-- given until the download is done (the worker clears it then, and when the job ends).
ALTER TABLE registration_jobs ADD COLUMN fetch_url text;

-- Jobs still waiting for their download keep the full link where the worker now reads it.
UPDATE registration_jobs SET fetch_url = source_url
    WHERE state IN ('queued', 'running') AND file_sha256 IS NULL AND source_url LIKE 'https://%';

-- Redact what was stored before. A live job whose redacted URL would equal another live job's gets
-- its id appended, so that registration_jobs_live_source (one live job per source) still holds.
UPDATE registration_jobs j
    SET source_url = regexp_replace(j.source_url, '[?#].*$', '')
        || CASE WHEN j.state IN ('queued', 'running') AND EXISTS (
                SELECT 1 FROM registration_jobs o
                WHERE o.id <> j.id AND o.state IN ('queued', 'running')
                  AND regexp_replace(o.source_url, '[?#].*$', '')
                      = regexp_replace(j.source_url, '[?#].*$', ''))
           THEN '#job-' || j.id::text ELSE '' END
    WHERE j.source_url ~ '[?#]';
UPDATE loras SET source_url = regexp_replace(source_url, '[?#].*$', '') WHERE source_url ~ '[?#]';
