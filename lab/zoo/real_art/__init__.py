"""Human-made art from Debian packages for the real-art zoo (see lab/zoo/real_zoo.py)."""
