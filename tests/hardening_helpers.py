"""Fixtures and helpers shared by the hardening tests (test_hardening.py, test_hardening_outputs.py).

Imported by name from those files (pytest puts ``tests/`` on ``sys.path``); not collected itself.
"""
from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lsld_engine import backends
from lsld_engine.cli import main
from lsld_engine.testing.backends import ToyBackend
from lsld_engine.testing.videos import VideoSpec, make_video

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def toy(monkeypatch):
    made = []

    def create(name, **options):
        made.append(ToyBackend())
        return made[-1]

    monkeypatch.setattr(backends, "create_backend", create)
    return made


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """One 3-s clip to copy around (3 s keeps decoding cheap)."""
    return make_video(tmp_path_factory.mktemp("src") / "clip.mp4", VideoSpec(duration=3.0))


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """A small synthetic dataset root (LLP-style annotation CSVs + features)."""
    root = tmp_path_factory.mktemp("world")
    assert main(["synth", "make", "--out", str(root), "--size", "small"]) == 0
    return root


def parse(inputs, out, *extra) -> int:
    return main(["parse", *map(str, inputs if isinstance(inputs, list) else [inputs]), "--out", str(out),
                 "--random-weights", "--quiet", "--workers", "0", *extra])


def extract(inputs, root, *extra) -> int:
    return main(["extract", *map(str, inputs if isinstance(inputs, list) else [inputs]), "--out", str(root),
                 "--random-weights", "--quiet", "--workers", "0", *extra])


def one_error_line(err: str, *needles: str) -> str:
    """The stderr of a refused run: one ``error:`` line, no traceback, naming ``needles``."""
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1, err
    for n in needles:
        assert n in errors[0], (n, errors[0])
    return errors[0]


def copy(src: Path, dst: Path | bytes) -> None:
    data = Path(src).read_bytes()
    with open(dst, "wb") as f:
        f.write(data)


def archive_of(clip: Path, folder: Path, n: int) -> Path:
    """``folder`` holding ``n`` copies of ``clip`` named ``v0.mp4`` ... (ids ``v0`` ...)."""
    folder.mkdir()
    for k in range(n):
        copy(clip, folder / f"v{k}.mp4")
    return folder


def toy_cli(*args, env=None, **kw) -> subprocess.Popen:
    e = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", **(env or {})}
    command, *rest = map(str, args)  # the defaults first: a later flag in ``args`` overrides them
    return subprocess.Popen([sys.executable, "-m", "lsld_engine.testing.toy_cli", command,
                             "--random-weights", "--quiet", "--workers", "0", *rest],
                            env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def locked(path: Path) -> bool:
    """Whether another process holds the output lock on ``path``."""
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def wait_for(cond, timeout=120.0):
    t0 = time.monotonic()
    while not cond():
        assert time.monotonic() - t0 < timeout, "timed out waiting"
        time.sleep(0.05)


def distinct_archive(folder: Path, n: int) -> Path:
    """``folder`` holding ``n`` different short clips ``v0.mp4`` ... (tone, picture, length and
    audio onset differ), so that records mixed up between videos would show."""
    folder.mkdir()
    for k in range(n):
        make_video(folder / f"v{k}.mp4", VideoSpec(duration=3.0 + k % 3, freq=220.0 * (k + 1),
                                                   pattern=("code", "texture")[k % 2], audio_onset=0.5 * (k % 2)))
    return folder


def assert_records_equal(got, want, atol: float = 1e-4, where: str = "") -> None:
    """Records equal field by field, floats (scores, probabilities, durations) to ``atol``."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and sorted(got) == sorted(want), where
        for k in want:
            assert_records_equal(got[k], want[k], atol, f"{where}.{k}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want)):
            assert_records_equal(g, w, atol, f"{where}[{i}]")
    elif isinstance(want, float) and not isinstance(got, bool):
        assert isinstance(got, (int, float)) and abs(got - want) <= atol, (where, got, want)
    else:
        assert got == want, (where, got, want)
