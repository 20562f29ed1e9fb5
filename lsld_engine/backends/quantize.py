"""int8 towers for the CPU: quantize an export folder, measure its fidelity to fp32, gate it.

``quantize_folder(src, dst)`` reads a folder written by ``lsld-engine export`` (``clip_image.onnx``,
``clap_audio.onnx``, ``han.onnx``, ``manifest.json``) and writes the same layout into ``dst`` with
int8 towers, so ``--backend onnx --engine-dir dst`` (or ``--precision int8``) loads it unchanged.

What is quantized (measured on real-size random-weight towers, see ``docs/export.md``):

- ``MatMul`` / ``Gemm`` with a constant weight (q/k/v, attention output, MLP, projections): int8
  weights with one scale per output channel. These are >95 % of both towers' MACs.
- kept fp32: LayerNorm, Softmax, GELU (Erf) / QuickGELU (Sigmoid), the attention score products
  (activation x activation), every ``Conv`` (CLIP's patch embedding; CLAP's STFT, which needs 15-bit
  audio, and its patch embedding), CLAP's log-mel front end and the final L2 normalisation.
- the HAN stays fp32: it is ~0.5 % of a window's compute next to 80 ViT-B/16 frames, so int8 would not
  pay (measured in ``bench/cpu_towers_bench.py``).

Methods: ``dynamic`` (default): activations are quantized per batch at run time (QOperator form:
``DynamicQuantizeLinear`` + ``MatMulInteger``), nothing to calibrate. ``static``: activation scales
from calibration clips, written as QDQ (``QuantizeLinear``/``DequantizeLinear`` pairs), the form
TensorRT builds int8 engines from.

Every int8 folder carries ``fidelity.json`` (:class:`FidelityReport`), measured when it is built on
the calibration clips (generated clips when none are given): per-frame CLIP and per-segment CLAP
cosine to fp32 (min, mean), the HAN probabilities' largest difference and the share of equal event
cells. An engine below the gate (:data:`MIN_MEAN_COSINE`, :data:`MIN_COSINE`) is refused unless forced,
both when it is built and when a backend loads it (:func:`check_folder`).
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from lsld_engine.hardware import kernels_have_int8_dot_products
from lsld_engine.backends.int8_report import (  # noqa: F401 - the report side, re-exported
    INT8_SUBDIR, MANIFEST_NAME, MIN_COSINE, MIN_MEAN_COSINE, REPORT_NAME, FidelityError, FidelityReport,
    Int8BackendError, TowerFidelity, _sha256, check_folder, gate, int8_backend_options, int8_folder, is_int8_folder,
    read_report, summary_line)
from lsld_engine.registry import io_names, onnx_filename

log = logging.getLogger(__name__)

TOWERS: tuple[str, ...] = ("clip_image", "clap_audio")
#: Ops with constant weights that get int8 weights; everything else stays fp32 (module docstring).
QUANT_OPS: tuple[str, ...] = ("MatMul", "Gemm")
METHODS = ("dynamic", "static")
#: Generated calibration clips when the user gives none (count, seconds each).
GENERATED_CLIPS = (2, 10.0)
#: At most this many items per tower feed static calibration (activation ranges settle quickly).
CALIBRATION_ITEMS = 64
#: At most this many 10-s windows (over all calibration clips) are decoded for calibration and the
#: report: 8 windows = 640 frames, ~2 min of fp32 + int8 ViT-B/16 on 2 idle cores.
MAX_CALIBRATION_WINDOWS = 8


# --- building --------------------------------------------------------------------------------------

def quantize_folder(src_dir: str | os.PathLike, dst_dir: str | os.PathLike, *, method: str = "dynamic",
                    calibration: Sequence[str | os.PathLike] | str | os.PathLike | None = None,
                    networks: Sequence[str] | None = None, min_mean_cosine: float = MIN_MEAN_COSINE,
                    min_cosine: float = MIN_COSINE, force: bool = False, threads: int | None = None,
                    max_windows: int = 1) -> FidelityReport:
    """Write the int8 twin of the export folder ``src_dir`` into ``dst_dir`` with its fidelity report.

    ``calibration``: video files and/or folders (their clips feed static calibration and the
    report); ``None``: :data:`GENERATED_CLIPS` clips from :mod:`lsld_engine.testing.videos`.
    ``max_windows``: 10-s windows decoded per clip. ``networks``: towers to quantize (default: those
    in ``src_dir``); the HAN is copied. ``dst_dir`` appears whole or not at all (built beside it,
    then renamed), replacing an older one. Raises :class:`FidelityError` (after writing the folder,
    so it can be inspected) when the engine is below the gate, unless ``force``.
    """
    t0 = time.perf_counter()
    if method not in METHODS:
        raise ValueError(f"quantization method must be one of {METHODS}, got {method!r}")
    src, dst = Path(src_dir), Path(dst_dir)
    present = [n for n in (*TOWERS, "han") if (src / onnx_filename(n)).is_file()]
    towers = [n for n in (networks or TOWERS) if n in present]
    if not towers:
        raise FileNotFoundError(f"{src}: no clip_image.onnx or clap_audio.onnx to quantize (make them with "
                                f"`lsld-engine export --out {src}`)")
    with tempfile.TemporaryDirectory(prefix="lsld-calib-") as tmp:
        paths, generated, frames, segments = calibration_windows(calibration, Path(tmp), max_windows)
        dst.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", dir=dst.parent))
        work.chmod(0o777 & ~_umask())  # mkdtemp makes it private; the folder is an ordinary output
        try:
            counts = {}
            for net in present:
                if net in towers:
                    data = (frames.reshape(-1, *frames.shape[2:]) if net == "clip_image"   # (W * 80, 224, 224, 3)
                            else segments.reshape(-1, segments.shape[-1]))                # (W * 10, 48000)
                    counts[net] = quantize_file(net, src / onnx_filename(net), work / onnx_filename(net), method,
                                                data[:: max(1, len(data) // CALIBRATION_ITEMS)][:CALIBRATION_ITEMS])
                else:
                    shutil.copy2(src / onnx_filename(net), work / onnx_filename(net))
            report = measure_fidelity(src, work, frames, segments, threads=threads, quantized=counts)
            report.method, report.format = method, ("QDQ" if method == "static" else "QOperator")
            report.clips = [p.name for p in paths]
            report.generated_clips = generated
            report.min_mean_cosine, report.min_cosine = float(min_mean_cosine), float(min_cosine)
            report.files = {onnx_filename(n): _sha256(work / onnx_filename(n)) for n in present}
            report.seconds = round(time.perf_counter() - t0, 1)
            _write_manifest(src, work, present, towers, report)
            (work / REPORT_NAME).write_text(report.to_json())
            _replace_dir(work, dst)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
    log.info("int8 folder %s built in %.1f s", dst, report.seconds)
    if not force:
        gate(report, dst)
    return report


def quantize_file(net: str, src: Path, dst: Path, method: str, calib: np.ndarray) -> int:
    """Quantize one tower file ``src`` -> ``dst`` (``method`` as in :func:`quantize_folder`; ``calib``:
    the tower's inputs ``(N, ...)`` for static calibration, unused by dynamic); returns the number of
    int8 weight matrices."""
    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic,
                                          quantize_static)

    t0 = time.perf_counter()
    model = onnx.load(str(src))
    front = _front_end(model.graph)
    targets = [n.name for n in model.graph.node if n.op_type in QUANT_OPS and n.name not in front]
    # exclude the front end rather than list the targets: the quantizer rewrites a Gemm into a
    # MatMul + Add under a new name, which a target list would miss (CLIP's 12 attention output
    # projections stayed fp32 that way: 16 % of the int8 tower's time)
    # reduce_range on a CPU without VNNI: 8-bit weights overflow the AVX2 kernels' int16 pair sums
    # (measured on an AVX2-only EPYC: CLAP's mean cosine 0.9948, under the fidelity gate)
    common = dict(per_channel=True, op_types_to_quantize=list(QUANT_OPS), nodes_to_exclude=sorted(front),
                  reduce_range=not kernels_have_int8_dot_products(), extra_options={"MatMulConstBOnly": True})
    if method == "dynamic":
        with _quiet_root_logger():
            quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, **common)
    else:
        name = io_names(net)[0][0]

        class _Reader(CalibrationDataReader):
            def __init__(self) -> None:
                self._it = iter(calib[i:i + 8] for i in range(0, len(calib), 8))

            def get_next(self):
                x = next(self._it, None)
                return None if x is None else {name: np.ascontiguousarray(x)}

        # s8 activations and weights, symmetric weights: what TensorRT's int8 QDQ path expects
        with _quiet_root_logger():
            quantize_static(str(src), str(dst), _Reader(), quant_format=QuantFormat.QDQ, activation_type=QuantType.QInt8,
                            weight_type=QuantType.QInt8, **{**common, "extra_options": {
                                **common["extra_options"], "ActivationSymmetric": False, "WeightSymmetric": True}})
    out = onnx.load(str(dst), load_external_data=False)
    meta = {p.key: p.value for p in model.metadata_props} | {"lsld.precision": "int8", "lsld.quantization": method}
    del out.metadata_props[:]
    for k, v in meta.items():
        out.metadata_props.add(key=k, value=v)
    onnx.save_model(out, str(dst))
    # int8 weight matrices (zero points are int8 too, but 0-/1-D)
    n_int8 = sum(t.data_type == onnx.TensorProto.INT8 and len(t.dims) >= 2 for t in out.graph.initializer)
    log.info("%s: int8 (%s) in %.1f s, %d of %d MatMul/Gemm nodes have int8 weights", net, method,
             time.perf_counter() - t0, n_int8, len(targets))
    return n_int8


@contextlib.contextmanager
def _quiet_root_logger():
    """ORT's quantizer logs a "consider pre-processing" hint on the root logger; it does not apply
    here (the exporter already folded constants and inferred shapes). Restored afterwards."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.ERROR))
    try:
        yield
    finally:
        root.setLevel(level)


def _front_end(graph) -> set[str]:
    """Names of the nodes upstream of the first normalisation node: the towers' signal front ends.

    CLAP's is the STFT and the log-mel projection, a ``MatMul`` of the power spectrum (dynamic range
    ~1e-10 .. 2.6e5) with the mel matrix: int8 activations there cost ~0.02 of cosine on their own
    (measured: 0.977 with it, 0.9999 without, small CLAP). CLIP's is the patch embedding (a Conv,
    not quantized anyway)."""
    first = next((n for n in graph.node if n.op_type in ("LayerNormalization", "BatchNormalization")), None)
    if first is None:
        return set()
    producer = {o: n for n in graph.node for o in n.output}
    seen: set[str] = set()
    stack = [producer[i] for i in first.input if i in producer]
    while stack:
        n = stack.pop()
        if n.name not in seen:
            seen.add(n.name)
            stack.extend(producer[i] for i in n.input if i in producer)
    return seen


def measure_fidelity(fp32_dir: str | os.PathLike, int8_dir: str | os.PathLike, frames: np.ndarray,
                     segments: np.ndarray, *, threads: int | None = None,
                     quantized: dict[str, int] | None = None) -> FidelityReport:
    """Compare the int8 folder with the fp32 one on ``frames (W, 80, 224, 224, 3)`` uint8 and
    ``segments (W, 10, 48000)`` float32 (windows of decoded clips). The returned report has the
    measurements; the caller fills in method, clips, gate and digests. ``quantized``: tower -> int8
    weight matrices; only these towers are reported (None: every tower in ``int8_dir``)."""
    from lsld_engine.backends.onnx_backend import OnnxBackend
    from lsld_engine.records.events import predict_masks

    fp32_dir, int8_dir = Path(fp32_dir), Path(int8_dir)
    w = frames.shape[0]
    ref = OnnxBackend(engine_dir=fp32_dir, threads=threads, check_int8=False)
    q = OnnxBackend(engine_dir=int8_dir, threads=threads, check_int8=False)
    towers: dict[str, TowerFidelity] = {}
    feats: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for net, data, fn in (("clip_image", frames.reshape(-1, *frames.shape[2:]), "embed_images"),
                          ("clap_audio", segments.reshape(-1, segments.shape[-1]), "embed_audio")):
        if not (int8_dir / onnx_filename(net)).is_file():
            continue
        a, b = getattr(ref, fn)(data), getattr(q, fn)(data)
        if quantized is None or net in quantized:  # a tower copied as fp32 feeds the HAN, not the report
            c = _cosine(a, b)
            towers[net] = TowerFidelity(int(len(c)), float(c.min()), float(c.mean()), int((quantized or {}).get(net, 0)))
        feats[net] = (a.reshape(w, -1, a.shape[-1]), b.reshape(w, -1, b.shape[-1]))
    han_diff = agreement = None
    cells = 0
    if (int8_dir / onnx_filename("han")).is_file() and len(feats) == 2:
        pa = ref.parse(feats["clap_audio"][0], feats["clip_image"][0])
        pb = q.parse(feats["clap_audio"][1], feats["clip_image"][1])
        han_diff = float(max(np.abs(pa[k] - pb[k]).max() for k in pa))
        ma = predict_masks(pa["seg_prob"], pa["a_prob"], pa["v_prob"])
        mb = predict_masks(pb["seg_prob"], pb["a_prob"], pb["v_prob"])
        equal = sum(int((x == y).sum()) for x, y in zip(ma, mb))
        cells = sum(x.size for x in ma)
        agreement = equal / cells
    ref.close()
    q.close()
    import onnxruntime

    return FidelityReport(method="", format="", clips=[], generated_clips=False, towers=towers,
                          han_quantized=False, han_max_prob_diff=han_diff, event_agreement=agreement,
                          event_cells=cells, min_mean_cosine=MIN_MEAN_COSINE, min_cosine=MIN_COSINE,
                          onnxruntime=onnxruntime.__version__)


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine of ``(N, D)`` arrays (float64; an all-zero row gives 0, not NaN)."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.where(den > 0, (a * b).sum(1) / np.maximum(den, 1e-300), 0.0)


def calibration_windows(calibration, workdir: Path, max_windows: int = 1
                        ) -> tuple[list[Path], bool, np.ndarray, np.ndarray]:
    """``(paths, generated, frames (W, 80, 224, 224, 3) uint8, segments (W, 10, 48000) float32)`` of
    the calibration videos (files / folders), or of clips generated into ``workdir`` when None."""
    paths, generated = _calibration_paths(calibration, workdir)
    frames, segments = _decode(paths, max_windows)
    return paths, generated, frames, segments


def _calibration_paths(calibration, tmp: Path) -> tuple[list[Path], bool]:
    if calibration is None:
        from lsld_engine.testing.videos import bench_spec, make_video

        n, seconds = GENERATED_CLIPS
        # textured moving noise and tones: closer to real pixels than flat test patterns
        return [make_video(tmp / f"calib{i}.mp4", bench_spec(320, 180, seconds)) for i in range(n)], True
    from lsld_engine.parsing.video_inputs import collect_inputs

    items = collect_inputs([str(p) for p in ([calibration] if isinstance(calibration, (str, os.PathLike))
                                             else calibration)], None)
    if not items:
        raise FileNotFoundError(f"no video files in {calibration}")
    return [Path(i.path) for i in items], False


def _decode(paths: Iterable[Path], max_windows: int) -> tuple[np.ndarray, np.ndarray]:
    """``frames (W, 80, 224, 224, 3)`` uint8 and ``segments (W, 10, 48000)`` float32 of the clips."""
    from lsld_engine.media import MediaError, decode_video

    frames, audio = [], []
    left = MAX_CALIBRATION_WINDOWS
    for p in paths:
        if left <= 0:
            log.info("calibration: %d windows decoded, the other clips are not used", MAX_CALIBRATION_WINDOWS)
            break
        try:
            v = decode_video(p, max_windows=min(max_windows, left))
        except MediaError as e:
            log.warning("calibration: skipping %s (%s)", p, e)
            continue
        frames.append(v.frames)
        audio.append(v.audio)
        left -= v.frames.shape[0]
    if not frames:
        raise FidelityError("no calibration clip could be decoded")
    return np.concatenate(frames), np.concatenate(audio)


def _write_manifest(src: Path, work: Path, present: list[str], towers: list[str], report: FidelityReport) -> None:
    path = src / MANIFEST_NAME
    manifest = json.loads(path.read_text()) if path.is_file() else {}
    manifest = {k: v for k, v in manifest.items() if k in present}
    for net in present:
        entry = manifest.setdefault(net, {})
        entry["files"] = {"fp32": onnx_filename(net)}  # what the onnx backend loads (int8 inside)
        entry.pop("parity", None)  # the fp32 folder's parity; the int8 one is in the report
        entry["precision"] = "int8" if net in towers else "fp32"
        if net in towers:
            entry["quantization"] = {"method": report.method, "format": report.format, "ops": list(QUANT_OPS),
                                     "per_channel": True, "fp32_source": str((src / onnx_filename(net)).resolve())}
    (work / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")


def _replace_dir(work: Path, dst: Path) -> None:
    """Put ``work`` at ``dst``; an older ``dst`` is moved aside first and removed after."""
    old = None
    if dst.exists():
        old = dst.with_name(f".{dst.name}.old.{os.getpid()}")
        dst.rename(old)
    work.rename(dst)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
