"""Denoising speed at LLP scale: vectorized DeN + ReW against a straightforward per-video loop.

    python -m bench.denoise_bench [--videos 10000] [--data ROOT] [--no-load] [--repeat 3]

The train split has ``--videos`` videos (real LLP label sets when ../shared/llp is present, else
sampled) with synthetic CLIP/CLAP features in memory (float16 frames, as the files are) and every
prompt embedding cached. Both sides run the same rules on the same arrays; the bench checks that
they agree. Feature loading is timed separately: from ``--data ROOT`` when given, otherwise from a
temporary synthetic root written first (page cache warm), parallel loader vs a sequential
``np.load`` loop. Prints timings and ratios; asserts nothing about time.
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from lsld_engine.synthetic import synth
from lsld_engine.labels._denoise_ref import denoise_reference
from lsld_engine.data.dataset import dataset_paths, load_features, load_split_labels
from lsld_engine.labels.denoise import denoise_labels
from lsld_engine.data.llp import CLASSES, default_llp_dir, load_split


def _problem(n: int, seed: int):
    rng = np.random.default_rng(seed)
    cfg = synth.WorldConfig()
    llp = default_llp_dir()
    if llp is not None:
        weak = load_split(llp, "train").weak
        weak = weak[np.arange(n) % len(weak)]
        source = f"real LLP label sets ({llp})"
    else:
        weak = synth.sample_weak(rng, n, cfg)
        source = "sampled label sets"
    space = synth.build_space(cfg, seed)
    ga, gv = synth.sample_truth(rng, weak, cfg)
    audio = np.empty((n, 10, cfg.dim), np.float32)
    frames = np.empty((n, 80, cfg.dim), np.float16)
    for s in range(0, n, 1000):
        a, f = synth.render(rng, ga[s:s + 1000], gv[s:s + 1000], space)
        audio[s:s + 1000], frames[s:s + 1000] = a.astype(np.float16), f
    tables = synth.world_prompts(space, weak)
    return weak, audio, frames, tables, source


def _best(fn, repeat: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def bench_denoise(n: int, repeat: int, seed: int) -> None:
    weak, audio, frames, tables, source = _problem(n, seed)
    clap, clip = tables["clap"], tables["clip"]
    names = clip.lookup(list(CLASSES))
    print(f"train split: {n} videos, {source}; unique label sets: {len(np.unique(weak, axis=0))}")
    print(f"in memory: audio {audio.shape} {audio.dtype}, frames {frames.shape} {frames.dtype}; "
          f"prompts cached: {len(clap)} CLAP, {len(clip)} CLIP")
    run = lambda: denoise_labels(audio, frames, weak, clap, clip, names)  # noqa: E731
    t = time.perf_counter()
    run()  # first call loads the compiled Numba kernel
    warm = time.perf_counter() - t
    vec, res = _best(run, repeat)
    t = time.perf_counter()
    a, v, vr = denoise_reference(audio, frames, weak, clap, clip, names)
    ref = time.perf_counter() - t
    same = (np.array_equal(res.audio, a) and np.array_equal(res.visual_den, v)
            and np.array_equal(res.visual, vr))
    print(f"\n{'denoise (DeN audio+visual, ReW)':34s} {'seconds':>9s} {'videos/s':>10s}")
    print(f"{'per-video loop (reference)':34s} {ref:9.2f} {n / ref:10.0f}")
    print(f"{'vectorized (best of %d)' % repeat:34s} {vec:9.2f} {n / vec:10.0f}")
    print(f"{'vectorized, first call':34s} {warm:9.2f}")
    print(f"speedup: {ref / vec:.1f}x   identical labels: {same}")


def bench_loading(root: Path, n: int | None) -> None:
    paths = dataset_paths(root)
    ids = load_split_labels(paths, "train").video_ids[:n]
    t = time.perf_counter()
    f = load_features(paths, ids, progress=False)
    par = time.perf_counter() - t
    t = time.perf_counter()
    audio = np.stack([np.load(paths.feature_file("audio", v)).astype(np.float32) for v in ids])
    frames = np.stack([np.load(paths.feature_file("visual", v)) for v in ids])
    seq = time.perf_counter() - t
    assert np.array_equal(audio, f.audio) and np.array_equal(frames, f.frames)
    print(f"\n{'feature loading (%d videos)' % len(ids):34s} {'seconds':>9s} {'videos/s':>10s}")
    print(f"{'sequential np.load + stack':34s} {seq:9.2f} {len(ids) / seq:10.0f}")
    print(f"{'load_features (threads=%d)' % min(16, (os.cpu_count() or 1) * 4):34s} {par:9.2f} {len(ids) / par:10.0f}")
    print(f"speedup: {seq / par:.1f}x   (frames {f.frames.dtype}, {f.frames.nbytes / 2**30:.2f} GiB; "
          f"page cache state not controlled)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.denoise_bench", description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=10000, help="train videos (default 10000, LLP scale)")
    ap.add_argument("--repeat", type=int, default=3, help="vectorized runs; the best is reported")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", type=Path, help="dataset root to time feature loading on (default: a temporary world)")
    ap.add_argument("--no-load", action="store_true", help="skip the feature-loading part")
    args = ap.parse_args(argv)
    print(f"cpus: {os.cpu_count()}  (timings on a shared machine are noisy)")
    bench_denoise(args.videos, args.repeat, args.seed)
    if args.no_load:
        return 0
    if args.data:
        bench_loading(args.data, args.videos)
        return 0
    tmp = Path(tempfile.mkdtemp(prefix="denoise_bench_"))
    try:
        t = time.perf_counter()
        synth.make_world(tmp, n_train=args.videos, n_val=0, n_test=0, seed=args.seed, progress=False)
        print(f"\n(temporary world with {args.videos} train videos written in {time.perf_counter() - t:.1f}s)")
        bench_loading(tmp, args.videos)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
