"""Benchmarks: quality (style zoo), and later search and throughput."""
