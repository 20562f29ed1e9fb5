"""lsld-engine: weakly-supervised audio-visual video parsing with LSLD.

The package by pipeline stage: ``media`` (decode) -> ``encoders`` / ``backends`` (CLIP / CLAP / HAN
inference) -> ``parsing`` (the decode -> embed loop, parse and extract) -> ``records`` (events,
writers, readers). Training: ``data`` (LLP, features) -> ``labels`` (prompts, DeN + ReW) -> ``han``
(the network, training); scoring: ``evaluation``. From Python: ``lsld_engine.load_engine(...)``
(:mod:`lsld_engine.api`). Old module paths (``lsld_engine.metrics``, ...) still import
(:mod:`lsld_engine._moved`).
"""
from lsld_engine import _moved
from lsld_engine.data.llp import CLASSES, NUM_CLASSES, T

_moved.install()  # old paths such as lsld_engine.metrics keep working

__version__ = "0.1.0"
__all__ = ["CLASSES", "NUM_CLASSES", "T", "__version__", "Engine", "EngineOptions", "load_engine"]

#: The Python API (:mod:`lsld_engine.api`), imported on first use so ``import lsld_engine`` stays light.
_API = {"Engine", "EngineOptions", "load_engine"}


def __getattr__(name: str):
    if name in _API:
        from lsld_engine import api

        return getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
