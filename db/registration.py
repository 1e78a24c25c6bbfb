"""Queries of the registration pipeline (jobs, their artifacts, the final atomic insert)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import psycopg
from psycopg.rows import dict_row

from db import moderation
from db.catalog import GMI_ENCODER_KEY, copy_references, get_meta, insert_lora, refresh_style_summary
from db.database import Connection
from db.encoders import require_label
from db.rows import NewLora, ReferenceRow, SpecRow
from db.specs import insert_spec_points

TERMINAL = ("succeeded", "failed")


class SlugTaken(Exception):
    pass


class SourceBusy(Exception):
    pass


@dataclass(frozen=True)
class JobRow:
    id: uuid.UUID
    source_url: str  # redacted (no query, fragment or user info), or 'staged:<sha256>'
    metadata: dict[str, Any]
    slug: str
    requested_by: str
    state: str
    step: str
    progress: float
    message: str
    attempts: int
    file_sha256: str | None
    lora_info: dict[str, Any] | None
    lora_id: int | None
    lookalikes: list[dict[str, Any]]
    # The URL as given, token and all: kept only until the download is done, never shown or logged.
    fetch_url: str | None = field(default=None, repr=False)

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL


_JOB_COLUMNS = ", ".join(JobRow.__dataclass_fields__)


async def create_job(
    conn: Connection,
    job_id: uuid.UUID,
    source_url: str,
    metadata: dict[str, Any],
    slug: str,
    requested_by: str,
    fetch_url: str | None = None,
    client: str | None = None,
) -> None:
    """`source_url` is what is kept and shown (redacted); `fetch_url` what the worker downloads."""
    cur = await conn.execute("SELECT 1 FROM loras WHERE slug = %s", (slug,))
    if await cur.fetchone():
        raise SlugTaken(slug)
    # The same source asked for again while its job is live is "already queued", whatever its slug.
    cur = await conn.execute(
        "SELECT 1 FROM registration_jobs WHERE source_url = %s AND state IN ('queued', 'running')",
        (source_url,),
    )
    if await cur.fetchone():
        raise SourceBusy(source_url)
    try:
        await conn.execute(
            "INSERT INTO registration_jobs"
            " (id, source_url, fetch_url, metadata, slug, requested_by, client, message)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, 'queued')",
            (job_id, source_url, fetch_url, json.dumps(metadata), slug, requested_by, client),
        )
    except psycopg.errors.UniqueViolation as exc:
        index = exc.diag.constraint_name or ""
        raise (SlugTaken(slug) if "slug" in index else SourceBusy(source_url)) from None


@dataclass(frozen=True)
class Existing:
    """What stands in the way of registering a source under a slug (bulk registration's resume)."""

    kind: str  # registered | queued | slug_taken | slug_busy
    slug: str
    job_id: uuid.UUID | None = None


async def find_existing(
    conn: Connection, *, slug: str, job_source: str, lora_source: str = "", sha256: str = ""
) -> Existing | None:
    """The same LoRA registered (same sha256 or link) or a live job for the same source; else the
    slug held by another LoRA or by a live job for another source; else None.
    `job_source` is the job's source_url (redacted link or staged:<sha256>), `lora_source` the link
    a registered LoRA keeps ("" for a staged file)."""
    cur = await conn.execute(
        "SELECT slug, COALESCE(sha256 = %(sha)s, false) OR (source_url = %(src)s AND source_url <> '')"
        " FROM loras"
        " WHERE slug = %(slug)s OR sha256 = %(sha)s OR (source_url = %(src)s AND source_url <> '')"
        " ORDER BY 2 DESC LIMIT 1",
        {"slug": slug, "sha": sha256 or None, "src": lora_source},
    )
    lora = await cur.fetchone()
    if lora is not None and lora[1]:
        return Existing("registered", str(lora[0]))
    cur = await conn.execute(
        "SELECT id, slug, source_url = %(src)s FROM registration_jobs"
        " WHERE state IN ('queued', 'running') AND (source_url = %(src)s OR slug = %(slug)s)"
        " ORDER BY 3 DESC LIMIT 1",
        {"slug": slug, "src": job_source},
    )
    job = await cur.fetchone()
    if job is not None and job[2]:
        return Existing("queued", str(job[1]), job[0])
    if lora is not None:
        return Existing("slug_taken", str(lora[0]))
    if job is not None:
        return Existing("slug_busy", str(job[1]), job[0])
    return None


async def get_jobs(conn: Connection, job_ids: Sequence[uuid.UUID]) -> list[JobRow]:
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(f"SELECT {_JOB_COLUMNS} FROM registration_jobs WHERE id = ANY(%s)", (list(job_ids),))
    return [JobRow(**row) for row in await cur.fetchall()]


async def set_queue_job(conn: Connection, job_id: uuid.UUID, queue_job_id: int) -> None:
    await conn.execute("UPDATE registration_jobs SET queue_job_id = %s WHERE id = %s", (queue_job_id, job_id))


async def delete_job(conn: Connection, job_id: uuid.UUID) -> None:
    await conn.execute("DELETE FROM registration_jobs WHERE id = %s", (job_id,))


async def get_job(conn: Connection, job_id: uuid.UUID) -> JobRow | None:
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(f"SELECT {_JOB_COLUMNS} FROM registration_jobs WHERE id = %s", (job_id,))
    row = await cur.fetchone()
    return None if row is None else JobRow(**row)


async def start_attempt(conn: Connection, job_id: uuid.UUID) -> int:
    cur = await conn.execute(
        "UPDATE registration_jobs SET state = 'running', attempts = attempts + 1, updated_at = now()"
        " WHERE id = %s AND state IN ('queued', 'running') RETURNING attempts",
        (job_id,),
    )
    row = await cur.fetchone()
    return 0 if row is None else int(row[0])


async def report(conn: Connection, job_id: uuid.UUID, step: str, progress: float, message: str) -> None:
    await conn.execute(
        "UPDATE registration_jobs SET step = %s, progress = %s, message = %s, updated_at = now()"
        " WHERE id = %s AND state = 'running'",
        (step, progress, message, job_id),
    )


async def record_fetch(conn: Connection, job_id: uuid.UUID, sha256: str) -> None:
    await conn.execute(
        "UPDATE registration_jobs SET file_sha256 = %s, fetch_url = NULL WHERE id = %s", (sha256, job_id)
    )


async def record_validation(conn: Connection, job_id: uuid.UUID, info: dict[str, Any]) -> None:
    await conn.execute(
        "UPDATE registration_jobs SET lora_info = %s WHERE id = %s", (json.dumps(info), job_id)
    )


async def fail(conn: Connection, job_id: uuid.UUID, message: str) -> None:
    await conn.execute(
        "UPDATE registration_jobs SET state = 'failed', message = %s, fetch_url = NULL,"
        " updated_at = now(), finished_at = now() WHERE id = %s AND state <> 'succeeded'",
        (message, job_id),
    )


ORPHANED = "the registration's queue job ended without finishing it; register the LoRA again"


async def fail_orphaned(conn: Connection, unqueued_after_s: float = 300.0) -> list[uuid.UUID]:
    """Fail the unfinished registrations whose queue job is over or gone (its worker failed
    before the pipeline could record why, an operator deleted the job, or the process that
    created the record stopped before it queued one): left `queued` or `running`, each would hold
    its source and slug busy and keep its watchers waiting for good. A queue job is found by its
    id, or by its lock (the registration's id) while the id is not stored yet; a record with
    neither is given `unqueued_after_s` to get one."""
    rows = await (
        await conn.execute(
            "UPDATE registration_jobs r SET state = 'failed', message = %s, fetch_url = NULL,"
            " updated_at = now(), finished_at = now()"
            " WHERE r.state IN ('queued', 'running')"
            " AND (r.queue_job_id IS NOT NULL OR r.created_at < now() - make_interval(secs => %s))"
            " AND NOT EXISTS (SELECT 1 FROM procrastinate_jobs j"
            "                 WHERE (j.id = r.queue_job_id OR j.lock = r.id::text)"
            "                 AND j.status IN ('todo', 'doing'))"
            " RETURNING r.id",
            (ORPHANED, unqueued_after_s),
        )
    ).fetchall()
    return [row[0] for row in rows]


async def artifacts(conn: Connection, job_id: uuid.UUID, kind: str) -> dict[str, str]:
    cur = await conn.execute(
        "SELECT item, blob_key FROM registration_artifacts WHERE job_id = %s AND kind = %s", (job_id, kind)
    )
    return {row[0]: row[1] for row in await cur.fetchall()}


async def add_artifact(conn: Connection, job_id: uuid.UUID, kind: str, item: str, blob_key: str) -> None:
    await conn.execute(
        "INSERT INTO registration_artifacts (job_id, kind, item, blob_key) VALUES (%s, %s, %s, %s)"
        " ON CONFLICT DO NOTHING",
        (job_id, kind, item, blob_key),
    )


async def slug_of_sha256(conn: Connection, sha256: str) -> str | None:
    cur = await conn.execute("SELECT slug FROM loras WHERE sha256 = %s", (sha256,))
    row = await cur.fetchone()
    return None if row is None else str(row[0])


async def file_still_wanted(conn: Connection, sha256: str, job_id: uuid.UUID) -> bool:
    """A registered LoRA is this file, or another job that has not ended is working on it: one
    that fetched it, or one staged from it that no worker has taken yet (its file_sha256 is set
    only when it starts)."""
    cur = await conn.execute(
        """
        SELECT EXISTS (SELECT 1 FROM loras WHERE sha256 = %(sha)s)
            OR EXISTS (SELECT 1 FROM registration_jobs
                       WHERE (file_sha256 = %(sha)s OR source_url = 'staged:' || %(sha)s)
                         AND id <> %(job)s AND finished_at IS NULL)
        """,
        {"sha": sha256, "job": job_id},
    )
    row = await cur.fetchone()
    return bool(row and row[0])


async def nearest_neighbour_distances(conn: Connection, sample: int) -> list[float]:
    """Centroid distance of (a deterministic sample of) catalog LoRAs to their nearest other LoRA:
    the catalog's own notion of "unusually close"."""
    cur = await conn.execute(
        """
        SELECT (SELECT o.centroid <-> s.centroid FROM lora_style_summary o
                WHERE o.lora_id <> s.lora_id ORDER BY o.centroid <-> s.centroid LIMIT 1)
        FROM (SELECT lora_id, centroid FROM lora_style_summary
              ORDER BY md5(lora_id::text) LIMIT %s) s
        """,
        (sample,),
    )
    return [float(r[0]) for r in await cur.fetchall() if r[0] is not None]


async def nearest_centroids(conn: Connection, centroid: np.ndarray, limit: int) -> list[tuple[str, float]]:
    cur = await conn.execute(
        "SELECT l.slug, s.centroid <-> %(c)s FROM lora_style_summary s"
        " JOIN loras l ON l.id = s.lora_id ORDER BY s.centroid <-> %(c)s LIMIT %(k)s",
        {"c": np.asarray(centroid, dtype=np.float32), "k": limit},
    )
    return [(str(r[0]), float(r[1])) for r in await cur.fetchall()]


async def complete(
    conn: Connection,
    job_id: uuid.UUID,
    lora: NewLora,
    references: Sequence[ReferenceRow],
    spec: Sequence[SpecRow],
    lookalikes: list[dict[str, Any]],
    message: str,
    audit: dict[str, Any],
    encoder: str | None = None,
    gmi_label: str | None = None,
) -> int:
    """The LoRA, its references, summary and spec, the audit entry and the job's success, in one
    transaction: a crash before the commit leaves nothing visible, and a repeat finds it done.
    With `encoder` (the label that embedded the references), as db.catalog.replace_lora. With
    `gmi_label` (the CLIP model of the spec's features), features of another model than the
    catalog's are stored as missing (search skips them until they are filled)."""
    async with conn.transaction():
        cur = await conn.execute(
            "SELECT state, lora_id, client FROM registration_jobs WHERE id = %s FOR UPDATE", (job_id,)
        )
        row = await cur.fetchone()
        if row is not None and row[0] == "succeeded":
            return int(row[1])
        if encoder is not None:
            await require_label(conn, encoder)
        if gmi_label is not None:
            spec = await _features_of_the_catalogs_model(conn, spec, gmi_label)
        lora_id = await insert_lora(conn, lora)
        await copy_references(conn, lora_id, references)
        await refresh_style_summary(conn, lora_id)
        await insert_spec_points(conn, lora_id, spec)
        client = None if row is None else row[2]
        await moderation.audit(conn, lora.created_by, "register_lora", lora.slug, audit, client=client)
        await conn.execute(
            """
            UPDATE registration_jobs SET state = 'succeeded', step = 'index', progress = 1,
                message = %s, lora_id = %s, lookalikes = %s, fetch_url = NULL, updated_at = now(),
                finished_at = now()
            WHERE id = %s
            """,
            (message, lora_id, json.dumps(lookalikes), job_id),
        )
        return lora_id


async def _features_of_the_catalogs_model(
    conn: Connection, spec: Sequence[SpecRow], gmi_label: str
) -> Sequence[SpecRow]:
    """`spec`, its features dropped when the catalog's CLIP model is no longer `gmi_label` (an
    import switched models while the worker generated). FOR SHARE waits for such an import, which
    updates the label before it forgets the features: either it sees this commit's features, or
    this transaction sees its label."""
    stored = await get_meta(conn, GMI_ENCODER_KEY, lock=True)
    if stored is None or stored == gmi_label:
        return spec
    return [replace(point, image_feature=None) for point in spec]
