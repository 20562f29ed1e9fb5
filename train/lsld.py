"""``python -m train.lsld``: LSLD training on a dataset root (or the built-in synthetic world).

Stages (each also runs alone):

    python -m train.lsld [--data ROOT] --run-dir DIR [options]     denoise -> train -> test
    python -m train.lsld denoise --data ROOT --out labels.npz      segment labels (train/denoise.py)
    python -m train.lsld train --data ROOT --run-dir DIR           train + validate (needs labels.npz)
    python -m train.lsld test --data ROOT --checkpoint F [--json]  the ten test numbers (also LSLD.pt)
    python -m train.lsld ablation [--data ROOT] --run-dir DIR      Table 2: weak / den / den+rew

Without ``--data`` the built-in synthetic LLP world (:mod:`lsld_engine.synthetic.synth`) is generated once
into ``--world-dir`` (default ``DIR/synth_world``) and reused. See docs/training.md.
"""
from __future__ import annotations

import os

# Under CPU contention (a shared CI box), spinning OpenMP workers slow torch several-fold; let
# them sleep instead. Must be set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

log = logging.getLogger("train.lsld")

STAGES = ("all", "denoise", "train", "test", "ablation")
#: The built-in synthetic world of the README's main job (sized for < 10 min on a 2-core CPU).
DEFAULT_WORLD = {"n_train": 1200, "n_val": 300, "n_test": 300, "seed": 0}


# ----------------------------------------------------------------------------------------- args
def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (epochs, batch size, layers, video counts)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def device_arg(text: str) -> str:
    """argparse type: a torch device string that exists here (checked before any data is loaded)."""
    import torch

    try:
        dev = torch.device(text)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"unknown device {text!r}: expected cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(f"{text!r}: CUDA is not available on this machine; use --device cpu")
    return text


def _add_data_args(p: argparse.ArgumentParser, required: bool = False) -> None:
    p.add_argument("--data", type=Path, required=required,
                   help="dataset root (annotation CSVs + feats/)"
                        + ("" if required else "; default: the built-in synthetic world"))
    p.add_argument("--clip-dir", type=Path, help="CLIP frame features folder (default ROOT/feats/clip_16)")
    p.add_argument("--clap-dir", type=Path, help="CLAP audio features folder (default ROOT/feats/clap_audioset)")
    from lsld_engine.cli import at_least
    p.add_argument("--workers", type=at_least(0), default=None, help="feature-loading threads (0: automatic)")


def _add_world_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--world-dir", type=Path, help="where the synthetic world lives (default RUN_DIR/synth_world)")
    p.add_argument("--world-train", type=positive_int, default=DEFAULT_WORLD["n_train"], help="synthetic train videos")
    p.add_argument("--world-val", type=positive_int, default=DEFAULT_WORLD["n_val"], help="synthetic val videos")
    p.add_argument("--world-test", type=positive_int, default=DEFAULT_WORLD["n_test"], help="synthetic test videos")
    p.add_argument("--world-seed", type=int, default=DEFAULT_WORLD["seed"], help="synthetic world seed")


def _add_train_args(p: argparse.ArgumentParser) -> None:
    from lsld_engine.han.training import OBJECTIVES, TrainConfig
    from lsld_engine.evaluation.metrics import METRIC_KEYS

    d = TrainConfig()
    p.add_argument("--run-dir", type=Path, required=True, help="run folder (checkpoint, metrics.json, config.json)")
    p.add_argument("--labels", choices=list(OBJECTIVES), default=d.labels,
                   help="training objective (Table 2): weak = HAN baseline, den = DeN labels, den+rew = DeN + ReW")
    p.add_argument("--labels-file", type=Path, help="labels.npz (default RUN_DIR/labels.npz)")
    p.add_argument("--epochs", type=positive_int, default=d.epochs, help="training epochs")
    p.add_argument("--batch-size", type=positive_int, default=d.batch_size, help="videos per batch")
    p.add_argument("--lr", type=float, default=d.lr, help="Adam learning rate")
    p.add_argument("--step-size", type=positive_int, default=d.step_size, help="StepLR period in epochs")
    p.add_argument("--gamma", type=float, default=d.gamma, help="StepLR factor")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of init, shuffling and dropout")
    p.add_argument("--num-layers", type=positive_int, default=4, help="HAN layers")
    p.add_argument("--select-metric", choices=list(METRIC_KEYS), default=d.select_metric,
                   help="validation metric that picks the best epoch")
    p.add_argument("--device", type=device_arg, default="cpu", help="cpu or cuda")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                   help="bf16: matmuls and activations in bfloat16, float32 master weights (faster on CPUs with "
                        "AVX512-BF16/AMX and on GPUs; not bit-exact with fp32)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (log lines only)")


class _HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The module docstring verbatim, and defaults in the option help (unless it already names one)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.default in (None, False) or action.required:
            return text
        return super()._get_help_string(action)


def build_parser(stage: str) -> argparse.ArgumentParser:
    prog = "python -m train.lsld" + ("" if stage == "all" else f" {stage}")
    p = argparse.ArgumentParser(prog=prog, description=__doc__ if stage == "all" else __doc__.splitlines()[0],
                                formatter_class=_HelpFormatter)
    if stage == "denoise":
        from train import denoise as denoise_stage
        denoise_stage.add_arguments(p)
        return p
    if stage == "test":
        _add_data_args(p, required=True)
        p.add_argument("--checkpoint", type=Path, required=True,
                       help="our .safetensors checkpoint, the official LSLD.pt, or a weights-only torch file")
        p.add_argument("--split", default="test", choices=["val", "test"], help="split to score")
        p.add_argument("--json", action="store_true", help="print the ten numbers as one JSON object")
        p.add_argument("--num-layers", type=positive_int, help="override the layer count read from the checkpoint")
        return p
    _add_data_args(p, required=(stage == "train"))
    if stage in ("all", "ablation"):
        _add_world_args(p)
    _add_train_args(p)
    return p


# ------------------------------------------------------------------------------------- helpers
def _paths(args):
    from lsld_engine.data.dataset import dataset_paths
    return dataset_paths(args.data, clip_dir=args.clip_dir, clap_dir=args.clap_dir)


def ensure_world(args) -> Path:
    """The dataset root: ``--data``, or the synthetic world (generated on first use)."""
    if args.data is not None:
        return args.data
    from lsld_engine.synthetic import synth

    root = args.world_dir or (args.run_dir / "synth_world")
    size = dict(n_train=args.world_train, n_val=args.world_val, n_test=args.world_test, seed=args.world_seed)
    marker = root / "world.json"
    if marker.is_file() and json.loads(marker.read_text()) == size:
        log.info("using the synthetic world in %s", root)
    else:
        log.info("building the synthetic world in %s (%s)", root, size)
        t0 = time.perf_counter()
        synth.make_world(root, **size)
        marker.write_text(json.dumps(size) + "\n")
        log.info("synthetic world ready in %.1fs", time.perf_counter() - t0)
    args.data = root
    return root


def read_labels(path: Path, video_ids: list[str]) -> dict[str, np.ndarray]:
    """``labels.npz`` arrays, checked to be aligned with ``video_ids`` (the ``AVVP_train.csv`` order)."""
    if not path.is_file():
        raise SystemExit(f"labels file not found: {path}; run `python -m train.lsld denoise --data ROOT "
                         f"--out {path}` first (or pass --labels weak)")
    from lsld_engine.labels.denoise import load_labels
    from lsld_engine.records.untrusted import InputFileError

    ids, labels = load_labels(path)  # one-line errors for object arrays and other non-npz files
    if ids != list(video_ids):
        first = next((i for i, (a, b) in enumerate(zip(ids, video_ids)) if a != b), min(len(ids), len(video_ids)))
        raise InputFileError(f"{path}: video_ids do not match AVVP_train.csv ({len(ids)} vs {len(video_ids)} videos; "
                             f"first difference at row {first}); re-run the denoise stage on this dataset")
    return labels


def _load_eval(paths, split: str, workers, progress: bool):
    from lsld_engine.data.dataset import load_features, load_split_labels
    from lsld_engine.han.training import make_eval_set

    sp = load_split_labels(paths, split)
    feats = load_features(paths, sp.video_ids, workers=workers, progress=progress)
    return make_eval_set(feats.audio, feats.frames, sp.gt_audio, sp.gt_visual)


# -------------------------------------------------------------------------------------- stages
def stage_denoise(root: Path, out: Path, **options) -> int:
    """The denoise stage on dataset ``root``, writing ``out``: :func:`lsld_engine.labels.denoise_root.denoise_root`
    (``options``: its keywords, e.g. ``clip_dir``, ``workers``)."""
    from lsld_engine.labels.denoise_root import denoise_root

    denoise_root(root, out, **options)
    return 0


def stage_train(args) -> dict:
    """Train + validate into ``args.run_dir``; returns the metrics record (test still ``None``)."""
    from lsld_engine.han.checkpoint import save_han
    from lsld_engine.data.dataset import load_features, load_split_labels
    from lsld_engine.han.model import build_han
    from lsld_engine.han.training import TrainConfig, fit, make_train_set, seed_everything
    from train.records import config_record, metrics_record, write_json

    progress = not args.no_progress
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, step_size=args.step_size,
                      gamma=args.gamma, seed=args.seed, labels=args.labels, select_metric=args.select_metric,
                      device=args.device, precision=args.precision)
    run = Path(args.run_dir)
    run.mkdir(parents=True, exist_ok=True)
    paths = _paths(args)
    train_split = load_split_labels(paths, "train")
    labels_file = args.labels_file or run / "labels.npz"
    labels = read_labels(labels_file, train_split.video_ids) if cfg.labels != "weak" else None
    t0 = time.perf_counter()
    feats = load_features(paths, train_split.video_ids, workers=args.workers, progress=progress)
    train_set = make_train_set(feats.audio, feats.frames, train_split.weak, labels, cfg.labels)
    del feats
    val_set = _load_eval(paths, "val", args.workers, progress)
    log.info("loaded %d train / %d val videos in %.1fs", len(train_set), len(val_set), time.perf_counter() - t0)

    seed_everything(cfg.seed)
    model = build_han(num_layers=args.num_layers)

    def save_progress(model, result) -> None:
        # Written every epoch, so a run stopped part-way keeps its best checkpoint and its history.
        if result.best_epoch == len(result.history):
            save_han(model, run / "best.safetensors",
                     extra={"best_epoch": result.best_epoch, "val": result.history[-1]})
        write_json(run / "metrics.json", metrics_record(result, None))

    result = fit(model, train_set, val_set, cfg, progress=progress, on_epoch=save_progress)
    model.load_state_dict(result.best_state)
    ckpt = save_han(model, run / "best.safetensors", extra={"best_epoch": result.best_epoch,
                                                            "val": result.history[result.best_epoch - 1]
                                                            if result.best_epoch else result.initial})
    record = metrics_record(result, None)
    write_json(run / "metrics.json", record)
    labels_ref = None
    if labels is not None:
        labels_ref = str(labels_file.resolve())
    write_json(run / "config.json", config_record(cfg, model, data=str(Path(args.data).resolve()),
                                                  labels_file=labels_ref, checkpoint=ckpt.name))
    write_figure(run / "curves.png", "curves_figure", record, cfg.select_metric,
                 title=f"{run.name}: {cfg.labels} labels")
    log.info("best epoch %d (val %s %.2f); checkpoint %s", result.best_epoch, cfg.select_metric,
             result.history[result.best_epoch - 1][cfg.select_metric] if result.best_epoch else float("nan"), ckpt)
    return record


def stage_test(data: Path, checkpoint: Path, *, split: str = "test", clip_dir=None, clap_dir=None,
               workers=None, progress: bool = True, num_layers: int | None = None) -> dict[str, float]:
    """The ten metrics of a checkpoint on ``split`` of the dataset root ``data``."""
    from lsld_engine.han.checkpoint import load_han
    from lsld_engine.data.dataset import dataset_paths
    from lsld_engine.han.training import evaluate_model

    overrides = {"num_layers": num_layers} if num_layers else {}
    model = load_han(checkpoint, **overrides)
    paths = dataset_paths(data, clip_dir=clip_dir, clap_dir=clap_dir)
    return evaluate_model(model, _load_eval(paths, split, workers, progress))


def _test_run(args, record: dict) -> dict:
    """Test the run's best checkpoint and fill ``metrics.json``'s ``test``."""
    from lsld_engine.evaluation.metrics import format_table
    from train.records import write_json

    run = Path(args.run_dir)
    test = stage_test(args.data, run / "best.safetensors", clip_dir=args.clip_dir, clap_dir=args.clap_dir,
                      workers=args.workers, progress=not args.no_progress)
    record["test"] = test
    write_json(run / "metrics.json", record)
    print(f"test ({args.labels}, best epoch {record['best_epoch']}):\n{format_table(test)}", flush=True)
    return test


def write_figure(path: Path, name: str, *args, **kwargs) -> None:
    """Draw ``lsld_engine.viz.curves.<name>(*args)`` into ``path``; without matplotlib, log and go on
    (the numbers are in the JSON files either way)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        log.info("matplotlib not installed: no %s (pip install 'lsld-engine[plot]')", path.name)
        return
    from lsld_engine.viz import curves
    from lsld_engine.viz.common import save_png

    save_png(getattr(curves, name)(*args, **kwargs), path)
    log.info("wrote %s", path)


def ablation_table(rows: dict[str, dict[str, float]]) -> str:
    """Table 2 layout: one row per objective, the ten numbers (segment level, then event level)."""
    from lsld_engine.evaluation.metrics import METRIC_KEYS

    names = {"weak": "HAN (weak labels)", "den": "+ DeN", "den+rew": "+ DeN + ReW"}
    head = ["A", "V", "AV", "Type", "Event"]
    lines = ["| Method | " + " | ".join(f"Seg {h}" for h in head) + " | " + " | ".join(f"Evt {h}" for h in head) + " |",
             "|---" * 11 + "|"]
    for key, res in rows.items():
        lines.append(f"| {names.get(key, key)} | " + " | ".join(f"{res[k]:.2f}" for k in METRIC_KEYS) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    stage = argv[0] if argv and argv[0] in STAGES else "all"
    rest = argv[1:] if argv and argv[0] in STAGES else argv
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    parser = build_parser(stage)
    args = parser.parse_args(rest)
    from lsld_engine.cli import report_user_errors
    return report_user_errors(parser.prog, lambda: _run_stage(stage, args))


def _run_stage(stage: str, args: argparse.Namespace) -> int:
    if stage == "denoise":
        from train import denoise as denoise_stage
        return int(denoise_stage.run(args) or 0)

    if stage == "test":
        from lsld_engine.evaluation.metrics import format_table
        res = stage_test(args.data, args.checkpoint, split=args.split, clip_dir=args.clip_dir,
                         clap_dir=args.clap_dir, workers=args.workers, progress=not args.json,
                         num_layers=args.num_layers)
        print(json.dumps(res) if args.json else format_table(res), flush=True)
        return 0

    if stage == "train":
        stage_train(args)
        return 0

    t_start = time.perf_counter()
    args.run_dir.mkdir(parents=True, exist_ok=True)
    root = ensure_world(args)
    labels_file = args.labels_file or args.run_dir / "labels.npz"
    if args.labels_file is None:  # denoise into the run folder
        log.info("stage denoise -> %s", labels_file)
        given = {"clip_dir": args.clip_dir, "clap_dir": args.clap_dir, "workers": args.workers}
        rc = stage_denoise(root, labels_file, **{k: v for k, v in given.items() if v is not None})
        if rc:
            return rc
    args.labels_file = labels_file

    if stage == "all":
        log.info("stage train (%s)", args.labels)
        record = stage_train(args)
        log.info("stage test")
        _test_run(args, record)
        log.info("done in %.1fs: %s", time.perf_counter() - t_start, args.run_dir)
        return 0

    # ablation: the three objectives on the same data and labels, each in its own folder.
    from train.records import write_json
    base = args.run_dir
    rows, seconds = {}, {}
    for objective in ("weak", "den", "den+rew"):
        t0 = time.perf_counter()
        args.labels, args.run_dir = objective, base / objective.replace("+", "_")
        log.info("ablation: training %s in %s", objective, args.run_dir)
        rows[objective] = _test_run(args, stage_train(args))
        seconds[objective] = time.perf_counter() - t0
    table = ablation_table(rows)
    total = time.perf_counter() - t_start
    write_json(base / "ablation.json", {"test": rows, "seconds": seconds, "total_seconds": total,
                                        "data": str(Path(args.data).resolve())})
    (base / "ablation.md").write_text(table + "\n")
    write_figure(base / "ablation.png", "ablation_figure", rows)
    print(table, flush=True)
    print(f"total {total:.0f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
