"""Metrics (Prometheus) and tracing (OpenTelemetry) for the inference service.

Metrics are module-level collectors in the default registry, exposed on FINDLORA_METRICS_LISTEN
by `findlora serve inference` (findlora/metrics_http.py). Tracing is opt-in (FINDLORA_OTEL_ENABLED),
needs the `otel` extra, and instruments every aio gRPC server created afterwards.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog
from prometheus_client import Counter, Histogram

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter

log = structlog.get_logger(__name__)

RPC_REQUESTS = Counter(
    "findlora_rpc_requests_total", "RPCs handled, by method and status code", ["rpc", "code"]
)
RPC_LATENCY = Histogram(
    "findlora_rpc_latency_seconds",
    "RPC handling time, by method",
    ["rpc"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)


def enable_tracing(service_name: str = "findlora-inference") -> bool:
    """Instrument aio gRPC servers with OpenTelemetry; False when the otel extra is absent."""
    try:
        from opentelemetry import trace
        from opentelemetry.instrumentation.grpc import GrpcAioInstrumentorServer
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
    except ImportError:
        log.warning("tracing_unavailable", hint="pip install 'findlora[otel]'")
        return False
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
        exporter = _otlp_exporter() or ConsoleSpanExporter()
        provider.add_span_processor(BatchSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
    GrpcAioInstrumentorServer().instrument()  # type: ignore[no-untyped-call]
    log.info("tracing_enabled")
    return True


def _otlp_exporter() -> SpanExporter | None:
    """The OTLP exporter when its package is installed (it reads OTEL_EXPORTER_OTLP_* itself)."""
    try:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (  # type: ignore[import-not-found]
            OTLPSpanExporter,
        )
    except ImportError:
        return None
    exporter: SpanExporter = OTLPSpanExporter()
    return exporter
