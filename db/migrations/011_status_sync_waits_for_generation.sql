-- A LoRA's status, base model or NSFW flag reaches its style summary through
-- loras_sync_style_summary (003). Its UPDATE waited for the generation lock (010) in the summary's
-- statement trigger, after the UPDATE had taken its snapshot: when an activation held the lock
-- and replaced the LoRA's summary meanwhile, the UPDATE resumed on a row that was gone, matched
-- nothing in its snapshot, and a LoRA taken down during an activation stayed searchable. Taking
-- the lock first, in a statement of its own, gives the UPDATE a snapshot from after the
-- activation's commit.
CREATE OR REPLACE FUNCTION loras_sync_style_summary() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(7161132844275164526);
    UPDATE lora_style_summary
    SET searchable = (NEW.status = 'active'), base_model = NEW.base_model, nsfw = NEW.nsfw
    WHERE lora_id = NEW.id;
    RETURN NULL;
END $$;
