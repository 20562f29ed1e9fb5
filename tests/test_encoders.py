"""CLIP / CLAP encoder towers: random-weight models saved in each official layout and reloaded.

Small configs run the same code paths as ViT-B/16 and HTSAT-tiny; the real-size architectures are
built once each (random weights) for a single forward. laion_clap's own audio preparation and HTSAT
forward are the references, imported without running its package ``__init__``.
"""
from __future__ import annotations

import ast
import contextlib
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lsld_engine import registry
from lsld_engine.encoders import checkpoints as ckpt
from lsld_engine.encoders.clap import (ClapAudioEncoder, build_clap_audio_encoder, build_clap_text_encoder,
                                       prepare_audio, random_clap_state_dict, repeat_pad)
from lsld_engine.encoders.clip import (build_clip_image_encoder, build_clip_text_encoder, random_clip_state_dict)
from lsld_engine.encoders.runtime import load_config

ROOT = Path(__file__).resolve().parents[1]
RNG = np.random.default_rng(1234)


# --- fixtures ----------------------------------------------------------------------------------------

def _byte_chars() -> list[str]:
    """GPT-2/RoBERTa byte-level alphabet (printable bytes as themselves, the rest shifted past 255)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    extra = [b for b in range(256) if b not in keep]
    return [chr(b) for b in keep] + [chr(256 + i) for i in range(len(extra))]


def write_tiny_roberta_dir(d: Path) -> Path:
    """A valid RoBERTa BPE tokenizer folder (vocab.json + merges.txt) with a 264-token vocabulary."""
    d.mkdir(parents=True, exist_ok=True)
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    for tok in [*_byte_chars(), "do", "Ġdo", "og"]:
        vocab[tok] = len(vocab)
    vocab["<mask>"] = len(vocab)
    (d / "vocab.json").write_text(json.dumps(vocab))
    (d / "merges.txt").write_text("#version: 0.2\nd o\nĠ do\no g\n")
    return d


@pytest.fixture(scope="module")
def clip_state():
    return random_clip_state_dict("small", seed=0)


@pytest.fixture(scope="module")
def clip_files(tmp_path_factory, clip_state):
    """The same random small CLIP in three layouts: flat .pt, DDP-style .bin, .safetensors."""
    from safetensors.torch import save_file

    d = tmp_path_factory.mktemp("clip")
    torch.save(clip_state, d / "flat.pt")
    torch.save({"epoch": 1, "state_dict": {f"module.{k}": v for k, v in clip_state.items()}}, d / "ddp.bin")
    save_file({k: v.contiguous() for k, v in clip_state.items()}, str(d / "plain.safetensors"))
    return d


@pytest.fixture(scope="module")
def clip_reference(clip_state):
    """open_clip's own CLIP model (QuickGELU) with the same weights."""
    from open_clip.model import CLIP

    cfg = load_config("clip_small")
    m = CLIP(cfg["embed_dim"], cfg["vision_cfg"], cfg["text_cfg"], quick_gelu=True).eval()
    m.load_state_dict(clip_state)
    return m


@pytest.fixture(scope="module")
def text_dir(tmp_path_factory):
    return write_tiny_roberta_dir(tmp_path_factory.mktemp("roberta"))


@pytest.fixture(scope="module")
def clap_state(text_dir):
    state = random_clap_state_dict("small", seed=0)
    # Checkpoints written with transformers < 4.31 carry this constant buffer: we must accept it.
    state["text_branch.embeddings.position_ids"] = torch.arange(80).unsqueeze(0)
    return state


@pytest.fixture(scope="module")
def clap_file(tmp_path_factory, clap_state):
    """laion_clap layout: {"state_dict": {"module.<key>": tensor}, "epoch": ...}."""
    p = tmp_path_factory.mktemp("clap") / "630k-audioset-best.pt"
    torch.save({"epoch": 45, "state_dict": {f"module.{k}": v for k, v in clap_state.items()}}, p)
    return p


@pytest.fixture(scope="module")
def clap_audio(clap_file):
    return build_clap_audio_encoder(clap_file, config="small")


def images_uint8(n: int) -> np.ndarray:
    return RNG.integers(0, 256, (n, 224, 224, 3), dtype=np.uint8)


def segments(n: int, length: int = 48000, scale: float = 0.5) -> np.ndarray:
    return (RNG.standard_normal((n, length)) * scale).astype(np.float32)


# --- laion_clap's own audio preparation, imported safely -------------------------------------------------

@pytest.fixture(scope="module")
def laion_prep():
    """``int16_to_float32``, ``float32_to_int16``, ``get_audio_features`` from laion_clap's training/data.py.

    That module imports webdataset/wget at the top and the package ``__init__`` hits the hub, so we
    compile just these three function definitions from its source.
    """
    from lsld_engine.encoders._laion import clap_module_dir

    src_path = clap_module_dir().parent / "training" / "data.py"
    tree = ast.parse(src_path.read_text())
    wanted = {"int16_to_float32", "float32_to_int16", "get_audio_features"}
    body = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in wanted]
    assert {n.name for n in body} == wanted, f"laion_clap changed: {src_path}"
    ns = {"np": np, "torch": torch, "F": F, "suppress": contextlib.suppress}
    exec(compile(ast.Module(body=body, type_ignores=[]), str(src_path), "exec"), ns)
    return ns


def laion_prepare(ns, wave: np.ndarray) -> torch.Tensor:
    """What CLAP_Module.get_audio_embedding_from_data feeds the model for one clip (enable_fusion=False)."""
    w = torch.from_numpy(ns["int16_to_float32"](ns["float32_to_int16"](wave))).float()
    cfg = load_config("clap_htsat_tiny")["audio_cfg"]
    out = ns["get_audio_features"]({}, w, 480000, data_truncating="rand_trunc", data_filling="repeatpad",
                                   audio_cfg=cfg)
    return out["waveform"]


# === CLIP ================================================================================================

def test_clip_image_shape_dtype_deterministic(clip_files):
    enc = build_clip_image_encoder(clip_files / "flat.pt", config="small")
    x = images_uint8(3)
    a, b = enc.embed(x), enc.embed(x, batch_size=2)
    assert a.shape == (3, 512) and a.dtype == np.float32
    np.testing.assert_array_equal(a, enc.embed(x))
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)  # batching does not change results


def test_clip_image_normalises_inside_and_matches_open_clip(clip_files, clip_reference):
    """uint8 NHWC in -> open_clip encode_image of the CLIP-normalised float image, unnormalised out."""
    from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

    enc = build_clip_image_encoder(clip_files / "flat.pt", config="small")
    x = images_uint8(2)
    f = torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255.0
    norm = (f - torch.tensor(OPENAI_DATASET_MEAN).view(1, 3, 1, 1)) / torch.tensor(OPENAI_DATASET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        ref = clip_reference.encode_image(norm).numpy()
    out = enc.embed(x)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(enc.embed(f.numpy()), out, rtol=1e-5, atol=1e-5)  # float NCHW path
    assert not np.allclose(np.linalg.norm(out, axis=1), 1.0)  # "before normalisation"


@pytest.mark.parametrize("name", ["ddp.bin", "plain.safetensors"])
def test_clip_checkpoint_layouts_load_identically(clip_files, name):
    x = images_uint8(2)
    a = build_clip_image_encoder(clip_files / "flat.pt", config="small").embed(x)
    b = build_clip_image_encoder(clip_files / name, config="small").embed(x)
    np.testing.assert_array_equal(a, b)


def test_clip_text_matches_open_clip(clip_files, clip_reference):
    import open_clip

    enc = build_clip_text_encoder(clip_files / "ddp.bin", config="small")
    texts = ["the sound of a dog barking", "a man speaking", "Violin, fiddle"]
    out = enc.encode_texts(texts)
    with torch.no_grad():
        ref = clip_reference.encode_text(open_clip.get_tokenizer("ViT-B-16")(texts)).numpy()
    assert out.shape == (3, 512) and out.dtype == np.float32
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
    with pytest.raises(TypeError):
        enc.encode_texts("one string")


def test_quick_gelu_flag_changes_features(clip_files):
    x = images_uint8(1)
    q = build_clip_image_encoder(clip_files / "flat.pt", config="small", quick_gelu=True)
    g = build_clip_image_encoder(clip_files / "flat.pt", config="small", quick_gelu=False)
    assert q.quick_gelu and not g.quick_gelu
    assert not np.allclose(q.embed(x), g.embed(x), atol=1e-4)


@pytest.fixture(scope="module")
def openai_archive(tmp_path_factory, clip_reference):
    """An OpenAI-style TorchScript archive: a scripted fp16 open_clip CLIP (same key layout as OpenAI's)."""
    import copy

    import warnings

    p = tmp_path_factory.mktemp("openai") / "ViT-B-16.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.script is deprecated; OpenAI's archives are TorchScript
        scripted = torch.jit.script(copy.deepcopy(clip_reference).half())
    torch.jit.save(scripted, str(p))
    return p


def test_torchscript_reader_equals_jit_state_dict(openai_archive):
    """The restricted unpickler yields exactly the tensors torch.jit.load's state_dict has."""
    assert ckpt.is_torchscript_archive(openai_archive)
    with pytest.raises(Exception), pytest.warns(UserWarning):  # the trap: weights_only refuses these archives
        torch.load(openai_archive, weights_only=True)
    ours, meta = ckpt.read_state_dict(openai_archive)
    ref = torch.jit.load(str(openai_archive), map_location="cpu").state_dict()  # reference only, in tests
    assert meta["source"] == "torchscript"
    assert set(ref) <= set(ours)
    for k in ref:
        assert ours[k].dtype == ref[k].dtype and torch.equal(ours[k], ref[k]), k


def test_openai_archive_loads_with_quickgelu_and_converts(openai_archive, clip_reference, tmp_path):
    import copy

    x = images_uint8(2)
    enc = build_clip_image_encoder(openai_archive, config="small")
    assert enc.quick_gelu
    f = torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255.0
    with torch.no_grad():
        ref = copy.deepcopy(clip_reference).half().float().encode_image((f - enc.mean) / enc.std).numpy()
    np.testing.assert_allclose(enc.embed(x), ref, rtol=1e-5, atol=1e-5)

    dst = ckpt.convert_checkpoint(openai_archive, tmp_path / "ViT-B-16.safetensors")
    state, meta = ckpt.read_state_dict(dst)
    assert meta["quick_gelu"] == "true" and meta["source"] == "torchscript"
    assert state["visual.conv1.weight"].dtype == torch.float16  # dtype kept
    conv = build_clip_image_encoder(dst, config="small")
    assert conv.quick_gelu
    np.testing.assert_array_equal(conv.embed(x), enc.embed(x))
    np.testing.assert_array_equal(build_clip_text_encoder(dst, config="small").encode_texts(["a dog"]),
                                  build_clip_text_encoder(openai_archive, config="small").encode_texts(["a dog"]))


def test_torchscript_reader_refuses_foreign_globals(tmp_path):
    """An archive whose data.pkl names any other global is rejected, not executed."""
    import zipfile

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    p = tmp_path / "evil.pt"
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("evil/data.pkl", pickle.dumps(Evil(), protocol=2))
        z.writestr("evil/constants.pkl", pickle.dumps((), protocol=2))
        z.writestr("evil/code/__torch__.py", "")
    with pytest.raises(ckpt.CheckpointError, match="posix.system|os.system|nt.system"):
        ckpt.read_state_dict(p)


def test_clip_errors_name_the_file(tmp_path, clip_state):
    missing = tmp_path / "nope" / "ViT-B-16.pt"
    with pytest.raises(FileNotFoundError, match=str(missing).replace("\\", "\\\\")):
        build_clip_image_encoder(missing, config="small")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00not a checkpoint" * 10)
    with pytest.raises(ckpt.CheckpointError, match="junk.pt"):
        build_clip_image_encoder(junk, config="small")
    partial = {k: v for k, v in clip_state.items() if k != "visual.proj"}
    torch.save(partial, tmp_path / "partial.pt")
    with pytest.raises(ckpt.CheckpointError, match=r"partial.pt.*missing.*visual\.proj"):
        build_clip_image_encoder(tmp_path / "partial.pt", config="small")
    with pytest.raises(ckpt.CheckpointError, match="shape mismatch"):
        build_clip_image_encoder(tmp_path / "partial.pt", config="ViT-B-16", quick_gelu=True)


def test_pickled_objects_are_refused(tmp_path):
    p = tmp_path / "objects.pt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "args": Path("/x")}, p)  # a non-tensor global
    with pytest.raises(ckpt.CheckpointError, match="weights_only"):
        ckpt.read_state_dict(p)


def test_precision_and_device_checks(clip_files):
    with pytest.raises(ValueError, match="fp16"):
        build_clip_image_encoder(None, config="small", precision="fp16")
    with pytest.raises(ValueError, match="precision"):
        build_clip_image_encoder(None, config="small", precision="int8")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA"):
            build_clip_image_encoder(None, config="small", device="cuda")
    x = images_uint8(2)
    f32 = build_clip_image_encoder(clip_files / "flat.pt", config="small").embed(x)
    b16 = build_clip_image_encoder(clip_files / "flat.pt", config="small", precision="bf16").embed(x)
    assert b16.dtype == np.float32
    cos = (f32 * b16).sum(1) / np.linalg.norm(f32, axis=1) / np.linalg.norm(b16, axis=1)
    assert cos.min() > 0.99 and not np.array_equal(f32, b16)  # autocast really ran


def test_clip_rejects_wrong_image_shape():
    enc = build_clip_image_encoder(None, config="small")
    with pytest.raises(ValueError, match="224"):
        enc.embed(np.zeros((1, 256, 256, 3), np.uint8))


# === CLAP audio =====================================================================================

@pytest.mark.parametrize("length", [48000, 47000, 30000, 480000, 7])
def test_prepare_audio_matches_laion_clap(laion_prep, length):
    """int16 round trip + repeatpad are bit-identical to laion_clap's for any length <= 10 s."""
    wave = (RNG.standard_normal(length) * 0.7).astype(np.float32)  # some samples beyond [-1, 1]
    wave[:3] = [1.5, -2.0, 0.999999]
    ref = laion_prepare(laion_prep, wave)
    ours = prepare_audio(torch.from_numpy(wave)[None])[0]
    assert ours.shape == (480000,) and ours.dtype == torch.float32
    assert torch.equal(ours, ref)


def test_one_second_segment_is_tiled_ten_times():
    seg = torch.from_numpy(segments(2))
    out = prepare_audio(seg, quantize=False)
    assert torch.equal(out, seg.repeat(1, 10))
    short = repeat_pad(torch.ones(1, 47000))
    assert short[0, :470000].eq(1).all() and short[0, 470000:].eq(0).all()


def test_repeat_pad_refuses_more_than_10_s():
    with pytest.raises(ValueError, match="480000"):
        repeat_pad(torch.zeros(1, 480001))
    with pytest.raises(ValueError, match="empty"):
        repeat_pad(torch.zeros(1, 0))


def test_clap_audio_shape_norm_deterministic(clap_audio):
    x = segments(3)
    a = clap_audio.embed(x, batch_size=2)
    assert a.shape == (3, 512) and a.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(a, clap_audio.embed(x, batch_size=2))
    np.testing.assert_allclose(a, clap_audio.embed(x, batch_size=3), rtol=1e-4, atol=1e-5)


def test_clap_forward_equals_laion_htsat_forward(clap_audio):
    """Our split (log_mel -> forward_from_mel) is HTSAT's own eval forward + projection + normalisation."""
    x = torch.from_numpy(segments(3))
    wave = prepare_audio(x)
    with torch.no_grad():
        emb = clap_audio.audio_branch({"waveform": wave}, device=wave.device)["embedding"]
        ref = F.normalize(clap_audio.audio_projection(emb), dim=-1)
        ours = clap_audio(x)
    torch.testing.assert_close(ours, ref, rtol=0, atol=0)


def test_clap_normalize_false_is_the_raw_projection(clap_file, clap_audio):
    raw_enc = build_clap_audio_encoder(clap_file, config="small", normalize=False)
    x = segments(2)
    raw, unit = raw_enc.embed(x), clap_audio.embed(x)
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1.0)
    np.testing.assert_allclose(raw / np.linalg.norm(raw, axis=1, keepdims=True), unit, rtol=1e-4, atol=1e-5)


def test_clap_checkpoint_layouts_load_identically(tmp_path, clap_state, clap_audio):
    from safetensors.torch import save_file

    flat = {k: v for k, v in clap_state.items() if k != "text_branch.embeddings.position_ids"}
    torch.save(flat, tmp_path / "flat.pt")
    save_file({k: v.contiguous() for k, v in flat.items()}, str(tmp_path / "c.safetensors"))
    x = segments(2)
    ref = clap_audio.embed(x)
    for name in ("flat.pt", "c.safetensors"):
        np.testing.assert_array_equal(build_clap_audio_encoder(tmp_path / name, config="small").embed(x), ref)
    # BatchNorm running statistics come from the file (they were perturbed away from 0/1)
    enc = build_clap_audio_encoder(tmp_path / "flat.pt", config="small")
    torch.testing.assert_close(enc.audio_branch.bn0.running_var, clap_state["audio_branch.bn0.running_var"])
    assert not np.allclose(build_clap_audio_encoder(None, config="small").embed(x), ref, atol=1e-3)


def test_clap_convert_checkpoint(tmp_path, clap_file, clap_audio):
    dst = ckpt.convert_checkpoint(clap_file, tmp_path / "clap.safetensors")
    x = segments(1)
    np.testing.assert_array_equal(build_clap_audio_encoder(dst, config="small").embed(x), clap_audio.embed(x))


def test_clap_errors(tmp_path, clap_state):
    missing = tmp_path / "630k-audioset-best.pt"
    with pytest.raises(FileNotFoundError, match="630k-audioset-best.pt"):
        build_clap_audio_encoder(missing, config="small")
    torch.save({"state_dict": {"foo.weight": torch.zeros(2)}}, tmp_path / "other.pt")
    with pytest.raises(ckpt.CheckpointError, match="not a laion_clap"):
        build_clap_audio_encoder(tmp_path / "other.pt", config="small")
    partial = {k: v for k, v in clap_state.items() if not k.startswith("audio_projection.2")}
    torch.save({"state_dict": partial}, tmp_path / "partial.pt")
    with pytest.raises(ckpt.CheckpointError, match=r"partial.pt.*missing.*audio_projection\.2"):
        build_clap_audio_encoder(tmp_path / "partial.pt", config="small")
    with pytest.raises(ValueError, match="mono"):
        build_clap_audio_encoder(None, config="small").embed(np.zeros((2, 2, 48000), np.float32))


# === CLAP text =====================================================================================

def test_clap_text_encoder(clap_file, clap_state, text_dir):
    enc = build_clap_text_encoder(clap_file, text_dir, config="small")
    texts = ["a dog barking", "speech", "the sound of a violin"]
    out = enc.encode_texts(texts)
    assert out.shape == (3, 512) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(out, enc.encode_texts(texts))
    tok = enc.tokenize(texts)
    assert tok.shape == (3, 2, 77) and tok[:, 1].sum(1).lt(77).all()  # padded to 77 with a mask
    # the projection weights are the checkpoint's
    torch.testing.assert_close(enc.text_projection[2].weight, clap_state["text_projection.2.weight"])
    with torch.no_grad():
        pooled = enc.text_branch(input_ids=tok[:, 0], attention_mask=tok[:, 1])["pooler_output"]
        ref = F.normalize(enc.text_projection(pooled), dim=-1).numpy()
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)


def test_clap_text_dir_errors(tmp_path, clap_file):
    with pytest.raises(FileNotFoundError, match="--clap-text-dir"):
        build_clap_text_encoder(clap_file, None, config="small")
    d = write_tiny_roberta_dir(tmp_path / "tok")
    (d / "merges.txt").unlink()
    with pytest.raises(FileNotFoundError, match="merges.txt"):
        build_clap_text_encoder(clap_file, d, config="small")


# === real-size architectures, one forward each ================================================================

@pytest.mark.slow
def test_real_size_towers_one_forward():
    """ViT-B/16 and HTSAT-tiny at full size (random weights): shapes and parameter counts."""
    img = build_clip_image_encoder(None)
    assert 85e6 < sum(p.numel() for p in img.parameters()) < 88e6
    assert img.embed(images_uint8(1)).shape == (1, 512)
    aud = build_clap_audio_encoder(None)
    assert 27e6 < sum(p.numel() for p in aud.parameters()) < 33e6
    assert aud.embed(segments(1)).shape == (1, 512)


@pytest.mark.slow
def test_real_htsat_matches_laion_clap_model(laion_prep, tmp_path):
    """End to end against laion_clap's CLAP class: its state dict saved as a laion checkpoint, loaded by us,
    gives what ``CLAP.get_audio_embedding(get_audio_features(quantised clip))`` gives."""
    from lsld_engine.encoders._laion import _package

    _package()
    import importlib

    model_mod = importlib.import_module("lsld_engine.encoders._laion_clap_module.model")
    cfg = load_config("clap_htsat_tiny")
    audio_cfg = {k: v for k, v in cfg["audio_cfg"].items()}
    audio_cfg.update(model_type="HTSAT", audio_length=1024)
    # A local "transformer" text branch keeps laion's CLAP off the hub (roberta would call from_pretrained).
    text_cfg = dict(context_length=77, vocab_size=64, width=32, heads=2, layers=1, model_type="transformer")
    torch.manual_seed(0)
    laion = model_mod.CLAP(embed_dim=768, audio_cfg=audio_cfg, text_cfg=text_cfg).eval()
    p = tmp_path / "630k-audioset-best.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in laion.state_dict().items()}}, p)
    waves = segments(2)
    with torch.no_grad():
        ref = laion.get_audio_embedding([{"waveform": laion_prepare(laion_prep, w)} for w in waves]).numpy()
    ours = build_clap_audio_encoder(p).embed(waves)
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-5)


# === registry, offline behaviour ===============================================================

def test_registry_small_builds_honour_their_contracts(text_dir):
    assert set(registry.list_networks()) >= {"clip_image", "clip_text", "clap_audio", "clap_text", "han"}
    for name in ("clip_image", "clap_audio", "han"):
        spec = registry.get_network(name)
        net = registry.build(name, size="small")
        inputs = []
        for t in spec.inputs:
            shape = tuple(2 if s == "B" else s for s in t.shape)
            inputs.append(torch.randint(0, 256, shape, dtype=torch.uint8) if t.dtype == "uint8"
                          else torch.randn(shape) * 0.1)
        with torch.no_grad():
            out = net(*inputs)
        outs = out if isinstance(out, tuple) else (out,)
        assert [tuple(o.shape) for o in outs] == [tuple(2 if s == "B" else s for s in t.shape) for t in spec.outputs]
    text = registry.build("clap_text", size="small", text_dir=text_dir)
    assert text.encode_texts(["x"]).shape == (1, 512)
    assert registry.build("clip_text", size="small").encode_texts(["x"]).shape == (1, 512)
    with pytest.raises(KeyError, match="clip_image"):
        registry.get_network("clip")


def test_registry_han_checkpoint_goes_through_load_han(tmp_path):
    from lsld_engine.han.checkpoint import save_han
    from lsld_engine.han.model import build_han

    torch.manual_seed(0)
    han = build_han(num_layers=1).eval()
    path = save_han(han, tmp_path / "han.pt")
    loaded = registry.build("han", path).eval()
    a, v = torch.randn(2, 10, 512), torch.randn(2, 80, 512)
    with torch.no_grad():
        torch.testing.assert_close(loaded(a, v)[3], han(a, v)[3])


#: Prepended to a child's ``-c`` code: every attempt to resolve a name or connect to a non-local
#: address is recorded and refused at once (no retries can hide behind a timeout); the records
#: are printed as the child's last line.
NO_NETWORK = """
import json as _json, socket as _socket, atexit as _atexit
_attempts = []
_LOCAL = {None, "localhost", "127.0.0.1", "::1", b"localhost"}

def _refuse(kind, target):
    _attempts.append([kind, str(target)])
    raise OSError(f"network forbidden in this test: {kind} {target}")

def _is_local(addr):
    return not isinstance(addr, tuple) or addr[0] in _LOCAL

_real_connect, _real_connect_ex, _real_gai = _socket.socket.connect, _socket.socket.connect_ex, _socket.getaddrinfo
def _connect(self, addr):
    if self.family in (_socket.AF_INET, _socket.AF_INET6) and not _is_local(addr):
        _refuse("connect", addr)
    return _real_connect(self, addr)
def _connect_ex(self, addr):
    if self.family in (_socket.AF_INET, _socket.AF_INET6) and not _is_local(addr):
        _refuse("connect", addr)
    return _real_connect_ex(self, addr)
def _getaddrinfo(host, *a, **k):
    if host not in _LOCAL:
        _refuse("getaddrinfo", host)
    return _real_gai(host, *a, **k)
_socket.socket.connect, _socket.socket.connect_ex, _socket.getaddrinfo = _connect, _connect_ex, _getaddrinfo
_atexit.register(lambda: print("NETWORK-ATTEMPTS " + _json.dumps(_attempts)))
"""


def network_attempts(stdout: str) -> list:
    """The attempts a child running :data:`NO_NETWORK` recorded."""
    line = [x for x in stdout.splitlines() if x.startswith("NETWORK-ATTEMPTS ")]
    assert len(line) == 1, stdout[-2000:]
    return json.loads(line[0].split(" ", 1)[1])


def test_offline_build_never_touches_hub_or_laion_init(tmp_path, text_dir):
    """Fresh interpreter, hub *not* marked offline, every non-local socket refused and recorded:
    building every tower must neither import the laion_clap package nor try the network at all
    (a refused attempt is recorded even when the caller retries or falls back)."""
    code = NO_NETWORK + f"""
import sys, torch
from lsld_engine import registry
assert 'open_clip' not in sys.modules and 'transformers' not in sys.modules
for name in ('clip_image', 'clip_text', 'clap_audio'):
    registry.build(name, size='small')
registry.build('clap_text', size='small', text_dir={str(text_dir)!r})
assert 'laion_clap' not in sys.modules, [m for m in sys.modules if m.startswith('laion_clap')]
print("BUILT", len(_attempts))
try:  # the guard is live: a real attempt is refused at once, with its message, and recorded
    _socket.create_connection(("example.com", 443), timeout=5)
except OSError as e:
    print("REFUSED", e)
"""
    env = {k: v for k, v in os.environ.items() if not k.endswith("_OFFLINE")}
    env.update(HF_HOME=str(tmp_path / "hf"), PYTHONWARNINGS="ignore")
    r = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "BUILT 0" in r.stdout  # nothing tried the network while building
    assert "REFUSED network forbidden in this test: getaddrinfo example.com" in r.stdout
    assert network_attempts(r.stdout) == [["getaddrinfo", "example.com"]]
    assert not list((tmp_path / "hf").rglob("*")), "something wrote to the Hugging Face cache"
