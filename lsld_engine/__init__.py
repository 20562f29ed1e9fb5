"""lsld-engine: weakly-supervised audio-visual video parsing with LSLD.

Pipeline, top to bottom: ``media`` (decode) -> ``encoders`` (CLIP / CLAP) -> ``model`` (HAN)
-> ``events`` (masks <-> events) -> ``writers`` (JSONL). Training: ``dataset`` -> ``denoise``
-> ``training``; scoring: ``metrics``.
"""
from lsld_engine.llp import CLASSES, NUM_CLASSES, T

__version__ = "0.1.0"
__all__ = ["CLASSES", "NUM_CLASSES", "T", "__version__"]
