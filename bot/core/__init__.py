"""Shared bot core: the gRPC client, rendering, paging, permissions, attachment fetch."""
