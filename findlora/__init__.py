"""findlora: find the LoRA that makes an image's style."""

__version__ = "0.1.0"
