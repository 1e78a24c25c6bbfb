"""Search: the engine, its candidate sources over pgvector and the fused two-branch path."""
