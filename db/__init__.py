"""Database: numbered migrations, the embedded PostgreSQL+pgvector, the async repository."""
