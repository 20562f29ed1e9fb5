"""Random-weight networks (``--random-weights``): the SAME networks on every backend.

``parse --random-weights`` (torch), ``export --random-weights`` and the ``--backend auto`` export
cache all build a random network through :func:`build_random`, so one seed gives one set of weights
whatever runs it: scores and events of different backends can be compared on random weights.

How: the torch RNG is seeded (in a forked RNG state, the caller's stream is untouched), the network
is built on the CPU, and the towers' parameters get extra noise from a CPU generator of the same
seed (:func:`perturb`) before the module moves to its device — the weights never depend on the
device's generator. Some towers zero-initialise tensors (projections, biases), which would let
parity checks pass through dead paths; the noise removes them.
"""
from __future__ import annotations

import warnings

import torch
from torch import nn

#: Seed of random-weight networks when none is given (every command uses it).
RANDOM_SEED: int = 0
#: Standard deviation of the noise added to every trainable tower parameter.
PERTURB_SCALE: float = 0.02
#: Networks that get :func:`perturb` (the HAN's own initialisation has no dead paths).
PERTURBED: tuple[str, ...] = ("clip_image", "clap_audio")


def perturb(module: nn.Module, seed: int = RANDOM_SEED, scale: float = PERTURB_SCALE) -> None:
    """Add ``N(0, scale)`` noise to every trainable parameter, drawn from a CPU generator seeded
    with ``seed`` (frozen parameters are fixed transforms, e.g. CLAP's STFT and mel matrices)."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            if p.requires_grad:
                noise = torch.randn(p.shape, generator=g, dtype=torch.float32) * scale
                p.add_(noise.to(device=p.device, dtype=p.dtype))


def build_random(name: str, *, size: str = "real", seed: int = RANDOM_SEED, **kwargs):
    """Network ``name`` of the registry with random weights from ``seed``; ``kwargs`` go to the
    registry builder (``device``, ``precision``). The towers are built on the CPU, perturbed, then
    moved to ``device`` by the builder's own ``.to`` (so CPU and CUDA get the same weights)."""
    from lsld_engine import registry
    from lsld_engine.encoders.runtime import check_precision, resolve_device

    device = resolve_device(kwargs.pop("device", None))
    precision = kwargs.pop("precision", None)
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        # HTSAT calls torch.meshgrid without indexing=: harmless noise on every build
        warnings.filterwarnings("ignore", message="torch.meshgrid", category=UserWarning)
        torch.manual_seed(seed)
        # built in fp32 on the CPU; the precision (autocast) and device are set afterwards
        extra = {} if name == "han" else {"device": "cpu", "precision": "fp32"}
        net = registry.build(name, None, size=size, **extra, **kwargs)
        if name in PERTURBED:
            perturb(net, seed)
    net = net.to(device).eval()
    if name != "han":
        net.device = device
        net.precision = check_precision(precision or "fp32", device)
        if hasattr(net, "settle_precision"):  # CLIP: bf16 on a CPU means bf16 weights
            net.settle_precision()
    return net
