"""The CLIP / CLAP towers on CPU, per runtime: torch fp32 / bf16, ONNX Runtime fp32 / int8 (dynamic, QDQ).

    python -m bench.cpu_towers_bench                          # real-size ViT-B/16 + HTSAT-tiny, random weights
    python -m bench.cpu_towers_bench --batches 1 16 --min-time 5 --engine-dir /tmp/fp32-export

Per tower, batch size and runtime: items/s (median call), the ratio to torch fp32 eager, the cosine
of the embeddings to torch fp32 (min / mean over the batch), and the arithmetic rate reached:
GFLOP/s (fp32, bf16) or GOP/s (int8 rows) from a FLOP count against the CPU's peak for that data type.

Inputs are real pixels / audio of generated clips (moving texture and tones, decoded like ``parse``
does), not noise, so static calibration and the cosines see what the towers see in use.

FLOP count: :class:`torch.utils.flop_counter.FlopCounterMode` over one forward at batch 1 (matmuls,
convolutions, attention; 2 FLOP per multiply-add; elementwise ops are not counted; run with
grad enabled so attention does not take the fused path the counter cannot see). ViT-B/16 comes
out at 35.1 GFLOP = 17.6 GMAC per image. int8 rows use the same count (their fp32 remainder included),
so "GOP/s" is the whole network's operations per second, not only the int8 ones.

Peak (per core, per cycle), from the CPU family in /proc/cpuinfo: AMD Zen 4 (family 25) runs 512-bit
ops on two 256-bit FMA pipes: 32 fp32 FLOP (2 x 8 lanes x FMA), 64 bf16 FLOP (VDPBF16PS), 128 int8
OP (VPDPBUSD, 2 x 32 MACs); Zen 5 (family 26) and AVX-512 Intel cores with two 512-bit FMA units:
64 / 128 / 256. Clock: ``--ghz`` (default: the "cpu MHz" of /proc/cpuinfo, the VM's nominal clock;
boost clocks are higher, so the peak is an estimate, possibly low). All runtimes are called in turn
for each measurement, so all see the same load. Timings on a shared machine are indications.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

TOWERS = ("clip_image", "clap_audio")
RUNTIMES = ("torch fp32", "torch bf16", "torch bf16 w", "ORT fp32", "ORT int8 dyn", "ORT int8 QDQ")
DTYPE = {"torch fp32": "fp32", "torch bf16": "bf16", "torch bf16 w": "bf16", "ORT fp32": "fp32", "ORT int8 dyn": "int8",
         "ORT int8 QDQ": "int8"}
#: "torch bf16" is autocast; "torch bf16 w" holds CLIP's weights in bf16 (what `auto` runs on a
#: native-bf16 CPU; ``ClipImageEncoder.cast_weights``), CLIP only


def cpu_peak(ghz: float | None, cores: int) -> tuple[dict[str, float], str]:
    """``({dtype: peak GFLOP/s or GOP/s}, assumption)`` for ``cores`` cores."""
    family, mhz = None, None
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k.strip() == "cpu family" and family is None:
                family = int(v)
            elif k.strip() == "cpu MHz" and mhz is None:
                mhz = float(v)
    from lsld_engine.hardware import _cpu_flags

    flags = _cpu_flags() or set()
    if family == 25:
        per_cycle, arch = {"fp32": 32, "bf16": 64, "int8": 128}, "Zen 4 (2 x 256-bit FMA)"
    elif "avx512f" in flags:
        per_cycle, arch = {"fp32": 64, "bf16": 128, "int8": 256}, "2 x 512-bit FMA"
    else:
        per_cycle, arch = {"fp32": 32, "bf16": 32, "int8": 64}, "AVX2 (2 x 256-bit FMA)"
    ghz = ghz or (mhz / 1000 if mhz else 3.0)
    peak = {k: cores * ghz * v for k, v in per_cycle.items()}
    return peak, (f"{cores} cores x {ghz:.2f} GHz x {per_cycle['fp32']}/{per_cycle['bf16']}/{per_cycle['int8']} "
                  f"fp32/bf16/int8 per cycle ({arch})")


def flops_per_item(module: torch.nn.Module, x: torch.Tensor) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    # with grad enabled: under inference_mode / no_grad nn.MultiheadAttention takes its fused fast
    # path, which the counter does not see (ViT-B/16 then counts 22.5 instead of 35.1 GFLOP)
    with torch.enable_grad(), counter:
        module(x)
    return counter.get_total_flops() / x.shape[0]


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def main(argv: list[str] | None = None) -> int:
    from export.networks import build_module
    from export.onnx_export import export_onnx
    from lsld_engine.backends.onnx_backend import session_options
    from lsld_engine.backends.quantize import CALIBRATION_ITEMS, calibration_windows, quantize_file
    from lsld_engine.hardware import cpu_bf16_support, cpu_int8_support
    from lsld_engine.registry import io_names, onnx_filename
    import onnxruntime as ort

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--towers", nargs="+", default=list(TOWERS), choices=TOWERS)
    p.add_argument("--batches", nargs="+", type=int, default=[1, 16, 64])
    p.add_argument("--runtimes", nargs="+", default=list(RUNTIMES), choices=RUNTIMES,
                   help="the first is the reference of the ratio and cosine columns (default: torch fp32)")
    p.add_argument("--small", action="store_true", help="small test towers (a smoke run, not a measurement)")
    p.add_argument("--engine-dir", type=Path, help="fp32 files of `lsld-engine export` to reuse (same random weights)")
    p.add_argument("--min-time", type=float, default=3.0, help="seconds per runtime and batch (default 3)")
    p.add_argument("--reps", type=int, default=2, help="least timed calls per runtime and batch (default 2)")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="threads for every runtime")
    p.add_argument("--ghz", type=float, default=None, help="clock for the peak (default: /proc/cpuinfo's)")
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    peak, assumption = cpu_peak(args.ghz, args.threads)
    print(f"CPU towers bench: torch {torch.__version__}, onnxruntime {ort.__version__}, {args.threads} threads; "
          f"bf16 native: {cpu_bf16_support()[0]}, int8 VNNI: {cpu_int8_support()[0]}; peak: {assumption} = "
          + ", ".join(f"{k} {v:.0f}" for k, v in peak.items()) + " G/s", flush=True)
    work = tempfile.TemporaryDirectory(prefix="towers-bench-")
    wd = Path(work.name)
    _, _, frames, segments = calibration_windows(None, wd)
    data = {"clip_image": frames.reshape(-1, *frames.shape[2:]), "clap_audio": segments.reshape(-1, segments.shape[-1])}
    print(f"{'tower':<10} {'batch':>5} {'runtime':<13} {'items/s':>8} {'vs first':>8} {'cos min':>8} {'cos mean':>8} "
          f"{'G(FL)OP/s':>9} {'of peak':>7}", flush=True)
    for net in args.towers:
        module = build_module(net, small=args.small)  # the seed export uses: same weights as --engine-dir files
        fp32 = (args.engine_dir / onnx_filename(net)) if args.engine_dir else wd / onnx_filename(net)
        if not fp32.is_file():
            with contextlib.redirect_stdout(sys.stderr):
                export_onnx(net, module, fp32)
        items = data[net]
        items = np.concatenate([items] * -(-max(args.batches) // len(items)))
        files = {"ORT fp32": fp32}
        for rt, method in (("ORT int8 dyn", "dynamic"), ("ORT int8 QDQ", "static")):
            if rt in args.runtimes:
                files[rt] = wd / f"{net}.{method}.onnx"
                t = time.perf_counter()
                quantize_file(net, fp32, files[rt], method, data[net][:: max(1, len(data[net]) // CALIBRATION_ITEMS)])
                print(f"[{net}] {method} int8 in {time.perf_counter() - t:.0f} s", file=sys.stderr, flush=True)
        name = io_names(net)[0][0]
        sessions = {rt: ort.InferenceSession(str(f), session_options(threads=args.threads),
                                             providers=["CPUExecutionProvider"]) for rt, f in files.items()}
        to_torch = torch.from_numpy
        flops = flops_per_item(module, to_torch(items[:1]))
        print(f"[{net}] {flops / 1e9:.2f} GFLOP per item (FlopCounterMode, 2 FLOP per MAC)", file=sys.stderr, flush=True)

        runtimes = [rt for rt in args.runtimes if rt != "torch bf16 w" or net == "clip_image"]
        if "torch bf16 w" in runtimes:
            import copy

            cast = copy.deepcopy(module.owner).cast_weights(torch.bfloat16)

        def run(rt: str, x: np.ndarray) -> np.ndarray:
            if rt in sessions:
                return sessions[rt].run(None, {name: x})[0]
            if rt == "torch bf16 w":
                with torch.inference_mode():
                    return cast(to_torch(x)).float().numpy()
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=rt == "torch bf16"):
                return module(to_torch(x)).float().numpy()

        for b in args.batches:
            x = np.ascontiguousarray(items[:b])
            outs = {rt: run(rt, x) for rt in runtimes}  # warm-up call, kept for the cosines
            times: dict[str, list[float]] = {rt: [] for rt in runtimes}
            start = time.perf_counter()
            while (min(len(t) for t in times.values()) < args.reps
                   or time.perf_counter() - start < args.min_time * len(runtimes)):
                for rt in runtimes:  # in turn: every runtime sees the same load
                    t = time.perf_counter()
                    run(rt, x)
                    times[rt].append(time.perf_counter() - t)
            first = runtimes[0]  # the reference: torch fp32 unless left out
            base = b / statistics.median(times[first])
            ref = outs[first]
            for rt in runtimes:
                ips = b / statistics.median(times[rt])
                c = cosine(ref, outs[rt]) if ref is not None else np.array([np.nan])
                rate = ips * flops / 1e9
                print(f"{net:<10} {b:>5} {rt:<13} {ips:>8.2f} {f'{ips / base:.2f}x':>8} "
                      f"{c.min():>8.5f} {c.mean():>8.5f} {rate:>9.0f} {100 * rate / peak[DTYPE[rt]]:>6.0f}%", flush=True)
    work.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
