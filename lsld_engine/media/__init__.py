"""The media path: video files -> the LLP data contract (8-fps CLIP frames, 48 kHz audio, 10-s windows).

Modules, in the order data flows through them:

- :mod:`.decode` — demux + decode with PyAV, frame selection, audio alignment, window ids; the CPU
  reference pixel step (``decode_video``);
- :mod:`.frame_rule` — which frames become the 80 per window (``official``: ffmpeg's ``-r 8`` grid +
  the official linspace pick; ``hold``), from timestamps only;
- :mod:`.jpeg_roundtrip` — the official scripts' JPEG files, coded and decoded in memory;
- :mod:`.pool` — decoding in worker processes (``decode_stream``), results handed over in shared memory;
- :mod:`.raw_planes` — workers hand over raw YUV planes; the pixel step then runs on the device;
- :mod:`.colorspace` — which YUV matrix / range a stream uses (torch-free, for the workers);
- :mod:`.pixels` — the device pixel step: YUV -> RGB, resize, crop, CLIP input (torch);
- :mod:`.nvdec` — GPU decode (NVDEC), CPU fallback per file.

The names of :mod:`.decode` are re-exported here (``from lsld_engine.media import decode_video``).
"""
from lsld_engine.media.decode import (FPS, FRAMES_PER_WINDOW, IMAGE_SIZE, SAMPLE_RATE,  # noqa: F401
                                      SAMPLES_PER_SEGMENT, SEGMENTS_PER_WINDOW, TIME_EPS, WINDOW_SECONDS,
                                      WINDOW_TOLERANCE_SECONDS, DecodedMedia, DecodedPart, DecodedVideo, MediaError,
                                      MediaLimits, Windowed, clip_crop, clip_pixels, clip_size, decode_media,
                                      decode_parts, decode_video, num_windows_for, part_window_ids, rgb_frame,
                                      video_id_of, window_ids)
