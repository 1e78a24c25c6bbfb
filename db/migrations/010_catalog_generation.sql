-- Catalog generations (docs/design.md 5, "Memory index"): every write of a style summary draws a
-- number from one sequence, so a service holding the centroids in memory asks "what changed
-- after generation G?" instead of reading the whole table again. A deleted summary leaves a
-- tombstone with its own number; lora_id NULL stands for a TRUNCATE (every summary removed).
--
-- Why a lock: a sequence hands out numbers in call order, and a writer that drew 7 may commit
-- after one that drew 8. A reader whose snapshot saw 8 would then ask `generation > 8` and never
-- see 7. So every writer of lora_style_summary takes one transaction-level advisory lock before it
-- draws a number and holds it until its commit: numbers are drawn only by the lock's holder, and
-- generation order equals commit order. A reader that saw max generation G can ask
-- `generation > G` later and never miss a row committed after its snapshot. The lock is taken by
-- a statement trigger before the statement locks any row (a row trigger alone would wait for it
-- while holding a summary row another holder wants: a deadlock), and again by the row triggers,
-- which costs nothing once held.
CREATE SEQUENCE catalog_generation;

ALTER TABLE lora_style_summary
    ADD COLUMN generation bigint NOT NULL DEFAULT nextval('catalog_generation');
ALTER TABLE lora_style_summary ALTER COLUMN generation DROP DEFAULT;
-- Owned by the column, so it follows the table's owner (docker/postgres/adopt-existing.sql).
ALTER SEQUENCE catalog_generation OWNED BY lora_style_summary.generation;
CREATE INDEX lora_style_summary_generation ON lora_style_summary (generation);

CREATE TABLE lora_style_summary_removed (
    lora_id    bigint,
    generation bigint NOT NULL
);
CREATE INDEX lora_style_summary_removed_generation ON lora_style_summary_removed (generation);

-- The key spells "catalgen"; inference_service/search/memory_index.py does not take it (readers
-- never wait), tests/db/test_catalog_generation.py checks that writers do.
CREATE FUNCTION catalog_generation_lock() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(7161132844275164526);
    RETURN NULL;
END $$;

CREATE FUNCTION lora_style_summary_generation() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(7161132844275164526);
    NEW.generation := nextval('catalog_generation');
    RETURN NEW;
END $$;

CREATE FUNCTION lora_style_summary_tombstone() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(7161132844275164526);
    IF TG_OP = 'TRUNCATE' THEN  -- no rows: one tombstone for all of them
        INSERT INTO lora_style_summary_removed (lora_id, generation)
        VALUES (NULL, nextval('catalog_generation'));
    ELSE
        INSERT INTO lora_style_summary_removed (lora_id, generation)
        VALUES (OLD.lora_id, nextval('catalog_generation'));
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER lora_style_summary_lock
    BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON lora_style_summary
    FOR EACH STATEMENT EXECUTE FUNCTION catalog_generation_lock();

-- Every insert and update, the filter columns loras_sync_style_summary copies from loras
-- included: a takedown is a change like any other.
CREATE TRIGGER lora_style_summary_generation
    BEFORE INSERT OR UPDATE ON lora_style_summary
    FOR EACH ROW EXECUTE FUNCTION lora_style_summary_generation();

CREATE TRIGGER lora_style_summary_removed
    AFTER DELETE ON lora_style_summary
    FOR EACH ROW EXECUTE FUNCTION lora_style_summary_tombstone();

-- A summary moved to another LoRA (no code does this) removes the old LoRA's.
CREATE TRIGGER lora_style_summary_moved
    AFTER UPDATE OF lora_id ON lora_style_summary
    FOR EACH ROW WHEN (OLD.lora_id IS DISTINCT FROM NEW.lora_id)
    EXECUTE FUNCTION lora_style_summary_tombstone();

CREATE TRIGGER lora_style_summary_truncated
    AFTER TRUNCATE ON lora_style_summary
    FOR EACH STATEMENT EXECUTE FUNCTION lora_style_summary_tombstone();
