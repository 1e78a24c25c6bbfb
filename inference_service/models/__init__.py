"""Models the service runs: the style encoder (and, later, CLIP and the captioner)."""
