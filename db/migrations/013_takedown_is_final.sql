-- A takedown (copyright, an approved lookalike flag) is final: the service refuses to undo one,
-- and now the database does too, whatever writes the row (a script with the runtime role's
-- credentials, a bug). Catalog re-imports keep the status of a LoRA that already exists.
CREATE FUNCTION loras_takedown_is_final() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.status = 'taken_down' AND NEW.status <> 'taken_down' THEN
        RAISE EXCEPTION 'LoRA % was taken down; a takedown cannot be undone', OLD.slug
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER loras_takedown_is_final
    BEFORE UPDATE OF status ON loras
    FOR EACH ROW EXECUTE FUNCTION loras_takedown_is_final();
