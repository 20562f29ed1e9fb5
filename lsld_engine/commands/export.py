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
    return 0
