-- Votes keep a keyed pseudonym of the voter, never the platform user id (README, "What findlora
-- keeps"): voter = HMAC-SHA256(feedback key, search id + user id), computed by the service, so
-- one vote per user and result still holds while a database dump names nobody.
--
-- Rows from before this migration cannot be keyed here (SQL does not know the key), and an
-- unkeyed digest of an enumerable Discord or Slack id is undone by hashing every candidate id.
-- They get a random pseudonym per (search, user) instead, marked 'legacy:': their sessions
-- still group for the quality report, nobody can be recovered from them. The only cost: a user
-- re-voting on a search that was still live during the upgrade counts as a second voter.
ALTER TABLE feedback ADD COLUMN voter text;

UPDATE feedback f
SET voter = 'legacy:' || p.pseudonym
FROM (
    SELECT search_id, user_id, gen_random_uuid()::text AS pseudonym
    FROM (SELECT DISTINCT search_id, user_id FROM feedback) AS voters
) AS p
WHERE p.search_id = f.search_id AND p.user_id = f.user_id;

-- Dropping the column also drops the old unique constraint on (search_id, lora_id, user_id).
ALTER TABLE feedback DROP COLUMN user_id;
ALTER TABLE feedback ALTER COLUMN voter SET NOT NULL;
ALTER TABLE feedback ADD CONSTRAINT feedback_one_vote_per_voter UNIQUE (search_id, lora_id, voter);

-- A dropped column's values stay in the table's pages until the rows are rewritten: rewrite
-- the table now (new files, dropped columns nulled, old row versions gone with the old files).
CLUSTER feedback USING feedback_pkey;
ALTER TABLE feedback SET WITHOUT CLUSTER;
