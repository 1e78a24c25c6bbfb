"""Benchmarks (docs/design.md 8): quality (style zoo, GMI rows), search and throughput."""
