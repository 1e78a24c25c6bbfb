"""Models the service runs: the style encoder, CLIP and the captioner."""
