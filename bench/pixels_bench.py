"""Naive CPU pixel path vs raw planes + device pixels, side by side, plus skip_nonref.

    python -m bench.pixels_bench [--videos 8] [--workers 0,2] [--size 640x360] [--device cpu|cuda]
                                 [--repeat 3] [--group 8]

Clips: synthetic 10-s textured H.264 (crf 23, veryfast: has B-frames) + AAC at 25 fps
(``bench_spec``), written once into a cache folder. Prints

1. one clip in this process (best of ``--repeat``, rows interleaved): the naive ``decode_video``
   (decode + swscale RGB + PIL bicubic + crop) vs ``decode_raw`` (decode, raw YUV planes) +
   ``raw_to_clip`` (device pixels), and the agreement of their crops;
2. ``skip_nonref``: decode time with ``skip_frame = "NONREF"`` vs without, and the timing error
   it introduces (how far the shown frame moves: frames of the source, seconds);
3. clips/s end to end per worker count: ``decode_stream`` of the naive path (frames ready for the
   encoder) vs ``decode_stream(decode_fn=decode_raw)`` + ``raw_to_clip`` in the consumer, both
   ending in the ``(80, 224, 224, 3)`` uint8 CLIP input of every clip, and the ratio; plus the
   CPU seconds per clip of all processes (workers included), which other load on a shared
   machine disturbs far less than wall-clock.

4. the frame rules side by side, one clip in-process (best of ``--repeat``, interleaved): the naive
   path and raw planes + device pixels with ``frame_rule="hold"`` (the old default) and
   ``"official"`` (the new default; raw planes ship only the 80 picked frames' distinct planes).

No encoder runs (see ``bench/gpu_decode.py`` for parse end to end). Wall-clock timings depend on
what else runs on the machine; nothing is asserted.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from lsld_engine.testing.videos import bench_clips


def _time(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def one_clip(path: Path, repeat: int, device: str) -> None:
    from lsld_engine.media import decode as media
    from lsld_engine.media.raw_planes import decode_raw, raw_to_clip

    p = str(path)
    raw_to_clip([decode_raw(p)], device=device, out="uint8")  # warm: LUT / weights / CUDA init
    rows = {"naive decode_video (decode+RGB+PIL resize+crop)": lambda: media.decode_video(p),
            "decode_raw (decode, raw planes + audio)": lambda: decode_raw(p),
            "raw_to_clip (device pixels, uint8 out)": None,
            "new total (decode_raw + raw_to_clip)": lambda: raw_to_clip([decode_raw(p)], device=device, out="uint8")}
    r = decode_raw(p)
    rows["raw_to_clip (device pixels, uint8 out)"] = lambda: raw_to_clip([r], device=device, out="uint8")
    best = {k: float("inf") for k in rows}
    for _ in range(repeat):
        for k, fn in rows.items():
            best[k] = min(best[k], _time(fn))
    print(f"\n1. one clip ({path.name}), in-process, best of {repeat}, pixels on {device}")
    for k, v in best.items():
        print(f"   {k:<52s} {v * 1000:8.1f} ms")
    naive, new = best["naive decode_video (decode+RGB+PIL resize+crop)"], best["new total (decode_raw + raw_to_clip)"]
    print(f"   ratio naive / new: {naive / new:.2f}x")
    ref = media.decode_video(p).frames.reshape(-1, 224, 224, 3).astype(int)
    got = raw_to_clip([r], device=device, out="uint8").astype(int)
    d = np.abs(ref - got)
    print(f"   crops vs reference: max |diff| {d.max()} levels, mean {d.mean():.5f}, "
          f"{(d > 0).mean() * 100:.3f}% of values differ")


def skip_nonref(path: Path, repeat: int) -> None:
    from lsld_engine.media import decode as media

    p = str(path)
    times = {False: float("inf"), True: float("inf")}
    chosen = {}
    for _ in range(repeat):  # interleaved: load from other processes hits both alike
        for flag in (False, True):
            t = time.perf_counter()
            m = media.decode_media(p, audio=False, skip_nonref=flag, frame_fn=lambda f, r: f.time, frame_rule="hold")
            times[flag] = min(times[flag], time.perf_counter() - t)
            chosen[flag] = np.array(m.frames, float)
    err = chosen[False] - chosen[True]
    with __import__("av").open(p) as c:
        step = 1 / float(c.streams.video[0].average_rate)
    print(f"\n2. skip_nonref (skip_frame=NONREF), video decode only, best of {repeat}")
    print(f"   all frames decoded   {times[False] * 1000:8.1f} ms")
    print(f"   non-ref skipped      {times[True] * 1000:8.1f} ms   saving {100 * (1 - times[True] / times[False]):.0f}%")
    print(f"   timing error: {np.mean(err > 0) * 100:.0f}% of the 80 frames show an earlier frame; "
          f"mean {err.mean() * 1000:.1f} ms, max {err.max() * 1000:.1f} ms ({err.max() / step:.0f} source frames)")


def rules(path: Path, repeat: int, device: str) -> None:
    from lsld_engine.media import decode as media
    from lsld_engine.media.raw_planes import decode_raw, raw_to_clip

    p = str(path)
    rows = {}
    for rule in ("hold", "official"):
        rows[f"naive decode_video, {rule}"] = lambda rule=rule: media.decode_video(p, frame_rule=rule)
        rows[f"decode_raw + raw_to_clip, {rule}"] = lambda rule=rule: raw_to_clip(
            [decode_raw(p, frame_rule=rule)], device=device, out="uint8")
    wall = {k: float("inf") for k in rows}
    cpu = dict(wall)
    for _ in range(repeat):
        for k, fn in rows.items():
            c = _cpu_seconds()
            wall[k] = min(wall[k], _time(fn))
            cpu[k] = min(cpu[k], _cpu_seconds() - c)
    print(f"\n4. frame rules, one clip ({path.name}), in-process, best of {repeat}, pixels on {device}")
    print(f"   {'':44s} {'wall ms':>8s} {'CPU ms':>8s} {'CPU x hold':>10s}")
    for k in rows:
        old = k.replace("official", "hold")
        print(f"   {k:<44s} {wall[k] * 1000:8.1f} {cpu[k] * 1000:8.1f} {cpu[k] / cpu[old]:10.2f}")


def _cpu_seconds() -> float:
    """CPU time of this process and of its finished (reaped) children: the decode workers."""
    import resource

    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


def stream(paths: list[Path], workers: int, device: str, group: int) -> tuple[float, float, float, float]:
    """``(naive clips/s, new clips/s, naive CPU s/clip, new CPU s/clip)`` (CPU: all processes)."""
    from lsld_engine.media.pool import DecodeFailure, decode_stream
    from lsld_engine.media.raw_planes import decode_raw, raw_to_clip

    t, c = time.perf_counter(), _cpu_seconds()
    n = 0
    for r in decode_stream(paths, workers=workers):
        assert not isinstance(r, DecodeFailure), r
        n += r.frames.reshape(-1, 224, 224, 3)[:, 0, 0, 0].size  # consume: the CLIP input is ready
    naive = len(paths) / (time.perf_counter() - t)
    naive_cpu = (_cpu_seconds() - c) / len(paths)

    import torch

    threads = torch.get_num_threads()
    if workers:  # the workers keep every core busy: a second torch thread here only oversubscribes
        torch.set_num_threads(max(1, (os.cpu_count() or 1) - workers))
    t, c = time.perf_counter(), _cpu_seconds()
    pending = []
    for r in decode_stream(paths, workers=workers, decode_fn=decode_raw):
        assert not isinstance(r, DecodeFailure), r
        pending.append(r)
        if len(pending) >= group:
            raw_to_clip(pending, device=device, out="uint8")
            pending = []
    if pending:
        raw_to_clip(pending, device=device, out="uint8")
    new = len(paths) / (time.perf_counter() - t)
    new_cpu = (_cpu_seconds() - c) / len(paths)
    torch.set_num_threads(threads)
    return naive, new, naive_cpu, new_cpu


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", type=int, default=12)
    ap.add_argument("--workers", default="0,2", help="comma-separated worker counts (0 = in-process)")
    ap.add_argument("--size", default="640x360")
    ap.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--group", type=int, default=4, help="videos converted per raw_to_clip call")
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "lsld-bench-clips")
    ap.add_argument("--rules-only", action="store_true", help="only section 4 (the frame rules)")
    args = ap.parse_args(argv)
    import torch

    from lsld_engine.media.pixels import default_device

    device = args.device or str(default_device())
    w, h = (int(x) for x in args.size.split("x"))
    paths = bench_clips(args.cache, args.videos, w, h, prefix="pix")
    print(f"clips: {len(paths)} x 10 s {w}x{h} H.264 + AAC; CPUs: {os.cpu_count()}; torch threads "
          f"{torch.get_num_threads()}; pixels on {device}" + (f" ({torch.cuda.get_device_name()})"
                                                               if device.startswith("cuda") else ""))
    if not args.rules_only:
        one_clip(paths[0], args.repeat, device)
        skip_nonref(paths[0], args.repeat)
        print("\n3. clips/s to the CLIP input (80 x 224 x 224 x 3 uint8 per clip), decode_stream")
        print("   wall clips/s, and CPU seconds per clip summed over all processes (robust to other load)")
        print(f"   {'workers':>7s} {'naive':>9s} {'raw+pixels':>11s} {'ratio':>7s} | {'CPU s/clip naive':>16s} "
              f"{'raw+pixels':>11s} {'ratio':>7s}")
        for nw in (int(x) for x in args.workers.split(",")):
            naive, new, naive_cpu, new_cpu = stream(paths, nw, device, args.group)
            print(f"   {nw:>7d} {naive:>9.2f} {new:>11.2f} {new / naive:>6.2f}x | {naive_cpu:>16.3f} {new_cpu:>11.3f} "
                  f"{naive_cpu / new_cpu:>6.2f}x")
    rules(paths[0], args.repeat, device)


if __name__ == "__main__":
    main()
