"""Moved to :mod:`lsld_engine.exporting.networks` (the library); this name stays for old imports and ``python -m export``."""
import sys

from lsld_engine.exporting import networks as _module

sys.modules[__name__] = _module
