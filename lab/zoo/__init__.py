"""The procedural style zoos (plain and prompt-conditioned) that benchmarks and training use."""
