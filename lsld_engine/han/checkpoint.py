"""Save and load HAN checkpoints: ours (safetensors + config) and the official ``LSLD.pt``.

Our format: ``<name>.safetensors`` holding the plain ``state_dict`` with the :class:`HANConfig` as
JSON in the safetensors metadata (key ``han_config``), plus ``<name>.json`` beside it for people.

The official ``LSLD.pt`` is a ``torch.save`` dict: ``model`` (the ``MMIL_Net`` state dict) plus
optimizer / scheduler / RNG entries, the numpy RNG state among them. It is read with
``torch.load(weights_only=True)`` allowing only the numpy globals an ndarray / numpy scalar needs
(:data:`NUMPY_SAFE_GLOBALS`); anything else in the pickle is refused with a message naming it.
Plain weights-only torch files (a bare state dict, or a dict with ``state_dict``) load too.
"""
from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import torch

from lsld_engine.errors import CheckpointError
from lsld_engine.files import atomic_path, write_text_atomic
from lsld_engine.han.model import HAN, HANConfig

try:  # numpy >= 2
    from numpy._core.multiarray import _reconstruct, scalar
except ImportError:  # numpy 1.x
    from numpy.core.multiarray import _reconstruct, scalar

#: Keys under which a training checkpoint may hold the model's state dict (official: ``model``).
STATE_DICT_KEYS: tuple[str, ...] = ("model", "state_dict", "model_state_dict")

_DTYPE_CLASSES = [type(np.dtype(t)) for t in (
    np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64,
    np.float16, np.float32, np.float64)]
#: What an ndarray or numpy scalar in a torch.save pickle needs (``np.random.get_state()`` holds a
#: uint32 array and Python/numpy scalars). Both numpy 1.x (``numpy.core``) and 2.x (``numpy._core``)
#: spellings of the reconstructors are allowed, so files written under either numpy load.
NUMPY_SAFE_GLOBALS: list = [
    np.ndarray, np.dtype, *_DTYPE_CLASSES,
    _reconstruct, (_reconstruct, "numpy.core.multiarray._reconstruct"),
    scalar, (scalar, "numpy.core.multiarray.scalar"),
]


def save_han(model: HAN, path: str | os.PathLike, extra: dict | None = None) -> Path:
    """Write ``model``'s state dict to ``path`` (``.safetensors``) and its config to ``path.json``.

    ``extra`` (JSON-serialisable) goes into the side JSON only (e.g. the training epoch).
    """
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        path = path.with_suffix(".safetensors")
    cfg = model.config.to_dict()
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    side = {"han_config": cfg, **(extra or {})}
    # Temp name + rename: training rewrites this file every time validation improves, and a kill
    # mid-write must leave the previous checkpoint intact.
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={"han_config": json.dumps(cfg), "format": "lsld-engine/han-v1"})
    write_text_atomic(path.with_suffix(".json"), json.dumps(side, indent=2) + "\n")
    return path


def read_han_file(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict | None]:
    """``(state_dict, han_config or None)`` from one of our safetensors files or a torch file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    with open(path, "rb") as f:
        head = f.read(9)
    if path.suffix == ".safetensors" or (len(head) == 9 and head[8:9] == b"{"):
        return _read_safetensors(path)
    if not (head[:4] == b"PK\x03\x04" or head[:1] == b"\x80"):  # torch.save: zip archive or legacy pickle
        raise CheckpointError(f"{path}: not a checkpoint: neither a safetensors file nor a torch.save file "
                              f"(zip archive or pickle); corrupt, truncated or another format?")
    return _read_torch(path), None


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict | None]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises its own error types
        raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from e
    cfg = None
    if "han_config" in meta:
        from lsld_engine.records.untrusted import InputFileError, json_line

        try:
            cfg = json_line(meta["han_config"], f"{path} (metadata han_config)")
        except InputFileError as e:
            raise CheckpointError(str(e)) from None
        if not isinstance(cfg, dict):
            raise CheckpointError(f"{path}: metadata han_config must be a JSON object, got {type(cfg).__name__}")
    return state, cfg


def _read_torch(path: Path) -> dict[str, torch.Tensor]:
    try:
        with torch.serialization.safe_globals(NUMPY_SAFE_GLOBALS):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        msg = str(e)
        # torch's message is long; keep the part that names the refused global.
        if "WeightsUnpickler error:" in msg:
            detail = msg[msg.find("WeightsUnpickler error:"):].split("Check the documentation")[0].split(" Please use")[0]
            detail = " ".join(detail.split())[:300]
        else:
            detail = msg[:300]
        raise CheckpointError(
            f"{path}: refused to unpickle (weights_only=True allows tensors, containers and numpy "
            f"arrays/scalars only): {detail.strip()}") from None
    except Exception as e:  # noqa: BLE001 - a corrupt file can fail anywhere in the unpickler
        raise CheckpointError(f"{path}: not a torch checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a dict (a state dict, or a training checkpoint with "
                              f"a 'model' entry), got {type(obj).__name__}")
    for key in STATE_DICT_KEYS:
        if key in obj:
            state = obj[key]
            if not isinstance(state, dict):
                raise CheckpointError(f"{path}: entry {key!r} is a {type(state).__name__}, expected a state dict")
            break
    else:
        state = obj
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{path}: no model state dict found: expected one of the entries "
                              f"{list(STATE_DICT_KEYS)} or a flat dict of tensors; non-tensor entries "
                              f"{bad[:5]} (top-level keys: {sorted(map(str, obj))[:10]})")
    # Checkpoints saved from nn.DataParallel prefix every key with "module.".
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def infer_config(state: dict[str, torch.Tensor], path: str | os.PathLike = "<state dict>", **overrides) -> HANConfig:
    """A :class:`HANConfig` matching the shapes in an official-layout state dict.

    ``nhead`` cannot be read from shapes; it stays 1 (the official value) unless overridden.
    """
    try:
        layers = {int(k.split(".")[2]) for k in state if k.startswith("hat_encoder.layers.")}
        fields = dict(
            num_layers=max(layers) + 1 if layers else 0,
            d_model=state["fc_a.weight"].shape[0],
            audio_dim=state["fc_a.weight"].shape[1],
            visual_dim=state["fc_v.weight"].shape[1],
            num_classes=state["fc_prob.weight"].shape[0],
        )
        if layers:
            fields["dim_feedforward"] = state["hat_encoder.layers.0.linear1.weight"].shape[0]
    except KeyError as e:
        raise CheckpointError(f"{path}: missing key {e.args[0]!r}: not an HAN/MMIL_Net state dict") from None
    fields.update(overrides)
    return HANConfig(**fields)


def load_state_into(model: HAN, state: dict[str, torch.Tensor], path: str | os.PathLike = "<state dict>") -> HAN:
    """``model.load_state_dict(state, strict=True)`` after checking keys and shapes with clear errors."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys {missing[:5]}{' ...' if len(missing) > 5 else ''}")
        if unexpected:
            parts.append(f"unexpected keys {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}")
        raise CheckpointError(f"{path}: does not match the HAN ({model.config.num_layers} layers): "
                              + "; ".join(parts))
    for k, v in expected.items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise CheckpointError(f"{path}: key {k!r} has shape {tuple(state[k].shape)}, the HAN expects "
                                  f"{tuple(v.shape)}")
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    return model


def load_han(path: str | os.PathLike, *, config: HANConfig | None = None, map_location: str = "cpu", **overrides) -> HAN:
    """A :class:`HAN` in eval mode from our ``.safetensors`` checkpoint, the official ``LSLD.pt`` or a
    weights-only torch state dict. The architecture comes from ``config``, else the file's stored
    config, else the state dict's shapes (``overrides``: :class:`HANConfig` fields such as ``nhead``)."""
    state, stored = read_han_file(path)
    if config is None:
        if stored is not None:
            config = HANConfig.from_dict({**stored, **overrides})
        else:
            config = infer_config(state, path, **overrides)
    model = load_state_into(HAN(config=config), state, path)
    return model.to(map_location).eval()


__all__ = ["CheckpointError", "NUMPY_SAFE_GLOBALS", "infer_config", "load_han", "load_state_into",
           "read_han_file", "save_han"]
