"""Catalog directory format (docs/design.md 6): reading, validation, import and export."""
