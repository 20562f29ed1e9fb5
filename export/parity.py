"""Moved to :mod:`lsld_engine.exporting.parity` (the library); this name stays for old imports and ``python -m export``."""
import sys

from lsld_engine.exporting import parity as _module

sys.modules[__name__] = _module
