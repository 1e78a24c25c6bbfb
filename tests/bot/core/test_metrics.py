"""Bots count the failures they show to users, by kind."""

from __future__ import annotations

import grpc
from prometheus_client import REGISTRY

from bot.core.replies import SERVICE_DOWN, friendly_error
from findlora_client import ServiceCallError, ServiceUnreachable


def errors(kind: str) -> float:
    return REGISTRY.get_sample_value("findlora_bot_errors_total", {"kind": kind}) or 0.0


def test_friendly_errors_are_counted_by_kind() -> None:
    down, rejected = errors("ServiceUnreachable"), errors("ServiceCallError")
    assert friendly_error(ServiceUnreachable("down", grpc.StatusCode.UNAVAILABLE)) == SERVICE_DOWN
    friendly_error(ServiceCallError("bad image", grpc.StatusCode.INVALID_ARGUMENT))
    friendly_error(ServiceCallError("bad image", grpc.StatusCode.INVALID_ARGUMENT))
    assert errors("ServiceUnreachable") == down + 1
    assert errors("ServiceCallError") == rejected + 2
