"""Human-made art from Debian packages for the real-art zoo (see inference_service/eval/real_zoo.py)."""
