"""Eval benchmark: the Numba LLP metrics vs the plain-Python oracle on the full test split.

    python -m bench.eval_bench [--repeats 50] [--seed 0]

Uses the real LLP test annotations (1,200 videos) when present, otherwise a synthetic split of the
same size (noted in the output). Predictions are the truth perturbed the way a parser errs: event
boundaries shifted by a segment, missed classes, spurious short events. Prints both times, the
ratio and the largest difference between the two results; asserts nothing about timings.
"""
from __future__ import annotations

import argparse
import sys
import time

import numba
import numpy as np

from lsld_engine.evaluation._reference_metrics import evaluate_reference
from lsld_engine.data.llp import NUM_CLASSES, T, default_llp_dir, load_split
from lsld_engine.evaluation.metrics import METRIC_KEYS, PARALLEL_MIN_VIDEOS, evaluate

N_TEST = 1200


def synthetic_truth(rng: np.random.Generator, n: int = N_TEST) -> tuple[np.ndarray, np.ndarray]:
    """``(n, T, C)`` audio and visual truth: 1-3 classes per video, each one contiguous run per track."""
    gt = np.zeros((2, n, T, NUM_CLASSES), np.uint8)
    for i in range(n):
        for c in rng.choice(NUM_CLASSES, size=rng.integers(1, 4), replace=False):
            for k in range(2):
                if rng.random() < 0.8:
                    on = rng.integers(0, T)
                    gt[k, i, on:rng.integers(on + 1, T + 1), c] = 1
    return gt[0], gt[1]


def perturb(gt: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Parser-like errors on ``(N, T, C)`` truth: shifted boundaries, misses, spurious events."""
    n, t, c = gt.shape
    shift = rng.integers(-1, 2, size=(n, 1, c))
    pred = np.where(shift == 0, gt, np.where(shift > 0, np.roll(gt, 1, axis=1), np.roll(gt, -1, axis=1)))
    pred = pred * (rng.random((n, 1, c)) > 0.1)                      # missed classes
    spurious = np.zeros_like(gt)
    vids = np.flatnonzero(rng.random(n) < 0.3)
    starts = rng.integers(0, t - 2, size=vids.size)
    cls = rng.integers(0, c, size=vids.size)
    for k in range(3):                                               # a 3-segment false event
        spurious[vids, starts + k, cls] = 1
    return (pred | spurious).astype(np.uint8)


def _median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(times))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=50, help="timed runs of the Numba evaluate (median)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--synthetic", action="store_true", help="use synthetic truth even when LLP is present")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)

    llp = default_llp_dir()
    if llp is not None and not args.synthetic:
        split = load_split(llp, "test")
        ga, gv = split.gt_audio, split.gt_visual
        source = f"real LLP test annotations ({llp})"
    else:
        ga, gv = synthetic_truth(rng)
        source = ("SYNTHETIC truth (--synthetic)" if args.synthetic else
                  "SYNTHETIC truth (real LLP annotations not found; set LSLD_LLP_DIR)")
    pa, pv = perturb(ga, rng), perturb(gv, rng)
    inputs = (pa, pv, ga, gv)

    t0 = time.perf_counter()
    fast = evaluate(*inputs)  # compile, or load the cached machine code
    evaluate(*inputs, parallel=True)
    first_ms = 1e3 * (time.perf_counter() - t0)
    default_ms = _median_ms(lambda: evaluate(*inputs), args.repeats)
    serial_ms = _median_ms(lambda: evaluate(*inputs, parallel=False), args.repeats)
    parallel_ms = _median_ms(lambda: evaluate(*inputs, parallel=True), args.repeats)
    default_mode = "threaded" if len(ga) >= PARALLEL_MIN_VIDEOS else "1 thread"

    t0 = time.perf_counter()
    ref = evaluate_reference(*inputs)
    ref_ms = 1e3 * (time.perf_counter() - t0)

    diff = max(abs(fast[k] - ref[k]) for k in METRIC_KEYS)
    print(f"eval bench: {len(ga)} videos x {T} segments x {NUM_CLASSES} classes, {source}")
    print("  metrics: " + ", ".join(f"{k}={fast[k]:.2f}" for k in METRIC_KEYS))
    print(f"  numba evaluate, first calls (compile or cache load):       {first_ms:9.2f} ms")
    print(f"  numba evaluate, default = {default_mode} (median of {args.repeats}):   {default_ms:9.3f} ms")
    print(f"  numba evaluate, 1 thread (median of {args.repeats}):               {serial_ms:9.3f} ms")
    print(f"  numba evaluate, {numba.get_num_threads()} threads (median of {args.repeats}):              "
          f"{parallel_ms:9.3f} ms")
    print(f"  python oracle, one run:                                   {ref_ms:9.1f} ms")
    print(f"  ratio oracle / numba default: {ref_ms / default_ms:.0f}x   (1 thread: {ref_ms / serial_ms:.0f}x, "
          f"{numba.get_num_threads()} threads: {ref_ms / parallel_ms:.0f}x)")
    print(f"  max |numba - oracle| over the ten numbers: {diff:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
