"""Scoring: the official LLP metrics (Numba), per-class metrics and their plain-Python reference."""
