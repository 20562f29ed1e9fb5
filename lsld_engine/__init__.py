"""lsld-engine: weakly-supervised audio-visual video parsing with LSLD.

Pipeline, top to bottom: ``media`` (decode) -> ``encoders`` (CLIP / CLAP) -> ``model`` (HAN)
-> ``events`` (masks <-> events) -> ``writers`` (JSONL). Training: ``dataset`` -> ``denoise``
-> ``training``; scoring: ``metrics``. From Python: ``lsld_engine.load_engine(...)`` (:mod:`lsld_engine.api`).
"""
from lsld_engine.llp import CLASSES, NUM_CLASSES, T

__version__ = "0.1.0"
__all__ = ["CLASSES", "NUM_CLASSES", "T", "__version__", "Engine", "EngineOptions", "load_engine"]

#: The Python API (:mod:`lsld_engine.api`), imported on first use so ``import lsld_engine`` stays light.
_API = {"Engine", "EngineOptions", "load_engine"}


def __getattr__(name: str):
    if name in _API:
        from lsld_engine import api

        return getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
