"""The ``onnx`` inference backend: ONNX Runtime over the files written by ``lsld-engine export``.

Files (``engine_dir``): ``clip_image.onnx``, ``clap_audio.onnx``, ``han.onnx`` (fp32) or their
``.fp16.onnx`` twins (``precision="fp16"``); each is loaded on first use, so a parse that only runs
the HAN needs only ``han.onnx``. Providers: TensorRT EP > CUDA EP > CPU EP, the first ones this
onnxruntime build has (``device="cpu"`` forces CPU; ``providers=[...]`` overrides). On a GPU provider
inputs and outputs go through IO binding (outputs stay on the device until one copy back).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from lsld_engine.backends.base import ClosesOnExit
from lsld_engine.registry import EXPORTED, io_names, onnx_filename

log = logging.getLogger(__name__)

#: Preference order; the first available ones are used.
PROVIDER_ORDER: tuple[str, ...] = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
_GPU_PROVIDERS = PROVIDER_ORDER[:2]
#: ``batch_sizes`` keys of :func:`lsld_engine.backends.base.default_batch_sizes` -> network.
BATCH_KEYS = {"images": "clip_image", "audio": "clap_audio", "windows": "han"}
_NETWORK_INPUTS = {n: io_names(n)[0] for n in EXPORTED}


def choose_providers(available: Sequence[str], device: str = "cpu",
                     requested: Sequence[str] | None = None) -> list[str]:
    """Execution providers for ``device``: ``requested`` verbatim (each must be available), else
    TensorRT > CUDA > CPU among ``available`` on ``cuda``, CPU alone on ``cpu``."""
    if requested:
        missing = [p for p in requested if p not in available]
        if missing:
            raise RuntimeError(f"ONNX Runtime providers {missing} are not in this build "
                               f"(available: {', '.join(available)})")
        return list(requested)
    if not str(device).startswith("cuda"):
        return ["CPUExecutionProvider"]
    gpu = [p for p in _GPU_PROVIDERS if p in available]
    if not gpu:
        raise RuntimeError(f"device={device!r} but this onnxruntime has no GPU provider (available: "
                           f"{', '.join(available)}); install onnxruntime-gpu, or use device='cpu'")
    return gpu + ["CPUExecutionProvider"]


def provider_options(providers: Sequence[str], *, device_id: int, precision: str, cache_dir: Path,
                     network: str, max_batch: int, input_shapes: dict[str, list]) -> list[dict]:
    """Options per provider: TensorRT EP gets an engine + timing cache under ``cache_dir`` and an
    explicit batch profile ``[1, max_batch]`` (otherwise it rebuilds engines as batch sizes change)."""
    opts: list[dict] = []
    for p in providers:
        if p == "TensorrtExecutionProvider":
            def shape(b: int) -> str:
                return ",".join(f"{n}:{'x'.join(str(b if isinstance(d, str) else d) for d in s)}"
                                for n, s in input_shapes.items())
            opts.append({"device_id": device_id, "trt_fp16_enable": precision == "fp16",
                         "trt_engine_cache_enable": True, "trt_engine_cache_path": str(cache_dir),
                         "trt_timing_cache_enable": True, "trt_timing_cache_path": str(cache_dir),
                         "trt_engine_cache_prefix": network,
                         "trt_profile_min_shapes": shape(1), "trt_profile_opt_shapes": shape(max_batch),
                         "trt_profile_max_shapes": shape(max_batch)})
        elif p == "CUDAExecutionProvider":
            opts.append({"device_id": device_id})
        else:
            opts.append({})
    return opts


def session_options(*, precision: str = "fp32", on_cpu: bool = True, threads: int | None = None):
    """Tuned ``SessionOptions``: all graph optimisations, one inter-op thread (our graphs are
    sequential), ``threads`` intra-op threads (``None``: ONNX Runtime's default, one per core)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.inter_op_num_threads = 1
    if threads:
        so.intra_op_num_threads = int(threads)
    # ORT's CPU layout pass (NCHWc, part of ENABLE_ALL) crashes on fp16 Conv graphs (segfault seen
    # with onnxruntime 1.32 on the fp16 CLIP file); fp16 on CPU is only a parity check anyway.
    so.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED if precision == "fp16" and on_cpu
                                   else ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
    so.log_severity_level = 3
    # ORT's idle pool threads spin by default: they steal the cores that decoding workers (and torch)
    # share with us; the latency gained by spinning is small next to a model call.
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return so


class _Session:
    """One network's ONNX Runtime session; runs ``(B, ...)`` inputs in chunks of ``max_batch``."""

    def __init__(self, path: Path, network: str, *, providers: list[str], device_id: int, precision: str,
                 threads: int | None, max_batch: int, io_binding: bool | None):
        import onnxruntime as ort

        model_inputs = _read_inputs(path)
        on_cpu = providers[0] == "CPUExecutionProvider"
        opts = provider_options(providers, device_id=device_id, precision=precision,
                                cache_dir=path.parent / "ort_trt_cache", network=network,
                                max_batch=max_batch, input_shapes=model_inputs)
        if "TensorrtExecutionProvider" in providers:
            (path.parent / "ort_trt_cache").mkdir(exist_ok=True)
        self.session = ort.InferenceSession(str(path), session_options(precision=precision, on_cpu=on_cpu,
                                                                        threads=threads),
                                            providers=providers, provider_options=opts)
        self.network = network
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.outputs = [o.name for o in self.session.get_outputs()]
        if tuple(self.inputs) != _NETWORK_INPUTS[network]:
            raise ValueError(f"{path}: inputs {self.inputs}, expected {list(_NETWORK_INPUTS[network])} "
                             f"— not an lsld-engine {network} export")
        self.max_batch = max_batch
        self.io_binding = (not on_cpu) if io_binding is None else io_binding
        self.device_type = "cpu" if on_cpu else "cuda"
        self.device_id = device_id
        self.providers = self.session.get_providers()

    def run(self, *arrays: np.ndarray) -> list[np.ndarray]:
        n = arrays[0].shape[0]
        if n == 0:
            raise ValueError(f"{self.network}: empty batch")
        chunks = [self._run_chunk([a[s:s + self.max_batch] for a in arrays]) for s in range(0, n, self.max_batch)]
        return [np.concatenate(parts) if len(parts) > 1 else parts[0] for parts in zip(*chunks)]

    def _run_chunk(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        feeds = {name: np.ascontiguousarray(a) for name, a in zip(self.inputs, arrays)}
        if not self.io_binding:
            return self.session.run(self.outputs, feeds)
        binding = self.session.io_binding()
        for name, a in feeds.items():
            binding.bind_cpu_input(name, a)
        for name in self.outputs:
            binding.bind_output(name, self.device_type, self.device_id)
        self.session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()


def _read_inputs(path: Path) -> dict[str, list]:
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    return {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in m.graph.input}


class OnnxBackend(ClosesOnExit):
    """ONNX Runtime implementation of the backend contract (see ``docs/CONTRACTS.md``).

    ``engine_dir``: folder of exported files (``lsld-engine export --out DIR``). The checkpoint options
    are accepted for a uniform interface; the weights are those baked into the files (a warning is
    logged when a file records a different checkpoint). ``batch_sizes``: largest batch per session
    call (``images``/``audio``/``windows``, defaults from ``base.default_batch_sizes``); larger
    inputs are run in chunks. ``providers``, ``threads``, ``io_binding``: see the module docstring.
    ``precision="int8"``: the int8 folder ``engine_dir`` or ``engine_dir/int8`` (files named like
    fp32 ones); any folder with a ``fidelity.json`` must match it and pass its gate
    (:func:`lsld_engine.backends.quantize.check_folder`) unless ``force_int8``; ``check_int8=False``
    skips that check (the quantizer measuring a folder it is building)."""

    name = "onnx"

    def __init__(self, *, engine_dir: str | os.PathLike | None = None, device: str = "cpu",
                 precision: str = "fp32", clip_checkpoint: str | None = None, clap_checkpoint: str | None = None,
                 model: str | None = None, providers: Sequence[str] | None = None, threads: int | None = None,
                 io_binding: bool | None = None, batch_sizes: dict[str, int] | None = None,
                 force_int8: bool = False, check_int8: bool = True, **ignored):
        import onnxruntime as ort

        from lsld_engine.backends.base import default_batch_sizes

        if engine_dir is None:
            raise ValueError("the onnx backend runs exported files: pass engine_dir (create it with "
                             "`lsld-engine export --out DIR`)")
        if precision not in ("fp32", "fp16", "int8"):
            raise ValueError(f"the onnx backend supports precision fp32, fp16 or int8, not {precision!r}")
        if ignored:
            log.debug("onnx backend: ignoring options %s", sorted(ignored))
        self.engine_dir = Path(engine_dir).expanduser()
        if not self.engine_dir.is_dir():
            raise FileNotFoundError(f"ONNX engine folder not found: {self.engine_dir} (create it with "
                                    f"`lsld-engine export --out {self.engine_dir}`)")
        # int8: the int8 folder (engine_dir or engine_dir/int8) holds fp32-named files with int8 inside;
        # any folder with a fidelity report must pass its gate before it loads (lsld_engine.backends.quantize)
        from lsld_engine.backends import int8_report as quantize

        if precision == "int8":
            self.engine_dir, precision = quantize.int8_folder(self.engine_dir), "fp32"
        self.int8_dir = self.engine_dir if quantize.is_int8_folder(self.engine_dir) else None
        if self.int8_dir is not None and check_int8:
            quantize.check_folder(self.int8_dir, force=force_int8)
        self.device = str(device)
        self.precision = precision
        self.providers = choose_providers(ort.get_available_providers(), self.device, providers)
        self.device_id = int(self.device.split(":")[1]) if ":" in self.device else 0
        self.threads = threads
        self.io_binding = io_binding
        sizes = {**default_batch_sizes(self.device, "onnx"), **(batch_sizes or {})}
        self.max_batch = {BATCH_KEYS[k]: int(v) for k, v in sizes.items() if k in BATCH_KEYS}
        self._checkpoints = {"clip_image": clip_checkpoint, "clap_audio": clap_checkpoint, "han": model}
        self._sessions: dict[str, _Session] = {}

    # --- files and sessions ---

    def path(self, network: str) -> Path:
        return self.engine_dir / onnx_filename(network, self.precision)

    def session(self, network: str) -> _Session:
        s = self._sessions.get(network)
        if s is None:
            path = self.path(network)
            if not path.is_file():
                flag = " --fp16" if self.precision == "fp16" else ""
                raise FileNotFoundError(f"{path} not found: export it with `lsld-engine export --networks "
                                        f"{network}{flag} --out {self.engine_dir}`")
            self._warn_if_other_checkpoint(path, network)
            s = _Session(path, network, providers=self.providers, device_id=self.device_id,
                         precision=self.precision, threads=self.threads, max_batch=self.max_batch[network],
                         io_binding=self.io_binding)
            log.info("onnx backend: %s on %s", path.name, ", ".join(s.providers))
            self._sessions[network] = s
        return s

    def _warn_if_other_checkpoint(self, path: Path, network: str) -> None:
        wanted = self._checkpoints.get(network)
        if not wanted:
            return
        import onnx

        meta = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
        source = meta.get("lsld.source", "")
        if Path(source).name != Path(wanted).name:
            log.warning("%s was exported from %r, not %s: its weights are used (re-export to change them)",
                        path, source or "unknown weights", wanted)

    # --- the contract ---

    def embed_images(self, images: np.ndarray) -> np.ndarray:
        """``(B, 224, 224, 3)`` uint8 -> ``(B, 512)`` float32."""
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise ValueError(f"images must be (B, 224, 224, 3) uint8, got {images.shape} {images.dtype}")
        return self.session("clip_image").run(images)[0]

    def embed_audio(self, segments: np.ndarray) -> np.ndarray:
        """``(B, 48000)`` float32 1-s mono 48-kHz segments -> ``(B, 512)`` float32."""
        segments = np.asarray(segments, dtype=np.float32)
        if segments.ndim != 2:
            raise ValueError(f"audio segments must be (B, 48000) float32, got {segments.shape}")
        return self.session("clap_audio").run(segments)[0]

    def parse(self, audio: np.ndarray, frames: np.ndarray) -> dict[str, np.ndarray]:
        """``audio (B, 10, 512)``, ``frames (B, 80, 512)`` -> ``seg_prob (B, 10, 2, C)``, ``a_prob``,
        ``v_prob``, ``global_prob`` ``(B, C)`` float32."""
        audio = np.asarray(audio, dtype=np.float32)
        frames = np.asarray(frames, dtype=np.float32)  # features may be stored as float16
        if audio.ndim != 3 or frames.ndim != 3 or audio.shape[0] != frames.shape[0]:
            raise ValueError(f"expected audio (B, 10, 512) and frames (B, 80, 512); got {audio.shape}, {frames.shape}")
        s = self.session("han")
        return dict(zip(s.outputs, s.run(audio, frames)))

    def close(self) -> None:
        self._sessions.clear()
