"""One export folder: ONNX files (fp32, fp16), parity against PyTorch, ``manifest.json``, TensorRT engines."""
from __future__ import annotations

import contextlib
import json
import logging
import sys
import time
from pathlib import Path
from typing import Sequence

from lsld_engine.exporting.networks import FP32_FRONT_END, build_module
from lsld_engine.exporting.onnx_export import OPSET, convert_fp16, describe, export_onnx, onnx_filename
from lsld_engine.exporting.parity import ParityResult, check_parity
from lsld_engine.files import write_text_atomic
from lsld_engine.backends.random_weights import RANDOM_SEED

log = logging.getLogger("lsld_engine.export")


def export_folder(out: Path, networks: Sequence[str], checkpoints: dict[str, str | None], *, small: bool = False,
                  opset: int = OPSET, fp16: bool = False, parity: bool = True,
                  seed: int = RANDOM_SEED) -> list[ParityResult]:
    """Export ``networks`` into ``out`` (``<network>.onnx``, ``.fp16.onnx`` with ``fp16``), check each
    file against its PyTorch module on random inputs at batch sizes 1 and 3 (the export batch is 2)
    and merge their entries (names, shapes, opset, source, parity) into ``out/manifest.json``.

    ``checkpoints``: network -> checkpoint path, ``None`` for random weights of ``seed``
    (:mod:`lsld_engine.backends.random_weights`). Returns the parity results.
    """
    out.mkdir(parents=True, exist_ok=True)
    manifest_path = out / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    all_results: list[ParityResult] = []
    for net in networks:
        ckpt = checkpoints.get(net)
        t0 = time.perf_counter()
        module = build_module(net, checkpoint=ckpt, small=small, seed=seed)
        source = str(Path(ckpt).resolve()) if ckpt else ("random-small" if small else "random")
        files = {"fp32": out / onnx_filename(net, "fp32")}
        # the exporter prints progress to stdout; keep stdout for results
        with contextlib.redirect_stdout(sys.stderr):
            export_onnx(net, module, files["fp32"], opset=opset, metadata={"lsld.source": source})
            if fp16:
                files["fp16"] = convert_fp16(files["fp32"], out / onnx_filename(net, "fp16"),
                                             fp32_before=FP32_FRONT_END.get(net))
        log.info("%s: exported in %.1f s -> %s", net, time.perf_counter() - t0,
                 ", ".join(p.name for p in files.values()))
        entry = {"source": source, **describe(files["fp32"]), "files": {k: p.name for k, p in files.items()}}
        entry.pop("metadata", None)
        if parity:
            results = []
            for prec, path in files.items():
                results += check_parity(net, module, path, precision=prec, batch_sizes=(1, 3))
            entry["parity"] = [r.__dict__ | {"ok": r.ok} for r in results]
            all_results += results
        manifest[net] = entry
    write_text_atomic(manifest_path, json.dumps(manifest, indent=2) + "\n")
    return all_results
