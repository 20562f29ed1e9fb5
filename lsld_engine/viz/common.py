"""Shared plotting plumbing: the lazy Agg import, PNG output, and class-name display."""
from __future__ import annotations

import base64
import io
import os
from pathlib import Path

from lsld_engine.errors import LsldError
from lsld_engine.files import atomic_path

#: Dots per inch of every saved figure (sizes are chosen in inches for this density).
DPI = 110


class PlotError(LsldError, ValueError):
    """Bad input to a figure (unknown video, inconsistent arrays); the message says which."""


def pyplot():
    """``matplotlib.pyplot`` on the non-interactive Agg backend (no display needed).

    Raises ``SystemExit`` with the install hint when matplotlib is absent (the ``[plot]`` extra).
    """
    try:
        import matplotlib
    except ImportError:
        raise SystemExit("plotting needs matplotlib: pip install 'lsld-engine[plot]' "
                         "(or scripts/setup.sh full)") from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def pretty(name: str) -> str:
    """A class name for display: ``Frying_(food)`` -> ``Frying (food)``."""
    return name.replace("_", " ")


def save_png(fig, path: str | os.PathLike) -> Path:
    """Write ``fig`` as a PNG (atomically) and close it; returns the path."""
    plt = pyplot()
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=DPI, bbox_inches="tight", facecolor="white")
    finally:
        plt.close(fig)
    return path


def png_data_uri(fig) -> str:
    """``fig`` as a ``data:image/png;base64,...`` URI (for a self-contained HTML page); closes it."""
    plt = pyplot()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight", facecolor="white")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
