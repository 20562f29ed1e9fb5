"""Training entry points: ``python -m train.lsld``."""
