"""What `findlora status` reports of the database: catalog size, encoder, schema, queue."""

from __future__ import annotations

from dataclasses import dataclass

from db.catalog import ENCODER_KEY
from db.database import Connection


@dataclass(frozen=True)
class DatabaseStatus:
    active_loras: int
    loras: int  # every status: active, hidden, taken down
    samples: int
    stored_encoder: str  # the encoder the catalog was embedded with; '' before any import
    schema_version: int
    jobs_queued: int  # registration jobs waiting for a worker
    jobs_running: int
    live_workers: int  # workers whose last heartbeat is recent


async def database_status(conn: Connection, worker_alive_seconds: float) -> DatabaseStatus:
    cur = await conn.execute(
        """
        SELECT
            (SELECT count(*) FROM loras WHERE status = 'active'),
            (SELECT count(*) FROM loras),
            (SELECT count(*) FROM samples),
            (SELECT coalesce(max(value), '') FROM catalog_meta WHERE key = %(encoder_key)s),
            (SELECT coalesce(max(version), 0) FROM schema_migrations),
            (SELECT count(*) FROM registration_jobs WHERE state = 'queued'),
            (SELECT count(*) FROM registration_jobs WHERE state = 'running'),
            (SELECT count(*) FROM procrastinate_workers
              WHERE last_heartbeat > now() - make_interval(secs => %(alive)s))
        """,
        {"encoder_key": ENCODER_KEY, "alive": worker_alive_seconds},
    )
    row = await cur.fetchone()
    assert row is not None  # one row of subqueries, always
    active, loras, samples, encoder, schema, queued, running, workers = row
    return DatabaseStatus(
        int(active),
        int(loras),
        int(samples),
        str(encoder),
        int(schema),
        int(queued),
        int(running),
        int(workers),
    )
