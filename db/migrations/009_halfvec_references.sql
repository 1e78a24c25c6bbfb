-- References in half precision (docs/design.md 5, "Storage"): 1M LoRAs x 30 references are 30M
-- rows, 17.6 GB as vector(128) (587 B a row) and about half of that as halfvec(128); a search reads
-- a few thousand of them, so half the bytes is half the pages. d_avg averages 30 distances and
-- the stored distances lose about 1e-3 (bench search measures recall against float32 in one run).
-- Centroids stay vector(128): they are what the HNSW walk orders by and are a thirtieth of the rows.
-- Queries stay vector: pgvector casts vector to halfvec implicitly, so `embedding <-> q` is unchanged.
ALTER TABLE reference_images ALTER COLUMN embedding TYPE halfvec(128) USING embedding::halfvec(128);
