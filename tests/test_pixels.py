"""Device pixel step (lsld_engine.media.pixels), raw-plane decoding (raw_planes) and the NVDEC fallback (nvdec)."""
import numpy as np
import pytest

av = pytest.importorskip("av")
torch = pytest.importorskip("torch")

from lsld_engine.media import cpu_pixels, decode as media, nvdec, pixels  # noqa: E402
from lsld_engine.media.pool import decode_stream  # noqa: E402
from lsld_engine.media import FRAMES_PER_WINDOW, IMAGE_SIZE, decode_video  # noqa: E402
from lsld_engine.media.pixels import ColorSpec, clip_input, color_spec, crop_box, raw_frame, resize_crop  # noqa: E402
from lsld_engine.media.raw_planes import decode_raw, raw_to_clip  # noqa: E402
from lsld_engine.testing.videos import (STANDARD_SPECS, VideoSpec, bench_spec, frame_times,  # noqa: E402
                                        make_video, make_videos, read_frame_index)

SPECS = [ColorSpec(m, f) for m in ("bt601", "bt709", "bt2020") for f in (False, True)]


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    return make_videos(tmp_path_factory.mktemp("pixvideos"), broken=False)


def _textured(h, w, seed=0):
    """Smooth-ish random planes ``(y, u, v)`` like real video (blocks + noise)."""
    rng = np.random.default_rng(seed)
    def plane(hh, ww):
        base = rng.integers(0, 256, (hh // 4 + 1, ww // 4 + 1)).repeat(4, 0).repeat(4, 1)[:hh, :ww]
        return np.clip(base + rng.integers(-20, 20, (hh, ww)), 0, 255).astype(np.uint8)
    return plane(h, w), plane(h // 2, w // 2), plane(h // 2, w // 2)


def _reference(y, u, v, spec, rotation=0):
    """The CPU reference: swscale rgb24 of the tagged frame, PIL bicubic, centre crop."""
    return cpu_pixels.clip_crop(cpu_pixels.rgb_frame(raw_frame("yuv420p", (y, u, v), spec), rotation))


def test_color_spec_from_ffmpeg_codes():
    assert color_spec(2, 0) == ColorSpec("bt601", False)  # unspecified: swscale's defaults
    assert color_spec(1, 1) == ColorSpec("bt709", False)
    assert color_spec(1, 2) == ColorSpec("bt709", True)
    assert color_spec(9, 0) == ColorSpec("bt2020", False)
    assert color_spec(0, 0, "yuvj420p").full_range and color_spec(1, 1, "yuvj420p").full_range


@pytest.mark.parametrize("spec", SPECS, ids=str)
def test_color_lut_is_bit_exact_with_swscale(spec):
    y, u, v = _textured(48, 64, seed=1)
    ref = raw_frame("yuv420p", (y, u, v), spec).to_ndarray(format="rgb24")
    t = [torch.from_numpy(a)[None] for a in (y, u, v)]
    got = pixels.yuv_to_rgb_lut(*t, spec)[0].permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(got, ref)
    approx = pixels.yuv_to_rgb_formula(*t, spec)[0].permute(1, 2, 0).numpy().astype(int)
    assert np.abs(approx - ref).max() <= 3  # the documented tolerance of the float matrix


def test_wrong_matrix_or_range_is_detected():
    """The colour test must be able to fail: BT.709 data read as BT.601 / full as limited differ."""
    y, u, v = _textured(48, 64, seed=2)
    ref = raw_frame("yuv420p", (y, u, v), ColorSpec("bt709", False)).to_ndarray(format="rgb24").astype(int)
    t = [torch.from_numpy(a)[None] for a in (y, u, v)]
    for wrong in (ColorSpec("bt601", False), ColorSpec("bt709", True)):
        got = pixels.yuv_to_rgb_lut(*t, wrong)[0].permute(1, 2, 0).numpy().astype(int)
        assert np.abs(got - ref).max() > 5


@pytest.mark.parametrize("hw", [(360, 640), (96, 160), (240, 180), (224, 300), (60, 100)], ids=str)
@pytest.mark.parametrize("method", ["uint8", "interpolate", "matmul"])
def test_resize_matches_pil(hw, method):
    h, w = hw
    rng = np.random.default_rng(3)
    img = np.clip(rng.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3)).repeat(8, 0).repeat(8, 1)[:h, :w]
                  + rng.integers(-30, 30, (h, w, 3)), 0, 255).astype(np.uint8)
    ref = cpu_pixels.clip_crop(img).astype(int)
    got = resize_crop(torch.from_numpy(img).permute(2, 0, 1)[None], method=method)[0]
    d = np.abs(got.permute(1, 2, 0).numpy().astype(int) - ref)
    tol = 2 if method == "uint8" else 1  # documented per-pixel tolerance
    assert got.shape == (3, IMAGE_SIZE, IMAGE_SIZE) and d.max() <= tol and d.mean() < 0.05


def test_crop_geometry_follows_torchvision():
    assert crop_box(640, 360) == (398, 224, 87, 0)
    assert crop_box(180, 240) == (224, 298, 0, 37)
    assert crop_box(224, 224) == (224, 224, 0, 0)
    # a marker column left of centre must stay left of centre after resize + crop
    img = np.zeros((360, 640, 3), np.uint8)
    img[:, 250:260] = 255
    out = resize_crop(torch.from_numpy(img).permute(2, 0, 1)[None], method="matmul")[0, 0].numpy()
    ref = cpu_pixels.clip_crop(img)[..., 0]
    assert abs(int(out.mean(0).argmax()) - int(ref.mean(0).argmax())) <= 1


@pytest.mark.parametrize("spec", [ColorSpec("bt709", False), ColorSpec("bt601", True)], ids=str)
@pytest.mark.parametrize("rotation", [0, 90])
def test_clip_input_matches_reference(spec, rotation):
    y, u, v = (np.stack([p, p[::-1].copy()]) for p in _textured(120, 200, seed=4))
    ref = np.stack([_reference(y[i], u[i], v[i], spec, rotation) for i in range(2)]).astype(int)
    for color, resize in (("lut", "matmul"), ("swscale", "uint8"), ("lut", "interpolate")):
        x = clip_input(y, u, v, spec=spec, rotation=rotation, device="cpu", color=color, resize=resize)
        d = np.abs(pixels.to_uint8_hwc(x).astype(int) - ref)
        assert d.max() <= 2 and d.mean() < 0.05, (color, resize)
    # nv12 input gives the same as yuv420p
    uv = np.stack([u, v], axis=-1)
    x2 = clip_input(y, uv=uv, spec=spec, rotation=rotation, device="cpu", color="lut", resize="matmul")
    x1 = clip_input(y, u, v, spec=spec, rotation=rotation, device="cpu", color="lut", resize="matmul")
    torch.testing.assert_close(x1, x2)


@pytest.mark.parametrize("name", list(STANDARD_SPECS))
def test_raw_decode_matches_reference(videos, name):
    r, d = decode_raw(videos[name]), decode_video(videos[name])
    assert r.is_raw and r.fallback == "" and r.index.shape == (d.num_windows * FRAMES_PER_WINDOW,)
    assert r.y.shape[0] == len(np.unique(r.index)) <= r.index.size
    np.testing.assert_array_equal(r.audio, d.audio)
    assert (r.duration, r.has_audio, r.num_windows) == (d.duration, d.has_audio, d.num_windows)
    got = raw_to_clip([r], device="cpu", out="uint8").astype(int)
    diff = np.abs(got - d.frames.reshape(-1, IMAGE_SIZE, IMAGE_SIZE, 3).astype(int))
    assert diff.max() <= 2 and diff.mean() < 0.01


def test_raw_planes_travel_through_shared_memory(videos, tmp_path):
    names = ["h264_aac_25fps", "h264_rotated", "mjpeg_pcm16k_avi"]
    local = {n: decode_raw(videos[n]) for n in names}
    fb = _write_yuv444(tmp_path / "fb.mp4")
    got = list(decode_stream([videos[n] for n in names] + [fb], workers=1, ordered=True, decode_fn=decode_raw))
    assert "yuv444p" in got[3].fallback and got[3].frames.shape[1:] == (FRAMES_PER_WINDOW, IMAGE_SIZE, IMAGE_SIZE, 3)
    got = got[:3]
    for n, r in zip(names, got):
        assert type(r).__name__ == "RawVideo", r
        for f in ("index", "y", "u", "v", "audio"):
            np.testing.assert_array_equal(getattr(r, f), getattr(local[n], f))
        assert (r.matrix, r.full_range, r.rotation, r.pix_fmt) == (local[n].matrix, local[n].full_range,
                                                                  local[n].rotation, local[n].pix_fmt)
    assert got[2].full_range and got[2].pix_fmt == "yuvj420p"
    # frames of several videos and geometries in one batch keep their order
    x = raw_to_clip(got, device="cpu", out="uint8")
    assert x.shape[0] == sum(r.num_windows * FRAMES_PER_WINDOW for r in got)
    single = raw_to_clip([got[1]], device="cpu", out="uint8")
    np.testing.assert_array_equal(x[80:160], single)


def _write_yuv444(path, n=12):
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv444p"
        s.options = {"preset": "ultrafast"}
        for i in range(n):
            img = np.full((48, 64, 3), 10 * i, np.uint8)
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    return path


def test_unsupported_pixel_format_falls_back_and_says_so(tmp_path):
    p = _write_yuv444(tmp_path / "yuv444.mp4")
    r = decode_raw(p)
    assert not r.is_raw and "yuv444p" in r.fallback
    np.testing.assert_array_equal(raw_to_clip([r], device="cpu", out="uint8"),
                                  decode_video(p).frames.reshape(-1, IMAGE_SIZE, IMAGE_SIZE, 3))


def test_nvdec_falls_back_to_cpu_without_gpu(videos, monkeypatch):
    p = videos["h264_aac_25fps"]
    monkeypatch.setattr(nvdec, "_UNAVAILABLE", None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    r = nvdec.decode_nvdec(p)
    assert r.decoder.startswith("cpu (nvdec: no CUDA device")
    np.testing.assert_array_equal(r.y, decode_raw(p).y)


def test_nvdec_unsupported_file_falls_back_per_file(videos, monkeypatch):
    """NVDEC 'available' but the open fails for this file: the file is decoded on the CPU, reason kept."""
    monkeypatch.setattr(nvdec, "_UNAVAILABLE", "")

    def no_hw():
        raise NotImplementedError("No supported hardware config for <Codec 'mjpeg'>")
    monkeypatch.setattr(nvdec, "hwaccel", no_hw)
    r = nvdec.decode_nvdec(videos["mjpeg_pcm16k_avi"])
    assert r.is_raw and "No supported hardware config" in r.decoder and r.decoder.startswith("cpu")


def test_skip_nonref_option_bounded_timing_error(tmp_path):
    spec = VideoSpec(duration=4.0, acodec=None, options={"preset": "veryfast", "bf": "3"})
    p = make_video(tmp_path / "bframes.mp4", spec)
    full = decode_video(p, frame_rule="hold")
    fast = media.decode_media(p, audio=False, skip_nonref=True, frame_fn=cpu_pixels._clip_frame, frame_rule="hold")
    shown = np.array([read_frame_index(f) for f in fast.frames])
    want = np.searchsorted(frame_times(spec), np.arange(len(shown)) / 8 + 1e-4, side="right") - 1
    assert np.all(shown <= want) and np.all(want - shown <= 4)  # earlier frame, never a later one
    assert (shown != want).any()  # frames were really skipped (the option does something)
    assert full.frames.shape[1] == len(shown)


@pytest.mark.slow
def test_clip_embeddings_agree(videos, tmp_path):
    """Real-size random-weight ViT-B/16: device-path and reference crops embed to cosine >= 0.999."""
    from lsld_engine.encoders.clip import build_clip_image_encoder

    torch.manual_seed(0)
    enc = build_clip_image_encoder(None, config="ViT-B-16")
    bench = make_video(tmp_path / "wide.mp4", bench_spec(320, 180, duration=1.0))
    y, u, v = _textured(120, 200, seed=5)
    cases = [(decode_raw(videos["h264_aac_25fps"]), decode_video(videos["h264_aac_25fps"]).frames),
             (decode_raw(videos["mjpeg_pcm16k_avi"]), decode_video(videos["mjpeg_pcm16k_avi"]).frames),
             (decode_raw(videos["h264_rotated"]), decode_video(videos["h264_rotated"]).frames),
             (decode_raw(bench), decode_video(bench).frames)]
    dev, ref = [], []
    for r, frames in cases:
        pick = np.array([0, 45])
        dev.append(raw_to_clip([r], device="cpu", out="float")[pick])
        ref.append(torch.from_numpy(frames.reshape(-1, IMAGE_SIZE, IMAGE_SIZE, 3)[pick]).permute(0, 3, 1, 2) / 255.0)
    spec = ColorSpec("bt709", False)  # a BT.709 stream, frame level
    dev.append(clip_input(y[None], u[None], v[None], spec=spec, device="cpu"))
    ref.append(torch.from_numpy(np.ascontiguousarray(_reference(y, u, v, spec)[None])).permute(0, 3, 1, 2) / 255.0)
    with torch.inference_mode():
        a, b = enc(torch.cat(dev)), enc(torch.cat(ref).float())
    cos = torch.nn.functional.cosine_similarity(a, b)
    print("cosines", cos.tolist())
    assert cos.min() >= 0.999, cos


class _ListWriter:
    def __init__(self):
        self.records = []

    def write(self, rec):
        self.records.append(rec)


def test_parse_with_device_pixels_matches_reference(videos, caplog, tmp_path):
    """`parse --pixels device` (raw planes + device pixels) gives the same records as the reference path,
    and a fallback file is reported in the log."""
    import logging

    from lsld_engine.commands.extract import decode_function
    from lsld_engine.parsing.video_inputs import VideoInput
    from lsld_engine.parsing.parse import parse_videos
    from lsld_engine.testing.backends import ToyBackend

    paths = [videos["h264_aac_25fps"], videos["h264_rotated"], videos["mjpeg_pcm16k_avi"],
             _write_yuv444(tmp_path / "fallback444.mp4")]
    inputs = [VideoInput(str(p), p.stem) for p in paths]
    fn = decode_function(type("A", (), {"pixels": "device", "decoder": "cpu"})())
    assert fn.func is decode_raw and fn.keywords == {"frame_rule": "official", "jpeg_roundtrip": False}
    be = ToyBackend()
    ref, dev = _ListWriter(), _ListWriter()
    parse_videos(inputs, be, ref, workers=0, ordered=True, progress=False, save_probs=True)
    with caplog.at_level(logging.INFO, logger="lsld_engine"):
        parse_videos(inputs, be, dev, workers=0, ordered=True, progress=False, save_probs=True, decode_fn=fn)
    assert [r["video_id"] for r in dev.records] == [r["video_id"] for r in ref.records]
    for a, b in zip(ref.records, dev.records):
        assert a["status"] == b["status"] == "ok"
        for kind in a["events"]:
            ea, eb = a["events"][kind], b["events"][kind]
            assert [(e["label"], e["onset"], e["offset"]) for e in ea] == [(e["label"], e["onset"], e["offset"]) for e in eb]
            np.testing.assert_allclose([e["score"] for e in ea], [e["score"] for e in eb], atol=2e-3)
        np.testing.assert_allclose(a["probs"]["visual"], b["probs"]["visual"], atol=2e-3)
    assert "fallback444" in caplog.text and "reference CPU pixel path" in caplog.text


def test_nvdec_with_jpeg_roundtrip_decodes_on_the_cpu(videos):
    r = nvdec.decode_nvdec(videos["h264_aac_25fps"], jpeg_roundtrip=True, audio=False)
    assert r.decoder.startswith("cpu (nvdec: --jpeg-roundtrip") and "JPEG round trip" in r.fallback
    ref = decode_video(videos["h264_aac_25fps"], jpeg_roundtrip=True, audio=False).frames
    np.testing.assert_array_equal(raw_to_clip([r], device="cpu"), ref.reshape(-1, IMAGE_SIZE, IMAGE_SIZE, 3))


def test_nvdec_passes_the_frame_rule_on(videos, monkeypatch):
    """decode_nvdec hands ``frame_rule`` to the shared selection code (here through its CPU fallback)."""
    monkeypatch.setattr(nvdec, "_UNAVAILABLE", None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    p = videos["h264_aac_25fps"]
    hold, official = nvdec.decode_nvdec(p, frame_rule="hold", audio=False), nvdec.decode_nvdec(p, audio=False)
    ref = decode_raw(p, frame_rule="hold", audio=False)
    np.testing.assert_array_equal(hold.y[hold.index], ref.y[ref.index])
    assert not np.array_equal(hold.y[hold.index], official.y[official.index])
