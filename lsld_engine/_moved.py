"""Old import paths of modules that moved into stage packages keep working.

``import lsld_engine.metrics`` (or ``from lsld_engine.metrics import evaluate``, ``python -m
lsld_engine.synth``) gives the very module object that now lives at ``lsld_engine.evaluation.metrics``:
one module, two names, so ``monkeypatch`` and ``isinstance`` see the same objects. docs/CONTRACTS.md
lists the moves. New code imports the new paths (tests/test_layout.py checks the package itself).
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from types import ModuleType

#: old module name -> stage package it moved into (lsld_engine.<old> -> lsld_engine.<package>.<old>)
MOVED: dict[str, str] = {
    "random_weights": "backends",
    "dataset": "data",
    "llp": "data",
    "_reference_metrics": "evaluation",
    "class_metrics": "evaluation",
    "metrics": "evaluation",
    "_train_kernels": "han",
    "checkpoint": "han",
    "model": "han",
    "packed_train": "han",
    "training": "han",
    "_denoise_kernels": "labels",
    "_denoise_ref": "labels",
    "denoise": "labels",
    "denoise_root": "labels",
    "prompts": "labels",
    "embed": "parsing",
    "extract": "parsing",
    "parse": "parsing",
    "pipeline": "parsing",
    "remote_inputs": "parsing",
    "run_plan": "parsing",
    "video_inputs": "parsing",
    "events": "records",
    "objectstore": "records",
    "outputs": "records",
    "parquet_results": "records",
    "readers": "records",
    "results": "records",
    "untrusted": "records",
    "uris": "records",
    "writers": "records",
    "synth": "synthetic",
    "synth_quality": "synthetic",
}


class _Alias(importlib.abc.Loader):
    def __init__(self, new: str) -> None:
        self.new = new

    def create_module(self, spec) -> ModuleType:
        return importlib.import_module(self.new)

    def exec_module(self, module: ModuleType) -> None:
        pass  # already executed under its new name

    def get_code(self, fullname: str):
        # runpy (`python -m lsld_engine.synth`) runs the new module's code as __main__
        return importlib.util.find_spec(self.new).loader.get_code(self.new)


class _MovedFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path=None, target=None):
        head, _, name = fullname.rpartition(".")
        if head != "lsld_engine" or name not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, _Alias(f"lsld_engine.{MOVED[name]}.{name}"))


def install() -> None:
    if not any(isinstance(f, _MovedFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _MovedFinder())  # before any finder that might see a stale copy
