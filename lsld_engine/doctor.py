"""What this machine has for lsld-engine, and what ``--backend auto`` will pick on it and why.

:func:`facts` gathers everything (nothing heavy is run: no network is built, no model loaded);
:func:`report` formats one screen. ``lsld-engine doctor`` prints it.
"""
from __future__ import annotations

import importlib.util
import os
import platform
from dataclasses import dataclass, field

#: CPU flags shown by doctor: name shown -> /proc/cpuinfo flags (any of them).
CPU_FEATURES: dict[str, tuple[str, ...]] = {
    "AVX2": ("avx2",),
    "AVX-512": ("avx512f",),
    "VNNI": ("avx512_vnni", "avx_vnni"),
    "BF16": ("avx512_bf16", "bf16"),
    "AMX": ("amx_tile", "amx_bf16", "amx_int8"),
}
#: pyproject extras -> a module each needs (an extra counts as installed when all import).
EXTRAS: dict[str, tuple[str, ...]] = {
    "clip": ("open_clip", "torchvision", "PIL"),
    "clap": ("torchlibrosa", "transformers", "librosa", "h5py"),
    "media": ("av",),
    "onnx": ("onnx", "onnxruntime", "onnxscript"),
    "gpu": ("tensorrt",),
    "ray": ("ray", "pyarrow"),
    "parquet": ("pyarrow",),
    "plot": ("matplotlib",),
    "dev": ("pytest", "imageio_ffmpeg"),
}


@dataclass
class Facts:
    cpu_model: str
    cores: int
    usable_cores: int
    cpu_features: dict[str, bool | None]  # None: flags unreadable
    torch: str
    torch_capability: str
    cuda_devices: list[str]
    onnxruntime: str | None
    ort_providers: list[str]
    tensorrt: str
    nvdec: str
    pyav: str | None
    ffmpeg: str | None
    extras: dict[str, bool]
    cache_dir: str
    cache_bytes: int
    cache_entries: int
    auto: str = ""
    precision: str = ""
    threads: str = ""
    notes: list[str] = field(default_factory=list)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "cpu model"):
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _have(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def cpu_features(flags: set[str] | None = None) -> dict[str, bool | None]:
    """``{AVX2, AVX-512, VNNI, BF16, AMX: present}`` from the CPU flags (``None`` when unreadable)."""
    from lsld_engine.hardware import _cpu_flags

    flags = _cpu_flags() if flags is None else flags
    return {name: (None if flags is None else any(f in flags for f in names)) for name, names in CPU_FEATURES.items()}


def facts() -> Facts:
    import torch

    from lsld_engine.backends.auto import choose, tensorrt_ready
    from lsld_engine.backends.threads import available_cores, plan_threads
    from lsld_engine.exporting.cache import cache_root, cache_size
    from lsld_engine.hardware import cpu_bf16_support, cpu_tower_precision

    cuda = [f"cuda:{i} {torch.cuda.get_device_name(i)}" for i in range(torch.cuda.device_count())] \
        if torch.cuda.is_available() else []
    ort_version, providers = None, []
    if _have("onnxruntime"):
        import onnxruntime as ort

        ort_version, providers = ort.__version__, list(ort.get_available_providers())
    trt_ok, trt_why = tensorrt_ready()
    try:
        from lsld_engine.media.nvdec import nvdec_unavailable_reason

        why = nvdec_unavailable_reason()
        nvdec = "available" if not why else f"no: {why}"
    except ImportError as e:
        nvdec = f"no: {e}"
    pyav = ffmpeg = None
    if _have("av"):
        import av

        pyav = av.__version__
        ffmpeg = getattr(av, "ffmpeg_version_info", None) or ".".join(map(str, av.library_versions["libavcodec"]))
    root = cache_root()
    size, entries = cache_size(root)
    f = Facts(cpu_model=_cpu_model(), cores=os.cpu_count() or 1, usable_cores=available_cores(),
              cpu_features=cpu_features(), torch=torch.__version__,
              torch_capability=str(torch.backends.cpu.get_cpu_capability()), cuda_devices=cuda,
              onnxruntime=ort_version, ort_providers=providers,
              tensorrt=(f"{trt_why} (usable)" if trt_ok else f"no: {trt_why.split(';')[0]}"), nvdec=nvdec, pyav=pyav, ffmpeg=ffmpeg,
              extras={name: all(_have(m) for m in mods) for name, mods in EXTRAS.items()},
              cache_dir=str(root), cache_bytes=size, cache_entries=entries)
    device = "cuda" if cuda else "cpu"
    choice = choose(device)
    f.auto = choice.describe()
    plan = plan_threads(device)
    f.threads = plan.describe()
    if choice.backend == "torch" and device == "cpu":
        towers = {n: cpu_tower_precision(n) for n in ("clip_image", "clap_audio")}
        f.precision = "; ".join(f"{n} {p} ({why})" for n, (p, why) in towers.items())
    else:
        f.precision = f"{choice.precision} (--backend torch on CPU without --precision: " + "; ".join(
            f"{n} {cpu_tower_precision(n)[0]}" for n in ("clip_image", "clap_audio")) + ")"
    native, why = cpu_bf16_support()
    if f.cpu_features.get("VNNI") is False:
        f.notes.append("no VNNI: int8 would run without its fast dot products")
    if not native:
        f.notes.append(f"no native bf16 ({why}): --precision bf16 falls back to fp32")
    return f


def _yes(v: bool | None) -> str:
    return "?" if v is None else ("yes" if v else "no")


def report(f: Facts) -> str:
    """One screen of text."""
    mib = f.cache_bytes / 2 ** 20
    rows = [
        ("CPU", f"{f.cpu_model}; {f.cores} cores ({f.usable_cores} usable)"),
        ("CPU flags", "  ".join(f"{k} {_yes(v)}" for k, v in f.cpu_features.items())),
        ("torch", f"{f.torch} (CPU kernels: {f.torch_capability})"),
        ("CUDA devices", ", ".join(f.cuda_devices) or "none"),
        ("ONNX Runtime", f"{f.onnxruntime}; providers {', '.join(f.ort_providers)}" if f.onnxruntime
         else "not installed (pip install 'lsld-engine[onnx]')"),
        ("TensorRT", f.tensorrt),
        ("NVDEC", f.nvdec),
        ("PyAV / FFmpeg", f"PyAV {f.pyav}, FFmpeg {f.ffmpeg}" if f.pyav else "PyAV not installed"),
        ("extras", "  ".join(f"{k} {_yes(v)}" for k, v in f.extras.items())),
        ("export cache", f"{f.cache_dir} ({mib:.1f} MiB, {f.cache_entries} entries; $LSLD_CACHE moves it)"),
        ("auto picks", f.auto),
        ("precision", f.precision),
        ("threads", f.threads),
    ]
    width = max(len(k) for k, _ in rows)
    lines = [f"{k:<{width}}  {v}" for k, v in rows]
    lines += [f"{'note':<{width}}  {n}" for n in f.notes]
    return "\n".join(lines)
