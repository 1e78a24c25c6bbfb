"""The gRPC client of the findlora service, with what both sides agree on (base install only)."""

from findlora_client.client import ClientTls, FindLoraClient, QueryImage
from findlora_client.errors import (
    ServiceCallError,
    ServiceTimeout,
    ServiceUnreachable,
    TlsHandshakeFailed,
    TokenMissing,
)
from findlora_client.protocol import (
    DEFAULT_ADDRESS,
    MAX_IMAGE_PIXELS,
    MAX_MESSAGE_BYTES,
    MAX_QUERY_IMAGES,
    Reason,
)
from findlora_client.timing import CallTiming, ServerTiming, collect_server_timing

__all__ = [
    "DEFAULT_ADDRESS",
    "MAX_IMAGE_PIXELS",
    "MAX_MESSAGE_BYTES",
    "MAX_QUERY_IMAGES",
    "CallTiming",
    "ClientTls",
    "FindLoraClient",
    "QueryImage",
    "Reason",
    "ServerTiming",
    "ServiceCallError",
    "ServiceTimeout",
    "ServiceUnreachable",
    "TlsHandshakeFailed",
    "TokenMissing",
    "collect_server_timing",
]
