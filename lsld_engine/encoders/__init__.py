"""CLIP and CLAP encoder towers, built offline from local checkpoints (or random weights for tests).

- :mod:`~lsld_engine.encoders.clip`: ``build_clip_image_encoder`` / ``build_clip_text_encoder``
- :mod:`~lsld_engine.encoders.clap`: ``build_clap_audio_encoder`` / ``build_clap_text_encoder``,
  ``prepare_audio`` (laion_clap's int16 round trip + repeat-padding)
- :mod:`~lsld_engine.encoders.checkpoints`: ``read_state_dict``, ``convert_checkpoint`` (-> safetensors)

The heavy stacks (open_clip, laion_clap's HTSAT, transformers) are imported by the submodules only,
so ``import lsld_engine.encoders`` stays cheap; :mod:`lsld_engine.registry` lists all networks.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "build_clip_image_encoder": "clip", "build_clip_text_encoder": "clip",
    "ClipImageEncoder": "clip", "ClipTextEncoder": "clip",
    "build_clap_audio_encoder": "clap", "build_clap_text_encoder": "clap",
    "ClapAudioEncoder": "clap", "ClapTextEncoder": "clap", "prepare_audio": "clap",
    "convert_checkpoint": "checkpoints", "read_state_dict": "checkpoints", "CheckpointError": "checkpoints",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
