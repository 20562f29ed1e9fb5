"""``--backend auto``: what it picks, the export cache (reuse, invalidation, concurrency, crashes),
the same random weights on every backend, the thread split."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


# --- the choice ------------------------------------------------------------------------------------

def test_auto_picks_onnx_runtime_on_cpu_and_torch_for_bf16(monkeypatch):
    from lsld_engine import hardware
    from lsld_engine.backends.auto import choose

    monkeypatch.setattr(hardware, "cpu_bf16_support", lambda: (False, "no avx512_bf16 flag"))
    c = choose("cpu")
    assert (c.backend, c.precision, c.cached) == ("onnx", "fp32", True)
    assert choose("cpu", "int8").backend == "onnx"
    # native bf16, no --precision: torch with CLIP's weights in bf16 (2x fp32 there); --precision fp32: ORT
    monkeypatch.setattr(hardware, "cpu_bf16_support", lambda: (True, "CPU flags avx512_bf16"))
    c = choose("cpu")
    assert (c.backend, c.precision, c.cached, c.per_tower) == ("torch", "fp32", False, True)
    assert "bf16/fp32 per tower" in c.describe() and "native bf16" in c.reason
    c = choose("cpu", "fp32", auto_precision=False)
    assert (c.backend, c.cached) == ("onnx", True)
    assert choose("cpu", "int8").backend == "onnx"
    c = choose("cpu", "bf16")
    assert (c.backend, c.precision, c.cached) == ("torch", "bf16", False) and "bf16" in c.reason
    c = choose("cpu", engine_dir="/some/dir")
    assert (c.backend, c.cached) == ("onnx", False)


def test_auto_on_cuda_keeps_torch_and_takes_tensorrt_only_with_an_engine_dir(monkeypatch):
    from lsld_engine.backends import auto

    monkeypatch.setattr(auto, "tensorrt_ready", lambda: (False, "TensorRT is not installed"))
    c = auto.choose("cuda")
    assert (c.backend, c.precision) == ("torch", "fp16") and "not installed" in c.reason
    assert auto.choose("cuda", engine_dir="e").backend == "onnx"
    monkeypatch.setattr(auto, "tensorrt_ready", lambda: (True, "10.0"))
    assert auto.choose("cuda").backend == "torch"
    assert auto.choose("cuda", engine_dir="e").backend == "tensorrt"


def test_create_backend_auto_on_cpu_is_onnx_runtime_over_the_cache(tmp_path):
    from lsld_engine.backends import create_backend
    from lsld_engine.backends.auto import CachedOnnxBackend

    b = create_backend("auto", device="cpu", random_weights=True, size="small", cache_dir=tmp_path)
    assert isinstance(b, CachedOnnxBackend) and b.providers == ["CPUExecutionProvider"]
    assert not (tmp_path / "onnx").exists()  # nothing is exported before a network is used


def test_ray_actors_build_the_auto_backend_on_their_own_device(tmp_path):
    """The actors get ``backend="auto"`` and resolve it where they run (no cluster needed for that)."""
    from lsld_engine.backends.auto import CachedOnnxBackend
    from lsld_engine.scale.engine import RayOptions, backend_options_for, plan
    from lsld_engine.scale.stages import ParseActor

    opts = plan(RayOptions(), {"CPU": 2})
    options = backend_options_for({"random_weights": True, "size": "small", "cache_dir": str(tmp_path)}, opts)
    actor = ParseActor("auto", options)
    assert isinstance(actor.engine.backend, CachedOnnxBackend) and actor.engine.backend.threads == 1


def test_extract_and_parse_default_to_auto():
    from lsld_engine.cli import build_parser

    for cmd in ("parse", "extract"):
        args = build_parser([cmd]).parse_args([cmd, "v.mp4", "--out", "o"])
        assert args.backend == "auto" and args.threads is None


# --- the cache -------------------------------------------------------------------------------------

def _han_spec(**kw):
    from lsld_engine.exporting.cache import ExportSpec

    return ExportSpec("han", size="small", **kw)


@pytest.fixture(scope="module")
def han_cache(tmp_path_factory):
    """A cache folder with the small random HAN exported once: ``(root, EnsureResult)``."""
    from lsld_engine.exporting.cache import ensure

    root = tmp_path_factory.mktemp("cache")
    notes = []
    res = ensure(_han_spec(), root, note=notes.append)
    assert res.exported and res.path.is_file() and res.seconds > 0
    assert len(notes) == 1 and str(root) in notes[0] and "han" in notes[0]
    return root, res


def test_cache_entry_is_complete_and_reused(han_cache):
    from lsld_engine.exporting.cache import MARKER, ensure

    root, first = han_cache
    marker = first.path.parent / MARKER
    stamp = marker.stat().st_mtime_ns
    meta = json.loads(marker.read_text())
    assert meta["network"] == "han" and meta["random_seed"] == 0 and meta["precision"] == "fp32"
    assert set(meta["versions"]) == {"torch", "onnx", "onnxruntime", "lsld_engine"}
    manifest = json.loads((first.path.parent / "manifest.json").read_text())
    assert manifest["han"]["parity"] and all(r["ok"] for r in manifest["han"]["parity"])
    notes = []
    again = ensure(_han_spec(), root, note=notes.append)
    assert not again.exported and again.path == first.path and notes == []
    assert marker.stat().st_mtime_ns == stamp


def test_cache_key_follows_seed_opset_precision_size_and_versions(monkeypatch):
    from lsld_engine.exporting import cache

    base = _han_spec().key()
    assert _han_spec().key() == base  # deterministic
    assert len({base, _han_spec(seed=1).key(), _han_spec(opset=17).key(), _han_spec(precision="int8").key(),
                cache.ExportSpec("han").key()}) == 5
    monkeypatch.setattr(cache, "runtime_versions", lambda: {"torch": "0.0"})
    assert _han_spec().key() != base


def test_changed_checkpoint_gets_new_files(tmp_path):
    import torch

    from lsld_engine.han.checkpoint import save_han
    from lsld_engine.exporting.cache import ExportSpec, cached_file, ensure
    from lsld_engine.han.model import build_han

    ckpt = tmp_path / "han.safetensors"
    torch.manual_seed(5)
    save_han(build_han(num_layers=1), ckpt)
    first = ensure(ExportSpec("han", str(ckpt)), tmp_path / "cache", note=lambda s: None)
    assert first.exported
    torch.manual_seed(6)
    save_han(build_han(num_layers=1), ckpt)  # same path, other weights
    spec = ExportSpec("han", str(ckpt))
    assert cached_file(spec, tmp_path / "cache") is None
    second = ensure(spec, tmp_path / "cache", note=lambda s: None)
    assert second.exported and second.path.parent != first.path.parent and first.path.is_file()


_CHILD = textwrap.dedent("""
    import json, sys
    from lsld_engine.exporting.cache import ExportSpec, ensure
    res = ensure(ExportSpec("han", size="small"), sys.argv[1], note=lambda s: None)
    print(json.dumps({"exported": res.exported, "path": str(res.path)}))
""")


def _child(root: Path, **env) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", _CHILD, str(root)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), **env})


@pytest.mark.slow
def test_two_processes_starting_together_export_once(tmp_path):
    procs = [_child(tmp_path), _child(tmp_path)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    res = [json.loads(o[0].strip().splitlines()[-1]) for o in outs]
    assert sorted(r["exported"] for r in res) == [False, True]
    assert res[0]["path"] == res[1]["path"]
    assert len([d for d in (tmp_path / "onnx").iterdir() if not d.name.startswith(".")]) == 1


@pytest.mark.slow
def test_an_export_killed_midway_leaves_nothing_loadable_and_the_next_run_redoes_it(tmp_path):
    from lsld_engine.backends.auto import CachedOnnxBackend
    from lsld_engine.exporting.cache import FAULT_ENV, cached_file

    p = _child(tmp_path, **{FAULT_ENV: "kill"})
    p.communicate(timeout=600)
    assert p.returncode == -signal.SIGKILL
    assert cached_file(_han_spec(), tmp_path) is None
    leftovers = list((tmp_path / "onnx").glob(".tmp-han-*"))
    assert leftovers and any(f.suffix == ".onnx" for d in leftovers for f in d.iterdir())  # killed after the file
    b = CachedOnnxBackend(random_weights=True, size="small", cache_dir=tmp_path)
    rng = np.random.default_rng(0)
    out = b.parse(rng.standard_normal((2, 10, 512), dtype=np.float32), rng.standard_normal((2, 80, 512), dtype=np.float32))
    assert out["seg_prob"].shape == (2, 10, 2, 25) and b.export_seconds["han"] > 0
    assert not list((tmp_path / "onnx").glob(".tmp-han-*"))
    assert cached_file(_han_spec(), tmp_path) is not None


@pytest.mark.slow
def test_parse_int8_builds_the_int8_engine_in_the_cache_once_and_gates_it(tmp_path, monkeypatch, capsys):
    """`parse --precision int8` with no --engine-dir: the int8 engine is built in the cache with its
    fidelity report, named in the summary, reused by the next run; an engine whose report is below the
    gate is refused in one line, and --force-int8 runs it."""
    from lsld_engine.cli import main
    from lsld_engine.testing.videos import VideoSpec, make_video

    monkeypatch.setenv("LSLD_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("LSLD_FAKE_CPU_FLAGS", "avx2 fma avx512f avx512_vnni")  # the int8 path on any CPU
    clip = make_video(tmp_path / "v.mp4", VideoSpec(width=96, height=64, duration=3.0))
    common = [str(clip), "--random-weights", "--small", "--precision", "int8", "--quiet", "--workers", "0",
              "--no-resume"]
    assert main(["parse", *common, "--out", str(tmp_path / "a.jsonl")]) == 0
    err = capsys.readouterr().err
    engines = sorted((tmp_path / "cache" / "onnx").glob("int8-*"))
    assert len(engines) == 1 and "building the int8 engine once" in err
    assert f"int8 engine {engines[0]}: CLIP cosine mean" in err and "events" in err
    report = json.loads((engines[0] / "fidelity.json").read_text())
    assert report["passed"] and set(report["towers"]) == {"clip_image", "clap_audio"}
    assert report["event_cells"] > 0 and set(report["files"]) == {"clip_image.onnx", "clap_audio.onnx", "han.onnx"}
    assert main(["parse", *common, "--out", str(tmp_path / "b.jsonl")]) == 0
    err = capsys.readouterr().err
    assert "building" not in err and "exporting" not in err and f"int8 engine {engines[0]}" in err
    assert (tmp_path / "a.jsonl").read_text() == (tmp_path / "b.jsonl").read_text()
    # a report below the gate (as a real checkpoint might give): refused in one line, --force-int8 runs
    report["towers"]["clip_image"]["mean_cosine"] = 0.9
    (engines[0] / "fidelity.json").write_text(json.dumps(report))
    assert main(["parse", *common, "--out", str(tmp_path / "c.jsonl")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "below the fidelity gate" in lines[0] and "clip_image mean cosine 0.9000" in lines[0]
    assert not (tmp_path / "c.jsonl").exists() or not (tmp_path / "c.jsonl").read_text()
    assert main(["parse", *common, "--force-int8", "--out", str(tmp_path / "c.jsonl")]) == 0
    assert (tmp_path / "c.jsonl").read_text() == (tmp_path / "a.jsonl").read_text()


def test_int8_without_the_quantizer_is_a_clear_error(han_cache, monkeypatch):
    from lsld_engine.errors import LsldError
    from lsld_engine.exporting import cache

    monkeypatch.setattr(cache, "QUANTIZE_FUNCTION", "lsld_engine.no_such_module:quantize_folder")
    specs = [cache.ExportSpec("clip_image", size="small")]
    with pytest.raises(LsldError, match="no_such_module.quantize_folder"):
        cache.ensure_int8(specs, han_cache[0], note=lambda s: None)
    assert cache.cached_int8(specs, han_cache[0]) is None
    with pytest.raises(ValueError, match="ensure_int8"):
        cache.ensure(_han_spec(precision="int8"), han_cache[0])


# --- the same random weights on every backend ---------------------------------------------------------

def test_random_weights_are_the_same_networks_for_torch_and_export():
    """The torch backend's random towers and HAN are the modules `export --random-weights` exports."""
    import torch

    from lsld_engine.backends.torch_backend import TorchBackend
    from lsld_engine.exporting.networks import build_module

    b = TorchBackend(random_weights=True, size="small")
    for net in ("clip_image", "clap_audio", "han"):
        mine = b.network(net).state_dict()
        exported = build_module(net, small=True).state_dict()
        exported = {k.removeprefix("owner."): v for k, v in exported.items()}
        assert mine.keys() == exported.keys()
        assert all(torch.equal(mine[k], exported[k]) for k in mine), net
    other = build_module("han", small=True, seed=1).state_dict()
    assert not all(torch.equal(b.network("han").state_dict()[k], other[k]) for k in other)


def test_random_weights_give_the_same_events_on_torch_and_auto(han_cache):
    """The HAN that ``auto`` exported on first use gives the torch backend's events (same seed, same
    weights); the towers' equality is the state-dict test above plus the ONNX parity checks."""
    from lsld_engine.backends.auto import CachedOnnxBackend
    from lsld_engine.backends.torch_backend import TorchBackend
    from lsld_engine.exporting.networks import example_inputs
    from lsld_engine.exporting.parity import event_mismatches

    audio, frames = example_inputs("han", 16, seed=7)
    ref = TorchBackend(random_weights=True, size="small").parse(audio, frames)
    out = CachedOnnxBackend(random_weights=True, size="small", cache_dir=han_cache[0]).parse(audio, frames)
    for k, v in ref.items():
        np.testing.assert_allclose(out[k], v, atol=1e-5)
    unexplained, near = event_mismatches(ref, out, tolerance=1e-5)
    assert unexplained == 0 and near <= 1


# --- threads ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("cores, device, want", [(2, "cpu", (1, 2)), (1, "cpu", (1, 1)), (8, "cpu", (2, 6)),
                                                 (16, "cpu", (4, 12)), (8, "cuda", (7, None))])
def test_thread_split_from_the_core_count(cores, device, want):
    from lsld_engine.backends.threads import plan_threads

    p = plan_threads(device, cores=cores)
    assert (p.workers, p.threads) == want and str(cores) in p.describe()


def test_thread_flags_override_the_split():
    from lsld_engine.backends.threads import plan_threads

    assert (plan_threads("cpu", cores=8, workers=0).workers, plan_threads("cpu", cores=8, workers=0).threads) == (0, 6)
    p = plan_threads("cpu", cores=8, workers=3, threads=5)
    assert (p.workers, p.threads) == (3, 5) and "given" in p.reason


# --- doctor and the CPU precision choice -------------------------------------------------------------

def test_doctor_runs_here_and_names_the_flags_and_the_choice(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LSLD_CACHE": str(tmp_path / "c")}
    out = subprocess.run([sys.executable, "-m", "lsld_engine.cli", "doctor"], capture_output=True, text=True,
                         cwd=ROOT, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    for word in ("AVX2", "AVX-512", "VNNI", "BF16", "AMX", "ONNX Runtime", "CPUExecutionProvider", "TensorRT",
                 "CUDA devices", "NVDEC", "PyAV", "extras", str(tmp_path / "c"), "auto picks", "threads"):
        assert word in out.stdout, word
    from lsld_engine.doctor import cpu_features

    assert cpu_features({"avx2", "avx512f", "avx512_vnni"}) == {"AVX2": True, "AVX-512": True, "VNNI": True,
                                                               "BF16": False, "AMX": False}
    assert set(cpu_features(None).values()) <= {True, False, None}


def test_torch_on_cpu_runs_bf16_only_for_the_tower_it_speeds_up(monkeypatch):
    from lsld_engine import hardware
    from lsld_engine.backends.torch_backend import TorchBackend

    monkeypatch.setattr(hardware, "cpu_bf16_support", lambda: (True, "CPU flags avx512_bf16"))
    b = TorchBackend(random_weights=True, size="small", auto_precision=True)
    import torch

    assert (b.precision_of("clip_image"), b.precision_of("clap_audio"), b.precision_of("han")) == ("bf16", "bf16", "fp32")
    clip = b.network("clip_image")
    # CLIP holds bf16 weights (no autocast: 2x fp32 where autocast ran 0.5x); CLAP runs under autocast
    assert clip.weights_dtype == torch.bfloat16 and next(clip.visual.parameters()).dtype == torch.bfloat16
    assert b.network("clap_audio").precision == "bf16"
    monkeypatch.setattr(hardware, "CPU_BF16_SPEEDUP", {**hardware.CPU_BF16_SPEEDUP, "clip_image": 0.5})
    assert hardware.cpu_tower_precision("clip_image")[0] == "fp32"
    monkeypatch.setattr(hardware, "cpu_bf16_support", lambda: (False, "no avx512_bf16 flag"))
    precision, why = hardware.cpu_tower_precision("clap_audio")
    assert precision == "fp32" and "emulated" in why
    assert TorchBackend(precision="fp32").precision_of("clap_audio") == "fp32"  # an explicit --precision wins
