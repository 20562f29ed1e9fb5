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


def _imports(path: Path) -> set[str]:
    """Modules ``path`` imports anywhere but in its ``if __name__ == "__main__":`` block."""
    tree = ast.parse(path.read_text())
    skip = {id(n) for node in tree.body if isinstance(node, ast.If) and "__main__" in ast.unparse(node.test)
            for n in ast.walk(node)}
    out = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return out


@pytest.mark.parametrize("path", LIBRARY, ids=lambda p: str(p.relative_to(ROOT)))
def test_library_imports_neither_export_nor_the_cli(path):
    bad = sorted(m for m in _imports(path)
                 if m == "export" or m.startswith("export.") or m in ("lsld_engine.cli", "lsld_engine.commands")
                 or m.startswith("lsld_engine.commands."))
    assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def test_user_errors_share_one_base_and_keep_their_builtin_base():
    from lsld_engine.backends.torch_backend import MissingWeightsError
    from lsld_engine.checkpoint import CheckpointError as HanCheckpointError
    from lsld_engine.dataset import FeatureError
    from lsld_engine.encoders.checkpoints import CheckpointError as EncoderCheckpointError
    from lsld_engine.errors import LsldError, is_user_error
    from lsld_engine.llp import AnnotationError
    from lsld_engine.media import MediaError
    from lsld_engine.prompts import PromptError
    from lsld_engine.writers import PredictionsError

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


@pytest.mark.parametrize("module, word", [("lsld_engine.synth", "make"), ("export", "--networks")])
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
