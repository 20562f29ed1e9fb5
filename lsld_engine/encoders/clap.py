"""LAION-CLAP towers: HTSAT-tiny audio (+ projection) and RoBERTa text (+ projection), built offline.

The audio tower reuses laion_clap's HTSAT code (imported without the package ``__init__``, see
:mod:`lsld_engine.encoders._laion`); the text tower is transformers' ``RobertaModel`` built from a
config, never ``from_pretrained`` on the hub. Both load their keys from one laion_clap checkpoint
(``630k-audioset-best.pt``: ``{"state_dict": {"module.audio_branch...": ...}, ...}``).

Audio preparation, exactly as ``CLAP_Module.get_audio_embedding_from_data`` with ``enable_fusion=False``
does for a clip shorter than its 10-s input (see :func:`prepare_audio`), then log-mel (torchlibrosa,
Hann window 1024, hop 480, 64 mels, 50-14000 Hz, power -> dB with ref 1, amin 1e-10, no top_db),
HTSAT's ``embedding`` (mean-pooled last layer, ``(B, 768)``), the 2-layer ReLU MLP
``audio_projection`` ``(B, 512)``, and L2 normalisation (as the laion_clap API returns).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lsld_engine.encoders.checkpoints import CheckpointError, StateDict, read_state_dict
from lsld_engine.encoders.clip import load_into
from lsld_engine.encoders.runtime import (batched_numpy, check_precision, full_precision, load_config,
                                          resolve_device)

log = logging.getLogger(__name__)

CLAP_CONFIGS = {"HTSAT-tiny": "clap_htsat_tiny", "small": "clap_small"}
CLAP_SAMPLE_RATE = 48000
CLAP_INPUT_SAMPLES = 480000  # laion_clap's fixed 10-s model input
# Files a --clap-text-dir needs (a Hugging Face `roberta-base` snapshot has them).
TEXT_DIR_FILES = ("vocab.json", "merges.txt")


# --- audio preparation -----------------------------------------------------------------------------

def quantize_int16(x: torch.Tensor) -> torch.Tensor:
    """laion_clap's int16 round trip: clip to [-1, 1], ``* 32767``, truncate toward zero, ``/ 32767``.

    Bit-identical to ``int16_to_float32(float32_to_int16(x))`` on float32 input.
    """
    return torch.trunc(x.float().clamp(-1.0, 1.0) * 32767.0) / 32767.0


def repeat_pad(x: torch.Tensor, length: int = CLAP_INPUT_SAMPLES) -> torch.Tensor:
    """laion_clap's ``repeatpad``: ``(B, L) -> (B, length)``: tile ``length // L`` times, zero-pad the rest.

    A 1-s segment at 48 kHz becomes ten exact copies. Inputs longer than ``length`` are refused:
    laion_clap would crop them at a random offset (non-deterministic features).
    """
    n = x.shape[-1]
    if n > length:
        raise ValueError(f"CLAP audio input has {n} samples; at most {length} (10 s at 48 kHz) are allowed — "
                         "split longer audio into segments first")
    if n == 0:
        raise ValueError("CLAP audio input is empty (0 samples)")
    reps = length // n
    x = x.repeat(1, reps) if reps > 1 else x
    return F.pad(x, (0, length - n * reps)) if n * reps < length else x


def prepare_audio(segments: torch.Tensor, quantize: bool = True) -> torch.Tensor:
    """``(B, L)`` mono 48-kHz float waveforms (``L <= 480000``) -> ``(B, 480000)`` model input."""
    x = quantize_int16(segments) if quantize else segments.float()
    return repeat_pad(x)


# --- towers -----------------------------------------------------------------------------------------

class ClapAudioEncoder(nn.Module):
    """HTSAT audio tower + projection.

    ``forward(segments (B, L) float32, 48 kHz mono, L <= 480000; 48000 for LSLD's 1-s segments)``
    -> ``(B, 512)`` embeddings, L2-normalised when ``normalize`` (the default, as laion_clap returns).
    Split as ``prepare`` -> :meth:`log_mel` -> :meth:`forward_from_mel` for export.
    """

    def __init__(self, audio_branch: nn.Module, audio_projection: nn.Module, *, quantize: bool = True,
                 normalize: bool = True):
        super().__init__()
        self.audio_branch = audio_branch
        self.audio_projection = audio_projection
        self.quantize = quantize
        self.normalize = normalize
        self.device = torch.device("cpu")
        self.precision = "fp32"

    def log_mel(self, waveform: torch.Tensor) -> torch.Tensor:
        """``(B, 480000)`` -> ``(B, 1, 1001, 64)`` log-mel, always in fp32 (power spectra overflow fp16)."""
        with full_precision(waveform.device.type):
            x = self.audio_branch.spectrogram_extractor(waveform.float())
            return self.audio_branch.logmel_extractor(x)

    def forward_from_mel(self, mel: torch.Tensor) -> torch.Tensor:
        """``(B, 1, 1001, 64)`` log-mel -> ``(B, 512)``: HTSAT's eval path for ``enable_fusion=False``."""
        net = self.audio_branch
        x = net.bn0(mel.transpose(1, 3)).transpose(1, 3)
        x = net.reshape_wav2img(x)
        emb = net.forward_features(x)["embedding"]
        out = self.audio_projection(emb)
        return F.normalize(out, dim=-1) if self.normalize else out

    def forward(self, segments: torch.Tensor) -> torch.Tensor:
        return self.forward_from_mel(self.log_mel(prepare_audio(segments, self.quantize)))

    def embed(self, segments: np.ndarray | torch.Tensor, batch_size: int = 32) -> np.ndarray:
        """``(B, L)`` float32 segments (``(B, 48000)`` in LSLD) -> ``(B, 512)`` float32 numpy."""
        if segments.ndim != 2:
            raise ValueError(f"CLAP segments must be (B, samples) mono at 48 kHz; got shape {tuple(segments.shape)}")
        return batched_numpy(self, np.asarray(segments, dtype=np.float32) if isinstance(segments, np.ndarray)
                             else segments.float(), batch_size, self.device, self.precision)


class ClapTextEncoder(nn.Module):
    """RoBERTa text tower + projection: ``forward(input_ids, attention_mask)`` both ``(M, 77)`` int64
    -> ``(M, 512)``, L2-normalised when ``normalize`` (as laion_clap's ``get_text_embedding``)."""

    def __init__(self, text_branch: nn.Module, text_projection: nn.Module, tokenizer, *,
                 context_length: int = 77, normalize: bool = True):
        super().__init__()
        self.text_branch = text_branch
        self.text_projection = text_projection
        self.tokenizer = tokenizer
        self.context_length = int(context_length)
        self.normalize = normalize
        self.device = torch.device("cpu")
        self.precision = "fp32"

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        pooled = self.text_branch(input_ids=input_ids, attention_mask=attention_mask)["pooler_output"]
        out = self.text_projection(pooled)
        return F.normalize(out, dim=-1) if self.normalize else out

    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        """laion_clap's tokenisation (pad to 77, truncate) -> ``(M, 2, 77)`` int64: ids and mask."""
        if isinstance(texts, str):
            raise TypeError("encode_texts takes a list of strings, not one string")
        t = self.tokenizer(list(texts), padding="max_length", truncation=True,
                           max_length=self.context_length, return_tensors="pt")
        return torch.stack([t["input_ids"], t["attention_mask"]], dim=1).long()

    def encode_texts(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        """``M`` strings -> ``(M, 512)`` float32 numpy."""
        return batched_numpy(lambda t: self(t[:, 0], t[:, 1]), self.tokenize(texts), batch_size,
                             self.device, self.precision)


# --- construction and loading ------------------------------------------------------------------------

def _config(config: str) -> dict:
    cfg = load_config(CLAP_CONFIGS.get(config, config))
    if cfg.get("family") != "clap":
        raise ValueError(f"config {config!r} is not a CLAP config")
    return cfg


def _projection(d_in: int, d_out: int) -> nn.Sequential:
    # laion_clap's mlp_act='relu' projection: keys "<name>.0.*" and "<name>.2.*"
    return nn.Sequential(nn.Linear(d_in, d_out), nn.ReLU(), nn.Linear(d_out, d_out))


def _htsat(cfg: dict) -> nn.Module:
    from lsld_engine.encoders._laion import htsat_module

    h = cfg["htsat"]
    net = htsat_module().HTSAT_Swin_Transformer(
        spec_size=h["spec_size"], patch_size=h["patch_size"], patch_stride=tuple(h["patch_stride"]),
        num_classes=cfg["audio_cfg"]["class_num"], embed_dim=h["embed_dim"], depths=h["depths"],
        num_heads=h["num_heads"], window_size=h["window_size"], config=SimpleNamespace(**cfg["audio_cfg"]),
        enable_fusion=False, fusion_type="None")
    if net.num_features != cfg["audio_embed_dim"]:
        raise ValueError(f"CLAP config: HTSAT gives {net.num_features} features, config says {cfg['audio_embed_dim']}")
    return net


def read_clap_checkpoint(path: str | os.PathLike) -> StateDict:
    """A laion_clap checkpoint's state dict (``state_dict`` unwrapped, ``module.`` stripped), weights-only."""
    state, _ = read_state_dict(path, "CLAP checkpoint")
    if not any(k.startswith(("audio_branch.", "text_branch.")) for k in state):
        raise CheckpointError(f"{path}: no audio_branch.* / text_branch.* keys — not a laion_clap CLAP checkpoint")
    return state


def _pick(state: StateDict, prefixes: tuple[str, ...]) -> StateDict:
    return {k: v for k, v in state.items() if k.startswith(prefixes)}


def build_clap_audio_encoder(checkpoint: str | os.PathLike | None = None, *, config: str = "HTSAT-tiny",
                             normalize: bool = True, quantize: bool = True,
                             device: str | torch.device | None = None, precision: str = "fp32") -> ClapAudioEncoder:
    """HTSAT audio tower + projection; ``checkpoint=None`` gives random weights.

    Only ``audio_branch.*`` and ``audio_projection.*`` are read; the text branch is never built.
    """
    cfg = _config(config)
    dev = resolve_device(device)
    check_precision(precision, dev)
    enc = ClapAudioEncoder(_htsat(cfg), _projection(cfg["audio_embed_dim"], cfg["joint_embed_dim"]),
                           quantize=quantize, normalize=normalize)
    if checkpoint is not None:
        state = _pick(read_clap_checkpoint(checkpoint), ("audio_branch.", "audio_projection."))
        # The STFT/mel matrices are fixed functions of the config: tolerate files that omit them.
        fixed = {k: v for k, v in enc.state_dict().items()
                 if k.startswith(("audio_branch.spectrogram_extractor.", "audio_branch.logmel_extractor."))}
        load_into(enc, {**fixed, **state}, "", checkpoint, f"CLAP {config} audio tower")
    enc = enc.to(dev).eval()
    enc.device, enc.precision = dev, precision
    return enc


def _text_dir_files(text_dir: str | os.PathLike) -> Path:
    d = Path(text_dir).expanduser()
    if not d.is_dir():
        raise FileNotFoundError(f"CLAP text folder not found: {d} (it needs {', '.join(TEXT_DIR_FILES)}, "
                                "optionally config.json — e.g. a local copy of Hugging Face `roberta-base`)")
    if not (d / "tokenizer.json").is_file():
        for name in TEXT_DIR_FILES:
            if not (d / name).is_file():
                raise FileNotFoundError(f"CLAP text folder {d}: missing {d / name} (the RoBERTa BPE tokenizer "
                                        f"needs {' and '.join(TEXT_DIR_FILES)}, or tokenizer.json)")
    return d


def load_roberta_tokenizer(text_dir: str | os.PathLike):
    """RoBERTa tokenizer from local files only (``local_files_only=True``: no hub request)."""
    from transformers import RobertaTokenizer

    d = _text_dir_files(text_dir)
    return RobertaTokenizer.from_pretrained(str(d), local_files_only=True)


def _roberta(cfg: dict, text_dir: Path | None):
    from transformers import RobertaConfig, RobertaModel

    if text_dir is not None and (text_dir / "config.json").is_file():
        rc = RobertaConfig.from_json_file(str(text_dir / "config.json"))
    else:
        rc = RobertaConfig(**cfg["roberta"])
    if rc.hidden_size != cfg["text_width"]:
        raise ValueError(f"RoBERTa config hidden_size {rc.hidden_size} != CLAP config text_width {cfg['text_width']}")
    return RobertaModel(rc, add_pooling_layer=True)


def build_clap_text_encoder(checkpoint: str | os.PathLike | None = None, text_dir: str | os.PathLike | None = None,
                            *, config: str = "HTSAT-tiny", normalize: bool = True,
                            device: str | torch.device | None = None, precision: str = "fp32") -> ClapTextEncoder:
    """RoBERTa text tower + projection from the same laion_clap checkpoint.

    ``text_dir`` (``--clap-text-dir``): a local folder with ``vocab.json`` and ``merges.txt`` (or
    ``tokenizer.json``) and optionally ``config.json``; without ``config.json`` the packaged
    roberta-base config is used. Required: nothing is downloaded.
    """
    if text_dir is None:
        raise FileNotFoundError("the CLAP text tower needs a local RoBERTa tokenizer folder (--clap-text-dir) "
                                f"with {', '.join(TEXT_DIR_FILES)}; it is never downloaded")
    d = _text_dir_files(text_dir)
    cfg = _config(config)
    dev = resolve_device(device)
    check_precision(precision, dev)
    tokenizer = load_roberta_tokenizer(d)
    enc = ClapTextEncoder(_roberta(cfg, d), _projection(cfg["text_width"], cfg["joint_embed_dim"]), tokenizer,
                          context_length=cfg["context_length"], normalize=normalize)
    if checkpoint is not None:
        state = _pick(read_clap_checkpoint(checkpoint), ("text_branch.", "text_projection."))
        want = enc.state_dict()
        # position_ids / token_type_ids are constant index buffers: persistent in old transformers
        # (checkpoints made before 4.31 carry them), non-persistent now; accept either way.
        for k in ("text_branch.embeddings.position_ids", "text_branch.embeddings.token_type_ids"):
            if k in want and k not in state:
                state[k] = want[k]
            elif k not in want:
                state.pop(k, None)
        load_into(enc, state, "", checkpoint, f"CLAP {config} text tower")
    enc = enc.to(dev).eval()
    enc.device, enc.precision = dev, precision
    return enc


def random_clap_state_dict(config: str = "small", *, text: bool = True, seed: int = 0,
                           text_dir: str | os.PathLike | None = None) -> StateDict:
    """A random-weight state dict in laion_clap's key layout (``audio_branch.*``, ``audio_projection.*``,
    ``text_branch.*``, ``text_projection.*``, ``logit_scale_a/t``) for tests and benches."""
    cfg = _config(config)
    torch.manual_seed(seed)
    audio = ClapAudioEncoder(_htsat(cfg), _projection(cfg["audio_embed_dim"], cfg["joint_embed_dim"]))
    state = dict(audio.state_dict())
    # HTSAT's BatchNorm starts at mean 0 / var 1: perturb so loading the statistics is tested too
    for k, v in state.items():
        if k.endswith(("running_mean", "running_var")):
            state[k] = v + torch.rand_like(v) * 0.5
    if text:
        d = Path(text_dir) if text_dir is not None else None
        tb = _roberta(cfg, d)
        state.update({f"text_branch.{k}": v for k, v in tb.state_dict().items()})
        tp = _projection(cfg["text_width"], cfg["joint_embed_dim"])
        state.update({f"text_projection.{k}": v for k, v in tp.state_dict().items()})
    state["logit_scale_a"] = torch.tensor(np.log(1 / 0.07), dtype=torch.float32)
    state["logit_scale_t"] = torch.tensor(np.log(1 / 0.07), dtype=torch.float32)
    return {k: v.clone() for k, v in state.items()}


__all__ = ["CLAP_CONFIGS", "CLAP_INPUT_SAMPLES", "CLAP_SAMPLE_RATE", "TEXT_DIR_FILES", "ClapAudioEncoder",
           "ClapTextEncoder", "build_clap_audio_encoder", "build_clap_text_encoder", "load_roberta_tokenizer",
           "prepare_audio", "quantize_int16", "random_clap_state_dict", "read_clap_checkpoint", "repeat_pad"]
