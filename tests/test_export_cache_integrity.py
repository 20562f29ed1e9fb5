"""The export cache's integrity (docs/export.md, "the export cache"): each file's sha256 is recorded
when its entry is made and checked when it is loaded; a damaged entry is rebuilt once, a failed
rebuild and a full disk are one line each."""
from __future__ import annotations

import errno
import logging
import shutil

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")


def _spec(network):
    from lsld_engine.exporting.cache import ExportSpec

    return ExportSpec(network, size="small")


@pytest.fixture(scope="module")
def base_cache(tmp_path_factory):
    """A cache folder with the small random clip_image and han entries (parity skipped: cheap)."""
    from lsld_engine.exporting.cache import ensure

    root = tmp_path_factory.mktemp("base_cache")
    for n in ("clip_image", "han"):
        ensure(_spec(n), root, note=lambda s: None, parity=False)
    return root


@pytest.fixture
def cache(base_cache, tmp_path, monkeypatch):
    """A private copy of :func:`base_cache`; rebuilds in it skip parity too."""
    from lsld_engine.exporting import cache as cache_mod

    root = tmp_path / "cache"
    shutil.copytree(base_cache, root)
    real = cache_mod._export_fp32
    monkeypatch.setattr(cache_mod, "_export_fp32", lambda spec, out, parity: real(spec, out, False))
    return root


def _warnings(caplog):
    return [r for r in caplog.records if r.levelno == logging.WARNING and r.name.startswith("lsld_engine")]


def test_a_truncated_clip_file_is_rebuilt_once_with_one_warning(cache, caplog):
    from lsld_engine.backends.auto import CachedOnnxBackend
    from lsld_engine.exporting.cache import cached_file
    from lsld_engine.exporting.integrity import damage

    f = cached_file(_spec("clip_image"), cache)
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    caplog.set_level(logging.WARNING)
    b = CachedOnnxBackend(random_weights=True, size="small", cache_dir=cache)
    emb = b.embed_images(np.zeros((2, 224, 224, 3), np.uint8))
    assert emb.shape == (2, 512) and np.isfinite(emb).all()
    warns = _warnings(caplog)
    assert len(warns) == 1 and "clip_image.onnx" in warns[0].getMessage()
    assert "\n" not in warns[0].getMessage()
    assert damage(f.parent, [f.name]) is None and b.export_seconds["clip_image"] > 0


def test_flipped_bytes_in_the_han_weights_are_caught_by_sha256_and_rebuilt(cache, caplog):
    from lsld_engine.exporting.cache import cached_file, ensure
    from lsld_engine.exporting.integrity import damage

    f = cached_file(_spec("han"), cache)
    data = bytearray(f.read_bytes())
    mid = len(data) // 2  # inside the weights: the file stays a valid model
    data[mid:mid + 16] = bytes(b ^ 0xFF for b in data[mid:mid + 16])
    f.write_bytes(bytes(data))
    assert "sha256" in damage(f.parent, [f.name]).reason
    caplog.set_level(logging.WARNING)
    res = ensure(_spec("han"), cache, note=lambda s: None)
    assert res.exported and res.path == f and f.read_bytes() != bytes(data)
    assert damage(f.parent, [f.name]) is None
    warns = _warnings(caplog)
    assert len(warns) == 1 and "han.onnx" in warns[0].getMessage() and "sha256" in warns[0].getMessage()
    again = ensure(_spec("han"), cache, note=lambda s: None)
    assert not again.exported


def test_a_failed_rebuild_is_one_line_naming_the_file_and_the_rm(cache, monkeypatch):
    from lsld_engine.exporting import cache as cache_mod
    from lsld_engine.exporting.cache import ExportCacheError, cached_file, ensure

    f = cached_file(_spec("han"), cache)
    f.write_bytes(f.read_bytes()[:1000])

    def broken(spec, out, parity):
        raise RuntimeError("the exporter broke\nwith a second line")

    monkeypatch.setattr(cache_mod, "_export_fp32", broken)
    with pytest.raises(ExportCacheError) as info:
        ensure(_spec("han"), cache, note=lambda s: None)
    msg = str(info.value)
    assert "\n" not in msg and str(f) in msg and f"rm -r {f.parent}" in msg and "the exporter broke" in msg
    assert not list((cache / "onnx").glob(".tmp-*"))


def test_a_file_that_still_fails_to_load_after_its_rebuild_is_one_line(cache, monkeypatch):
    """The sha256 matches (the file was damaged before it was recorded), loading fails twice."""
    from lsld_engine.backends.auto import CachedOnnxBackend
    from lsld_engine.exporting import cache as cache_mod
    from lsld_engine.exporting.cache import ExportCacheError

    def truncated(spec, out, parity):
        f = out / spec.filename()
        f.write_bytes(b"\x08\x07not a model")

    monkeypatch.setattr(cache_mod, "_export_fp32", truncated)
    b = CachedOnnxBackend(random_weights=True, size="small", cache_dir=cache / "other")
    with pytest.raises(ExportCacheError) as info:
        b.session("han")
    msg = str(info.value)
    assert "\n" not in msg and "han.onnx" in msg and "rm -r" in msg


def test_a_full_disk_is_one_line_and_leaves_no_half_entry(tmp_path, monkeypatch):
    from lsld_engine.exporting import folder
    from lsld_engine.exporting.cache import ExportCacheError, cached_file, ensure

    def full(out, networks, *a, **kw):
        (out / "han.onnx").write_bytes(b"half a file")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(folder, "export_folder", full)
    root = tmp_path / "cache"
    with pytest.raises(ExportCacheError) as info:
        ensure(_spec("han"), root, note=lambda s: None)
    msg = str(info.value)
    assert msg == f"the export cache {root} is full: free space or set LSLD_CACHE / --engine-dir"
    assert [p.name for p in (root / "onnx").iterdir()] == [".locks"]
    assert cached_file(_spec("han"), root) is None
