"""Shared bot core: the search flow, rendering, paging, permissions, attachment fetch."""
