"""One registry of the networks lsld-engine runs: what each takes and gives, how it is loaded, how it exports.

Entries are plain data; their builders are import paths resolved only when :func:`build` is called,
so importing this module pulls in neither open_clip, laion_clap, transformers nor the HAN.

>>> from lsld_engine import registry
>>> enc = registry.build("clip_image", "ViT-B-16.pt")                 # real weights, local file
>>> enc = registry.build("clap_audio", None, size="small")            # random weights, test size
>>> registry.get_network("clap_audio").inputs[0].shape
('B', 48000)
"""
from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from typing import Any, Mapping

from lsld_engine.contract import CLIP_EMBED_DIM, FRAMES_PER_WINDOW, IMAGE_SIZE, SAMPLE_RATE, SAMPLES_PER_SEGMENT
from lsld_engine.data.llp import NUM_CLASSES, T

__all__ = ["TensorSpec", "NetworkSpec", "NETWORKS", "EXPORTED", "HAN_OUTPUTS", "get_network", "list_networks",
           "io_names", "onnx_filename", "build", "resolve"]

#: Output order of the HAN (as ``HAN.forward`` returns them; every backend's ``parse`` returns these).
HAN_OUTPUTS: tuple[str, ...] = ("global_prob", "a_prob", "v_prob", "seg_prob")
#: The networks of the parse pipeline: what ``lsld-engine export`` writes (``<name>.onnx``) and the
#: backends run.
EXPORTED: tuple[str, ...] = ("clip_image", "clap_audio", "han")


@dataclass(frozen=True)
class TensorSpec:
    """One input or output: ``shape`` uses ``"B"`` for the dynamic batch axis."""

    name: str
    shape: tuple[str | int, ...]
    dtype: str
    note: str = ""


@dataclass(frozen=True)
class NetworkSpec:
    """A network lsld-engine runs.

    ``builder`` (random weights) and ``loader`` (from a checkpoint) are ``"module:function"`` paths;
    ``sizes`` maps ``"real"``/``"small"`` to the keyword arguments that select the architecture
    (``small`` runs the same code path with thin layers, for tests).
    """

    name: str
    family: str
    description: str
    builder: str
    loader: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    checkpoint_formats: tuple[str, ...]
    sizes: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    sample_rate: int | None = None
    export_notes: str = ""


_CLIP_FORMATS = ("open_clip / OpenAI state dict: .bin .pt .pth (torch.save, read weights_only) or .safetensors",
                 "OpenAI TorchScript archive ViT-B-16.pt (read by a restricted unpickler, never executed)")
_CLAP_FORMATS = ("laion_clap checkpoint: torch.save dict with 'state_dict' (keys 'module.'-prefixed), "
                 "e.g. 630k-audioset-best.pt; read weights_only",
                 "a flat state dict (.pt/.bin) or .safetensors with the same keys")

NETWORKS: dict[str, NetworkSpec] = {s.name: s for s in [
    NetworkSpec(
        name="clip_image", family="clip",
        description="CLIP ViT-B/16 image tower (open_clip architecture), CLIP mean/std normalisation inside",
        builder="lsld_engine.encoders.clip:build_clip_image_encoder",
        loader="lsld_engine.encoders.clip:build_clip_image_encoder",
        inputs=(TensorSpec("images", ("B", IMAGE_SIZE, IMAGE_SIZE, 3), "uint8", "RGB, shortest side resized to 224 "
                           "(bicubic) and centre-cropped; or (B, 3, 224, 224) float in [0, 1]"),),
        outputs=(TensorSpec("embedding", ("B", CLIP_EMBED_DIM), "float32", "before L2 normalisation"),),
        checkpoint_formats=_CLIP_FORMATS,
        sizes={"real": {"config": "ViT-B-16"}, "small": {"config": "small"}},
        export_notes="Export the module itself (uint8 NHWC in, normalisation included); dynamic batch axis. "
                     "QuickGELU (x*sigmoid(1.702x)) for OpenAI weights exports as elementwise ops.",
    ),
    NetworkSpec(
        name="clip_text", family="clip",
        description="CLIP ViT-B/16 text tower (open_clip's bundled BPE tokenizer, context 77)",
        builder="lsld_engine.encoders.clip:build_clip_text_encoder",
        loader="lsld_engine.encoders.clip:build_clip_text_encoder",
        inputs=(TensorSpec("tokens", ("B", 77), "int64", "from ClipTextEncoder.tokenize; "
                           "encode_texts(list[str]) does both"),),
        outputs=(TensorSpec("embedding", ("B", 512), "float32", "before L2 normalisation"),),
        checkpoint_formats=_CLIP_FORMATS,
        sizes={"real": {"config": "ViT-B-16"}, "small": {"config": "small"}},
        export_notes="Only needed offline (prompt embeddings are cached); not exported.",
    ),
    NetworkSpec(
        name="clap_audio", family="clap",
        description="LAION-CLAP HTSAT-tiny audio tower + audio_projection (enable_fusion=False)",
        builder="lsld_engine.encoders.clap:build_clap_audio_encoder",
        loader="lsld_engine.encoders.clap:build_clap_audio_encoder",
        inputs=(TensorSpec("segments", ("B", SAMPLES_PER_SEGMENT), "float32", "mono 1-s segments at 48 kHz; int16 "
                           "round trip and repeat-padding to 480000 samples happen inside"),),
        outputs=(TensorSpec("embedding", ("B", 512), "float32", "L2-normalised (as laion_clap returns); "
                            "normalize=False gives the raw projection"),),
        checkpoint_formats=_CLAP_FORMATS, sample_rate=SAMPLE_RATE,
        sizes={"real": {"config": "HTSAT-tiny"}, "small": {"config": "small"}},
        export_notes="forward = prepare_audio -> log_mel -> forward_from_mel; torchlibrosa STFT/log-mel are "
                     "conv-based and export, or export forward_from_mel from (B, 1, 1001, 64) log-mel. "
                     "window_reverse is patched to integer batch arithmetic (no batch baked in). Keep the "
                     "log-mel in fp32 for fp16 engines (power spectra exceed fp16 range).",
    ),
    NetworkSpec(
        name="clap_text", family="clap",
        description="LAION-CLAP RoBERTa-base text tower + text_projection; needs a local tokenizer folder",
        builder="lsld_engine.encoders.clap:build_clap_text_encoder",
        loader="lsld_engine.encoders.clap:build_clap_text_encoder",
        inputs=(TensorSpec("input_ids", ("B", 77), "int64"), TensorSpec("attention_mask", ("B", 77), "int64")),
        outputs=(TensorSpec("embedding", ("B", 512), "float32", "L2-normalised (as laion_clap returns)"),),
        checkpoint_formats=_CLAP_FORMATS,
        sizes={"real": {"config": "HTSAT-tiny"}, "small": {"config": "small"}},
        export_notes="Only needed offline (prompt embeddings are cached); not exported. "
                     "build(..., text_dir=FOLDER) with vocab.json + merges.txt (+ optional config.json).",
    ),
    NetworkSpec(
        name="han", family="han",
        description="HAN / MMIL audio-visual video parser (lsld_engine.han.model)",
        builder="lsld_engine.han.model:build_han",
        loader="lsld_engine.han.checkpoint:load_han",
        inputs=(TensorSpec("audio", ("B", T, CLIP_EMBED_DIM), "float32", "CLAP segment features"),
                TensorSpec("frames", ("B", FRAMES_PER_WINDOW, CLIP_EMBED_DIM), "float32",
                           "CLIP frame features, 8 fps")),
        outputs=tuple(TensorSpec(n, ("B", T, 2, NUM_CLASSES) if n == "seg_prob" else ("B", NUM_CLASSES), "float32")
                      for n in HAN_OUTPUTS),
        checkpoint_formats=("lsld-engine HAN checkpoints and the official LSLD.pt (see lsld_engine.han.checkpoint)",),
        sizes={"real": {"num_layers": 4}, "small": {"num_layers": 1}},
        export_notes="Fixed shapes apart from batch: suits CUDA graphs / TensorRT profiles.",
    ),
]}


def list_networks() -> list[str]:
    """Registered network names."""
    return list(NETWORKS)


def get_network(name: str) -> NetworkSpec:
    """The :class:`NetworkSpec` called ``name`` (``clip-image`` is read as ``clip_image``); a KeyError
    lists the known names."""
    try:
        return NETWORKS[name.replace("-", "_")]
    except KeyError:
        raise KeyError(f"unknown network {name!r}; known: {', '.join(NETWORKS)}") from None


def io_names(name: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(input names, output names)`` of network ``name``, in call / return order."""
    spec = get_network(name)
    return tuple(t.name for t in spec.inputs), tuple(t.name for t in spec.outputs)


def onnx_filename(network: str, precision: str = "fp32") -> str:
    """``han.onnx`` / ``han.fp16.onnx``: the file name ``lsld-engine export`` writes and the backends read."""
    return f"{network}.onnx" if precision == "fp32" else f"{network}.{precision}.onnx"


def resolve(path: str):
    """Import ``"module:function"`` lazily."""
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


def build(name: str, checkpoint: str | os.PathLike | None = None, *, size: str = "real", **kwargs):
    """Build network ``name`` from a local ``checkpoint`` (or random weights when ``None``).

    ``size`` picks the architecture (``"real"`` or ``"small"``); ``kwargs`` go to the builder/loader
    (e.g. ``device``, ``precision``, ``text_dir`` for ``clap_text``) and override the size's settings.
    """
    spec = get_network(name)
    if size not in spec.sizes:
        raise KeyError(f"{name}: unknown size {size!r}; known: {', '.join(spec.sizes)}")
    args = {**spec.sizes[size], **kwargs}
    if spec.family == "han":
        if checkpoint is None:
            return resolve(spec.builder)(**args)
        # A HAN checkpoint carries its own layer count: the size's settings do not apply.
        return resolve(spec.loader)(checkpoint, **kwargs)
    return resolve(spec.loader if checkpoint is not None else spec.builder)(checkpoint, **args)
