"""Offline work: benchmarks, the procedural zoos, retrieval metrics and the demo (extra `lab`)."""
