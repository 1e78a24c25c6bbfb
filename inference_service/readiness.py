"""Readiness: the FindLora service's gRPC health follows whether the catalog database answers.

Every RPC but health needs the database (a client's token is looked up there first), so a replica
that cannot reach it should get no traffic: the health of `findlora.v1.FindLora` (the readiness
probe's service) turns NOT_SERVING after a failed check and SERVING again after a good one. The
overall health ("", the liveness probe's) stays SERVING while the process runs: restarting the
service would not bring the database back.
"""

from __future__ import annotations

import asyncio

import structlog
from grpc_health.v1 import health, health_pb2

from db.database import Database
from inference_service.periodic import every

log = structlog.get_logger(__name__)
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class DatabaseReadiness:
    """Stopped between checks, never cancelled mid-check (inference_service.periodic); a check is
    bounded by the pool's own timeout."""

    def __init__(
        self, db: Database, servicer: health.aio.HealthServicer, service: str, interval_s: float
    ) -> None:
        self.db, self.servicer, self.service, self.interval_s = db, servicer, service, interval_s
        self.ready = True  # start_service has just used the database
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def check_once(self) -> bool:
        try:
            async with self.db.connection() as conn:
                await conn.execute("SELECT 1")
            ready = True
        except Exception as exc:
            if self.ready:
                log.warning("database_unreachable", error=type(exc).__name__, service=self.service)
            ready = False
        if ready != self.ready:
            if ready:
                log.info("database_reachable_again", service=self.service)
            await self.servicer.set(self.service, SERVING if ready else NOT_SERVING)
            self.ready = ready
        return ready

    def start(self) -> None:
        if self._task is None:
            loop = every(self.interval_s, self._stop, self.check_once)
            self._task = asyncio.create_task(loop, name="database-readiness")

    async def stop(self) -> None:
        """Ends the loop after the check in flight (at most the pool's timeout), without waiting
        past one interval for it: the service's shutdown goes on."""
        self._stop.set()
        if self._task is not None:
            await asyncio.wait({self._task}, timeout=self.interval_s)
            self._task = None
