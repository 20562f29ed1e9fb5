"""Import laion_clap's HTSAT model code without running ``laion_clap/__init__.py``.

``import laion_clap`` (and ``laion_clap.clap_module``) builds BERT/RoBERTa/BART tokenizers from the
Hugging Face hub and imports training-only packages (webdataset, wget). The HTSAT network itself
lives in ``laion_clap/clap_module/htsat.py`` whose only package-relative imports are ``.utils`` and
``.feature_fusion``: we register a private, empty package pointing at that folder, so Python loads
just those three files and never executes either ``__init__.py``.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from pathlib import Path

_PKG = "lsld_engine.encoders._laion_clap_module"


def clap_module_dir() -> Path:
    """The installed ``laion_clap/clap_module`` folder, found without importing ``laion_clap``."""
    spec = importlib.util.find_spec("laion_clap")  # top-level find_spec does not execute __init__
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "laion_clap is not installed: install it with `pip install --no-deps laion_clap` "
            "(scripts/setup.sh full does this)", name="laion_clap")
    d = Path(next(iter(spec.submodule_search_locations))) / "clap_module"
    if not (d / "htsat.py").is_file():
        raise ModuleNotFoundError(f"{d / 'htsat.py'} not found: the laion_clap install looks incomplete",
                                  name="laion_clap")
    return d


def _package() -> types.ModuleType:
    pkg = sys.modules.get(_PKG)
    if pkg is None:
        pkg = types.ModuleType(_PKG, "laion_clap.clap_module model files, loaded without its __init__")
        pkg.__path__ = [str(clap_module_dir())]
        pkg.__package__ = _PKG
        sys.modules[_PKG] = pkg
    return pkg


def _window_reverse(windows, window_size: int, H: int, W: int):
    """laion_clap's ``window_reverse`` with an integer batch size.

    The original computes ``B = int(N / (H*W/ws/ws))`` in Python floats, which bakes the batch size
    into traced/exported graphs; floor division on the (symbolic) size gives the same number.
    """
    b = windows.shape[0] // ((H // window_size) * (W // window_size))
    x = windows.view(b, H // window_size, W // window_size, window_size, window_size, -1)
    return x.permute(0, 1, 3, 2, 4, 5).contiguous().view(b, H, W, -1)


def htsat_module() -> types.ModuleType:
    """laion_clap's ``htsat`` module (private copy; ``window_reverse`` made export-friendly)."""
    _package()
    mod = importlib.import_module(f"{_PKG}.htsat")
    # Our private module instance only: laion_clap's own import (if anyone does it) is untouched.
    mod.window_reverse = _window_reverse
    return mod
