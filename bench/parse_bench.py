"""End-to-end videos/s of `parse` and `extract`: the overlapped pipeline vs a serial loop, side by side.

    python -m bench.parse_bench [--videos 8] [--workers 2] [--size small|real] [--toy]
                                [--device cpu|cuda] [--precision fp32|fp16|bf16] [--batch-size N]

Clips: synthetic 10-s 640x360 textured H.264 + AAC (``lsld_engine.testing.videos.bench_spec``),
written once into a cache folder. Networks: random-weight CLIP / CLAP towers (``--size small`` by
default on CPU: the real ViT-B/16 costs ~0.35 s per image on 2 cores, i.e. ~30 s per clip) and a
random HAN; ``--toy`` swaps the towers for the cheap toy encoders of ``lsld_engine.testing.backends``
(measures the pipeline itself when decoding dominates, as it does with a GPU).

For each of parse and extract it prints videos/s of

- **serial**: for each video, decode in this process -> embed its 80 frames and 10 segments ->
  HAN -> events -> write (extract: -> write the .npy files); the simple loop;
- **pipeline**: ``lsld_engine.parsing.parse.parse_videos`` / ``lsld_engine.parsing.extract.extract_features``:
  decoding in ``--workers`` processes, batches across videos, encoder overlapped with decoding;

and the ratio. Both sides use the same warmed-up backend. Wall-clock timings depend on what else
runs on the machine; nothing is asserted.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from lsld_engine.parsing.video_inputs import assign_ids
from lsld_engine.testing.videos import bench_clips


def build_backend(args):
    if args.toy:
        from lsld_engine.testing.backends import ToyBackend

        return ToyBackend()
    from lsld_engine.backends import create_backend

    opts = {"random_weights": True, "size": args.size, "device": args.device, "precision": args.precision}
    if args.batch_size:
        opts["batch_sizes"] = {"images": args.batch_size, "audio": max(1, args.batch_size // 4)}
    be = create_backend("torch", **opts)
    be.warm_up()
    return be


def serial_parse(items, backend, writer) -> None:
    from lsld_engine.parsing.embed import embed_videos
    from lsld_engine.media import decode_video
    from lsld_engine.parsing.parse import failure_record, run_han, video_record
    from lsld_engine.media.pool import DecodeFailure
    from lsld_engine.media import MediaError

    for it in items:
        try:
            d = decode_video(it.path, it.video_id)
        except MediaError as e:
            writer.write(failure_record(DecodeFailure(it.path, it.video_id, str(e))))
            continue
        e = embed_videos([d], backend)[0]
        writer.write(video_record(e, run_han(backend, [e])[0]))


def serial_extract(items, backend, store) -> None:
    from lsld_engine.parsing.embed import embed_videos
    from lsld_engine.media import decode_video

    for it in items:
        store.write(embed_videos([decode_video(it.path, it.video_id)], backend)[0])


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def best_of(repeat: int, serial, pipeline) -> tuple[float, float]:
    """Best wall time of each side over ``repeat`` alternating runs (noise on a shared machine only
    ever adds time)."""
    s = q = float("inf")
    for _ in range(max(1, repeat)):
        s = min(s, timed(serial))
        q = min(q, timed(pipeline))
    return s, q


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.parse_bench", description=__doc__.splitlines()[0])
    p.add_argument("--videos", type=int, default=8)
    p.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    p.add_argument("--size", choices=("small", "real"), default="small")
    p.add_argument("--toy", action="store_true", help="toy encoders (pipeline cost only)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="fp32")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--only", choices=("parse", "extract"), default=None)
    p.add_argument("--repeat", type=int, default=1, help="alternate serial / pipeline runs N times, keep each best")
    p.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "lsld-parse-bench")
    args = p.parse_args(argv)

    from lsld_engine.parsing.extract import FeatureStore, extract_features
    from lsld_engine.parsing.parse import parse_videos
    from lsld_engine.records.writers import JsonlWriter

    print(f"machine: {platform.node()} {os.cpu_count()} CPUs; device {args.device} {args.precision}; "
          f"networks: {'toy encoders' if args.toy else f'random {args.size} CLIP/CLAP towers'} + random HAN; "
          f"{args.videos} clips of 10 s 640x360 H.264+AAC; pipeline workers {args.workers}", flush=True)
    t = time.perf_counter()
    paths = bench_clips(args.cache / "clips", args.videos)
    items = assign_ids(paths)
    print(f"clips ready in {time.perf_counter() - t:.1f} s", flush=True)
    backend = build_backend(args)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        with JsonlWriter(tmp / "warm.jsonl") as w:  # warm-up: kernels, allocator, lazy imports
            serial_parse(items[:1], backend, w)
        rows = []
        if args.only in (None, "parse"):
            def parse_serial():
                with JsonlWriter(tmp / "serial.jsonl") as w:
                    serial_parse(items, backend, w)

            def parse_pipe():
                with JsonlWriter(tmp / "pipe.jsonl") as w:
                    parse_videos(items, backend, w, workers=args.workers, progress=False)
            rows.append(("parse", *best_of(args.repeat, parse_serial, parse_pipe)))
        if args.only in (None, "extract"):
            rows.append(("extract", *best_of(
                args.repeat, lambda: serial_extract(items, backend, FeatureStore(tmp / "serial")),
                lambda: extract_features(items, backend, FeatureStore(tmp / "pipe"), workers=args.workers,
                                         progress=False))))
    n = len(items)
    print(f"{'command':<8} {'serial videos/s':>16} {'pipeline videos/s':>18} {'ratio':>7}")
    for name, s, q in rows:
        print(f"{name:<8} {n / s:16.2f} {n / q:18.2f} {s / q:6.2f}x")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
