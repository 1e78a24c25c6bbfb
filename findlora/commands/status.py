"""`findlora status`: is everything a search needs there, and the command that fixes what is not."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import typer

from findlora.console import START_SERVICE, console, run

if TYPE_CHECKING:
    from findlora_client import ServiceCallError
    from protos import findlora_pb2 as pb

IMPORT_CATALOG = "import one with `findlora catalog import DIR` (or run `make demo` for a demo catalog)"


@dataclass(frozen=True)
class Check:
    what: str
    ok: bool
    detail: str

    def line(self) -> str:
        mark = "[green]ok[/]  " if self.ok else "[red]fix[/] "
        return f"{mark} {self.what:<12} {self.detail}"


async def gather_checks(address: str) -> list[Check]:
    """Every check in order; a service that cannot be reached stops the rest (they ask it)."""
    from findlora.access import service_client
    from findlora_client import ServiceCallError, ServiceUnreachable, TlsHandshakeFailed

    async with service_client(address, timeout=5.0) as client:
        try:
            serving = await client.health(timeout=5.0)
        except TlsHandshakeFailed as exc:  # it is there: starting another would not help
            return [Check("service", False, exc.message)]
        except ServiceUnreachable:
            return [Check("service", False, f"no service at {address}: {START_SERVICE}")]
        except ServiceCallError as exc:
            return [Check("service", False, exc.message)]
        checks = [Check("service", serving == "SERVING", f"{address} answers {serving}")]
        try:
            status = await client.service_status()
        except ServiceCallError as exc:
            return [*checks, refused_check(exc)]
    return checks + service_checks(status)


def refused_check(exc: ServiceCallError) -> Check:
    """The line a failed status call belongs on: the database when the service says it is down or
    slow, or when the call timed out (the status and the token check both query it)."""
    from findlora_client import Reason, ServiceTimeout

    if exc.reason in (Reason.DATABASE_UNAVAILABLE, Reason.DATABASE_TIMEOUT):
        return Check("database", False, exc.message)
    if isinstance(exc, ServiceTimeout):
        return Check("database", False, f"{exc.message} (is its database down or slow?)")
    return Check("access", False, exc.message)


def service_checks(status: pb.ServiceStatusResponse) -> list[Check]:
    catalog = f"{status.active_loras} searchable LoRA(s) of {status.loras}, {status.samples} sample(s)"
    if status.active_loras == 0:
        catalog += f": the catalog is empty, {IMPORT_CATALOG}"
    encoder = status.encoder
    stale = bool(status.catalog_encoder) and status.catalog_encoder != status.encoder
    if stale:
        encoder += (
            f", but the catalog was embedded with {status.catalog_encoder}: run `findlora catalog reembed`"
        )
    queue = f"{status.jobs_queued} registration job(s) waiting, {status.jobs_running} running"
    queue += f", {status.live_workers} worker(s) alive"
    idle = status.jobs_queued > 0 and status.live_workers == 0
    if idle:
        queue += ": no worker takes them, start one with `findlora serve worker`"
    if not status.registration_enabled:
        queue = "registration is not enabled on this service"
    return [
        Check("catalog", status.active_loras > 0, catalog),
        Check("encoder", not stale, encoder),
        Check("database", True, f"{status.database}, schema {status.schema_version}"),
        Check("queue", not idle, queue),
    ]


def status(service: str = typer.Option("", "--service", help="Service address.")) -> None:
    """Service, catalog, encoder, database and registration queue; exits 1 when something needs a fix."""
    from findlora.commands.search import default_service_address

    address = service or default_service_address()
    checks = run(gather_checks(address))
    for check in checks:
        console.print(check.line(), highlight=False, soft_wrap=True)
    if not all(check.ok for check in checks):
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("status")(status)
