"""Export one network to ONNX: pinned opset, dynamic batch axis, weights embedded, checker clean.

Files (``out_dir``): ``<network>.onnx`` (fp32) and ``<network>.fp16.onnx`` (fp16 weights and maths,
float32/uint8 inputs and outputs so callers never change dtype). Input/output names and shapes are
documented in :mod:`lsld_engine.exporting.networks` and ``docs/export.md``.

External data: the dynamo exporter can write ``model.onnx`` + ``model.onnx.data``. All three networks
are far below protobuf's 2 GiB limit (ViT-B/16 image tower ~350 MB fp32), so we *embed* the weights:
one self-contained file per network that can be copied, hashed and cached on its own. A model that
would not fit is written with its weights in ``<file>.data`` beside it (ship both) — see
:func:`save_model`.
"""
from __future__ import annotations

import logging
import os
from collections import deque
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from lsld_engine.exporting.networks import IO, check_network, example_inputs
from lsld_engine import registry

log = logging.getLogger(__name__)

#: Pinned ONNX opset (LayerNormalization needs >= 17; 18 is supported by ONNX Runtime >= 1.14 and
#: the TensorRT 10 ONNX parser).
OPSET: int = 18
#: Batch size of the traced example: not 1, so tracing cannot treat the batch axis as a broadcast 1.
EXPORT_BATCH: int = 2
BATCH_AXIS: str = "batch"
_PROTO_LIMIT = 2 ** 31 - 1

PRECISIONS = ("fp32", "fp16")


class ExportError(RuntimeError):
    """The exported graph is not what the engine needs (e.g. its batch axis got fixed)."""


def onnx_filename(network: str, precision: str = "fp32") -> str:
    """``han.onnx`` / ``han.fp16.onnx``."""
    check_network(network)
    if precision not in PRECISIONS:
        raise ValueError(f"ONNX precision must be one of {PRECISIONS}, got {precision!r}")
    return registry.onnx_filename(network, precision)


def export_onnx(network: str, module: nn.Module, path: str | os.PathLike, *, opset: int = OPSET,
                metadata: dict[str, str] | None = None) -> Path:
    """Trace ``module`` (``forward(*inputs)`` per :data:`lsld_engine.exporting.networks.IO`) with the dynamo exporter
    and write ``path``; verifies the batch axis stayed dynamic and runs ``onnx.checker``."""
    io = IO[check_network(network)]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    args = tuple(torch.from_numpy(x) for x in example_inputs(network, EXPORT_BATCH))
    batch = torch.export.Dim(BATCH_AXIS, min=1)
    with torch.inference_mode(False), torch.no_grad():
        program = torch.onnx.export(
            module.eval(), args, None, input_names=list(io.inputs), output_names=list(io.outputs),
            opset_version=opset, dynamo=True, dynamic_shapes=tuple({0: batch} for _ in args),
            optimize=True, verbose=False)
    model = program.model_proto
    _check_dynamic_batch(model, path)
    _strip_node_metadata(model)
    meta = {"lsld.network": network, "lsld.precision": "fp32", "lsld.torch": torch.__version__,
            **(metadata or {})}
    _set_metadata(model, meta)
    save_model(model, path)
    onnx.checker.check_model(str(path), full_check=True)
    return path


def convert_fp16(src: str | os.PathLike, dst: str | os.PathLike, *, fp32_before: str | None = None) -> Path:
    """fp16 copy of the fp32 file ``src``: fp16 weights and activations, the original float32/uint8
    inputs and outputs (casts at the edges).

    ``fp32_before``: a torch module scope (e.g. ``"audio_branch.bn0"``); every node upstream of the
    first node in that scope stays fp32. CLAP needs this: its int16 quantisation needs 15 bits and
    its power spectrum |X|^2 reaches ~2.6e5, beyond fp16's range (65504)."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(src))
    blocked = _upstream_of_scope(model.graph, fp32_before) if fp32_before else []
    # Stale fp32 value_info around the blocked nodes would contradict the new types.
    del model.graph.value_info[:]
    model16 = convert_float_to_float16(model, keep_io_types=True, node_block_list=blocked or None,
                                       disable_shape_infer=False)
    _toposort(model16.graph)  # the converter appends its Cast nodes at the end
    meta = {p.key: p.value for p in model.metadata_props}
    meta["lsld.precision"] = "fp16"
    _set_metadata(model16, meta)
    dst = Path(dst)
    save_model(model16, dst)
    onnx.checker.check_model(str(dst), full_check=True)
    return dst


def _upstream_of_scope(graph: onnx.GraphProto, scope: str) -> list[str]:
    """Names of all nodes that feed (transitively) the first node whose scope contains ``scope``."""
    start = next((n for n in graph.node if scope in _scope(n)), None)
    if start is None:
        raise ExportError(f"no node in torch scope {scope!r}: cannot choose the fp32 front end")
    producer = {o: n for n in graph.node for o in n.output}
    seen: set[str] = set()
    stack = [producer[i] for i in start.input if i in producer]
    while stack:
        n = stack.pop()
        if n.name in seen:
            continue
        seen.add(n.name)
        stack.extend(producer[i] for i in n.input if i in producer)
    return sorted(seen)


def save_model(model: onnx.ModelProto, path: Path) -> Path:
    """Write ``model`` with weights embedded, or to ``<path>.data`` when it exceeds 2 GiB."""
    for stale in (path, path.with_name(path.name + ".data")):
        stale.unlink(missing_ok=True)
    if model.ByteSize() < _PROTO_LIMIT:
        onnx.save_model(model, str(path))
    else:
        onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=path.name + ".data", size_threshold=1024)
    return path


def describe(path: str | os.PathLike) -> dict:
    """Names, shapes (``"batch"`` for the dynamic axis) and ONNX dtypes of a file's inputs/outputs."""
    model = onnx.load(str(path), load_external_data=False)

    def info(v: onnx.ValueInfoProto) -> dict:
        t = v.type.tensor_type
        return {"name": v.name, "dtype": onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name,
                "shape": [d.dim_param or d.dim_value for d in t.shape.dim]}

    return {"inputs": [info(v) for v in model.graph.input], "outputs": [info(v) for v in model.graph.output],
            "opset": next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
            "metadata": {p.key: p.value for p in model.metadata_props}}


# --- helpers ---------------------------------------------------------------------------------------

def _check_dynamic_batch(model: onnx.ModelProto, path: Path) -> None:
    # torch.onnx falls back silently to a specialised trace when a guard fixes the batch; such a
    # file runs only at the example batch size, so refuse it here rather than fail in production.
    for v in list(model.graph.input) + list(model.graph.output):
        d0 = v.type.tensor_type.shape.dim[0]
        if not d0.dim_param:
            raise ExportError(
                f"{path.name}: axis 0 of {v.name!r} was fixed to {d0.dim_value} while tracing, so the "
                f"file would run only at batch {d0.dim_value}; some Python int() / chunk() on a batch-"
                f"dependent size in the model needs a tensor-friendly form (slicing, integer tensor ops)")
        d0.dim_param = BATCH_AXIS  # one readable name for the batch axis everywhere


def _strip_node_metadata(model: onnx.ModelProto) -> None:
    # Keep the module scopes (fp16 conversion uses them); drop stack traces with local file paths.
    for n in model.graph.node:
        keep = [(p.key, p.value) for p in n.metadata_props if p.key in ("namespace", "pkg.torch.onnx.name_scopes")]
        del n.metadata_props[:]
        for k, v in keep:
            n.metadata_props.add(key=k, value=v)


def _scope(node: onnx.NodeProto) -> str:
    """The torch module scope the dynamo exporter recorded for ``node`` ('' when absent)."""
    for p in node.metadata_props:
        if p.key == "namespace":
            return p.value
    return node.name


def _set_metadata(model: onnx.ModelProto, meta: dict[str, str]) -> None:
    del model.metadata_props[:]
    for k, v in meta.items():
        model.metadata_props.add(key=k, value=str(v))


def _toposort(graph: onnx.GraphProto) -> None:
    """Reorder ``graph.node`` topologically (ONNX requires it; converters may append nodes)."""
    produced_by: dict[str, int] = {}
    for i, n in enumerate(graph.node):
        for o in n.output:
            produced_by[o] = i
    deps = [{produced_by[x] for x in n.input if x in produced_by} for n in graph.node]
    users: list[list[int]] = [[] for _ in graph.node]
    for i, d in enumerate(deps):
        for j in d:
            users[j].append(i)
    missing = [len(d) for d in deps]
    ready = deque(i for i, m in enumerate(missing) if m == 0)
    order: list[int] = []
    while ready:
        i = ready.popleft()
        order.append(i)
        for u in users[i]:
            missing[u] -= 1
            if missing[u] == 0:
                ready.append(u)
    if len(order) != len(graph.node):
        raise ExportError("graph has a cycle after fp16 conversion")
    nodes = [graph.node[i] for i in order]
    del graph.node[:]
    graph.node.extend(nodes)


def random_like_inputs(network: str, batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    """``{input name: array}`` of random example inputs (see :func:`lsld_engine.exporting.networks.example_inputs`)."""
    return dict(zip(IO[network].inputs, example_inputs(network, batch, seed=seed)))
