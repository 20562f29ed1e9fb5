"""ONNX Runtime (the ``onnx`` backend) vs torch eager on CPU, per network and batch size.

    python -m bench.export_bench                      # HAN + real-size ViT-B/16 (random weights)
    python -m bench.export_bench --networks han clap_audio --batches 1 16 64

Prints, per network and batch size: items/s and per-call latency p50/p99 for both, and the ratio
ORT/torch (>1: ONNX Runtime faster); the two are called alternately so both see the same load. Exports into a temporary folder unless --engine-dir holds files.
Timings are wall-clock on a shared machine: read them as indications, not specs. Never asserts.
"""
from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

DEFAULT_BATCHES = {"han": (1, 16, 256), "clip_image": (1, 8, 32), "clap_audio": (1, 4, 16)}


def measure_pair(fa: Callable[[], object], fb: Callable[[], object], *, min_time: float, max_reps: int = 200,
                 warmup: int = 2) -> tuple[list[float], list[float]]:
    """Seconds per call of ``fa`` and ``fb``, called alternately (so both see the same load on a
    shared machine): at least 5 calls each, until ``2 * min_time`` seconds or ``max_reps``."""
    for _ in range(warmup):
        fa()
        fb()
    ta: list[float] = []
    tb: list[float] = []
    start = time.perf_counter()
    while len(ta) < 5 or (time.perf_counter() - start < 2 * min_time and len(ta) < max_reps):
        for fn, times in ((fa, ta), (fb, tb)):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
    return ta, tb


def pct(times: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(times), q))


def main(argv: list[str] | None = None) -> int:
    from export.networks import build_module, example_inputs
    from export.onnx_export import export_onnx, onnx_filename
    from lsld_engine.backends.onnx_backend import OnnxBackend

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--networks", nargs="+", default=["han", "clip_image"], choices=list(DEFAULT_BATCHES))
    p.add_argument("--batches", nargs="+", type=int, help="batch sizes (default: per network)")
    p.add_argument("--small", action="store_true", help="small test configs for the encoders")
    p.add_argument("--engine-dir", type=Path, help="reuse exported files here (else a temporary export)")
    p.add_argument("--min-time", type=float, default=3.0, help="seconds per measurement (default 3)")
    p.add_argument("--threads", type=int, default=torch.get_num_threads(), help="threads for both runtimes")
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    import onnxruntime as ort
    print(f"CPU bench: torch {torch.__version__} ({args.threads} threads), onnxruntime {ort.__version__}; "
          f"shared machine, timings are noisy", flush=True)
    tmp = tempfile.TemporaryDirectory() if args.engine_dir is None else None
    engine_dir = args.engine_dir or Path(tmp.name)
    header = (f"{'network':<11} {'batch':>5} | {'torch it/s':>10} {'p50 ms':>8} {'p99 ms':>8} | "
              f"{'ORT it/s':>10} {'p50 ms':>8} {'p99 ms':>8} | {'ORT/torch':>9}")
    rows = []
    for net in args.networks:
        module = build_module(net, small=args.small and net != "han")
        path = engine_dir / onnx_filename(net)
        if not path.is_file():
            t = time.perf_counter()
            with contextlib.redirect_stdout(sys.stderr):
                export_onnx(net, module, path)
            print(f"[{net}] exported in {time.perf_counter() - t:.1f} s", file=sys.stderr)
        backend = OnnxBackend(engine_dir=engine_dir, threads=args.threads)
        session = backend.session(net)
        for b in args.batches or DEFAULT_BATCHES[net]:
            inputs = example_inputs(net, b, seed=b)
            tensors = [torch.from_numpy(x) for x in inputs]

            def run_torch():
                with torch.inference_mode():
                    module(*tensors)

            tt, to = measure_pair(run_torch, lambda: session.run(*inputs), min_time=args.min_time)
            it_t, it_o = b / statistics.mean(tt), b / statistics.mean(to)
            row = (f"{net:<11} {b:>5} | {it_t:>10.1f} {pct(tt, 50) * 1e3:>8.2f} {pct(tt, 99) * 1e3:>8.2f} | "
                   f"{it_o:>10.1f} {pct(to, 50) * 1e3:>8.2f} {pct(to, 99) * 1e3:>8.2f} | {it_o / it_t:>8.2f}x")
            rows.append(row)
            print(row if len(rows) > 1 else header + "\n" + row, flush=True)
        backend.close()
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
