"""Scoring, pure numpy: cleansing (Eq. 1), style distance, the two-stage ranker, RKME, fusion."""
