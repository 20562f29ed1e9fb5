"""The official frame extraction run with a real ``ffmpeg`` binary, as an oracle for tests and benchmarks.

``ffmpeg -i VIDEO -y -r 8 %06d.jpg`` exactly as the official LSLD ``extract_frames.py`` runs it,
with the binary of the ``imageio-ffmpeg`` wheel (a ``dev`` extra). The engine itself never runs
ffmpeg; only tests and ``bench/`` do, to check :mod:`lsld_engine.media.frame_rule` and
:mod:`lsld_engine.media.jpeg_roundtrip` against the real thing.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np


def ffmpeg_exe() -> str | None:
    """Path of the ``imageio-ffmpeg`` binary, or None when the package is not installed."""
    try:
        import imageio_ffmpeg
    except ImportError:
        return None
    return imageio_ffmpeg.get_ffmpeg_exe()


def ffmpeg_version(exe: str) -> str:
    """First line of ``ffmpeg -version`` (e.g. ``ffmpeg version n9.0.2-...``)."""
    out = subprocess.run([exe, "-version"], capture_output=True, text=True, check=True).stdout
    return out.splitlines()[0]


def official_frames(exe: str, video: str | Path, out_dir: str | Path, fps: int = 8) -> list[Path]:
    """Run ``ffmpeg -i VIDEO -y -r 8 OUT/%06d.jpg``; the written JPEG files in order."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cmd = [exe, "-nostdin", "-hide_banner", "-loglevel", "error", "-i", str(video), "-y", "-r", str(fps),
           str(out_dir / "%06d.jpg")]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {r.stderr.strip()[-500:]}")
    return sorted(out_dir.glob("*.jpg"))


def read_rgb(path: str | Path) -> np.ndarray:
    """A JPEG file as ``(H, W, 3)`` uint8 RGB, decoded by PIL as CLIP's ``preprocess`` opens it."""
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def frame_numbers(paths) -> np.ndarray:
    """The frame counter drawn into each image (:func:`lsld_engine.testing.videos.read_frame_index`), ``(N,)``."""
    from lsld_engine.testing.videos import read_frame_index

    return np.array([read_frame_index(read_rgb(p)) for p in paths], np.int64)
