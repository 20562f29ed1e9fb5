"""Exported ONNX models against their PyTorch modules on random inputs.

Error measures, per output tensor ``y`` (torch) vs ``y'`` (ONNX Runtime):

- ``max_abs = max |y' - y|``;
- ``max_rel = max |y' - y| / max |y|`` — relative to the output's scale, not element-wise (element-wise
  ratios explode on values near zero, e.g. a probability of 1e-7 or an embedding coordinate of 0).

Bounds: fp32 files on the ONNX Runtime CPU provider must agree to ``max_rel <= 1e-4``
(:data:`FP32_REL_BOUND`). fp16 files compute in half precision (10-bit mantissa, ~5e-4 per rounding,
accumulated over the depth of the network): their bound is :data:`FP16_REL_BOUND` (2e-2), and for the
HAN the thresholded events must be identical except where the torch probability lies within the fp16
error of a threshold (:func:`event_mismatches`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import nn

from lsld_engine.exporting.networks import IO, example_inputs

FP32_REL_BOUND: float = 1e-4
FP16_REL_BOUND: float = 2e-2


@dataclass(frozen=True)
class ParityResult:
    """Agreement of one output of one exported file at one batch size."""

    network: str
    precision: str
    batch: int
    output: str
    max_abs: float
    max_rel: float
    bound: float

    @property
    def ok(self) -> bool:
        return self.max_rel <= self.bound

    def row(self) -> str:
        return (f"{self.network:<11} {self.precision:<5} {self.batch:>5} {self.output:<12} "
                f"{self.max_abs:>10.3e} {self.max_rel:>10.3e} {self.bound:>8.1e}  {'ok' if self.ok else 'FAIL'}")


HEADER = f"{'network':<11} {'prec':<5} {'batch':>5} {'output':<12} {'max_abs':>10} {'max_rel':>10} {'bound':>8}"


def bound_for(precision: str) -> float:
    return FP32_REL_BOUND if precision == "fp32" else FP16_REL_BOUND


def run_torch(module: nn.Module, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """``module(*inputs)`` on CPU in fp32 -> list of float32 numpy outputs."""
    with torch.inference_mode():
        out = module(*(torch.from_numpy(np.ascontiguousarray(x)) for x in inputs))
    out = out if isinstance(out, (tuple, list)) else (out,)
    return [o.float().numpy() for o in out]


def cpu_session(path: str | os.PathLike, precision: str = "fp32"):
    """An ONNX Runtime CPU session; see :func:`lsld_engine.backends.onnx_backend.session_options`."""
    import onnxruntime as ort

    from lsld_engine.backends.onnx_backend import session_options
    return ort.InferenceSession(str(path), session_options(precision=precision, on_cpu=True),
                                providers=["CPUExecutionProvider"])


def compare(network: str, precision: str, batch: int, names: Sequence[str], ref: Sequence[np.ndarray],
            out: Sequence[np.ndarray], bound: float | None = None) -> list[ParityResult]:
    bound = bound_for(precision) if bound is None else bound
    results = []
    for name, r, o in zip(names, ref, out):
        if r.shape != o.shape:
            raise AssertionError(f"{network} {precision}: output {name!r} has shape {o.shape}, torch {r.shape}")
        diff = float(np.abs(o.astype(np.float64) - r).max())
        scale = max(float(np.abs(r).max()), 1e-12)
        results.append(ParityResult(network, precision, batch, name, diff, diff / scale, bound))
    return results


def check_parity(network: str, module: nn.Module, onnx_path: str | os.PathLike, *, precision: str = "fp32",
                 batch_sizes: Sequence[int] = (1, 3), seed: int = 0, session=None) -> list[ParityResult]:
    """Run the file and the module on the same random inputs at each batch size (pick sizes other
    than the export batch, 2, to prove the batch axis is really dynamic)."""
    sess = session or cpu_session(onnx_path, precision)
    names = IO[network]
    results: list[ParityResult] = []
    for i, b in enumerate(batch_sizes):
        inputs = example_inputs(network, b, seed=seed + i)
        ref = run_torch(module, inputs)
        out = sess.run(list(names.outputs), dict(zip(names.inputs, inputs)))
        results.extend(compare(network, precision, b, names.outputs, ref, out))
    return results


def event_mismatches(ref: dict[str, np.ndarray], out: dict[str, np.ndarray], tolerance: float,
                     threshold: float = 0.5) -> tuple[int, int]:
    """Thresholded HAN events (``events.predict_masks``) of ``out`` vs ``ref`` (dicts with
    ``seg_prob``, ``a_prob``, ``v_prob``) -> ``(unexplained, near_threshold)`` mismatch counts.

    A mismatch is *explained* when a probability that decides it (segment or video level) lies within
    ``tolerance`` of the threshold in the reference; anything else is a real disagreement."""
    from lsld_engine.records.events import predict_masks

    ra, rv = predict_masks(ref["seg_prob"], ref["a_prob"], ref["v_prob"], threshold, threshold)
    oa, ov = predict_masks(out["seg_prob"], out["a_prob"], out["v_prob"], threshold, threshold)
    near_seg = np.abs(ref["seg_prob"] - threshold) <= tolerance                     # (N, T, 2, C)
    near_a = near_seg[:, :, 0] | (np.abs(ref["a_prob"] - threshold) <= tolerance)[:, None, :]
    near_v = near_seg[:, :, 1] | (np.abs(ref["v_prob"] - threshold) <= tolerance)[:, None, :]
    diff_a, diff_v = ra != oa, rv != ov
    unexplained = int((diff_a & ~near_a).sum() + (diff_v & ~near_v).sum())
    near = int((diff_a & near_a).sum() + (diff_v & near_v).sum())
    return unexplained, near


def assert_parity(results: Sequence[ParityResult]) -> None:
    bad = [r for r in results if not r.ok]
    if bad:
        raise AssertionError("ONNX parity failed:\n" + HEADER + "\n" + "\n".join(r.row() for r in bad))


def format_results(results: Sequence[ParityResult]) -> str:
    return "\n".join([HEADER] + [r.row() for r in results])
