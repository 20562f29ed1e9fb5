"""What the CPU runs natively, and the precision to use on it (bf16 only where the CPU has it).

bfloat16 matmuls are fast on CPUs with AVX512-BF16 or AMX (Intel Cooper Lake / Sapphire Rapids and
later, AMD Zen 4 and later) or the Arm BF16 extension. Elsewhere PyTorch emulates them and they are
far slower than float32 (reported by a user on a 2-core AVX2 machine without AVX-512: 0.4 vs 9.3
GFLOP/s, training ~25x slower; our dev CPU has native bf16, so we could not measure it ourselves). :func:`resolve_precision` therefore turns a request for ``bf16`` on such
a CPU into ``fp32`` with a warning that says why; set ``LSLD_ALLOW_SLOW_BF16=1`` to keep bf16 anyway
(e.g. to compare numerics).

int8 likewise: :func:`resolve_precision` turns ``int8`` into ``fp32`` on a CPU without int8 dot-product
instructions (VNNI / AMX-INT8 / Arm dot product; ``LSLD_ALLOW_SLOW_INT8=1`` keeps it), and
``LSLD_FAKE_CPU_FLAGS`` replaces the CPU flags for tests.
"""
from __future__ import annotations

import functools
import logging
import os
import platform

log = logging.getLogger(__name__)

#: /proc/cpuinfo flags that mean native bf16 arithmetic (x86: AVX512-BF16, AMX; Arm: BF16).
BF16_FLAGS: tuple[str, ...] = ("avx512_bf16", "amx_bf16", "bf16")


#: /proc/cpuinfo flags of native int8 dot products (AVX512-VNNI, AVX-VNNI, AMX-INT8; Arm: i8mm / asimddp).
INT8_FLAGS: tuple[str, ...] = ("avx512_vnni", "avx_vnni", "amx_int8", "i8mm", "asimddp")
#: Test hook: a space-separated flag list that replaces /proc/cpuinfo's (e.g. ``"avx2 fma"`` fakes a
#: CPU without VNNI); ``cpu_int8_support`` reads it on every call.
FAKE_FLAGS_ENV = "LSLD_FAKE_CPU_FLAGS"


def _cpu_flags(real: bool = False) -> set[str] | None:
    """The CPU feature flags of /proc/cpuinfo (``flags`` on x86, ``Features`` on Arm), or None;
    ``$LSLD_FAKE_CPU_FLAGS`` replaces them (tests) unless ``real``."""
    fake = os.environ.get(FAKE_FLAGS_ENV)
    if fake is not None and not real:
        return set(fake.split())
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    return set(value.split())
    except OSError:
        pass
    return None


@functools.lru_cache(maxsize=None)
def cpu_bf16_support() -> tuple[bool, str]:
    """``(native, reason)``: whether this CPU has native bf16 arithmetic, and a short reason."""
    flags = _cpu_flags()
    capability = _torch_capability()
    if flags is None:
        if platform.system() == "Darwin" and platform.machine() == "arm64":
            return True, "Apple silicon (Arm BF16)"
        return False, f"cannot read the CPU flags (torch CPU capability: {capability})"
    have = [f for f in BF16_FLAGS if f in flags]
    if have:
        return True, f"CPU flags {', '.join(have)}"
    return False, f"no {'/'.join(BF16_FLAGS[:2])} flag (torch CPU capability: {capability})"


def _torch_capability() -> str:
    try:
        import torch

        return str(torch.backends.cpu.get_cpu_capability())
    except Exception:  # noqa: BLE001 - only used in a message
        return "unknown"


def kernels_have_int8_dot_products() -> bool:
    """Whether the CPU the kernels really run on has int8 dot products (ignores the test hook):
    without them ONNX Runtime's u8 x s8 kernels sum pairs in saturating int16, so the quantizer
    keeps weights to 7 bits (``reduce_range``) there."""
    flags = _cpu_flags(real=True)
    return bool(flags and any(f in flags for f in INT8_FLAGS))


def cpu_int8_support() -> tuple[bool, str]:
    """``(native, reason)``: whether this CPU has int8 dot-product instructions (VNNI / AMX / Arm
    dot product). Without them ONNX Runtime's int8 kernels fall back to AVX2 ``pmaddubsw`` paths
    that are not reliably faster than fp32 (not measured here: every CPU we have has VNNI)."""
    flags = _cpu_flags()
    if flags is None:
        return False, "cannot read the CPU flags"
    have = [f for f in INT8_FLAGS if f in flags]
    if have:
        return True, f"CPU flags {', '.join(have)}"
    return False, f"no {'/'.join(INT8_FLAGS[:3])} flag"


def resolve_precision(precision: str, device: str = "cpu") -> str:
    """``precision``, except ``bf16`` on a CPU without native bf16 becomes ``fp32`` (with a warning
    saying why; ``LSLD_ALLOW_SLOW_BF16=1`` keeps bf16), and ``int8`` on a CPU without VNNI / AMX
    becomes ``fp32`` likewise (``LSLD_ALLOW_SLOW_INT8=1`` keeps it). Other devices and precisions
    pass through."""
    if precision == "int8" and str(device).startswith("cpu"):
        return _resolve_int8()
    if precision != "bf16" or not str(device).startswith("cpu"):
        return precision
    native, reason = cpu_bf16_support()
    if native:
        return precision
    if os.environ.get("LSLD_ALLOW_SLOW_BF16") == "1":
        log.warning("bf16 on a CPU without native bf16 (%s): expect it to be many times slower than fp32", reason)
        return precision
    log.warning("--precision bf16 asked for, but this CPU has no native bf16 (%s): PyTorch would emulate it, "
                "many times slower than fp32 (~25x reported on an AVX2 CPU), so fp32 is used instead "
                "(set LSLD_ALLOW_SLOW_BF16=1 to force bf16)", reason)
    return "fp32"


#: bf16 / fp32 throughput of each tower on a CPU with native bf16, eager torch, batch 16. CLAP
#: HTSAT-tiny under bf16 autocast: 8.0 vs 6.0 segments/s (bench/cpu_towers_bench.py, 2-core AMD EPYC with AVX512-BF16).
#: CLIP ViT-B/16 with its weights cast to bf16 (``ClipImageEncoder.cast_weights``): 9.5 vs 4.7
#: images/s (2-core AMD EPYC Zen 4, idle; autocast had run 0.49x). Only towers above 1.0 run bf16
#: when the precision is left to the engine.
CPU_BF16_SPEEDUP: dict[str, float] = {"clap_audio": 1.34, "clip_image": 2.04}


def cpu_tower_precision(network: str) -> tuple[str, str]:
    """``(precision, reason)`` of ``network`` on this CPU when the user gave no ``--precision``:
    ``bf16`` only for a tower that measured faster in bf16 than fp32 (:data:`CPU_BF16_SPEEDUP`)
    *and* on a CPU with native bf16 (:func:`cpu_bf16_support`); ``fp32`` otherwise."""
    ratio = CPU_BF16_SPEEDUP.get(network)
    if ratio is None:
        return "fp32", "no bf16 measurement for this network"
    if ratio <= 1.0:
        return "fp32", f"bf16 measured {ratio:.2f}x fp32 for {network} on a native-bf16 CPU"
    native, reason = cpu_bf16_support()
    if not native:
        return "fp32", f"bf16 would be emulated ({reason})"
    return "bf16", f"bf16 measured {ratio:.2f}x fp32 for {network}; {reason}"
def _resolve_int8() -> str:
    native, reason = cpu_int8_support()
    if native:
        return "int8"
    if os.environ.get("LSLD_ALLOW_SLOW_INT8") == "1":
        log.warning("int8 on a CPU without VNNI (%s): it may be slower than fp32", reason)
        return "int8"
    log.warning("--precision int8 asked for, but this CPU has no int8 dot-product instructions (%s): ONNX "
                "Runtime's int8 kernels are then not known to beat fp32 (we have no such CPU to measure), so "
                "fp32 is used instead (set LSLD_ALLOW_SLOW_INT8=1 to force int8)", reason)
    return "fp32"
