"""Run-folder records of a training run: ``metrics.json`` and ``config.json`` (written atomically)."""
from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np

from lsld_engine.files import write_text_atomic
from lsld_engine.han.model import HAN
from lsld_engine.han.training import FitResult, TrainConfig


def write_json(path: str | os.PathLike, obj) -> None:
    """Write ``obj`` as indented JSON (atomically: temp file + rename)."""
    write_text_atomic(path, json.dumps(obj, indent=2, default=_json_default) + "\n")


def _json_default(o):
    if isinstance(o, (np.integer, np.floating)):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def metrics_record(result: FitResult, test: dict | None) -> dict:
    """The run folder's ``metrics.json``: ``{"val": [...], "best_epoch": k, "test": {...}}``."""
    return {"val": result.history, "val_initial": result.initial, "best_epoch": result.best_epoch,
            "test": test, "train_seconds": result.seconds}


def config_record(cfg: TrainConfig, model: HAN, **extra) -> dict:
    """The resolved configuration written to the run folder's ``config.json``."""
    return {"train": asdict(cfg), "model": model.config.to_dict(), **extra}
