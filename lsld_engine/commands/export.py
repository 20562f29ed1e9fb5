"""``lsld-engine export`` (= ``python -m export``): CLIP image, CLAP audio and HAN to ONNX / TensorRT.

Writes ``<out>/<network>.onnx`` (and ``.fp16.onnx`` with ``--fp16``), checks each file against its
PyTorch module on random inputs at batch sizes 1 and 3 (the export batch is 2), writes
``<out>/manifest.json`` (names, shapes, opset, sources, parity) and, with ``--tensorrt``, builds
TensorRT engines under ``<out>/tensorrt/`` (skipped with a message when TensorRT or a GPU is absent).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
import time
from pathlib import Path

log = logging.getLogger("lsld_engine.export")

_CHECKPOINT_FLAG = {"clip_image": "clip_checkpoint", "clap_audio": "clap_checkpoint", "han": "model"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    from export.networks import NETWORKS
    from export.onnx_export import OPSET

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
    from export.networks import FP32_FRONT_END, build_module
    from export.onnx_export import convert_fp16, describe, export_onnx, onnx_filename
    from export.parity import assert_parity, check_parity, format_results

    for net in args.networks:
        if not getattr(args, _CHECKPOINT_FLAG[net]) and not args.random_weights:
            flag = "--" + _CHECKPOINT_FLAG[net].replace("_", "-")
            raise SystemExit(f"lsld-engine export: {net} needs {flag} PATH (or --random-weights for a test export)")
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    manifest_path = out / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    all_results = []
    for net in args.networks:
        ckpt = getattr(args, _CHECKPOINT_FLAG[net])
        t0 = time.perf_counter()
        module = build_module(net, checkpoint=ckpt, small=args.small)
        source = str(Path(ckpt).resolve()) if ckpt else ("random-small" if args.small else "random")
        files = {"fp32": out / onnx_filename(net, "fp32")}
        # the exporter prints progress to stdout; keep stdout for results
        with contextlib.redirect_stdout(sys.stderr):
            export_onnx(net, module, files["fp32"], opset=args.opset, metadata={"lsld.source": source})
            if args.fp16:
                files["fp16"] = convert_fp16(files["fp32"], out / onnx_filename(net, "fp16"),
                                             fp32_before=FP32_FRONT_END.get(net))
        log.info("%s: exported in %.1f s -> %s", net, time.perf_counter() - t0,
                 ", ".join(p.name for p in files.values()))
        entry = {"source": source, **describe(files["fp32"]), "files": {k: p.name for k, p in files.items()}}
        entry.pop("metadata", None)
        if not args.no_parity:
            results = []
            for prec, path in files.items():
                results += check_parity(net, module, path, precision=prec, batch_sizes=(1, 3))
            entry["parity"] = [r.__dict__ | {"ok": r.ok} for r in results]
            all_results += results
        manifest[net] = entry
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
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
