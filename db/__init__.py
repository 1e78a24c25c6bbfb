"""Database: numbered migrations, the embedded PostgreSQL+pgvector, one pool (database.py) and
query modules by aggregate whose functions take the connection first."""
