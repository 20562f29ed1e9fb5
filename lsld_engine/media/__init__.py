"""The media path: video files -> the LLP data contract (8-fps CLIP frames, 48 kHz audio, 10-s windows).

Modules, in the order data flows through them:

- :mod:`.decode` — demux + decode with PyAV and frame selection, the whole video at once (``decode_media``,
  ``decode_video``);
- :mod:`.parts` — the same decode streamed in parts of a few windows (``decode_parts``);
- :mod:`.limits` — ``MediaError`` and the duration / resolution caps (``MediaLimits``);
- :mod:`.windows` — the result types (``DecodedVideo``, ``DecodedPart``), window ids and counts;
- :mod:`.audio` — audio decoded to 48 kHz mono, aligned to the video's first frame;
- :mod:`.cpu_pixels` — the CPU reference pixel step (``clip_pixels``, ``clip_crop``);
- :mod:`.frame_rule` — which frames become the 80 per window (``official``: ffmpeg's ``-r 8`` grid +
  the official linspace pick; ``hold``), from timestamps only;
- :mod:`.jpeg_roundtrip` — the official scripts' JPEG files, coded and decoded in memory;
- :mod:`.pool` — decoding in worker processes (``decode_stream``), results handed over in shared memory;
- :mod:`.pool_worker` — the worker's side of the pool (tasks in, parts / results out);
- :mod:`.worker_process` — starting a worker: a fresh Python that runs only the engine's code;
- :mod:`.raw_planes` — workers hand over raw YUV planes; the pixel step then runs on the device;
- :mod:`.colorspace` — which YUV matrix / range a stream uses (torch-free, for the workers);
- :mod:`.pixels` — the device pixel step: YUV -> RGB, resize, crop, CLIP input (torch);
- :mod:`.nvdec` — GPU decode (NVDEC), CPU fallback per file.

The public names of these modules are re-exported here (``from lsld_engine.media import decode_video``).
"""
from lsld_engine.contract import (FPS, FRAMES_PER_WINDOW, IMAGE_SIZE, SAMPLE_RATE,  # noqa: F401
                                  SAMPLES_PER_SEGMENT, SEGMENTS_PER_WINDOW, WINDOW_SECONDS)
from lsld_engine.media.cpu_pixels import clip_crop, clip_pixels, clip_size, rgb_frame  # noqa: F401
from lsld_engine.media.decode import TIME_EPS, decode_media, decode_video  # noqa: F401
from lsld_engine.media.limits import MediaError, MediaLimits  # noqa: F401
from lsld_engine.media.parts import decode_parts  # noqa: F401
from lsld_engine.media.windows import (WINDOW_TOLERANCE_SECONDS, DecodedMedia, DecodedPart, DecodedVideo,  # noqa: F401
                                       Windowed, num_windows_for, part_window_ids, video_id_of, window_ids)
