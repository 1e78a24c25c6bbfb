-- Versioned style encoders (catalog adaptation, docs/design.md 4): every encoder that was ever
-- active, its weights in the blob store, and the one it was adapted from (rollback activates the
-- parent). The active one is still catalog_meta['style_encoder']; these rows say where its weights are.
CREATE TABLE style_encoders (
    label        text PRIMARY KEY,            -- kind@fingerprint (models/style_encoder.py)
    blob_key     text NOT NULL,               -- encoders/<fingerprint>.safetensors
    parent       text REFERENCES style_encoders (label),
    created_at   timestamptz NOT NULL DEFAULT now(),
    activated_at timestamptz,                 -- the last time it became active
    metrics      jsonb NOT NULL DEFAULT '{}', -- validation before/after of the adaptation that made it
    note         text NOT NULL DEFAULT ''
);

-- The encoder a stored search's query embedding came from: paging it after a switch would
-- compare that embedding with references of another encoder. NULL: made before this column.
ALTER TABLE searches ADD COLUMN encoder text;
UPDATE searches SET encoder = (SELECT value FROM catalog_meta WHERE key = 'style_encoder');
