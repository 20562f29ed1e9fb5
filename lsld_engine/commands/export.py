"""``lsld-engine export`` (alias ``python -m export``): the command line of :mod:`export`.

Writes one export folder (:func:`lsld_engine.exporting.folder.export_folder`: ONNX files, parity, ``manifest.json``)
and, with ``--tensorrt``, builds TensorRT engines under ``<out>/tensorrt/`` (skipped with a message
when TensorRT or a GPU is absent).
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

_CHECKPOINT_FLAG = {"clip_image": "clip_checkpoint", "clap_audio": "clap_checkpoint", "han": "model"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    from lsld_engine.exporting.networks import NETWORKS
    from lsld_engine.exporting.onnx_export import OPSET

    p.add_argument("--networks", nargs="+", choices=NETWORKS, default=list(NETWORKS), metavar="NET",
                   help=f"which networks to export (default: all of {', '.join(NETWORKS)})")
    p.add_argument("--clip-checkpoint", help="CLIP ViT-B/16 checkpoint (OpenAI ViT-B-16.pt, open_clip .bin/.safetensors)")
    p.add_argument("--clap-checkpoint", help="LAION-CLAP checkpoint (630k-audioset-best.pt)")
    p.add_argument("--model", help="HAN checkpoint (ours .safetensors or the official LSLD.pt)")
    p.add_argument("--out", required=True, type=Path, help="output folder (the backends' engine_dir)")
    p.add_argument("--opset", type=int, default=OPSET, help=f"ONNX opset (default {OPSET}, the tested one)")
    p.add_argument("--fp16", action="store_true", help="also write <network>.fp16.onnx (fp16 inside, fp32/uint8 I/O)")
    p.add_argument("--tensorrt", action="store_true",
                   help="also build TensorRT engines (fp16 with --fp16, else fp32); needs tensorrt and a GPU")
    p.add_argument("--random-weights", action="store_true",
                   help="use random weights for networks without a checkpoint (tests, benchmarks)")
    p.add_argument("--small", action="store_true",
                   help="the small test architectures (random weights or test checkpoints of that size)")
    p.add_argument("--no-parity", action="store_true", help="skip the ONNX Runtime vs PyTorch check")
    from lsld_engine.backends.quantize import MIN_COSINE, MIN_MEAN_COSINE

    p.add_argument("--precision", choices=("fp32", "int8"), default="fp32",
                   help="int8: also write <out>/int8/ with int8 CLIP / CLAP towers (CPU, ONNX Runtime) and its "
                        "fidelity report fidelity.json (docs/export.md)")
    p.add_argument("--calibrate", nargs="+", default=None, metavar="VIDEOS",
                   help="int8: static (QDQ) quantization calibrated on these videos / folders, which also feed "
                        "the fidelity report (default: dynamic int8, report on generated clips)")
    p.add_argument("--min-mean-cosine", type=float, default=MIN_MEAN_COSINE,
                   help=f"int8 gate: least mean cosine to fp32 per tower (default {MIN_MEAN_COSINE})")
    p.add_argument("--min-cosine", type=float, default=MIN_COSINE,
                   help=f"int8 gate: least cosine to fp32 of any frame / segment (default {MIN_COSINE})")
    p.add_argument("--force", action="store_true", help="int8: keep an engine below the gate (it loads only with "
                                                        "--force-int8)")


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("onnx_ir").setLevel(logging.WARNING)  # per-initializer chatter of the exporter's optimiser
    from lsld_engine.exporting.folder import export_folder
    from lsld_engine.exporting.parity import assert_parity, format_results

    for net in args.networks:
        if not getattr(args, _CHECKPOINT_FLAG[net]) and not args.random_weights:
            flag = "--" + _CHECKPOINT_FLAG[net].replace("_", "-")
            raise SystemExit(f"lsld-engine export: {net} needs {flag} PATH (or --random-weights for a test export)")
    out: Path = args.out
    all_results = export_folder(out, args.networks, {n: getattr(args, f) for n, f in _CHECKPOINT_FLAG.items()},
                                small=args.small, opset=args.opset, fp16=args.fp16, parity=not args.no_parity)
    if all_results:
        print(format_results(all_results))
    if args.tensorrt:
        from export.tensorrt_build import build_engines, tensorrt_status

        ok, why = tensorrt_status()
        if not ok:
            print(f"TensorRT engines skipped: {why}", file=sys.stderr)
        else:
            for path in build_engines(out, args.networks, "fp16" if args.fp16 else "fp32"):
                print(f"TensorRT engine: {path}")
    assert_parity(all_results)
    if args.precision == "int8":
        _quantize(args, out)
    return 0


def _quantize(args: argparse.Namespace, out: Path) -> None:
    """``<out>/int8/`` from the fp32 files just written; prints the fidelity report; below the gate
    a :class:`~lsld_engine.backends.quantize.FidelityError` (one line, exit 2) unless ``--force``."""
    from lsld_engine.backends.quantize import INT8_SUBDIR, gate, quantize_folder

    dst = out / INT8_SUBDIR
    report = quantize_folder(out, dst, method="static" if args.calibrate else "dynamic", calibration=args.calibrate,
                             min_mean_cosine=args.min_mean_cosine, min_cosine=args.min_cosine, force=True,
                             max_windows=3 if args.calibrate else 1)
    print(report.format_text())
    print(f"int8 engine: {dst}")
    if not args.force:
        gate(report, dst)
