-- Two-stage search (docs/design.md 5) filters the centroid index scan itself: the filter columns live
-- beside the centroid, so pgvector's iterative HNSW scan applies them without a join per
-- candidate. Triggers keep them equal to the loras row (a taken-down LoRA leaves search at once).
ALTER TABLE lora_style_summary
    ADD COLUMN searchable boolean NOT NULL DEFAULT false,
    ADD COLUMN base_model text NOT NULL DEFAULT '',
    ADD COLUMN nsfw       boolean NOT NULL DEFAULT false;

UPDATE lora_style_summary s
SET searchable = (l.status = 'active'), base_model = l.base_model, nsfw = l.nsfw
FROM loras l WHERE l.id = s.lora_id;

CREATE FUNCTION lora_style_summary_fill() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    SELECT l.status = 'active', l.base_model, l.nsfw
    INTO NEW.searchable, NEW.base_model, NEW.nsfw
    FROM loras l WHERE l.id = NEW.lora_id;
    RETURN NEW;
END $$;

CREATE TRIGGER lora_style_summary_fill
    BEFORE INSERT OR UPDATE OF lora_id ON lora_style_summary
    FOR EACH ROW EXECUTE FUNCTION lora_style_summary_fill();

CREATE FUNCTION loras_sync_style_summary() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE lora_style_summary
    SET searchable = (NEW.status = 'active'), base_model = NEW.base_model, nsfw = NEW.nsfw
    WHERE lora_id = NEW.id;
    RETURN NULL;
END $$;

CREATE TRIGGER loras_sync_style_summary
    AFTER UPDATE OF status, base_model, nsfw ON loras
    FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status OR OLD.base_model IS DISTINCT FROM NEW.base_model
          OR OLD.nsfw IS DISTINCT FROM NEW.nsfw)
    EXECUTE FUNCTION loras_sync_style_summary();

-- Tight families of lookalike LoRAs left whole clusters unreachable in an HNSW graph built with
-- the defaults (m 16, ef_construction 64): at 100k synthetic LoRAs two of twenty queries lost
-- their true top-5 whatever ef_search was. A denser graph reaches them (bench search).
DROP INDEX IF EXISTS lora_style_summary_centroid;
CREATE INDEX lora_style_summary_centroid ON lora_style_summary
    USING hnsw (centroid vector_l2_ops) WITH (m = 32, ef_construction = 128);
