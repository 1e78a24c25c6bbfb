from __future__ import annotations

import psycopg
import pytest

from db.migrate import available_migrations, current_version, migrate

pytestmark = pytest.mark.db


def test_migrate_is_idempotent_and_builds_the_data_model(db_url: str) -> None:
    assert migrate(db_url) == []  # the fixture already migrated: nothing applies twice
    assert current_version(db_url) == available_migrations()[-1].version
    with psycopg.connect(db_url) as conn:
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        assert {
            "loras",
            "samples",
            "reference_images",
            "lora_style_summary",
            "spec_points",
            "prompts",
            "searches",
            "feedback",
            "flags",
            "audit_log",
        } <= tables
        index = conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'lora_style_summary_centroid'"
        ).fetchone()
        assert index is not None
        assert "hnsw" in index[0]
        assert "vector_l2_ops" in index[0]
        version = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
        assert version is not None
        assert tuple(int(p) for p in version[0].split(".")) >= (0, 8, 0)


def test_migration_names_are_numbered(tmp_path: pytest.TempPathFactory) -> None:
    names = [m.path.name for m in available_migrations()]
    assert names == sorted(names)
    assert [m.version for m in available_migrations()] == list(range(1, len(names) + 1))
