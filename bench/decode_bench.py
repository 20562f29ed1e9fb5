"""Decode-only throughput: where the CPU time of one clip goes, and videos/s per worker count.

    python -m bench.decode_bench [--videos 12] [--workers 0,1,2] [--size 640x360]

Clips: synthetic 10-s H.264 (textured, crf 23) + AAC stereo 44.1 kHz at 25 fps, written once
with PyAV into a cache folder (``lsld_engine.testing.videos.bench_spec``, like
``shared/anchors/make_videos.py``). Prints:

1. the split of one clip's work, in-process: pure decode (frames chosen, no pixel work) /
   + RGB conversion / + PIL bicubic resize + crop (the full reference pixel step) / audio alone /
   the whole ``decode_video``, plus swscale's bicubic resize for comparison;
2. the hand-over cost of one decoded clip: shared-memory file vs pickling through a pipe;
3. videos/s of ``decode_stream`` per worker count (and shm vs pipe transport), with the ratio
   to in-process decoding;
4. the frame rules side by side: ``decode_video`` with ``frame_rule="hold"`` (the old default),
   ``"official"`` (the new default) and ``"official"`` + JPEG round trip, one clip in-process
   and ``decode_stream`` clips/s with the largest worker count.
Timings are wall-clock and depend on what else runs on the machine; nothing is asserted.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from lsld_engine.media import audio as media_audio, cpu_pixels, decode as media, pool as decode_pool, windows
from lsld_engine.testing.videos import bench_clips


def _best(fn, repeat: int) -> float:
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return min(ts)


def _swscale_crop(frame, rotation):
    w, h = cpu_pixels.clip_size(frame.width, frame.height)
    img = frame.reformat(width=w, height=h, format="rgb24", interpolation="BICUBIC").to_ndarray()
    top, left = (h - media.IMAGE_SIZE) // 2, (w - media.IMAGE_SIZE) // 2
    return img[top: top + media.IMAGE_SIZE, left: left + media.IMAGE_SIZE]


def _drop(frame, rotation):
    return None


def split(path: Path, repeat: int) -> None:
    p = str(path)
    rows = [
        ("decode only (80 frames chosen, not kept)", lambda: media.decode_media(p, audio=False,
                                                                               frame_fn=_drop)),
        ("  (decode, the 80 frames kept)", lambda: media.decode_media(p, audio=False)),
        ("+ RGB (swscale rgb24)", lambda: media.decode_media(p, audio=False, frame_fn=cpu_pixels.rgb_frame)),
        ("+ PIL bicubic resize + crop (reference)", lambda: media.decode_media(p, audio=False,
                                                                              frame_fn=cpu_pixels._clip_frame)),
        ("  (alt: swscale bicubic resize + crop)", lambda: media.decode_media(p, audio=False,
                                                                             frame_fn=_swscale_crop)),
        ("audio alone (decode + resample + mean)", lambda: _audio_only(p)),
        ("decode_video (all of it)", lambda: media.decode_video(p)),
    ]
    # rows interleaved round-robin, best of each: load from other processes hits all rows alike
    times = {name: float("inf") for name, _ in rows}
    for _ in range(repeat):
        for name, fn in rows:
            times[name] = min(times[name], _best(fn, 1))
    base = times[rows[0][0]]
    print(f"\n1) one clip, in-process, best of {repeat} ({path.name}):")
    print(f"   {'step':44s} {'s/clip':>8s} {'x decode':>9s}")
    for name, t in times.items():
        print(f"   {name:44s} {t:8.3f} {t / base:9.2f}")
    full = times["decode_video (all of it)"]
    rgb = times["+ RGB (swscale rgb24)"] - base
    rs = times["+ PIL bicubic resize + crop (reference)"] - times["+ RGB (swscale rgb24)"]
    print(f"   share of decode_video: decode {base / full:.0%}, RGB {rgb / full:.0%}, resize+crop {rs / full:.0%}, "
          f"audio {times['audio alone (decode + resample + mean)'] / full:.0%}")


def _audio_only(p: str):
    with media._open(p) as c:
        return media_audio._decode_audio(c, c.streams.audio[0], p, 0.0, 1)


_FAKE = {}


def fake_decode(path: str, video_id: str, **kw) -> windows.DecodedVideo:
    """decode_fn with no decoding: a ready 10-s DecodedVideo (measures hand-over alone)."""
    if "d" not in _FAKE:
        rng = np.random.default_rng(0)
        _FAKE["d"] = windows.DecodedVideo(path, video_id, 10.0, True,
                                        rng.integers(0, 256, (1, 80, 224, 224, 3), dtype=np.uint8),
                                        rng.standard_normal((1, 10, 48000), dtype=np.float32))
    return _FAKE["d"]


def handover(n: int) -> None:
    """Clips/s that one worker can hand to the consumer, per transport (no decoding)."""
    print(f"\n2) hand-over alone: 1 worker returns {n} ready 10-s clips (13.3 MiB each), "
          f"consumer reads every byte:")
    res = {}
    for tr in ("shm", "pipe"):
        it = decode_pool.decode_stream(iter([("x", "warm")] + [("x", f"v{i}") for i in range(n)]),
                                       workers=1, transport=tr, decode_fn=fake_decode)
        next(it)
        t = time.perf_counter()
        for r in it:
            r.frames.sum(dtype=np.uint64)
        res[tr] = n / (time.perf_counter() - t)
    print(f"   shm: {res['shm']:7.1f} clips/s   pipe (pickle): {res['pipe']:7.1f} clips/s   "
          f"ratio shm/pipe: {res['shm'] / res['pipe']:.2f}")


def throughput(paths: list[Path], n: int, workers: list[int]) -> None:
    tasks = [(paths[i % len(paths)], f"v{i}") for i in range(n)]
    print(f"\n3) decode_stream throughput, {n} clips (decode + RGB + resize + audio), cpus={os.cpu_count()}:")
    print(f"   {'workers':>7s} {'transport':>9s} {'videos/s':>9s} {'vs in-process':>14s}")
    base = None
    configs = [(w, "shm") for w in workers] + [(w, "pipe") for w in workers if w > 0][-1:]
    for w, tr in configs:
        # warm up the worker processes on one clip outside the timing? Spawning is part of real
        # runs, but amortised over thousands of videos: time from the first result on.
        it = decode_pool.decode_stream(iter([tasks[0]] + tasks), workers=w, transport=tr)
        next(it)
        t = time.perf_counter()
        out = list(it)
        dt = time.perf_counter() - t
        assert len(out) == n and not any(isinstance(r, decode_pool.DecodeFailure) for r in out)
        vps = n / dt
        base = base or vps
        print(f"   {w:7d} {tr:>9s} {vps:9.2f} {vps / base:14.2f}")


def rules(paths: list[Path], n: int, workers: int, repeat: int) -> None:
    """The frame rules side by side: one clip in-process (rows interleaved, best of ``repeat``, wall
    and CPU seconds), and ``decode_stream`` clips/s and CPU s/clip of all processes (one run each)."""
    from bench.pixels_bench import _cpu_seconds

    variants = {"hold (old default)": {"frame_rule": "hold"}, "official (new default)": {"frame_rule": "official"},
                "official + JPEG round trip": {"frame_rule": "official", "jpeg_roundtrip": True}}
    p = str(paths[0])
    wall = {k: float("inf") for k in variants}
    cpu = dict(wall)
    for _ in range(repeat):
        for k, kw in variants.items():
            t, c = time.perf_counter(), _cpu_seconds()
            media.decode_video(p, **kw)
            wall[k] = min(wall[k], time.perf_counter() - t)
            cpu[k] = min(cpu[k], _cpu_seconds() - c)
    tasks = [(paths[i % len(paths)], f"v{i}") for i in range(n)]
    vps, spc = {}, {}
    for k, kw in variants.items():
        t, c = time.perf_counter(), _cpu_seconds()
        out = list(decode_pool.decode_stream(iter(tasks), workers=workers, **kw))  # workers reaped at the end
        assert len(out) == n and not any(isinstance(r, decode_pool.DecodeFailure) for r in out)
        vps[k] = n / (time.perf_counter() - t)
        spc[k] = (_cpu_seconds() - c) / n
    b = "hold (old default)"
    print(f"\n4) frame rules: decode_video one clip in-process (best of {repeat}: wall s, CPU s), and "
          f"decode_stream {n} clips with {workers} workers (spawn included: videos/s, CPU s/clip of all processes)")
    print(f"   {'rule':28s} {'wall s':>7s} {'CPU s':>7s} {'x hold':>7s} | {'videos/s':>8s} {'x hold':>7s} "
          f"{'CPU s/clip':>10s} {'x hold':>7s}")
    for k in variants:
        print(f"   {k:28s} {wall[k]:7.3f} {cpu[k]:7.3f} {cpu[k] / cpu[b]:7.2f} | {vps[k]:8.2f} {vps[k] / vps[b]:7.2f} "
              f"{spc[k]:10.3f} {spc[k] / spc[b]:7.2f}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=12, help="clips decoded per throughput row")
    ap.add_argument("--workers", default="0,1,2", help="comma-separated worker counts (0 = in-process)")
    ap.add_argument("--size", default="640x360")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "lsld-bench-clips"))
    ap.add_argument("--rules-only", action="store_true", help="only section 4 (the frame rules)")
    args = ap.parse_args(argv)
    w, h = (int(x) for x in args.size.split("x"))
    t = time.perf_counter()
    paths = bench_clips(Path(args.cache), 4, w, h, prefix="bench")
    print(f"clips: {len(paths)} x 10 s {w}x{h} H.264 25 fps + AAC 44.1 kHz stereo in {args.cache} "
          f"({time.perf_counter() - t:.1f} s to make/find); machine: {os.cpu_count()} CPUs (shared: noisy)")
    if not args.rules_only:
        split(paths[0], args.repeat)
        handover(40)
        throughput(paths, args.videos, [int(x) for x in args.workers.split(",")])
    rules(paths, args.videos, max(int(x) for x in args.workers.split(",")), args.repeat)


if __name__ == "__main__":
    main()
