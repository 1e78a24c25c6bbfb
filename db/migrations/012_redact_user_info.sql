-- Migration 005 redacted the query and fragment of stored source URLs, but not their user info
-- (https://user:token@host/...), which the service's redaction (registration/fetch.py `redact`)
-- drops too: a link stored before 005 could still show its credentials wherever source_url is
-- shown or logged. A live job whose URL without them would equal another live job's keeps its id
-- appended, so that registration_jobs_live_source (one live job per source) still holds.
UPDATE registration_jobs j
    SET source_url = regexp_replace(j.source_url, '^([A-Za-z][A-Za-z0-9+.-]*://)[^/?#]*@', '\1')
        || CASE WHEN j.state IN ('queued', 'running') AND EXISTS (
                SELECT 1 FROM registration_jobs o
                WHERE o.id <> j.id AND o.state IN ('queued', 'running')
                  AND regexp_replace(o.source_url, '^([A-Za-z][A-Za-z0-9+.-]*://)[^/?#]*@', '\1')
                      = regexp_replace(j.source_url, '^([A-Za-z][A-Za-z0-9+.-]*://)[^/?#]*@', '\1'))
           THEN '#job-' || j.id::text ELSE '' END
    WHERE j.source_url ~ '^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*@';
UPDATE loras SET source_url = regexp_replace(source_url, '^([A-Za-z][A-Za-z0-9+.-]*://)[^/?#]*@', '\1')
    WHERE source_url ~ '^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*@';
