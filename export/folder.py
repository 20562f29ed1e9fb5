"""Moved to :mod:`lsld_engine.exporting.folder` (the library); this name stays for old imports and ``python -m export``."""
import sys

from lsld_engine.exporting import folder as _module

sys.modules[__name__] = _module
