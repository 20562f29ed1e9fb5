"""Training the HAN from (denoised) labels: loss, trainers, the epoch loop, validation and testing.

Objectives (``--labels``, paper Table 2):

- ``weak``: the HAN baseline. ``BCE(global_prob, y) + BCE(a_prob, y) + BCE(v_prob, 0.9 y + 0.05)``
  (label smoothing ``y s + (1 - s) 0.5`` with ``s = 1.0`` for audio, ``0.9`` for visual).
- ``den``: ``BCE(global_prob, y) + 3.0 BCE(seg_a, audio) + 1.0 BCE(seg_v, visual_den)``.
- ``den+rew`` (default): as ``den`` with the re-weighted ``visual`` labels.

``y`` ``(B, C)`` is the weak video label; ``audio`` / ``visual_den`` / ``visual`` ``(B, T, C)`` come
from ``labels.npz`` (:mod:`lsld_engine.labels.denoise`); ``seg_a`` / ``seg_v`` ``(B, T, C)`` are the model's
segment probabilities. BCE is the mean over all elements, probabilities clamped to ``[1e-7, 1-1e-7]``;
the whole batch is one tensor expression.

Speed: features live in memory as tensors (the visual stream already averaged per segment, which
is exact, see :mod:`lsld_engine.han.model`), a batch is one index-select, and nothing is read from disk
inside the loop. On CPU the step runs on :class:`~lsld_engine.han.packed_train.PackedTrainer`
(packed parameters, matmuls that write their own weight gradients, hashed dropout masks, one Numba
Adam pass); elsewhere on the HAN module with autograd (:class:`ModuleTrainer`). Both compute the
same objective and Adam update; their dropout masks come from different generators.
"""
from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from lsld_engine.contract import FRAMES_PER_SEGMENT
from lsld_engine.records.events import predict_masks
from lsld_engine.hardware import resolve_precision
from lsld_engine.evaluation.metrics import METRIC_KEYS, evaluate
from lsld_engine.han.model import HAN, pool_frames

log = logging.getLogger("lsld_engine.han.training")

#: ``--labels`` choices and the ``labels.npz`` entry each uses for the visual segment labels.
OBJECTIVES: dict[str, str | None] = {"weak": None, "den": "visual_den", "den+rew": "visual"}
EPS: float = 1e-7


@dataclass
class TrainConfig:
    """Optimisation settings; the defaults are the paper's (Sec. 4.1)."""

    epochs: int = 20
    batch_size: int = 32
    lr: float = 2e-4
    step_size: int = 6
    gamma: float = 0.25
    seed: int = 6
    labels: str = "den+rew"
    select_metric: str = "evt_a"
    audio_weight: float = 3.0
    visual_weight: float = 1.0
    video_weight: float = 1.0
    visual_smoothing: float = 0.9      # ``weak`` objective only
    audio_smoothing: float = 1.0       # ``weak`` objective only
    eval_batch_size: int = 1024
    device: str = "cpu"
    precision: str = "fp32"            # or "bf16": autocast matmuls (not bit-exact with fp32)

    def __post_init__(self):
        if self.precision not in ("fp32", "bf16"):
            raise ValueError(f"unknown precision {self.precision!r}: expected fp32 or bf16")
        # bf16 only where the CPU has it natively (emulated bf16 was reported ~25x slower; lsld_engine.hardware)
        self.precision = resolve_precision(self.precision, self.device)
        if self.labels not in OBJECTIVES:
            raise ValueError(f"unknown --labels {self.labels!r}: expected one of {list(OBJECTIVES)}")
        for name in ("epochs", "batch_size", "step_size", "eval_batch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.select_metric not in METRIC_KEYS:
            raise ValueError(f"unknown selection metric {self.select_metric!r}: expected one of {list(METRIC_KEYS)}")


@dataclass
class TrainSet:
    """Training tensors: ``audio``, ``visual`` ``(N, T, D)`` float32 (visual = 8-frame means),
    ``weak`` ``(N, C)`` float32, ``seg_audio`` / ``seg_visual`` ``(N, T, C)`` float32 or None (``weak``)."""

    audio: torch.Tensor
    visual: torch.Tensor
    weak: torch.Tensor
    seg_audio: torch.Tensor | None = None
    seg_visual: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.audio.shape[0]

    def to(self, device) -> "TrainSet":
        move = lambda x: None if x is None else x.to(device)  # noqa: E731
        return TrainSet(move(self.audio), move(self.visual), move(self.weak), move(self.seg_audio), move(self.seg_visual))


@dataclass
class EvalSet:
    """Evaluation data: ``audio``, ``visual`` ``(N, T, D)`` float32 tensors (visual = 8-frame means),
    ``gt_audio``, ``gt_visual`` ``(N, T, C)`` uint8 arrays."""

    audio: torch.Tensor
    visual: torch.Tensor
    gt_audio: np.ndarray
    gt_visual: np.ndarray

    def __len__(self) -> int:
        return self.audio.shape[0]


def pooled_visual(frames: np.ndarray, chunk: int = 2048) -> torch.Tensor:
    """``(N, 8 T, D)`` float16/32 frames -> ``(N, T, D)`` float32 segment means, chunked to bound memory."""
    out = torch.empty((frames.shape[0], frames.shape[1] // FRAMES_PER_SEGMENT, frames.shape[2]), dtype=torch.float32)
    for s in range(0, frames.shape[0], chunk):
        out[s:s + chunk] = pool_frames(torch.from_numpy(np.ascontiguousarray(frames[s:s + chunk])))
    return out


def make_train_set(audio: np.ndarray, frames: np.ndarray, weak: np.ndarray, labels: dict | None,
                   objective: str) -> TrainSet:
    """A :class:`TrainSet` from features ``audio (N, T, D)``, ``frames (N, 8T, D)``, ``weak (N, C)`` and
    the ``labels.npz`` arrays (needed unless ``objective == "weak"``)."""
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}: expected one of {list(OBJECTIVES)}")
    seg_a = seg_v = None
    if objective != "weak":
        if labels is None:
            raise ValueError(f"objective {objective!r} needs denoised labels (labels.npz)")
        key = OBJECTIVES[objective]
        for k in ("audio", key):
            if k not in labels:
                raise KeyError(f"labels.npz lacks {k!r} (needed by --labels {objective})")
            if labels[k].shape[0] != weak.shape[0] or labels[k].shape[2] != weak.shape[1]:
                raise ValueError(f"labels.npz {k!r} has shape {labels[k].shape}, expected ({weak.shape[0]}, T, {weak.shape[1]})")
        seg_a = torch.as_tensor(np.asarray(labels["audio"], np.float32))
        seg_v = torch.as_tensor(np.asarray(labels[key], np.float32))
    return TrainSet(torch.as_tensor(np.asarray(audio, np.float32)), pooled_visual(frames),
                    torch.as_tensor(np.asarray(weak, np.float32)), seg_a, seg_v)


def make_eval_set(audio: np.ndarray, frames: np.ndarray, gt_audio: np.ndarray, gt_visual: np.ndarray) -> EvalSet:
    """An :class:`EvalSet` from features and ``(N, T, C)`` segment ground truth."""
    return EvalSet(torch.as_tensor(np.asarray(audio, np.float32)), pooled_visual(frames),
                   np.asarray(gt_audio, np.uint8), np.asarray(gt_visual, np.uint8))


def bce(prob: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy with ``prob`` clamped to ``[1e-7, 1 - 1e-7]``."""
    return F.binary_cross_entropy(prob.clamp(EPS, 1 - EPS), target)


def compute_loss(outputs, weak: torch.Tensor, seg_audio: torch.Tensor | None, seg_visual: torch.Tensor | None,
                 cfg: TrainConfig) -> torch.Tensor:
    """The ``cfg.labels`` objective (module docstring) for one batch.

    ``outputs`` = HAN ``(global_prob (B, C), a_prob (B, C), v_prob (B, C), seg_prob (B, T, 2, C))``.
    """
    global_prob, a_prob, v_prob, seg_prob = outputs
    loss = cfg.video_weight * bce(global_prob, weak)
    if cfg.labels == "weak":
        smooth = lambda y, s: y * s + (1.0 - s) * 0.5  # noqa: E731
        return (loss + bce(a_prob, smooth(weak, cfg.audio_smoothing))
                + bce(v_prob, smooth(weak, cfg.visual_smoothing)))
    return (loss + cfg.audio_weight * bce(seg_prob[:, :, 0], seg_audio)
            + cfg.visual_weight * bce(seg_prob[:, :, 1], seg_visual))


@torch.no_grad()
def predict(model: HAN, audio: torch.Tensor, visual: torch.Tensor, batch_size: int = 1024):
    """Eval-mode forward over all videos: ``(seg_prob (N, T, 2, C), a_prob (N, C), v_prob (N, C))`` numpy."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    segs, aps, vps = [], [], []
    for s in range(0, audio.shape[0], batch_size):
        _, a_prob, v_prob, seg = model.forward_pooled(audio[s:s + batch_size].to(device),
                                                      visual[s:s + batch_size].to(device))
        segs.append(seg.cpu())
        aps.append(a_prob.cpu())
        vps.append(v_prob.cpu())
    model.train(was_training)
    return torch.cat(segs).numpy(), torch.cat(aps).numpy(), torch.cat(vps).numpy()


def evaluate_model(model: HAN, data: EvalSet, batch_size: int = 1024) -> dict[str, float]:
    """The ten LLP metrics of ``model`` on ``data`` (percent)."""
    pred_a, pred_v = predict_masks(*predict(model, data.audio, data.visual, batch_size))
    return evaluate(pred_a, pred_v, data.gt_audio, data.gt_visual)


@dataclass
class FitResult:
    """``history``: one dict per epoch (``epoch``, ``loss``, ``lr``, ``seconds`` and the ten metrics);
    ``initial``: validation before training; ``best_epoch`` (1-based); ``best_state`` (CPU tensors)."""

    history: list[dict] = field(default_factory=list)
    initial: dict | None = None
    best_epoch: int = 0
    best_state: dict | None = None
    seconds: float = 0.0


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA) and numpy; model init and dropout draw from these."""
    torch.manual_seed(seed)
    np.random.seed(seed)


class ModuleTrainer:
    """Trains the :class:`HAN` module with autograd and ``torch.optim.Adam`` (fused on CUDA); the
    engine :func:`fit` uses off the CPU. Same interface as :class:`~lsld_engine.han.packed_train.PackedTrainer`."""

    def __init__(self, model: HAN, *, lr: float, precision: str = "fp32"):
        self.model, self.precision = model, precision
        device = next(model.parameters()).device
        self.device_type = device.type
        self.opt = torch.optim.Adam(model.parameters(), lr=lr, **({"fused": True} if device.type == "cuda" else {"foreach": True}))

    @property
    def lr(self) -> float:
        return self.opt.param_groups[0]["lr"]

    @lr.setter
    def lr(self, value: float) -> None:
        for group in self.opt.param_groups:
            group["lr"] = value

    def step(self, audio: torch.Tensor, visual: torch.Tensor, loss_fn) -> torch.Tensor:
        self.model.train()
        with torch.autocast(self.device_type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            out = self.model.forward_pooled(audio, visual)
        if self.precision == "bf16":  # BCE is not autocast-safe: score in float32
            out = tuple(o.float() for o in out)
        loss = loss_fn(out)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return loss.detach()

    def write_back(self, model: HAN) -> HAN:
        return model


def make_trainer(model: HAN, cfg: TrainConfig):
    """The training engine for ``model`` (already on ``cfg.device``): the packed CPU engine
    (:mod:`lsld_engine.han.packed_train`) on CPU, :class:`ModuleTrainer` elsewhere."""
    if torch.device(cfg.device).type == "cpu":
        from lsld_engine.han.packed_train import PackedTrainer

        return PackedTrainer(model, lr=cfg.lr, precision=cfg.precision, seed=cfg.seed)
    return ModuleTrainer(model, lr=cfg.lr, precision=cfg.precision)


def epoch_lr(cfg: TrainConfig, epoch: int) -> float:
    """The learning rate of 1-based ``epoch`` under StepLR(step_size, gamma)."""
    return cfg.lr * cfg.gamma ** ((epoch - 1) // cfg.step_size)


def train_epoch(trainer, train: TrainSet, order: torch.Tensor, cfg: TrainConfig, bar=None) -> float:
    """One pass over the videos ``order`` ``(M,)`` (a permutation of ``train``'s indices, or part of
    one) in batches of ``cfg.batch_size``; returns the mean training loss. ``bar``: an optional
    tqdm to advance per batch."""
    total = torch.zeros((), dtype=torch.float64, device=train.audio.device)
    for s in range(0, len(order), cfg.batch_size):
        idx = order[s:s + cfg.batch_size]
        weak = train.weak[idx]
        seg_a = None if train.seg_audio is None else train.seg_audio[idx]
        seg_v = None if train.seg_visual is None else train.seg_visual[idx]
        loss = trainer.step(train.audio[idx], train.visual[idx],
                            lambda out: compute_loss(out, weak, seg_a, seg_v, cfg))
        total += loss.double() * idx.shape[0]
        if bar is not None:
            bar.update(1)
    return float(total) / max(1, len(order))


def fit(model: HAN, train: TrainSet, val: EvalSet, cfg: TrainConfig, *, progress: bool = True,
        evaluate_initial: bool = True, on_epoch: Callable[[HAN, FitResult], None] | None = None) -> FitResult:
    """Train ``model`` for ``cfg.epochs`` epochs, validating after each; keeps the best epoch by
    ``cfg.select_metric``. Deterministic on CPU for a given ``cfg.seed`` (and model init).

    ``on_epoch(model, result)`` runs after each epoch's validation (``result.history[-1]`` is that
    epoch); the training stage uses it to write the best checkpoint as soon as it improves, so an
    interrupted run keeps its best epoch so far."""
    from lsld_engine.progress import progress_bar

    device = torch.device(cfg.device)
    model.to(device)
    train = train.to(device)
    gen = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    result = FitResult()
    t_start = time.perf_counter()
    if evaluate_initial:
        result.initial = evaluate_model(model, val, cfg.eval_batch_size)
        log.info("epoch 0 (untrained): val %s %.2f", cfg.select_metric, result.initial[cfg.select_metric])
    trainer = make_trainer(model, cfg)
    n = len(train)
    best = -float("inf")
    for epoch in range(1, cfg.epochs + 1):
        t0 = time.perf_counter()
        trainer.lr = lr = epoch_lr(cfg, epoch)
        order = torch.randperm(n, generator=gen).to(device)
        with progress_bar(total=-(-n // cfg.batch_size), desc=f"epoch {epoch}/{cfg.epochs}", unit="batch",
                          leave=False, disable=not progress) as bar:
            loss = train_epoch(trainer, train, order, cfg, bar)
        trainer.write_back(model)
        metrics = evaluate_model(model, val, cfg.eval_batch_size)
        row = {"epoch": epoch, "loss": loss, "lr": lr, "seconds": time.perf_counter() - t0, **metrics}
        result.history.append(row)
        score = metrics[cfg.select_metric]
        if score >= best:  # ties go to the later epoch, as in the official training loop
            best = score
            result.best_epoch = epoch
            result.best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        log.info("epoch %d/%d  loss %.4f  lr %.2e  val seg_a %.2f seg_v %.2f evt_a %.2f evt_v %.2f evt_av %.2f  "
                 "(%s best %.2f @ %d)  %.1fs", epoch, cfg.epochs, row["loss"], lr, metrics["seg_a"],
                 metrics["seg_v"], metrics["evt_a"], metrics["evt_v"], metrics["evt_av"],
                 cfg.select_metric, best, result.best_epoch, row["seconds"])
        if on_epoch is not None:
            on_epoch(model, result)
    result.seconds = time.perf_counter() - t_start
    if result.best_state is None:  # zero epochs: the initial model is the best we have
        result.best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    return result


def load_best(model: HAN, result: FitResult) -> HAN:
    """``model`` with the best epoch's weights (a copy; ``model`` itself is left as trained)."""
    best = copy.deepcopy(model).to("cpu")
    best.load_state_dict(result.best_state, strict=True)
    return best.eval()


__all__ = ["EvalSet", "FitResult", "ModuleTrainer", "OBJECTIVES", "TrainConfig", "TrainSet", "bce", "compute_loss",
           "epoch_lr", "evaluate_model", "fit", "load_best", "make_eval_set", "make_train_set",
           "make_trainer", "predict", "predict_masks", "pooled_visual", "seed_everything", "train_epoch"]
