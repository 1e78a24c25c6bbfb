"""Scoring: cleansing (Eq. 1), style distance, two-stage ranking, RKME and fusion."""
