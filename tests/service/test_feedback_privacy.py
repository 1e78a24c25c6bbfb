"""Feedback keeps a keyed pseudonym of the voter, never the user id, and still one vote per user
and result: through the real RecordFeedback RPC, and for rows from before migration 006."""

from __future__ import annotations

import hashlib
import hmac
import shutil
import stat
import tempfile
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from pydantic import SecretStr

from db.clients import Role
from db.migrate import MIGRATIONS_DIR, migrate
from findlora_client import QueryImage
from inference_service.config import Settings
from inference_service.pseudonyms import GENERATED_KEY_NAME, FeedbackKeyError, feedback_key
from tests.helpers.service import served_catalog

pytestmark = pytest.mark.db
DISCORD_USER = "discord:112233445566778899"
SLACK_USER = "slack:T0TEAM:U0DAN"
RAW_ID = b"112233445566778899"


def feedback_files(url: str) -> list[bytes]:
    """The on-disk pages of the feedback table and its indexes, after a checkpoint."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CHECKPOINT")
        setting = conn.execute("SHOW data_directory").fetchone()
        paths = conn.execute(
            "SELECT pg_relation_filepath(oid) FROM pg_class WHERE oid = 'feedback'::regclass"
            " OR oid IN (SELECT indexrelid FROM pg_index WHERE indrelid = 'feedback'::regclass)"
        ).fetchall()
    assert setting is not None
    data_dir = Path(str(setting[0]))
    if not data_dir.is_dir():
        pytest.skip("the database's files are not on this machine")
    return [(data_dir / str(path)).read_bytes() for (path,) in paths]


def feedback_rows(url: str) -> list[str]:
    """Every feedback row as text, all columns."""
    with psycopg.connect(url) as conn:
        return [str(r[0]) for r in conn.execute("SELECT f::text FROM feedback f ORDER BY id").fetchall()]


async def test_votes_hold_an_hmac_of_the_user_and_count_once(settings: Settings, tmp_path: Path) -> None:
    url = str(settings.database_url)
    async with (
        served_catalog(settings, tmp_path) as served,
        served.client(Role.MODERATE, timeout=30) as client,
    ):
        query = [QueryImage(served.reference_bytes("style-02"), "q.png")]
        first, second = await client.search(query, top_k=3), await client.search(query, top_k=3)
        lora = first.matches[0].lora_id
        assert await client.record_feedback(first.search_id, lora, up=True, user=DISCORD_USER) is True
        assert await client.record_feedback(first.search_id, lora, up=False, user=DISCORD_USER) is False
        assert await client.record_feedback(first.search_id, lora, up=True, user=SLACK_USER) is True
        assert await client.record_feedback(second.search_id, lora, up=True, user=DISCORD_USER) is True
        stats = await client.feedback_stats()

    rows = feedback_rows(url)
    assert len(rows) == 3  # the re-vote replaced the first vote
    for row in rows:
        for secret in (DISCORD_USER, "112233445566778899", SLACK_USER, "U0DAN"):
            assert secret not in row
    # The key was generated under the data directory, private to its owner.
    key_file = settings.data_dir / GENERATED_KEY_NAME
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = key_file.read_text().strip().encode()

    def expected(search_id: str, user: str) -> str:
        return hmac.new(key, f"{uuid.UUID(search_id)}\n{user}".encode(), hashlib.sha256).hexdigest()

    with psycopg.connect(url) as conn:
        rows_now = conn.execute("SELECT search_id, voter, vote FROM feedback").fetchall()
    stored = {(str(search_id), voter): vote for search_id, voter, vote in rows_now}
    assert stored == {
        (first.search_id, expected(first.search_id, DISCORD_USER)): -1,
        (first.search_id, expected(first.search_id, SLACK_USER)): 1,
        (second.search_id, expected(second.search_id, DISCORD_USER)): 1,
    }
    # One person's votes on two searches are not linkable by their pseudonyms.
    assert expected(first.search_id, DISCORD_USER) != expected(second.search_id, DISCORD_USER)
    assert stats.votes == 3
    assert stats.overall.sessions == 3


def test_the_key_comes_from_the_setting_the_file_or_is_generated_once(tmp_path: Path) -> None:
    explicit = "k" * 40
    assert feedback_key(Settings(data_dir=tmp_path, feedback_key=SecretStr(explicit))) == explicit.encode()
    key_file = tmp_path / "feedback_key"
    key_file.write_text("f" * 64 + "\n")
    assert feedback_key(Settings(data_dir=tmp_path, feedback_key_file=key_file)) == b"f" * 64
    assert not (tmp_path / GENERATED_KEY_NAME).exists()  # nothing generated when one is configured

    generated = feedback_key(Settings(data_dir=tmp_path / "data"))
    assert len(generated) == 64
    assert feedback_key(Settings(data_dir=tmp_path / "data")) == generated  # kept, not regenerated

    with pytest.raises(FeedbackKeyError, match="FINDLORA_FEEDBACK_KEY must hold at least 32"):
        feedback_key(Settings(data_dir=tmp_path, feedback_key=SecretStr("short")))
    with pytest.raises(FeedbackKeyError, match=r"FINDLORA_FEEDBACK_KEY_FILE .* cannot be read"):
        feedback_key(Settings(data_dir=tmp_path, feedback_key_file=tmp_path / "absent"))


def test_migration_006_leaves_no_raw_user_id_in_feedback(server_url: str, tmp_path: Path) -> None:
    name = f"m6_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = psycopg.conninfo.make_conninfo(server_url, dbname=name)
    before_006 = Path(tempfile.mkdtemp(dir=tmp_path))
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        if int(path.name[:3]) < 6:
            shutil.copy(path, before_006)
    try:
        migrate(url, before_006)
        s1, s2 = uuid.uuid4(), uuid.uuid4()
        with psycopg.connect(url) as conn:
            lora = conn.execute(
                "INSERT INTO loras (slug, name, base_model) VALUES ('a', 'A', 'sd1') RETURNING id"
            ).fetchone()
            assert lora is not None
            for search_id, user, vote in ((s1, DISCORD_USER, 1), (s1, SLACK_USER, -1), (s2, DISCORD_USER, 1)):
                conn.execute(
                    "INSERT INTO feedback (search_id, lora_id, user_id, vote, rank)"
                    " VALUES (%s, %s, %s, %s, 1)",
                    (search_id, lora[0], user, vote),
                )

        assert any(RAW_ID in data for data in feedback_files(url))  # the check below can fail

        migrate(url)

        with psycopg.connect(url) as conn:
            columns = conn.execute(
                "SELECT array_agg(attname::text) FROM pg_attribute"
                " WHERE attrelid = 'feedback'::regclass AND attnum > 0 AND NOT attisdropped"
            ).fetchone()
            voters = conn.execute("SELECT search_id, lora_id, voter FROM feedback").fetchall()
        assert columns is not None
        assert "user_id" not in columns[0]
        assert all(str(voter).startswith("legacy:") for _, _, voter in voters)
        assert len({voter for _, _, voter in voters}) == 3  # per (search, user): nothing links s1 to s2
        for row in feedback_rows(url):
            assert "112233445566778899" not in row
            assert "U0DAN" not in row
        # Nor in the pages of the table or its indexes: the migration rewrote them.
        for data in feedback_files(url):
            assert RAW_ID not in data
            assert b"U0DAN" not in data
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
