"""Benchmarks (DESIGN.md 8)."""
