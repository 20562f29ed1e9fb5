"""The one prepared GPU benchmark: PyTorch fast paths vs ONNX Runtime / TensorRT, whatever the card has.

    python -m bench.gpu_export                 # all, ~5-7 min on an H100/H200 (torch.compile dominates)
    python -m bench.gpu_export --quick         # no torch.compile, fewer batch sizes (~2 min)

Random-weight real-size networks: HAN (4 layers), CLIP ViT-B/16 image tower, CLAP HTSAT-tiny audio tower.
Per network and batch: torch eager fp32 (TF32 off), eager fp16 (autocast), torch.compile fp16, CUDA
graphs of the fixed-shape HAN, and ONNX Runtime (CUDA / TensorRT EP) and native TensorRT when
installed (each skipped with the reason otherwise). Prints the card first, then one row per
measurement with items/s, p50/p99 latency and the speed-up over eager fp32. Never asserts timings.
Torch rows start from inputs already on the GPU; ONNX Runtime and TensorRT rows include the
host -> device input copy and the device -> host output copy (what a backend call costs).
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

BATCHES = {"han": (64, 1024), "clip_image": (32, 256), "clap_audio": (16, 64)}
QUICK = {"han": (1024,), "clip_image": (256,), "clap_audio": (64,)}


def cuda_time(fn: Callable[[], object], min_time: float, warmup: int = 3) -> list[float]:
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < 10 or (time.perf_counter() - start < min_time and len(times) < 500):
        t = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return times


class Report:
    def __init__(self):
        self.base: dict[tuple[str, int], float] = {}
        print(f"{'network':<11} {'batch':>5} {'mode':<26} {'items/s':>11} {'p50 ms':>8} {'p99 ms':>8} {'vs eager fp32':>13}",
              flush=True)

    def add(self, net: str, b: int, mode: str, times: list[float]) -> None:
        ips = b / statistics.mean(times)
        if mode == "eager fp32":
            self.base[(net, b)] = ips
        ratio = ips / self.base[(net, b)] if (net, b) in self.base else float("nan")
        print(f"{net:<11} {b:>5} {mode:<26} {ips:>11.1f} {np.percentile(times, 50) * 1e3:>8.2f} "
              f"{np.percentile(times, 99) * 1e3:>8.2f} {ratio:>12.2f}x", flush=True)

    def skip(self, net: str, mode: str, why: str) -> None:
        print(f"{net:<11} {'-':>5} {mode:<26} skipped: {why}", flush=True)


def torch_modes(net: str, module: torch.nn.Module, inputs: list[torch.Tensor], b: int, rep: Report,
                args) -> None:
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    with torch.inference_mode():
        rep.add(net, b, "eager fp32", cuda_time(lambda: module(*inputs), args.min_time))
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        rep.add(net, b, "eager tf32", cuda_time(lambda: module(*inputs), args.min_time))
        for dt, name in ((torch.float16, "fp16"), (torch.bfloat16, "bf16")):
            with torch.autocast("cuda", dtype=dt):
                rep.add(net, b, f"eager {name} autocast", cuda_time(lambda: module(*inputs), args.min_time))
    if not args.quick and b == BATCHES[net][-1]:  # compile once per network, at its largest batch
        try:
            compiled = torch.compile(module, mode=args.compile_mode)
            t = time.perf_counter()
            with torch.inference_mode(), torch.autocast("cuda", dtype=torch.float16):
                compiled(*inputs)
                print(f"[{net}] torch.compile: {time.perf_counter() - t:.0f} s to compile", file=sys.stderr)
                rep.add(net, b, "torch.compile fp16", cuda_time(lambda: compiled(*inputs), args.min_time))
        except Exception as e:  # noqa: BLE001 - a failed compile is a result to report, not a crash
            rep.skip(net, "torch.compile fp16", f"{type(e).__name__}: {str(e)[:120]}")
    if net == "han":
        cuda_graph(net, module, inputs, b, rep, args)


def cuda_graph(net, module, inputs, b, rep, args) -> None:
    """The HAN has fixed shapes per batch size: capture one forward (fp16 autocast) and replay it."""
    static = [x.clone() for x in inputs]
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    # autocast's weight-cast cache must be off while capturing (cached casts would outlive the graph)
    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.float16, cache_enabled=False):
        with torch.cuda.stream(stream):
            for _ in range(3):
                module(*static)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            outputs = module(*static)

    def replay():
        for s, x in zip(static, inputs):
            s.copy_(x, non_blocking=True)
        graph.replay()
        return outputs  # the graph writes into these

    rep.add(net, b, "CUDA graph fp16", cuda_time(replay, args.min_time))


def ort_modes(net: str, engine_dir: Path, np_inputs: list[np.ndarray], b: int, rep: Report, args) -> None:
    try:
        import onnxruntime as ort
    except ImportError:
        return rep.skip(net, "onnxruntime", "not installed")
    have = ort.get_available_providers()
    from lsld_engine.backends.onnx_backend import OnnxBackend

    for prov, prec in (("CUDAExecutionProvider", "fp32"), ("CUDAExecutionProvider", "fp16"),
                       ("TensorrtExecutionProvider", "fp16")):
        mode = f"ORT {prov.replace('ExecutionProvider', '')} {prec}"
        if prov not in have:
            rep.skip(net, mode, f"provider not in this onnxruntime ({', '.join(have)})")
            continue
        try:
            be = OnnxBackend(engine_dir=engine_dir, device="cuda", precision=prec,
                             providers=[prov, "CPUExecutionProvider"])
            s = be.session(net)
            rep.add(net, b, mode, cuda_time(lambda: s.run(*np_inputs), args.min_time))
        except Exception as e:  # noqa: BLE001
            rep.skip(net, mode, f"{type(e).__name__}: {str(e)[:160]}")


def trt_mode(net: str, engine_dir: Path, np_inputs: list[np.ndarray], b: int, rep: Report) -> None:
    from export.tensorrt_build import tensorrt_status

    ok, why = tensorrt_status()
    if not ok:
        return rep.skip(net, "TensorRT fp16", why)
    from lsld_engine.backends.tensorrt_backend import TensorRTBackend
    try:
        e = TensorRTBackend(engine_dir=engine_dir, precision="fp16").engine(net)
        rep.add(net, b, "TensorRT fp16", cuda_time(lambda: e.run(np_inputs), 2.0))
    except Exception as ex:  # noqa: BLE001
        rep.skip(net, "TensorRT fp16", f"{type(ex).__name__}: {str(ex)[:160]}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--networks", nargs="+", default=["han", "clip_image", "clap_audio"])
    p.add_argument("--quick", action="store_true", help="no torch.compile, one batch size per network")
    p.add_argument("--min-time", type=float, default=1.5)
    p.add_argument("--compile-mode", default="default",
                   help="torch.compile mode (max-autotune-no-cudagraphs: ~+10%% on ViT, ~90 s compile each)")
    p.add_argument("--no-onnx", action="store_true", help="skip exporting and ONNX Runtime / TensorRT")
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA device: this benchmark needs a GPU", file=sys.stderr)
        return 2
    from export.networks import build_module, example_inputs, FP32_FRONT_END
    from export.onnx_export import convert_fp16, export_onnx, onnx_filename

    props = torch.cuda.get_device_properties(0)
    print(f"card: {props.name}, {props.total_memory / 2**30:.0f} GiB, sm{props.major}{props.minor}; "
          f"torch {torch.__version__}, CUDA {torch.version.cuda}", flush=True)
    rep = Report()
    tmp = tempfile.TemporaryDirectory()
    engine_dir = Path(tmp.name)
    for net in args.networks:
        module = build_module(net)
        if not args.no_onnx:
            t = time.perf_counter()
            with contextlib.redirect_stdout(sys.stderr):
                p32 = export_onnx(net, module, engine_dir / onnx_filename(net))
                convert_fp16(p32, engine_dir / onnx_filename(net, "fp16"), fp32_before=FP32_FRONT_END.get(net))
            print(f"[{net}] ONNX export {time.perf_counter() - t:.0f} s", file=sys.stderr, flush=True)
        module = module.cuda()
        for b in (QUICK if args.quick else BATCHES)[net]:
            np_inputs = list(example_inputs(net, b, seed=b))
            inputs = [torch.from_numpy(x).cuda() for x in np_inputs]
            torch_modes(net, module, inputs, b, rep, args)
            if not args.no_onnx:
                ort_modes(net, engine_dir, np_inputs, b, rep, args)
                trt_mode(net, engine_dir, np_inputs, b, rep)
        module.cpu()
        torch.cuda.empty_cache()
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
