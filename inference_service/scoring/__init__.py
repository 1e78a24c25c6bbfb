"""Scoring: cleansing (Eq. 1), style distance d_avg, and (later) RKME and fusion."""
