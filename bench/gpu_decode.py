"""One-call GPU benchmark of the device pixel path: `parse` end to end, naive vs CPU decode + GPU pixels vs NVDEC.

    python -m bench.gpu_decode [--videos 96] [--workers 1,8,16] [--modes naive,device,nvdec]
                               [--size real|small] [--toy] [--run-timeout 240] [--out results.json]

(``bash bench/gpu_decode.sh`` wraps it for the lent machines: wheels, nvidia-smi, overall timeout.)

Clips: synthetic 10-s 640x360 textured H.264 (crf 23, veryfast) + AAC at 25 fps
(``lsld_engine.testing.videos.bench_clips``: 8 encoded, the rest copies). Backend: random-weight
real-size towers (CLIP ViT-B/16, CLAP HTSAT-tiny) + HAN, fp16 autocast on CUDA, built and warmed
once. For each mode and worker count it runs ``lsld_engine.parsing.parse.parse_videos`` over all clips
(records discarded) and reports clips/s, plus the decode-only bound of the same decode function
(``decode_stream`` consumed without encoding). Modes:

- ``naive``: the reference path (workers: decode + swscale RGB + PIL bicubic + crop);
- ``device``: workers decode only and ship raw YUV planes; colour / resize / crop on the GPU
  (``--pixels device``);
- ``nvdec``: NVDEC decode + GPU pixels inside each worker (``--decoder nvdec``; files it cannot
  take fall back to the CPU; the count of NVDEC-decoded files is printed).

Each run has its own time limit (``--run-timeout``; a run that exceeds it is reported as such and
the rest go on). Prints the card, CPU count and a table; writes JSON (and the table) to ``--out``
or ``$OUT/gpu_decode.json`` when ``$OUT`` is set. Targets on an H200 machine: >= 30
clips/s with CPU decode (>= 80% of its decode-only bound) and >= 100 clips/s with NVDEC.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path


class _Null:
    def write(self, record: dict) -> None:
        pass


class RunTimeout(Exception):
    pass


def _alarm(signum, frame):
    raise RunTimeout()


def decode_fn_of(mode: str):
    if mode == "naive":
        return None
    if mode == "device":
        from lsld_engine.media.raw_planes import decode_raw

        return decode_raw
    if mode == "nvdec":
        from lsld_engine.media.nvdec import decode_nvdec

        return decode_nvdec
    raise ValueError(f"unknown mode {mode!r}")


def decode_only(paths, workers: int, fn) -> tuple[float, int]:
    """clips/s of the decode step alone, and how many files NVDEC decoded."""
    from lsld_engine.media.pool import DecodeFailure, decode_stream

    t = time.perf_counter()
    nv = 0
    for r in decode_stream(paths, workers=workers, decode_fn=fn):
        if isinstance(r, DecodeFailure):
            raise RuntimeError(r.error)
        nv += getattr(r, "decoder", "") == "nvdec"
    return len(paths) / (time.perf_counter() - t), nv


def parse_run(items, backend, workers: int, fn) -> float:
    from lsld_engine.parsing.parse import parse_videos

    t = time.perf_counter()
    s = parse_videos(items, backend, _Null(), workers=workers, progress=False, decode_fn=fn)
    if s.failed:
        raise RuntimeError(f"{len(s.failed)} failed, e.g. {s.failed[0]}")
    return len(items) / (time.perf_counter() - t)


def timed_call(limit: float, fn, *a):
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(max(1, int(limit)))
    try:
        return fn(*a)
    finally:
        signal.alarm(0)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.gpu_decode", description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=96)
    ap.add_argument("--workers", default="1,8,16")
    ap.add_argument("--modes", default="naive,device,nvdec")
    ap.add_argument("--size", choices=("small", "real"), default="real")
    ap.add_argument("--toy", action="store_true", help="toy encoders: the media pipeline alone")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--precision", default="fp16")
    ap.add_argument("--run-timeout", type=float, default=240, help="seconds per measured run")
    ap.add_argument("--no-decode-only", action="store_true", help="skip the decode-only bound rows")
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "lsld-gpu-decode-clips")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    import torch

    from lsld_engine.testing.videos import bench_clips
    from lsld_engine.parsing.video_inputs import VideoInput

    out = args.out or (Path(os.environ["OUT"]) / "gpu_decode.json" if os.environ.get("OUT") else None)
    card = torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA device"
    header = {"card": card, "cpus": os.cpu_count(), "torch": torch.__version__, "python": platform.python_version()}
    try:
        import av

        from lsld_engine.media.nvdec import nvdec_unavailable_reason

        header["pyav"] = av.__version__
        header["nvdec"] = nvdec_unavailable_reason() or "available"
    except Exception as e:  # noqa: BLE001 - report, go on
        header["nvdec"] = f"probe failed: {e}"
    print(json.dumps(header), flush=True)

    t = time.perf_counter()
    paths = bench_clips(args.cache, args.videos)
    items = [VideoInput(str(p), p.stem) for p in paths]
    print(f"{len(paths)} clips ready in {time.perf_counter() - t:.0f} s", flush=True)
    if args.toy:
        from lsld_engine.testing.backends import ToyBackend

        backend = ToyBackend()
    else:
        from lsld_engine.backends import create_backend

        backend = create_backend("torch", random_weights=True, size=args.size, device=args.device,
                                 precision=args.precision)
        backend.warm_up()
    rows = []

    def record(row):
        rows.append(row)
        print(json.dumps(row), flush=True)
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps({"header": header, "rows": rows}, indent=1))

    for mode in args.modes.split(","):
        fn = decode_fn_of(mode)
        for w in (int(x) for x in args.workers.split(",")):
            row = {"mode": mode, "workers": w}
            try:
                if not args.no_decode_only:
                    row["decode_only_clips_s"], row["nvdec_files"] = timed_call(
                        args.run_timeout, decode_only, paths, w, fn)
                row["parse_clips_s"] = timed_call(args.run_timeout, parse_run, items, backend, w, fn)
            except RunTimeout:
                row["error"] = f"timeout after {args.run_timeout:g} s"
            except Exception as e:  # noqa: BLE001 - one broken mode must not lose the others
                row["error"] = f"{type(e).__name__}: {e}"
                traceback.print_exc()
            record(row)

    table = [f"card: {card}   CPUs: {os.cpu_count()}   clips: {len(paths)} x 10 s 640x360 H.264+AAC   "
             f"towers: {'toy' if args.toy else args.size} {args.precision}",
             f"{'mode':<8s} {'workers':>7s} {'parse clips/s':>14s} {'decode-only':>12s} {'% of bound':>10s}  note"]
    for r in rows:
        p, d = r.get("parse_clips_s"), r.get("decode_only_clips_s")
        note = r.get("error", "")
        if r["mode"] == "nvdec" and "nvdec_files" in r:
            note += f" NVDEC decoded {r['nvdec_files']} of {len(paths)} files"
        pct = f"{100 * p / d:.0f}%" if p and d else ""
        ps = "-" if p is None else f"{p:.1f}"
        ds = "-" if d is None else f"{d:.1f}"
        table.append(f"{r['mode']:<8s} {r['workers']:>7d} {ps:>14s} {ds:>12s} {pct:>10s}  {note}")
    print("\n".join(table), flush=True)
    if out is not None:
        out.with_suffix(".txt").write_text("\n".join(table) + "\n")
    backend.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
