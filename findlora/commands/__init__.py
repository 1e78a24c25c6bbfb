"""CLI command groups; each module has register(app). Heavy imports stay inside commands."""
