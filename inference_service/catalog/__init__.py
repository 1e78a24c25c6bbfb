"""Catalog directory format (DESIGN.md 6): reading, validation, import and export."""
