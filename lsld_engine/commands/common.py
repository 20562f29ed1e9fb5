"""The options and helpers every ``lsld-engine`` command that reads videos shares (``parse``,
``extract``, their ``--ray`` runs): input, encoder, decoding and ``--ray`` flags, logging, and how
the flags become :class:`lsld_engine.api.EngineOptions`.

The command modules share code through this module only (``parse`` and ``extract`` hand a ``--ray``
run to :mod:`lsld_engine.commands.scale`); ``tests/test_layout.py`` keeps it so.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from lsld_engine.api import EngineOptions, default_workers  # noqa: F401 - default_workers: old import path
from lsld_engine.cli import at_least
from lsld_engine.media.frame_rule import DEFAULT_FRAME_RULE, FRAME_RULES

log = logging.getLogger("lsld_engine")


# --- inputs, encoders, decoding ---------------------------------------------------------------------

def add_input_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="*",
                   help="video files and/or folders (walked recursively for common video extensions)")
    p.add_argument("--list", dest="list_file", default=None,  # a str: Path() would fold an s3:// URI's "//"
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
    from lsld_engine.media.decoders import media_limits as limits

    return limits(args.max_duration, args.max_resolution)


def add_encoder_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", choices=("auto", "torch", "onnx", "tensorrt"), default="auto",
                   help="inference backend (default auto: on a CPU with native bf16 torch with bf16 CLIP weights, "
                        "else (or with --precision fp32 / int8) ONNX Runtime over a cache of files exported on "
                        "first use; torch on CUDA; onnx / tensorrt run the files of `lsld-engine export`; "
                        "`lsld-engine doctor` shows what auto picks and why)")
    p.add_argument("--engine-dir", type=Path, default=None,
                   help="onnx / tensorrt / auto: the `lsld-engine export --out` folder (wins over the cache)")
    p.add_argument("--threads", type=at_least(1), default=None,
                   help="intra-op threads of the encoders (default: from the core count, see --workers; printed)")
    p.add_argument("--clip-checkpoint", help="CLIP ViT-B/16 weights (OpenAI ViT-B-16.pt, open_clip .bin/.safetensors)")
    p.add_argument("--clap-checkpoint", help="LAION-CLAP weights (630k-audioset-best.pt or a converted .safetensors)")
    p.add_argument("--device", default=None, help="cpu or cuda[:N] (default: cuda when available, else cpu)")
    p.add_argument("--precision", choices=("fp32", "fp16", "bf16", "int8"), default=None,
                   help="encoder precision (default: fp16 on cuda; on cpu each tower in its fastest precision, "
                        "bf16 where the CPU has it natively, else fp32); int8: CPU, the int8 engine auto "
                        "builds in its cache on first use (with a fidelity report and gate), or the int8 "
                        "files of `lsld-engine export --precision int8` given as --engine-dir (fp32 with a "
                        "warning on a CPU without VNNI)")
    p.add_argument("--force-int8", action="store_true",
                   help="load an int8 engine even when its fidelity report is below the gate")
    p.add_argument("--workers", type=at_least(0), default=None,
                   help="decoding processes (default: CPUs - 1 with cuda; on cpu from the core count, see "
                        "--threads; printed at start; 0 = no processes)")
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


def engine_options(args, **overrides) -> EngineOptions:
    """The :class:`~lsld_engine.api.EngineOptions` of the flags; TensorRT gets the builder of missing
    engines (the command line, not the library, hands it over: the library never imports ``export``)."""
    opts = EngineOptions.from_namespace(args, **overrides)
    if opts.backend in ("tensorrt", "auto"):  # auto on CUDA runs TensorRT where it is installed
        from export.tensorrt_build import build_engine

        opts = EngineOptions.from_namespace(args, backend_extra={"build_missing": build_engine}, **overrides)
    return opts


def device_and_precision(args) -> tuple[str, str]:
    """``(device, precision)`` from the flags and what is available."""
    return engine_options(args).resolved()


def decode_function(args, whole: bool = False):
    """The decode workers' per-video function for ``--pixels`` / ``--decoder``, with ``--frame-rule`` and
    ``--jpeg-roundtrip`` bound (:func:`lsld_engine.media.decoders.decode_function`); ``whole``: one
    result per video, with the ``--max-duration`` / ``--max-resolution`` caps bound (the ``--ray``
    decode tasks)."""
    from lsld_engine.media.decoders import decode_function as choose

    return choose(decoder=getattr(args, "decoder", "cpu"), pixels=getattr(args, "pixels", "cpu"),
                  frame_rule=getattr(args, "frame_rule", DEFAULT_FRAME_RULE),
                  jpeg_roundtrip=getattr(args, "jpeg_roundtrip", False), whole=whole,
                  limits=media_limits(args) if whole else None)


def backend_options(args, device: str, precision: str) -> dict:
    """The backend options of the flags (:meth:`lsld_engine.api.EngineOptions.backend_options`)."""
    return engine_options(args).backend_options(device, precision)


def int8_summary_line(backend) -> str | None:
    """The run summary's line naming an int8 engine's fidelity report (None for other engines)."""
    from lsld_engine.backends.int8_report import summary_line

    return summary_line(backend)


def collect(args, prog: str):
    """``(inputs, walk)``: the inputs of ``args`` (sorted, unique ids) and what folder walks skipped
    (:class:`lsld_engine.parsing.video_inputs.Skipped`); a usage error is printed and exits with status 2 (status
    1 means "some videos failed")."""
    from lsld_engine.parsing.video_inputs import InputError, Skipped, collect_inputs

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


# --- --ray ---------------------------------------------------------------------------------------------

#: extract's --out on an object store: refused (numpy feature files are written in place, appended to a log)
EXTRACT_NEEDS_FILESYSTEM = ("extract writes the dataset layout (feature files + a log) to a folder every node sees "
                            "(a local or shared filesystem path such as NFS), not to an object store URI")


def add_ray_arguments(p: argparse.ArgumentParser, shards: bool = True) -> None:
    """The ``--ray`` flags; ``shards``: also the results-folder flags (parse)."""
    g = p.add_argument_group("scale out on Ray (pip install 'lsld-engine[ray]'; README: Scale out)")
    g.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                   help="run on Ray Data: without ADDRESS, join $RAY_ADDRESS or start a local instance; "
                        "'auto' joins the cluster of `ray start --head` on this node; or host:6379 / "
                        "ray://host:10001. Inputs may also be globs and URIs (s3://, gs://, ...)")
    g.add_argument("--ray-cpus", type=at_least(1), default=None, help="local instance: CPUs (default: all)")
    g.add_argument("--ray-gpus", type=at_least(0), default=None, help="local instance: GPUs (default: all)")
    g.add_argument("--ray-object-store-mb", type=at_least(64), default=None,
                   help="local instance: object store size in MiB (default: Ray's, 30%% of memory)")
    g.add_argument("--ray-actors", type=at_least(1), default=None,
                   help="most encoder actors (default: one per GPU, else CPUs / 2)")
    g.add_argument("--ray-actor-cpus", type=at_least(0, float, strict=True), default=None,
                   help="CPUs per encoder actor (default 1)")
    g.add_argument("--ray-actor-gpus", type=at_least(0, float), default=None,
                   help="GPUs per encoder actor (default: 1 on clusters with GPUs, else 0 = CPU actors)")
    g.add_argument("--ray-encode-batch", type=at_least(1), default=None,
                   help="videos per encoder call, batched across videos (default: 8 on GPU, 2 on CPU)")
    g.add_argument("--ray-decode-cpus", type=at_least(0, float, strict=True), default=None,
                   help="CPUs per decode task (default 1)")
    g.add_argument("--ray-decode-batch", type=at_least(1), default=2,
                   help="videos per decode task, the unit Ray retries (default 2)")
    g.add_argument("--ray-retries", type=at_least(0), default=3,
                   help="retries of a decode task whose worker process died (default 3)")
    g.add_argument("--ray-timeout", type=at_least(0, float, strict=True), default=30.0,
                   help="seconds for the cluster's ADDRESS to answer (default 30)")
    g.add_argument("--ray-node-wait", type=at_least(0, float, strict=True), default=300.0,
                   help="stop when for this long no node can run an encoder actor, e.g. its GPU nodes were "
                        "lost (default 300 s; the finished videos stay, the same command resumes)")
    g.add_argument("--ray-restarts", type=at_least(0), default=2,
                   help="when Ray gives up on the job after losing a node, actor or object, run the videos not "
                        "yet written again, at most this many times (default 2)")
    add_store_arguments(p)
    if shards:
        g.add_argument("--shard-rows", dest="rows_per_shard", type=at_least(1), default=1000,
                       help="results folder: videos per shard (default 1000)")
        g.add_argument("--shard-seconds", type=at_least(0, float, strict=True), default=60.0,
                       help="results folder: write a shard at least this often (default 60 s; a killed "
                            "run loses at most the videos of its unwritten shard)")


def add_store_arguments(p: argparse.ArgumentParser) -> None:
    """``--s3-endpoint`` (with or without ``--ray``)."""
    g = p.add_argument_group("object stores (inputs / results as s3://... URIs)")
    g.add_argument("--s3-endpoint", default=None, metavar="URL",
                   help="S3-compatible endpoint, e.g. http://minio:9000 (default: $AWS_ENDPOINT_URL_S3 / "
                        "$AWS_ENDPOINT_URL, else AWS); used by this process and every Ray task. Credentials "
                        "come from the usual AWS variables / files on each machine, never from options")


def apply_store_arguments(args) -> None:
    """Make ``--s3-endpoint`` (else the environment's) the object-store settings of this process."""
    from lsld_engine.records.objectstore import apply, from_environment

    apply(from_environment(getattr(args, "s3_endpoint", None)))


def ray_options(args):
    from lsld_engine.records.objectstore import current
    from lsld_engine.scale.engine import RayOptions
    from lsld_engine.scale.trace import trace_path

    apply_store_arguments(args)
    return RayOptions(store=current(), trace=trace_path(), connect_timeout=args.ray_timeout,
                      node_wait=args.ray_node_wait, restarts=args.ray_restarts, address=args.ray,
                      num_cpus=args.ray_cpus, num_gpus=args.ray_gpus, object_store_mb=args.ray_object_store_mb, decode_cpus=args.ray_decode_cpus,
                      decode_batch=args.ray_decode_batch, decode_retries=args.ray_retries,
                      decode_timeout=args.decode_timeout, actors=args.ray_actors, actor_cpus=args.ray_actor_cpus,
                      actor_gpus=args.ray_actor_gpus, encode_batch=args.ray_encode_batch,
                      rows_per_shard=getattr(args, "rows_per_shard", 1000),
                      shard_seconds=getattr(args, "shard_seconds", 60.0), verbose=bool(args.verbose))


def actor_backend_options(args, opts: dict) -> dict:
    """``opts`` without the device and precision the user left unset: with ``--ray`` the encoder
    actors pick them from their own GPUs (:mod:`lsld_engine.scale.engine`), not from this machine's."""
    return {k: v for k, v in opts.items()
            if not (k == "device" and args.device is None or k == "precision" and args.precision is None)}


