-- GMI specifications (docs/design.md 5): which spec a LoRA carries, for idempotent catalog imports.
-- Fingerprint of the LoRA's spec/ (own prompts, image bytes) and of the CLIP model that embedded
-- it; empty when the LoRA has no spec.
ALTER TABLE loras ADD COLUMN spec_fingerprint text NOT NULL DEFAULT '';
-- Search loads one LoRA's spec with its prompts' text features.
CREATE INDEX spec_points_prompt ON spec_points (prompt_id);
