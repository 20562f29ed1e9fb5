"""Export to ONNX (HAN, small CLIP and CLAP), parity with PyTorch, the onnx backend, and the
TensorRT path's pure-Python pieces (TensorRT itself is absent here)."""
from __future__ import annotations

import contextlib
import logging
import sys

import numpy as np
import onnx
import pytest
import torch

from export.networks import FP32_FRONT_END, IO, build_module, example_inputs
from export.onnx_export import (EXPORT_BATCH, ExportError, _scope, convert_fp16, describe, export_onnx,
                                onnx_filename)
from export.parity import (FP16_REL_BOUND, FP32_REL_BOUND, assert_parity, check_parity, compare,
                           event_mismatches, run_torch)

NETS = ("han", "clip_image", "clap_audio")
OTHER_BATCHES = (1, 3)  # the export batch is 2: other sizes prove the batch axis is dynamic
assert EXPORT_BATCH not in OTHER_BATCHES


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Random-weight checkpoint files: small CLIP and CLAP, full-size HAN (shared with the torch backend)."""
    from lsld_engine.han.checkpoint import save_han
    from lsld_engine.encoders.clap import random_clap_state_dict
    from lsld_engine.encoders.clip import random_clip_state_dict
    from lsld_engine.han.model import build_han

    d = tmp_path_factory.mktemp("ckpt")
    torch.save(random_clip_state_dict("small", seed=1), d / "clip.pt")
    torch.save({"state_dict": random_clap_state_dict("small", text=False, seed=2)}, d / "clap.pt")
    torch.manual_seed(3)
    save_han(build_han(), d / "han.safetensors")
    return {"clip_image": str(d / "clip.pt"), "clap_audio": str(d / "clap.pt"), "han": str(d / "han.safetensors")}


@pytest.fixture(scope="module")
def exported(tmp_path_factory, checkpoints):
    """``{network: (torch module, {precision: path})}`` for the small configs (HAN at full size)."""
    out = tmp_path_factory.mktemp("engines")
    result = {}
    for net in NETS:
        module = build_module(net, checkpoint=checkpoints[net], small=True)
        with contextlib.redirect_stdout(sys.stderr):
            p32 = export_onnx(net, module, out / onnx_filename(net, "fp32"))
            p16 = convert_fp16(p32, out / onnx_filename(net, "fp16"), fp32_before=FP32_FRONT_END.get(net))
        result[net] = (module, {"fp32": p32, "fp16": p16})
    return result


@pytest.fixture(scope="module")
def engine_dir(exported):
    return exported["han"][1]["fp32"].parent


# --- export ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("net", NETS)
def test_export_is_checker_clean_with_documented_io(exported, net):
    _, files = exported[net]
    for path in files.values():
        onnx.checker.check_model(str(path), full_check=True)
        assert not path.with_name(path.name + ".data").exists(), "weights must be embedded"
        d = describe(path)
        assert d["opset"] == 18
        assert [i["name"] for i in d["inputs"]] == list(IO[net].inputs)
        assert [o["name"] for o in d["outputs"]] == list(IO[net].outputs)
        assert all(v["shape"][0] == "batch" for v in d["inputs"] + d["outputs"])
    d = describe(files["fp32"])
    shapes = {v["name"]: (v["shape"][1:], v["dtype"]) for v in d["inputs"] + d["outputs"]}
    expected = {"han": {"audio": ([10, 512], "float32"), "frames": ([80, 512], "float32"),
                        "seg_prob": ([10, 2, 25], "float32"), "a_prob": ([25], "float32")},
                "clip_image": {"images": ([224, 224, 3], "uint8"), "embedding": ([512], "float32")},
                "clap_audio": {"segments": ([48000], "float32"), "embedding": ([512], "float32")}}[net]
    for name, want in expected.items():
        assert shapes[name] == want


@pytest.mark.parametrize("net", NETS)
def test_fp32_parity_at_other_batch_sizes(exported, net):
    module, files = exported[net]
    results = check_parity(net, module, files["fp32"], batch_sizes=OTHER_BATCHES, seed=5)
    assert {r.batch for r in results} == set(OTHER_BATCHES)
    assert all(r.bound == FP32_REL_BOUND for r in results)
    assert_parity(results)


@pytest.mark.parametrize("net", NETS)
def test_fp16_parity_within_documented_bound(exported, net):
    module, files = exported[net]
    results = check_parity(net, module, files["fp16"], precision="fp16", batch_sizes=(3,), seed=7)
    assert_parity(results)
    # and it really is fp16 inside: clearly less exact than the fp32 file
    assert max(r.max_rel for r in results) > FP32_REL_BOUND / 10


def test_fp16_han_gives_the_same_events(exported):
    module, files = exported["han"]
    from export.parity import cpu_session

    inputs = example_inputs("han", 64, seed=11)
    ref = dict(zip(IO["han"].outputs, run_torch(module, inputs)))
    out = dict(zip(IO["han"].outputs, cpu_session(files["fp16"], "fp16").run(None, dict(zip(IO["han"].inputs, inputs)))))
    unexplained, near = event_mismatches(ref, out, tolerance=FP16_REL_BOUND)
    assert unexplained == 0
    # random weights put many probabilities near 0.5; still, flips at the threshold must be rare
    assert near <= 1e-3 * ref["seg_prob"].size


def test_event_mismatch_counts_real_disagreements():
    seg = np.full((1, 10, 2, 3), 0.9, np.float32)
    vid = np.full((1, 3), 0.9, np.float32)
    ref = {"seg_prob": seg, "a_prob": vid, "v_prob": vid}
    bad = {"seg_prob": seg.copy(), "a_prob": vid, "v_prob": vid}
    bad["seg_prob"][0, 4, 0, 1] = 0.1
    assert event_mismatches(ref, bad, tolerance=0.02) == (1, 0)
    near = {"seg_prob": seg.copy(), "a_prob": vid, "v_prob": vid}
    ref_near = {"seg_prob": seg.copy(), "a_prob": vid, "v_prob": vid}
    ref_near["seg_prob"][0, 2, 1, 0] = 0.505
    near["seg_prob"][0, 2, 1, 0] = 0.495
    assert event_mismatches(ref_near, near, tolerance=0.02) == (0, 1)


def test_clap_fp16_keeps_the_front_end_in_fp32(exported):
    from onnx import TensorProto

    model = onnx.shape_inference.infer_shapes(onnx.load(str(exported["clap_audio"][1]["fp16"])))
    types = {v.name: v.type.tensor_type.elem_type for v in model.graph.value_info}
    logs = [n for n in model.graph.node if n.op_type == "Log"]
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    assert logs and all(types.get(n.output[0]) == TensorProto.FLOAT for n in logs)  # log-mel in fp32
    patch = [n for n in convs if "patch_embed" in _scope(n)]
    assert patch and all(types.get(n.output[0]) == TensorProto.FLOAT16 for n in patch)  # network in fp16


def test_parity_reports_and_fails_on_disagreement():
    ref = [np.ones((2, 4), np.float32)]
    res = compare("han", "fp32", 2, ["x"], ref, [ref[0] + 1e-3])
    assert res[0].max_abs == pytest.approx(1e-3, rel=1e-3) and not res[0].ok
    with pytest.raises(AssertionError, match="parity failed"):
        assert_parity(res)


def test_export_refuses_a_batch_baked_into_the_graph(tmp_path):
    class Baked(torch.nn.Module):  # the HTSAT window_reverse trap: batch via Python int()
        def forward(self, audio, frames):
            b = int(audio.shape[0] / 1.0)
            g = audio.reshape(b, -1).mean(1, keepdim=True) + frames.reshape(b, -1).mean(1, keepdim=True)
            return g, g, g, g.reshape(b, 1, 1, 1)

    with pytest.raises(ExportError, match="fixed"), contextlib.redirect_stdout(sys.stderr):
        export_onnx("han", Baked(), tmp_path / "baked.onnx")


# --- onnx backend ----------------------------------------------------------------------------------

def test_onnx_backend_matches_torch(exported, engine_dir):
    from lsld_engine.backends.onnx_backend import OnnxBackend
    from lsld_engine.records.events import predict_masks

    be = OnnxBackend(engine_dir=engine_dir, device="cpu", batch_sizes={"windows": 4, "images": 2})
    han = exported["han"][0]
    audio, frames = example_inputs("han", 9, seed=3)  # 9 > max_batch: chunked
    out = be.parse(audio, frames.astype(np.float16))
    ref = dict(zip(IO["han"].outputs, run_torch(han, (audio, frames.astype(np.float16).astype(np.float32)))))
    assert set(out) == {"seg_prob", "a_prob", "v_prob", "global_prob"}
    for k in ref:
        assert out[k].shape == ref[k].shape
        np.testing.assert_allclose(out[k], ref[k], rtol=0, atol=1e-5)
    for got, want in zip(predict_masks(out["seg_prob"], out["a_prob"], out["v_prob"]),
                         predict_masks(ref["seg_prob"], ref["a_prob"], ref["v_prob"])):
        np.testing.assert_array_equal(got, want)
    (images,) = example_inputs("clip_image", 3, seed=4)
    emb = be.embed_images(images)
    want = run_torch(exported["clip_image"][0], (images,))[0]
    assert emb.shape == (3, 512) and emb.dtype == np.float32
    assert np.abs(emb - want).max() <= FP32_REL_BOUND * np.abs(want).max()
    (segments,) = example_inputs("clap_audio", 2, seed=5)
    emb = be.embed_audio(segments)
    want = run_torch(exported["clap_audio"][0], (segments,))[0]
    assert np.abs(emb - want).max() <= FP32_REL_BOUND * np.abs(want).max()
    assert be.name == "onnx" and be.device == "cpu"
    be.close()


def test_onnx_backend_io_binding_path_gives_the_same_result(engine_dir):
    from lsld_engine.backends.onnx_backend import OnnxBackend

    audio, frames = example_inputs("han", 3, seed=8)
    plain = OnnxBackend(engine_dir=engine_dir, io_binding=False).parse(audio, frames)
    bound = OnnxBackend(engine_dir=engine_dir, io_binding=True).parse(audio, frames)
    for k in plain:
        np.testing.assert_array_equal(plain[k], bound[k])


def test_onnx_backend_fp16_files(engine_dir):
    from lsld_engine.backends.onnx_backend import OnnxBackend

    be = OnnxBackend(engine_dir=engine_dir, precision="fp16")
    assert be.path("han").name == "han.fp16.onnx"
    audio, frames = example_inputs("han", 2, seed=9)
    ref = OnnxBackend(engine_dir=engine_dir).parse(audio, frames)
    out = be.parse(audio, frames)
    assert np.abs(out["seg_prob"] - ref["seg_prob"]).max() <= FP16_REL_BOUND


def test_onnx_backend_errors_name_what_to_do(tmp_path, engine_dir):
    from lsld_engine.backends.onnx_backend import OnnxBackend

    with pytest.raises(ValueError, match="engine_dir"):
        OnnxBackend()
    with pytest.raises(FileNotFoundError, match="lsld-engine export"):
        OnnxBackend(engine_dir=tmp_path / "nope")
    be = OnnxBackend(engine_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match=r"han\.onnx.*--networks han"):
        be.parse(*example_inputs("han", 1))
    with pytest.raises(ValueError, match="uint8"):
        OnnxBackend(engine_dir=engine_dir).embed_images(np.zeros((1, 224, 224, 3), np.float32))
    with pytest.raises(ValueError, match="fp32, fp16 or int8"):
        OnnxBackend(engine_dir=engine_dir, precision="bf16")


def test_onnx_backend_warns_when_file_has_other_weights(engine_dir, caplog):
    from lsld_engine.backends.onnx_backend import OnnxBackend

    be = OnnxBackend(engine_dir=engine_dir, model="/models/LSLD.pt")
    with caplog.at_level(logging.WARNING):
        be.parse(*example_inputs("han", 1))
    assert "LSLD.pt" in caplog.text


def test_provider_choice():
    from lsld_engine.backends.onnx_backend import choose_providers

    every = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert choose_providers(every, "cuda") == every
    assert choose_providers(every[::-1], "cuda:1") == every  # preference order, not listing order
    assert choose_providers(every[1:], "cuda") == every[1:]
    assert choose_providers(every, "cpu") == ["CPUExecutionProvider"]
    assert choose_providers(every, "cuda", ["CUDAExecutionProvider"]) == ["CUDAExecutionProvider"]
    with pytest.raises(RuntimeError, match="onnxruntime-gpu"):
        choose_providers(["CPUExecutionProvider"], "cuda")
    with pytest.raises(RuntimeError, match="not in this build"):
        choose_providers(["CPUExecutionProvider"], "cpu", ["TensorrtExecutionProvider"])


def test_tensorrt_ep_options_pin_the_batch_profile(tmp_path):
    from lsld_engine.backends.onnx_backend import provider_options

    opts = provider_options(["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
                            device_id=0, precision="fp16", cache_dir=tmp_path, network="han", max_batch=64,
                            input_shapes={"audio": ["batch", 10, 512], "frames": ["batch", 80, 512]})
    trt = opts[0]
    assert trt["trt_fp16_enable"] is True and trt["trt_engine_cache_path"] == str(tmp_path)
    assert trt["trt_profile_min_shapes"] == "audio:1x10x512,frames:1x80x512"
    assert trt["trt_profile_max_shapes"] == "audio:64x10x512,frames:64x80x512"
    assert opts[1] == {"device_id": 0} and opts[2] == {}


# --- TensorRT (pure-Python parts; tensorrt is not installable here) -------------------------------

def test_tensorrt_profile_shapes_and_buckets():
    from export.tensorrt_build import batch_buckets, padded_batch, profile_shapes

    assert profile_shapes((-1, 10, 512), 64) == ((1, 10, 512), (64, 10, 512), (64, 10, 512))
    assert profile_shapes(("batch", 48000), 8, opt_batch=4) == ((1, 48000), (4, 48000), (8, 48000))
    with pytest.raises(ValueError, match="only the batch axis"):
        profile_shapes((-1, -1, 512), 8)
    with pytest.raises(ValueError):
        profile_shapes((-1, 3), 4, opt_batch=8)
    assert batch_buckets(256) == [1, 2, 4, 8, 16, 32, 64, 128, 256]
    assert batch_buckets(80) == [1, 2, 4, 8, 16, 32, 64, 80]
    assert [padded_batch(n, batch_buckets(80)) for n in (1, 3, 64, 65, 80)] == [1, 4, 64, 80, 80]
    with pytest.raises(ValueError, match="exceeds"):
        padded_batch(81, batch_buckets(80))


def test_tensorrt_engine_cache_keys():
    from export.tensorrt_build import GpuInfo, engine_filename, timing_cache_filename

    h100 = GpuInfo("NVIDIA H100 80GB HBM3", (9, 0))
    name = engine_filename("han", "fp16", h100, "10.7.0", "ab" * 32)
    assert name == "han.fp16.nvidia-h100-80gb-hbm3.sm90.trt10.7.0.abababababab.engine"
    others = {engine_filename("han", "fp16", GpuInfo("NVIDIA H200", (9, 0)), "10.7.0", "ab" * 32),
              engine_filename("han", "fp16", h100, "10.8.0", "ab" * 32),
              engine_filename("han", "fp16", h100, "10.7.0", "cd" * 32),
              engine_filename("han", "fp32", h100, "10.7.0", "ab" * 32),
              engine_filename("clip_image", "fp16", h100, "10.7.0", "ab" * 32)}
    assert name not in others and len(others) == 5
    assert timing_cache_filename(h100, "10.7.0") == "timing.nvidia-h100-80gb-hbm3.sm90.trt10.7.0.cache"


def test_tensorrt_absent_is_skipped_with_a_message(engine_dir, caplog, monkeypatch):
    from export import tensorrt_build
    from lsld_engine.backends.tensorrt_backend import TensorRTBackend

    monkeypatch.setattr(tensorrt_build, "tensorrt_status", lambda: (False, "TensorRT is not installed"))
    with caplog.at_level(logging.WARNING):
        assert tensorrt_build.build_engines(engine_dir, ["han"]) == []
    assert "TensorRT is not installed" in caplog.text
    import lsld_engine.backends.tensorrt_backend as tb
    monkeypatch.setattr(tb, "tensorrt_status", lambda: (False, "TensorRT is not installed"))
    with pytest.raises(RuntimeError, match="tensorrt backend is unavailable: TensorRT is not installed"):
        TensorRTBackend(engine_dir=engine_dir)


def test_tensorrt_status_reports_why(monkeypatch):
    """Each of the three situations set up by hand (not by asking the machine what it has)."""
    import sys
    import types

    from export.tensorrt_build import tensorrt_status

    monkeypatch.setitem(sys.modules, "tensorrt", None)  # ``import tensorrt`` raises ImportError
    ok, why = tensorrt_status()
    assert not ok and why.startswith("TensorRT is not installed") and "pypi.nvidia.com" in why
    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__="10.7.0"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    ok, why = tensorrt_status()
    assert not ok and why.startswith("no CUDA GPU visible")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert tensorrt_status() == (True, "10.7.0")


# --- CLI -------------------------------------------------------------------------------------------

def test_cli_exports_han_with_manifest_and_parity(tmp_path, capsys):
    import json

    from export.__main__ import main

    assert main(["--networks", "han", "--random-weights", "--small", "--out", str(tmp_path), "--tensorrt"]) == 0
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["han"]["files"] == {"fp32": "han.onnx"}
    assert all(p["ok"] for p in manifest["han"]["parity"])
    assert {p["batch"] for p in manifest["han"]["parity"]} == {1, 3}
    captured = capsys.readouterr()
    assert "seg_prob" in captured.out
    assert "TensorRT engines skipped" in captured.err or "TensorRT engine:" in captured.out


def test_cli_needs_a_checkpoint_or_random_weights(tmp_path):
    from lsld_engine.cli import main

    with pytest.raises(SystemExit, match="--clip-checkpoint"):
        main(["export", "--networks", "clip_image", "--out", str(tmp_path)])


def test_cli_missing_checkpoint_names_the_file(tmp_path, capsys):
    from lsld_engine.cli import main

    rc = main(["export", "--networks", "han", "--model", str(tmp_path / "nope.safetensors"), "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and "nope.safetensors" in err and "Traceback" not in err


# --- parse engine integration ---------------------------------------------------------------------

def test_create_backend_onnx_matches_torch_backend(engine_dir, checkpoints):
    from lsld_engine.backends import create_backend
    from lsld_engine.records.events import predict_masks

    opts = dict(clip_checkpoint=checkpoints["clip_image"], clap_checkpoint=checkpoints["clap_audio"],
                model=checkpoints["han"], device="cpu", precision="fp32")
    onnx_be = create_backend("onnx", engine_dir=str(engine_dir), **opts)
    torch_be = create_backend("torch", size="small", **opts)
    audio, frames = example_inputs("han", 5, seed=12)
    a, b = onnx_be.parse(audio, frames), torch_be.parse(audio, frames)
    for k in ("seg_prob", "a_prob", "v_prob", "global_prob"):
        np.testing.assert_allclose(a[k], b[k], rtol=0, atol=1e-5)
    for x, y in zip(predict_masks(a["seg_prob"], a["a_prob"], a["v_prob"]),
                    predict_masks(b["seg_prob"], b["a_prob"], b["v_prob"])):
        np.testing.assert_array_equal(x, y)
    (images,) = example_inputs("clip_image", 2, seed=13)
    x, y = onnx_be.embed_images(images), torch_be.embed_images(images)
    assert np.abs(x - y).max() <= FP32_REL_BOUND * np.abs(y).max()
    (segments,) = example_inputs("clap_audio", 2, seed=14)
    x, y = onnx_be.embed_audio(segments), torch_be.embed_audio(segments)
    assert np.abs(x - y).max() <= FP32_REL_BOUND * np.abs(y).max()


@pytest.mark.slow
def test_real_size_vit_b16_export_parity(tmp_path):
    module = build_module("clip_image", small=False)
    with contextlib.redirect_stdout(sys.stderr):
        path = export_onnx("clip_image", module, tmp_path / "clip_image.onnx")
    assert_parity(check_parity("clip_image", module, path, batch_sizes=(1, 3)))


@pytest.mark.slow
def test_parse_cli_onnx_backend_gives_the_torch_events(tmp_path, engine_dir, checkpoints):
    import json

    from lsld_engine.cli import main
    from lsld_engine.testing.videos import make_video

    video = make_video(tmp_path / "clip.mp4")
    weights = ["--clip-checkpoint", checkpoints["clip_image"], "--clap-checkpoint", checkpoints["clap_audio"],
               "--model", checkpoints["han"], "--small", "--quiet",
               "--precision", "fp32"]  # (unset, torch on a native-bf16 CPU runs CLAP in bf16: hardware.cpu_tower_precision)
    outs = {}
    for backend in ("torch", "onnx"):
        out = tmp_path / f"{backend}.jsonl"
        assert main(["parse", str(video), "--backend", backend, "--engine-dir", str(engine_dir),
                     "--out", str(out), *weights]) == 0
        outs[backend] = json.loads(out.read_text().splitlines()[0])
    a, b = outs["torch"], outs["onnx"]
    assert a["status"] == b["status"] == "ok"
    spans = {k: [(e["label"], e["onset"], e["offset"]) for e in v] for k, v in a["events"].items()}
    assert sum(map(len, spans.values())) > 0  # random weights still produce events to compare
    assert spans == {k: [(e["label"], e["onset"], e["offset"]) for e in v] for k, v in b["events"].items()}
    for ea, eb in zip((e for v in a["events"].values() for e in v), (e for v in b["events"].values() for e in v)):
        assert eb["score"] == pytest.approx(ea["score"], abs=1e-5)
