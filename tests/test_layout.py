"""The package layout's rules: import direction, one error base, one registry, the aliases still work."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = [p for p in (ROOT / "lsld_engine").rglob("*.py")
           if "commands" not in p.relative_to(ROOT / "lsld_engine").parts and p.name != "cli.py"]


def _import_nodes(path: Path, skip: tuple[str, ...] = ("__main__",)):
    """The absolute ``import`` / ``from ... import`` statements of ``path``, at any depth, except those
    inside an ``if`` whose test mentions one of ``skip``."""
    tree = ast.parse(path.read_text())
    skipped = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
               and any(s in ast.unparse(node.test) for s in skip) for n in ast.walk(node)}
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import) or isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node


def _imports(path: Path) -> set[str]:
    """Modules ``path`` imports anywhere but in its ``if __name__ == "__main__":`` block."""
    out = set()
    for node in _import_nodes(path):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        else:
            out |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return out


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_graph() -> dict[str, set[str]]:
    """``{module: package modules it imports}`` over ``lsld_engine``: every import statement, at module
    level or inside a function (lazy imports count too: a circle through a lazy import is still a
    circle, only one that breaks later), except ``if __name__ == "__main__":`` / ``TYPE_CHECKING``
    blocks. ``from pkg import name`` counts as ``pkg.name`` when that is a module, else ``pkg``."""
    modules = {_module_name(p): p for p in (ROOT / "lsld_engine").rglob("*.py")}

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph = {}
    for name, path in modules.items():
        out = set()
        for node in _import_nodes(path, skip=("__main__", "TYPE_CHECKING")):
            if isinstance(node, ast.Import):
                out |= {resolve(a.name) for a in node.names}
            else:
                out |= {resolve(f"{node.module}.{a.name}") for a in node.names}
        graph[name] = out - {None, name}
    return graph


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph.get(w, ())))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def test_no_import_circles_in_the_package():
    """No module of ``lsld_engine`` imports itself through others, lazy imports included."""
    assert _circles(_import_graph()) == []


def test_the_circle_finder_finds_a_circle():
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _circles({"a": {"b"}, "b": set()}) == []


def test_command_modules_share_helpers_through_common_only():
    """``commands/*.py`` import one another only through ``commands.common`` (the shared flags) and
    ``commands.scale`` (the ``--ray`` runs); ``bench/`` imports no command module at all."""
    graph = _import_graph()
    allowed = {"lsld_engine.commands", "lsld_engine.commands.common", "lsld_engine.commands.scale"}
    for name, deps in graph.items():
        if name.startswith("lsld_engine.commands."):
            bad = sorted(d for d in deps if d.startswith("lsld_engine.commands") and d not in allowed)
            assert not bad, f"{name} imports {bad}"
    assert not {d for d in graph["lsld_engine.commands.scale"] if d.startswith("lsld_engine.commands.")} - {
        "lsld_engine.commands.common"}
    for path in (ROOT / "bench").rglob("*.py"):
        bad = sorted(m for m in _imports(path) if m.startswith("lsld_engine.commands"))
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


@pytest.mark.parametrize("path", LIBRARY, ids=lambda p: str(p.relative_to(ROOT)))
def test_library_imports_neither_export_nor_the_cli(path):
    bad = sorted(m for m in _imports(path)
                 if m == "export" or m.startswith("export.") or m in ("lsld_engine.cli", "lsld_engine.commands")
                 or m.startswith("lsld_engine.commands."))
    assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def test_user_errors_share_one_base_and_keep_their_builtin_base():
    from lsld_engine.backends.torch_backend import MissingWeightsError
    from lsld_engine.han.checkpoint import CheckpointError as HanCheckpointError
    from lsld_engine.data.dataset import FeatureError
    from lsld_engine.encoders.checkpoints import CheckpointError as EncoderCheckpointError
    from lsld_engine.errors import LsldError, is_user_error
    from lsld_engine.data.llp import AnnotationError
    from lsld_engine.media import MediaError
    from lsld_engine.labels.prompts import PromptError
    from lsld_engine.records.writers import PredictionsError

    assert HanCheckpointError is EncoderCheckpointError
    for cls, base in ((AnnotationError, ValueError), (FeatureError, ValueError), (PredictionsError, ValueError),
                      (PromptError, ValueError), (HanCheckpointError, ValueError), (MediaError, RuntimeError),
                      (MissingWeightsError, FileNotFoundError)):
        assert issubclass(cls, LsldError) and issubclass(cls, base), cls
        assert is_user_error(cls("x"))
    assert not is_user_error(ValueError("x")) and not is_user_error(RuntimeError("x"))


def test_export_and_backends_read_the_registry_tables():
    from export import networks
    from lsld_engine import registry
    from lsld_engine.backends import base, onnx_backend

    assert networks.NETWORKS == registry.EXPORTED
    assert base.HAN_OUTPUTS is registry.HAN_OUTPUTS is networks.HAN_OUTPUTS
    for name in registry.EXPORTED:
        assert (networks.IO[name].inputs, networks.IO[name].outputs) == registry.io_names(name)
        assert onnx_backend._NETWORK_INPUTS[name] == registry.io_names(name)[0]
    assert registry.io_names("han")[1] == registry.HAN_OUTPUTS
    assert registry.get_network("clip-image") is registry.get_network("clip_image")


@pytest.mark.parametrize("module, word", [("lsld_engine.synthetic.synth", "make"), ("export", "--networks")])
def test_old_module_entries_are_aliases(module, word):
    out = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, cwd=ROOT,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert word in out.stdout


def test_atomic_path_replaces_on_success_and_keeps_the_old_file_on_error(tmp_path):
    import numpy as np

    from lsld_engine.files import atomic_path, write_text_atomic

    target = tmp_path / "sub" / "labels.npz"
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp.suffix == ".npz"
        np.savez(tmp, x=np.arange(3))  # np.savez keeps a name that already ends in .npz
    assert np.load(target)["x"].tolist() == [0, 1, 2]
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        np.savez(tmp, x=np.arange(5))
        raise RuntimeError("killed mid-write")
    assert np.load(target)["x"].tolist() == [0, 1, 2]
    assert sorted(p.name for p in target.parent.iterdir()) == ["labels.npz"]
    write_text_atomic(tmp_path / "m.json", "{}\n")
    assert (tmp_path / "m.json").read_text() == "{}\n"


def test_the_wheel_installs_no_top_level_bench_package():
    """``bench/`` is the checkout's benchmarks (``python -m bench.X``); a ``bench`` package in
    site-packages would collide with any other project's. The user's ``train`` / ``export`` stay."""
    import fnmatch
    import tomllib

    include = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    def installed(pkg):
        return any(fnmatch.fnmatch(pkg, pattern) for pattern in include)

    assert not installed("bench") and not installed("bench.ray_bench")
    assert all(installed(p) for p in ("lsld_engine", "lsld_engine.media", "train", "export"))
    assert (ROOT / "bench" / "__init__.py").is_file()  # still a package of the checkout


# --- The stage layout: few rooms at the top, layers that only import downwards. ---

#: rank of each top-level unit of lsld_engine; a module may import only units of its own rank or lower
LAYERS: dict[str, int] = {
    "errors": 0, "contract": 0, "data": 0, "files": 0, "progress": 0, "hardware": 0, "_moved": 0,
    "registry": 1,
    "media": 2, "evaluation": 2, "records": 2, "encoders": 2,
    "labels": 3,
    "han": 4,
    "backends": 5, "exporting": 5, "synthetic": 5,
    "parsing": 6,
    "api": 7, "viz": 7,
    "scale": 8, "doctor": 8,
    "testing": 9, "commands": 9, "cli": 9,
}
#: the few upward imports there are, each lazy and with its reason
UPWARD: dict[str, set[str]] = {
    # int8 calibration (``export --precision int8 --calibrate VIDEOS``): the user's videos are listed
    # like any input, and clips are generated when none are given
    "backends/quantize.py": {"lsld_engine.parsing.video_inputs", "lsld_engine.testing.videos"},
}
ALL_MODULES = sorted((ROOT / "lsld_engine").rglob("*.py"))


def _unit(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "lsld_engine" and len(parts) > 1 and parts[1] in LAYERS else None


def test_every_unit_has_a_layer():
    lib = ROOT / "lsld_engine"
    units = {p.stem for p in lib.glob("*.py") if p.name != "__init__.py"}
    units |= {d.name for d in lib.iterdir() if (d / "__init__.py").exists()}
    assert units == set(LAYERS), f"add to LAYERS: {sorted(units - set(LAYERS))}; gone: {sorted(set(LAYERS) - units)}"


def test_top_level_is_small_and_no_package_shadows_the_standard_library():
    top = sorted(p.name for p in (ROOT / "lsld_engine").glob("*.py"))
    assert len(top) <= 12, top
    names = {p.stem for p in (ROOT / "lsld_engine").glob("*.py")} | {
        d.name for d in (ROOT / "lsld_engine").iterdir() if d.is_dir()}
    assert not names & set(sys.stdlib_module_names), names & set(sys.stdlib_module_names)


@pytest.mark.parametrize("path", ALL_MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_go_down_the_layers(path):
    rel = path.relative_to(ROOT / "lsld_engine")
    me = rel.parts[0] if len(rel.parts) > 1 else rel.stem
    if me == "__init__":
        return
    allowed = UPWARD.get(rel.as_posix(), set())
    up = sorted(m for m in _imports(path) if (u := _unit(m)) and LAYERS[u] > LAYERS[me]
                and not any(m == a or m.startswith(a + ".") for a in allowed))
    assert not up, f"{path.relative_to(ROOT)} (layer {LAYERS[me]}) imports higher layers: {up}"


@pytest.mark.parametrize("path", [p for d in ("lsld_engine", "train", "export", "bench", "scripts")
                                  for p in sorted((ROOT / d).rglob("*.py"))], ids=lambda p: str(p.relative_to(ROOT)))
def test_no_file_over_about_400_lines(path):
    lines = path.read_text().count("\n")
    assert lines <= 420, f"{path.relative_to(ROOT)}: {lines} lines; split it by job"


def test_readme_layout_table_matches_the_package():
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import layout_table
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    assert layout_table.readme_table((ROOT / "README.md").read_text()) == layout_table.table(), \
        "README's Layout table is stale: run python scripts/layout_table.py --write"


@pytest.mark.parametrize("old, new, name", [("lsld_engine.metrics", "lsld_engine.evaluation.metrics", "evaluate"),
                                            ("lsld_engine.writers", "lsld_engine.records.writers", "WRITERS"),
                                            ("lsld_engine.denoise", "lsld_engine.labels.denoise", "den")])
def test_old_import_paths_give_the_moved_modules(old, new, name):
    import importlib

    assert importlib.import_module(old) is importlib.import_module(new)
    assert getattr(importlib.import_module(old), name) is getattr(importlib.import_module(new), name)


# Tracker words: code, messages and docs cite the doc or the benchmark, never an issue number.
TRACKER = __import__("re").compile(r"\b[Ii]ssues? ?#?\d+|\b(?:ticket|bug) ?#\d+")
TEXT_TREES = ("lsld_engine", "train", "export", "bench", "scripts", "docs", "tests")


def _text_files():
    for tree in TEXT_TREES:
        for p in sorted((ROOT / tree).rglob("*")):
            if p.suffix in (".py", ".md", ".json", ".sh", ".txt") and "__pycache__" not in p.parts:
                yield p
    yield from (ROOT / n for n in ("README.md", "BENCHMARKS.md", "pyproject.toml"))


def test_no_tracker_words_in_code_messages_or_docs():
    hits = [f"{p.relative_to(ROOT)}:{i}: {line.strip()[:80]}" for p in _text_files() if p.is_file()
            for i, line in enumerate(p.read_text(encoding="utf-8", errors="replace").splitlines(), 1)
            if TRACKER.search(line) and p.name != "test_layout.py"]
    assert not hits, "tracker words (cite the doc or the benchmark instead):\n" + "\n".join(hits)


def test_the_tracker_pattern_catches_what_it_should():
    for bad in ("see issue 21", "Issue #28", "(issues 21)", "bug #3"):
        assert TRACKER.search(bad), bad
    for ok in ("a tissue 21 cm", "issues", "the issue with 3 videos"):
        assert not TRACKER.search(ok), ok
