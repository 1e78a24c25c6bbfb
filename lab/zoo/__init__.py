"""Evaluation: the procedural style zoo and retrieval metrics."""
