"""Peak memory of decoding and parsing long videos: whole videos vs the stream of parts.

``python -m bench.memory_bench [--lengths 120 480] [--out-dir DIR]``

For each length, on a generated video (160x96, 25 fps, moving index bands, stereo AAC) and on a
tiny file whose last frame sits that far in (:func:`lsld_engine.testing.hostile.write_long_claim`),
each measured in a fresh process (peak RSS = ``VmHWM``):

1. one decode worker's work: ``decode_video`` (the whole video at once, as before) vs
   ``decode_parts`` (parts of 3 windows handed on and dropped);
2. the whole ``lsld-engine parse`` (toy encoders, one decode worker): the main process and the
   decode worker, each its own ``VmHWM`` (``ru_maxrss`` would carry over the parent's size across
   fork + exec; :mod:`lsld_engine.testing.memory`).

Prints both sides and the ratio per length. The toy encoders keep the network weights out of the
figure: with the real CLIP / CLAP towers add their weights (~0.6 GB fp32) to the main process.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_DECODE = """
import sys
from pathlib import Path
from lsld_engine import media
path, how = sys.argv[1], sys.argv[2]
if how == "whole":
    v = media.decode_video(path)
    n = v.num_windows
else:
    seen = []
    last = media.decode_parts(path, emit=lambda p: seen.append(p.num_windows))
    n = sum(seen) + last.num_windows
hwm = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("VmHWM:"))
print(n, hwm.split()[1])
"""


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}


def decode_peak(path: Path, how: str) -> tuple[int, float]:
    """``(windows, peak MB)`` of one decode in a fresh process (its own ``VmHWM``)."""
    r = subprocess.run([sys.executable, "-c", _DECODE, str(path), how], env=_env(), capture_output=True,
                       text=True, check=True)
    n, kb = r.stdout.split()
    return int(n), int(kb) / 1024


def parse_peaks(path: Path, out: Path) -> tuple[float, float]:
    """``(main, worker)`` peak MB of a toy ``parse`` run with one decode worker."""
    from lsld_engine.testing.memory import watch_peaks

    proc = subprocess.Popen([sys.executable, "-m", "lsld_engine.testing.toy_cli", "parse", str(path), "--out",
                             str(out), "--random-weights", "--quiet", "--workers", "1", "--no-resume"],
                            env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peaks = watch_peaks(proc)
    err = proc.stderr.read()
    if proc.returncode != 0:
        raise RuntimeError(f"parse of {path} failed: {err[-500:]}")
    main_mb = peaks.pop(proc.pid)
    return main_mb, max(peaks.values(), default=0.0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.memory_bench", description=__doc__.splitlines()[0])
    p.add_argument("--lengths", type=float, nargs="+", default=[120.0, 480.0], help="video lengths (s)")
    p.add_argument("--out-dir", type=Path, default=None, help="where to write the videos (default: a temp dir)")
    args = p.parse_args(argv)
    from lsld_engine.testing.hostile import write_long_claim
    from lsld_engine.testing.videos import VideoSpec, make_video

    d = args.out_dir or Path(tempfile.mkdtemp(prefix="lsld-mem-"))
    d.mkdir(parents=True, exist_ok=True)
    print(f"machine: {os.cpu_count()} CPUs; peak RSS in MB (VmHWM), each figure a fresh process")
    print(f"{'file':34s} {'windows':>7s} {'decode whole':>12s} {'decode parts':>12s} {'ratio':>6s} "
          f"{'parse: main':>11s} {'worker':>7s}")
    for seconds in args.lengths:
        files = {f"generated {seconds:.0f} s": make_video(d / f"gen{seconds:.0f}.mp4", VideoSpec(duration=seconds)),
                 f"3-frame file lasting {seconds:.0f} s": write_long_claim(d / f"claim{seconds:.0f}.mp4", seconds)}
        for name, path in files.items():
            n, whole = decode_peak(path, "whole")
            n2, parts = decode_peak(path, "parts")
            assert n == n2, (n, n2)
            main_mb, worker_mb = parse_peaks(path, d / "r.jsonl")
            print(f"{name:34s} {n:7d} {whole:12.0f} {parts:12.0f} {whole / parts:5.1f}x {main_mb:11.0f} "
                  f"{worker_mb:7.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
