"""The data contract between media, encoders and the HAN: frame rate, sample rate, window, image size.

Every module that needs one of these numbers imports it from here (torch-free, so decode workers
can). LLP's own facts (25 classes, ``T = 10`` segments) are in :mod:`lsld_engine.data.llp`.
"""
from __future__ import annotations

from lsld_engine.data.llp import T

#: Audio sample rate fed to CLAP (Hz).
SAMPLE_RATE: int = 48000
#: Visual frames per second fed to CLIP.
FPS: int = 8
#: CLIP frames per one-second segment (the HAN pools them to one visual feature per segment).
FRAMES_PER_SEGMENT: int = FPS
#: Length of one LLP clip / parsing window (s).
WINDOW_SECONDS: int = 10
#: Frames per window (80).
FRAMES_PER_WINDOW: int = FPS * WINDOW_SECONDS
#: One-second segments per window (LLP's T = 10).
SEGMENTS_PER_WINDOW: int = T
#: Audio samples per one-second segment.
SAMPLES_PER_SEGMENT: int = SAMPLE_RATE * WINDOW_SECONDS // SEGMENTS_PER_WINDOW
#: CLIP ViT-B/16 input side (pixels).
IMAGE_SIZE: int = 224
#: Size of a CLIP / CLAP embedding and of the HAN's input features.
CLIP_EMBED_DIM: int = 512

#: CLIP's normalisation of RGB in [0, 1] (open_clip OPENAI_DATASET_MEAN / STD).
CLIP_MEAN: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)
