"""``lsld-engine extract VIDEOS --out ROOT``: decode videos and write CLIP / CLAP features (dataset layout).

Also holds the encoder / decoding options shared with ``lsld-engine parse``.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from lsld_engine.cli import at_least
from lsld_engine.media.frame_rule import DEFAULT_FRAME_RULE, FRAME_RULES

log = logging.getLogger("lsld_engine")


# --- options shared with `parse` ----------------------------------------------------------------

def add_input_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="*",
                   help="video files and/or folders (walked recursively for common video extensions)")
    p.add_argument("--list", dest="list_file", type=Path, default=None,
                   help="a text file with one video path per line (relative to the file's folder)")
    p.add_argument("--limit", type=at_least(0), default=None, help="process at most this many (not yet done) videos")
    p.add_argument("--max-duration", type=at_least(0, float, strict=True), default=None, metavar="SECONDS",
                   help="refuse (error line) a video longer than this, or one that claims to be "
                        "(default 14400 = 4 h; memory does not grow with length, time does)")
    p.add_argument("--max-resolution", type=_resolution, default=None, metavar="WxH",
                   help="refuse (error line) a video whose picture is larger, either orientation (default 7680x4320)")


def _resolution(text: str) -> tuple[int, int]:
    from lsld_engine.media.limits import parse_resolution

    try:
        return parse_resolution(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def media_limits(args):
    """The :class:`lsld_engine.media.MediaLimits` of ``--max-duration`` / ``--max-resolution``."""
    from lsld_engine.media.limits import MAX_DURATION_S, MAX_RESOLUTION, MediaLimits

    return MediaLimits(args.max_duration or MAX_DURATION_S, args.max_resolution or MAX_RESOLUTION)


def add_encoder_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--clip-checkpoint", help="CLIP ViT-B/16 weights (OpenAI ViT-B-16.pt, open_clip .bin/.safetensors)")
    p.add_argument("--clap-checkpoint", help="LAION-CLAP weights (630k-audioset-best.pt or a converted .safetensors)")
    p.add_argument("--device", default=None, help="cpu or cuda[:N] (default: cuda when available, else cpu)")
    p.add_argument("--precision", choices=("fp32", "fp16", "bf16"), default=None,
                   help="encoder precision (default: fp16 on cuda, fp32 on cpu; autocast, weights stay fp32)")
    p.add_argument("--workers", type=at_least(0), default=None,
                   help="decoding processes (default: CPUs - 1 with cuda, CPUs / 2 on cpu; 0 = no processes)")
    p.add_argument("--batch-size", type=at_least(1), default=None,
                   help="CLIP images per encoder batch (default: 256 on cuda, 64 on cpu); CLAP segments use a "
                        "quarter of it")
    p.add_argument("--pixels", choices=("cpu", "device"), default="cpu",
                   help="frame preprocessing: cpu = reference path in the decode workers (swscale RGB + PIL "
                        "bicubic); device = workers ship raw YUV planes, colour/resize/crop run batched in "
                        "torch on CUDA when available (docs/pixels.md)")
    p.add_argument("--decoder", choices=("cpu", "nvdec"), default="cpu",
                   help="video decoder: cpu (FFmpeg software) or nvdec (GPU, implies --pixels device; falls "
                        "back to cpu per file; not yet run on a GPU, see docs/pixels.md)")
    p.add_argument("--frame-rule", choices=FRAME_RULES, default=DEFAULT_FRAME_RULE,
                   help="which frames become the 80 per 10-s window: official = the official LSLD scripts' "
                        "`ffmpeg -r 8` frames + linspace pick, what the official checkpoint expects (default); "
                        "hold = the frame on screen at each k/8 s (docs/media.md)")
    p.add_argument("--jpeg-roundtrip", action="store_true",
                   help="code each frame as the official scripts' JPEG file and decode it before "
                        "preprocessing (bit-near official features; costs CPU, see docs/media.md)")
    p.add_argument("--decode-timeout", type=at_least(0, float, strict=True), default=None,
                   help="seconds after which one video's decoding is abandoned (error line; default: no limit)")
    p.add_argument("--random-weights", action="store_true",
                   help="random-weight networks where no checkpoint is given (demos, tests, benchmarks only)")
    p.add_argument("--small", action="store_true", help="the small test architectures of the CLIP / CLAP towers (tests, demos)")
    p.add_argument("--quiet", action="store_true", help="no progress bar, warnings only")
    p.add_argument("--verbose", action="store_true", help="debug logging")


def setup_logging(args) -> None:
    level = logging.WARNING if args.quiet else (logging.DEBUG if getattr(args, "verbose", False) else logging.INFO)
    handler = logging.StreamHandler(sys.stderr)  # results go to files; everything else to stderr
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("lsld_engine")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


def device_and_precision(args) -> tuple[str, str]:
    """``(device, precision)`` from the flags and what is available."""
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    precision = args.precision or ("fp16" if device.startswith("cuda") else "fp32")
    from lsld_engine.hardware import resolve_precision

    return device, resolve_precision(precision, device)


def default_workers(device: str) -> int:
    n = os.cpu_count() or 1
    # on a GPU the CPUs only decode; on CPU the encoder needs cores too
    return max(1, n - 1) if device.startswith("cuda") else max(1, n // 2)


def decode_function(args, whole: bool = False):
    """The decode workers' per-video function for ``--pixels`` / ``--decoder``, with ``--frame-rule`` and
    ``--jpeg-roundtrip`` bound (a picklable ``functools.partial``). The reference path streams a long
    video in parts (``decode_parts``) unless ``whole`` (``decode_video``: one result per video, as
    the ``--ray`` decode tasks need)."""
    from functools import partial

    if getattr(args, "decoder", "cpu") == "nvdec":
        from lsld_engine.media.nvdec import decode_nvdec as fn
    elif getattr(args, "pixels", "cpu") == "device":
        from lsld_engine.media.raw_planes import decode_raw as fn
    elif whole:
        from lsld_engine.media import decode_video as fn
    else:  # the reference pixels, streamed in parts: memory does not grow with the length
        from lsld_engine.media import decode_parts as fn
    bound = {"frame_rule": getattr(args, "frame_rule", DEFAULT_FRAME_RULE),
             "jpeg_roundtrip": getattr(args, "jpeg_roundtrip", False)}
    if whole:  # (the --ray decode tasks call it directly; one machine's pool passes the caps itself)
        bound["limits"] = media_limits(args)
    return partial(fn, **bound)


def backend_options(args, device: str, precision: str) -> dict:
    opts = {"clip_checkpoint": args.clip_checkpoint, "clap_checkpoint": args.clap_checkpoint,
            "model": getattr(args, "model", None), "device": device, "precision": precision}
    if args.batch_size:
        opts["batch_sizes"] = {"images": args.batch_size, "audio": max(1, args.batch_size // 4)}
    if args.random_weights:
        opts["random_weights"] = True
    if args.small:
        opts["size"] = "small"
    if getattr(args, "engine_dir", None):
        opts["engine_dir"] = str(args.engine_dir)
    if getattr(args, "backend", None) == "tensorrt":
        # The command line (not the library) hands the runtime the builder for missing engines.
        from export.tensorrt_build import build_engine
        opts["build_missing"] = build_engine
    return opts


def collect(args, prog: str):
    """``(inputs, walk)``: the inputs of ``args`` (sorted, unique ids) and what folder walks skipped
    (:class:`lsld_engine.video_inputs.Skipped`); a usage error is printed and exits with status 2 (status
    1 means "some videos failed")."""
    from lsld_engine.video_inputs import InputError, Skipped, collect_inputs

    def usage_error(msg: str) -> SystemExit:
        print(f"{prog}: error: {msg}", file=sys.stderr)
        return SystemExit(2)

    if not args.inputs and args.list_file is None:
        raise usage_error("give video files / folders, or --list FILE")
    walk = Skipped()
    try:
        items = collect_inputs(args.inputs, args.list_file, skipped=walk)
    except (FileNotFoundError, InputError) as e:
        raise usage_error(str(e)) from None
    if not items:
        where = ", ".join(map(str, args.inputs)) or str(args.list_file)
        extra = f" ({walk.format()})" if walk.total else ""
        raise usage_error(f"no video files found in {where}{extra}")
    return items, walk


# --- extract --------------------------------------------------------------------------------------

def add_arguments(p: argparse.ArgumentParser) -> None:
    add_input_arguments(p)
    p.add_argument("--out", required=True, help="dataset root (writes ROOT/feats/...)")
    p.add_argument("--dtype", choices=("float16", "float32"), default="float16", help="feature file dtype")
    add_encoder_arguments(p)
    from lsld_engine.commands.scale import add_ray_arguments

    add_ray_arguments(p, shards=False)


def run(args: argparse.Namespace) -> int:
    from lsld_engine.extract import LOG_NAME
    from lsld_engine.outputs import OutputLock, check_writable

    prog = "lsld-engine extract"
    setup_logging(args)
    if args.ray is not None:
        return _run_ray(args, prog)
    from lsld_engine.commands.scale import EXTRACT_NEEDS_FILESYSTEM
    from lsld_engine.results import is_uri

    if is_uri(args.out):
        print(f"{prog}: error: --out {args.out}: {EXTRACT_NEEDS_FILESYSTEM}", file=sys.stderr)
        return 2
    items, walk = collect(args, prog)
    args.out = Path(args.out)
    # The root first (cheap): locked and known writable before any network loads.
    check_writable(args.out, folder=True)
    check_writable(args.out / LOG_NAME)
    with OutputLock(args.out, folder=True, what="dataset root"):
        return _run_locked(args, items, walk, prog)


def _run_ray(args, prog: str) -> int:
    from lsld_engine.backends.torch_backend import MissingWeightsError, check_weights
    from lsld_engine.commands.scale import actor_backend_options, run_extract

    # with --ray the actors' device follows their GPUs (lsld_engine.scale.engine), not this machine's
    opts = backend_options(args, args.device or "cpu", args.precision or "fp32")
    try:
        check_weights(["clip_image", "clap_audio"], **opts)
    except MissingWeightsError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    return run_extract(args, prog, actor_backend_options(args, opts))


def _run_locked(args, items, walk, prog: str) -> int:
    from lsld_engine.backends import create_backend
    from lsld_engine.backends.torch_backend import MissingWeightsError, check_weights
    from lsld_engine.extract import FeatureStore, extract_features, pending
    from lsld_engine.outputs import OutputError, is_disk_full
    from lsld_engine.pipeline import Summary

    device, precision = device_and_precision(args)
    opts = backend_options(args, device, precision)
    try:
        check_weights(["clip_image", "clap_audio"], **opts)
    except MissingWeightsError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    store = FeatureStore(args.out, args.dtype)
    todo, skipped = pending(items, store)  # validates the whole log before anything is written
    if args.limit is not None:
        todo = todo[: args.limit]
    summary = Summary(total=len(items), skipped=skipped, walk=walk)
    log.info("%d videos: %d to extract, %d already done (%s)", len(items), len(todo), skipped, store.root)
    if todo:
        backend = create_backend("torch", **opts)
        if hasattr(backend, "warm_up"):
            backend.warm_up(("clip_image", "clap_audio"))
        workers = default_workers(device) if args.workers is None else args.workers
        try:
            extract_features(todo, backend, store, workers=workers, progress=not args.quiet, summary=summary,
                             decode_timeout=args.decode_timeout, decode_fn=decode_function(args),
                             limits=media_limits(args))
        except KeyboardInterrupt:
            print(f"{prog}: interrupted; finished videos are kept, run again to resume\n"
                  + summary.format("extracted", verbose=args.verbose), file=sys.stderr)
            return 130
        except OSError as e:
            if not is_disk_full(e):
                raise
            raise OutputError(f"{getattr(e, 'filename', None) or store.root}: {e.strerror} after {summary.done} videos "
                              f"were extracted and logged this run (no half-written file is left); free space, "
                              "then run the same command again to resume") from None
        finally:
            backend.close()
    print(summary.format("extracted", verbose=args.verbose), file=sys.stderr)
    return 1 if summary.failed else 0
