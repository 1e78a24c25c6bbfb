"""Triplet training of the style encoder on a catalog directory (references + cleansing)."""
