"""Moved to :mod:`lsld_engine.exporting.onnx_export` (the library); this name stays for old imports and ``python -m export``."""
import sys

from lsld_engine.exporting import onnx_export as _module

sys.modules[__name__] = _module
