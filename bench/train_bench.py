"""Training speed: our loop vs a straightforward reimplementation, side by side in one run.

    python -m bench.train_bench                       # CPU, small synthetic world, both sides
    python -m bench.train_bench --device cuda --full  # lent GPU: the full 20-epoch run, LLP-sized

Default mode trains the same 4-layer HAN (same init, batch 32, Adam 2e-4) for ``--epochs`` epochs
on a synthetic world written in the official layout, twice:

- **ours** (:func:`lsld_engine.han.training.train_epoch` with the engine ``fit`` uses, on CPU
  :mod:`lsld_engine.han.packed_train`): features read once into memory (visual already averaged per
  segment: ``fc_v`` after the 8-frame mean, which is exact), batches by index, both streams in one
  batch, packed parameters whose gradients the matmuls write directly, hashed dropout masks, one
  Numba Adam pass, one batched loss;
- **naive** (:mod:`bench.naive_han`): a ``Dataset`` that ``np.load``\\ s two ``.npy`` files per item,
  ``fc_v`` on all 80 frames then pooling, ``nn.MultiheadAttention`` called per stream, a per-sample
  loss loop.

It prints videos/s for both and the ratio (``--bf16`` adds our loop with ``--precision bf16``).
Both sides run a few warm-up batches first. Our one-time feature loading is timed separately and
also included in an "incl. loading" figure. The OpenMP wait policy applies to both sides:
``PASSIVE`` unless ``OMP_WAIT_POLICY`` is set (``ACTIVE`` is faster on an otherwise idle machine).
``--full`` instead times the whole LSLD main job (denoise -> 20 epochs with validation -> test) on
a 10,000-video world and prints the device.
Timings on a shared machine are noisy; nothing here asserts a timing.
"""
from __future__ import annotations

import os

# Under CPU contention, spinning OpenMP workers slow torch down several-fold; let them sleep.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402


def _world(root: Path, n_train: int, n_val: int, n_test: int, seed: int = 0) -> Path:
    from lsld_engine.synthetic import synth

    marker = root / "world.json"
    size = {"n_train": n_train, "n_val": n_val, "n_test": n_test, "seed": seed}
    if not (marker.is_file() and json.loads(marker.read_text()) == size):
        synth.make_world(root, **size, progress=True)
        marker.write_text(json.dumps(size))
    return root


def _labels(root: Path, ids: list[str], out: Path) -> dict:
    from train.lsld import read_labels, stage_denoise

    if not out.is_file():
        stage_denoise(root, out)
    return read_labels(out, ids)


def run_ours(root: Path, labels_path: Path, epochs: int, device: str, seed: int = 6, precision: str = "fp32",
             max_batches: int | None = None) -> dict:
    """Our training loop exactly as ``fit`` runs it (its engine and epoch loop), without validation.
    ``max_batches``: stop each epoch after that many batches (warm-up)."""
    from lsld_engine.data.dataset import dataset_paths, load_features, load_split_labels
    from lsld_engine.han.model import build_han
    from lsld_engine.han.training import TrainConfig, make_train_set, make_trainer, seed_everything, train_epoch

    paths = dataset_paths(root)
    t0 = time.perf_counter()
    split = load_split_labels(paths, "train")
    feats = load_features(paths, split.video_ids, progress=False)
    labels = _labels(root, split.video_ids, labels_path)
    data = make_train_set(feats.audio, feats.frames, split.weak, labels, "den+rew").to(device)
    t_load = time.perf_counter() - t0

    seed_everything(seed)
    cfg = TrainConfig(device=device, precision=precision, seed=seed)
    model = build_han().to(device)
    trainer = make_trainer(model, cfg)
    gen = torch.Generator().manual_seed(seed)
    n = len(data)
    _sync(device)
    t0 = time.perf_counter()
    order_n = n if max_batches is None else min(n, max_batches * cfg.batch_size)
    for _ in range(epochs):
        train_epoch(trainer, data, torch.randperm(n, generator=gen)[:order_n].to(device), cfg)
    _sync(device)
    t_train = time.perf_counter() - t0
    return {"load_s": t_load, "train_s": t_train, "videos": order_n * epochs}


def run_naive(root: Path, labels_path: Path, epochs: int, device: str, seed: int = 6,
              max_batches: int | None = None) -> dict:
    from bench.naive_han import NaiveHAN, NpyDataset, naive_loss
    from lsld_engine.data.dataset import dataset_paths, load_split_labels

    paths = dataset_paths(root)
    split = load_split_labels(paths, "train")
    with np.load(labels_path, allow_pickle=False) as z:
        seg_a, seg_v = z["audio"], z["visual"]
    ds = NpyDataset(paths.clap_dir, paths.clip_dir, split.video_ids, split.weak, seg_a, seg_v)
    loader = torch.utils.data.DataLoader(ds, batch_size=32, shuffle=True,
                                         generator=torch.Generator().manual_seed(seed))
    torch.manual_seed(seed)
    model = NaiveHAN().to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=2e-4)
    _sync(device)
    t0 = time.perf_counter()
    videos = 0
    for _ in range(epochs):
        for b, batch in enumerate(loader):
            if max_batches is not None and b >= max_batches:
                break
            videos += batch["audio"].shape[0]
            batch = {k: v.to(device) for k, v in batch.items()}
            out = model(batch["audio"], batch["frames"])
            loss = naive_loss(out, batch)
            opt.zero_grad()
            loss.backward()
            opt.step()
    _sync(device)
    return {"load_s": 0.0, "train_s": time.perf_counter() - t0, "videos": videos}


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return f"CPU ({os.cpu_count()} cores visible, torch {torch.get_num_threads()} threads)"


def side_by_side(args) -> None:
    root = _world(args.world_dir, args.videos, 32, 32)
    labels_path = args.world_dir / "labels.npz"
    print(f"device: {_device_name(args.device)}; world: {args.videos} train videos; {args.epochs} epoch(s), "
          f"batch 32, 4-layer HAN", flush=True)
    # Warm-up: first-call costs (allocator, oneDNN kernels, Numba cache loads) must not land on either side.
    # Ours first: it writes labels.npz (the denoise stage) on a fresh world, which the naive side reads.
    for precision in ("fp32", "bf16") if args.bf16 else ("fp32",):
        run_ours(root, labels_path, 1, args.device, precision=precision, max_batches=3)
    run_naive(root, labels_path, 1, args.device, max_batches=3)
    naive = run_naive(root, labels_path, args.epochs, args.device)
    ours = run_ours(root, labels_path, args.epochs, args.device)
    bf16 = run_ours(root, labels_path, args.epochs, args.device, precision="bf16") if args.bf16 else None
    v_naive = naive["videos"] / naive["train_s"]
    v_ours = ours["videos"] / ours["train_s"]
    v_ours_all = ours["videos"] / (ours["train_s"] + ours["load_s"])
    print(f"{'':28s}{'videos/s':>10s}{'seconds':>10s}")
    print(f"{'naive (per-item .npy, per-sample loss, fc_v on 80 frames)':s}")
    print(f"{'  naive':28s}{v_naive:10.1f}{naive['train_s']:10.1f}")
    print(f"{'  ours (training loop)':28s}{v_ours:10.1f}{ours['train_s']:10.1f}")
    print(f"{'  ours incl. loading':28s}{v_ours_all:10.1f}{ours['train_s'] + ours['load_s']:10.1f}"
          f"   (one-time feature load {ours['load_s']:.2f}s)")
    if bf16 is not None:
        v_bf16 = bf16["videos"] / bf16["train_s"]
        print(f"{'  ours, --precision bf16':28s}{v_bf16:10.1f}{bf16['train_s']:10.1f}   (not bit-exact with fp32)")
    print(f"ratio ours/naive: {v_ours / v_naive:.2f}x (loop), {v_ours_all / v_naive:.2f}x (incl. loading)"
          + (f", {v_bf16 / v_naive:.2f}x (bf16 loop)" if bf16 is not None else ""), flush=True)


def full_run(args) -> None:
    """The README's LSLD main job at LLP scale: denoise -> 20 epochs (val each epoch) -> test."""
    from train.lsld import main as lsld_main

    t0 = time.perf_counter()
    n = args.videos
    root = _world(args.world_dir, n, 649, 1200) if n == 10000 else _world(args.world_dir, n, max(8, n // 10), max(8, n // 10))
    t_world = time.perf_counter() - t0
    run_dir = args.world_dir / "run"
    print(f"device: {_device_name(args.device)}; world ready in {t_world:.0f}s", flush=True)
    t0 = time.perf_counter()
    rc = lsld_main(["--data", str(root), "--run-dir", str(run_dir), "--device", args.device,
                    "--epochs", str(args.epochs)])
    total = time.perf_counter() - t0
    metrics = json.loads((run_dir / "metrics.json").read_text())
    print(f"full run ({args.epochs} epochs, {n:,} train videos) on {_device_name(args.device)}: "
          f"{total:.1f}s total (denoise + train + val + test), training loop {metrics['train_seconds']:.1f}s; rc={rc}",
          flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.train_bench", description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--videos", type=int, default=None,
                   help="train videos of the benchmark world (default 512; 10,000 with --full)")
    p.add_argument("--epochs", type=int, default=None, help="epochs (default: 1, or 20 with --full)")
    p.add_argument("--bf16", action="store_true", help="also time our loop with --precision bf16")
    p.add_argument("--full", action="store_true", help="the full 20-epoch LSLD run on a 10,000-video world")
    p.add_argument("--world-dir", type=Path, default=None,
                   help="where the synthetic world is written (default: a folder under the temp dir)")
    args = p.parse_args(argv)
    if args.epochs is None:
        args.epochs = 20 if args.full else 1
    if args.videos is None:
        args.videos = 10000 if args.full else 512
    if args.world_dir is None:
        args.world_dir = Path(tempfile.gettempdir()) / (f"lsld_bench_full_{args.videos}" if args.full else f"lsld_bench_{args.videos}")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("CUDA is not available on this machine", file=sys.stderr)
        return 2
    (full_run if args.full else side_by_side)(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
