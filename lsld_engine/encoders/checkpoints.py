"""Reading encoder checkpoints without executing pickled code, and converting them to safetensors.

Accepted files (format detected from the content, not the suffix):

- ``*.safetensors`` — a flat state dict (our converted files carry metadata, e.g. ``quick_gelu``);
- a ``torch.save`` zip/pickle (``.pt``/``.bin``/``.pth``/``.ckpt``): a state dict, or a dict holding one under
  ``state_dict`` (laion_clap) — read with ``torch.load(weights_only=True)`` only;
- a TorchScript archive (OpenAI's ``ViT-B-16.pt``): its ``data.pkl`` is read by a restricted unpickler
  that only builds tensors and records module attributes; no TorchScript code is compiled or run and
  no arbitrary pickle global is resolved (``weights_only`` refuses these archives outright).
"""
from __future__ import annotations

import os
import pickle
import sys
import zipfile
from pathlib import Path

import torch

from lsld_engine.errors import CheckpointError
from lsld_engine.files import atomic_path

__all__ = ["CheckpointError", "StateDict", "read_state_dict", "read_torchscript_state_dict",
           "strip_prefix", "convert_checkpoint", "is_torchscript_archive"]

StateDict = dict[str, torch.Tensor]


def require_file(path: str | os.PathLike, what: str) -> Path:
    """``path`` as a Path; fail fast naming the file when it does not exist."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"{what} not found: {p} (model weights are never downloaded: "
                                f"pass the path of a local file)")
    return p


def is_torchscript_archive(path: Path) -> bool:
    """True for a TorchScript zip (it has ``<prefix>/code/`` and ``<prefix>/constants.pkl``)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
    return any(n.endswith("/constants.pkl") for n in names) and any("/code/" in n for n in names)


# --- TorchScript archives -------------------------------------------------------------------------

class _ScriptObject:
    """Stand-in for a ``__torch__.*`` module object: keeps the attributes the pickle sets."""

    def __setstate__(self, state):
        self.__dict__["_attrs"] = state if isinstance(state, dict) else {}


_STORAGE_DTYPES = {
    "FloatStorage": torch.float32, "HalfStorage": torch.float16, "BFloat16Storage": torch.bfloat16,
    "DoubleStorage": torch.float64, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}


def _rebuild_tensor(storage, offset, size, stride, requires_grad=False, hooks=None, *extra):
    return storage.as_strided(tuple(size), tuple(stride), offset)


def _identity(value, *_):
    return value


# TorchScript wraps typed lists and tagged containers in these helpers: all are plain data here.
_JIT_PICKLE_HELPERS = {name: _identity for name in
                       ("build_intlist", "build_doublelist", "build_boollist", "build_tensorlist",
                        "build_complexlist", "restore_type_tag")}


class _ScriptUnpickler(pickle.Unpickler):
    """Resolves only tensor-building globals and ``__torch__`` object stubs; anything else is refused."""

    def __init__(self, file, zf: zipfile.ZipFile, prefix: str, source: Path):
        super().__init__(file)
        self._zf, self._prefix, self._source = zf, prefix, source
        self._storages: dict[str, torch.Tensor] = {}

    def find_class(self, module, name):
        if module.startswith("__torch__"):
            return type(name, (_ScriptObject,), {})
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return _rebuild_tensor
        if module == "torch._utils" and name == "_rebuild_parameter":
            return _identity
        if module == "torch" and name in _STORAGE_DTYPES:
            return _STORAGE_DTYPES[name]
        if module == "torch.jit._pickle" and name in _JIT_PICKLE_HELPERS:
            return _JIT_PICKLE_HELPERS[name]
        if module == "collections" and name == "OrderedDict":
            import collections
            return collections.OrderedDict
        raise CheckpointError(f"{self._source}: TorchScript archive references {module}.{name}, "
                              "which a weights-only reader does not resolve")

    def persistent_load(self, pid):
        kind, dtype, key, _location, numel = pid[:5]
        if kind != "storage" or not isinstance(dtype, torch.dtype):
            raise CheckpointError(f"{self._source}: unexpected persistent id {pid!r}")
        if key not in self._storages:
            raw = bytearray(self._zf.read(f"{self._prefix}/data/{key}"))
            flat = torch.frombuffer(raw, dtype=dtype) if raw else torch.empty(0, dtype=dtype)
            if sys.byteorder != "little":
                raise CheckpointError(f"{self._source}: big-endian hosts are not supported")
            self._storages[key] = flat[:numel]
        return self._storages[key]


def _collect(obj, prefix: str, out: StateDict) -> None:
    for k, v in getattr(obj, "_attrs", {}).items():
        name = f"{prefix}{k}"
        if isinstance(v, torch.Tensor):
            out[name] = v
        elif isinstance(v, _ScriptObject):
            _collect(v, name + ".", out)


def read_torchscript_state_dict(path: str | os.PathLike) -> StateDict:
    """Tensors of a TorchScript archive keyed like ``module.state_dict()`` — ``{name: tensor}``.

    Besides parameters and buffers this returns any other tensor attributes (e.g. OpenAI's
    per-block ``attn_mask``); callers keep the keys their network expects.
    """
    p = require_file(path, "TorchScript checkpoint")
    with zipfile.ZipFile(p) as zf:
        pkl = [n for n in zf.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
        if not pkl:
            raise CheckpointError(f"{p}: not a TorchScript archive (no <name>/data.pkl)")
        prefix = pkl[0].split("/")[0]
        with zf.open(pkl[0]) as f:
            root = _ScriptUnpickler(f, zf, prefix, p).load()
        out: StateDict = {}
        _collect(root, "", out)
    if not out:
        raise CheckpointError(f"{p}: TorchScript archive holds no tensors")
    # Detach from the shared storage buffers so each tensor owns compact memory.
    return {k: v.clone() for k, v in out.items()}


# --- generic reader -------------------------------------------------------------------------------

def strip_prefix(state: StateDict, prefix: str = "module.") -> StateDict:
    """Drop a DataParallel/DDP ``module.`` prefix when every key has it."""
    if state and all(k.startswith(prefix) for k in state):
        return {k[len(prefix):]: v for k, v in state.items()}
    return state


def read_state_dict(path: str | os.PathLike, what: str = "checkpoint") -> tuple[StateDict, dict[str, str]]:
    """``(state dict, metadata)`` from any accepted file; ``metadata`` is ``{}`` unless safetensors/TorchScript.

    TorchScript archives report ``{"source": "torchscript"}``. ``module.`` prefixes are stripped.
    """
    p = require_file(path, what)
    with open(p, "rb") as f:
        head = f.read(16)
    if p.suffix == ".safetensors" or (len(head) >= 9 and head[8:9] == b"{"):
        from safetensors import safe_open
        try:
            with safe_open(str(p), framework="pt") as f:
                meta = dict(f.metadata() or {})
                state = {k: f.get_tensor(k) for k in f.keys()}
        except Exception as e:  # safetensors raises its own error types
            raise CheckpointError(f"{p}: unreadable safetensors file ({e})") from e
        return strip_prefix(state), meta
    if is_torchscript_archive(p):
        return strip_prefix(read_torchscript_state_dict(p)), {"source": "torchscript"}
    if not (head[:4] == b"PK\x03\x04" or head[:1] == b"\x80"):  # torch.save: zip archive or legacy pickle
        raise CheckpointError(f"{p}: not a {what} file: neither safetensors, TorchScript nor a torch.save file "
                              f"(zip archive or pickle); corrupt, truncated or another format?")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        msg = str(e)  # torch's text is long; keep the part that names what was refused
        if "WeightsUnpickler error:" in msg:
            msg = msg[msg.find("WeightsUnpickler error:"):].split("Check the documentation")[0].split(" Please use")[0]
        raise CheckpointError(
            f"{p}: refused by torch.load(weights_only=True) — it pickles objects other than tensors "
            f"({' '.join(msg.split())[:200]}). Re-save its state dict (dict of tensors) and retry.") from e
    except Exception as e:
        raise CheckpointError(f"{p}: not a readable torch checkpoint ({type(e).__name__}: {e})") from e
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{p}: expected a state dict (name -> tensor), optionally under 'state_dict'; "
                              f"got {type(obj).__name__}")
    return strip_prefix(dict(obj)), {}


def convert_checkpoint(src: str | os.PathLike, dst: str | os.PathLike, *,
                       metadata: dict[str, str] | None = None) -> Path:
    """Rewrite any accepted checkpoint ``src`` as a safetensors file ``dst`` (done once, then load ``dst``).

    Keeps dtypes (OpenAI's fp16 stays fp16). A TorchScript source is recorded as
    ``quick_gelu="true"`` (OpenAI CLIP weights need QuickGELU), so loading ``dst`` picks the right
    activation without being told. Writes to a temporary name and renames.
    """
    from safetensors.torch import save_file

    state, meta = read_state_dict(src)
    out_meta = {"converted_from": Path(src).name, "source": meta.get("source", "state_dict")}
    if "quick_gelu" in meta:
        out_meta["quick_gelu"] = meta["quick_gelu"]
    elif meta.get("source") == "torchscript" and "visual.conv1.weight" in state:
        out_meta["quick_gelu"] = "true"
    out_meta.update(metadata or {})
    # safetensors wants contiguous, non-aliased tensors.
    state = {k: v.detach().contiguous().clone() for k, v in state.items()}
    dst = Path(dst)
    with atomic_path(dst) as tmp:
        save_file(state, str(tmp), metadata={k: str(v) for k, v in out_meta.items()})
    return dst


def metadata_flag(meta: dict[str, str], key: str) -> bool | None:
    """``True``/``False`` for a ``"true"``/``"false"`` metadata entry, ``None`` when absent."""
    v = meta.get(key)
    if v is None:
        return None
    if v.strip().lower() not in ("true", "false"):
        raise CheckpointError(f"checkpoint metadata {key!r} must be \"true\" or \"false\", got {v[:40]!r}")
    return v.strip().lower() == "true"
