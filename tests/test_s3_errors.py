"""Object stores that cannot be used, and object-store inputs where they are not read: one line each.

A refused endpoint fails within seconds (short timeouts, few retries) with one line naming the
endpoint and the URI, before any video is decoded or a model loaded, and leaves local files alone;
a missing bucket on a live store (moto on 127.0.0.1) is one line too; ``s3://`` inputs without
``--ray`` (and a local ``--out``) are refused with the URI exactly as written (docs/scale.md).
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("pyarrow", reason="pyarrow is not installed (pip install 'lsld-engine[ray]')")

from lsld_engine.cli import main  # noqa: E402
from lsld_engine.testing.s3server import free_port  # noqa: E402
from lsld_engine.testing.videos import VideoSpec, make_video  # noqa: E402

ENCODERS = ["--random-weights", "--small", "--quiet", "--workers", "0"]


def _cli(args: list[str], cwd: Path, timeout: float = 120, env: dict | None = None) -> subprocess.CompletedProcess:
    """The command line in a fresh process: dummy keys, no endpoint variables unless ``env`` sets them."""
    base = {k: v for k, v in os.environ.items() if k not in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3")}
    env = {**base, "AWS_ACCESS_KEY_ID": "lsldtestkey", "AWS_SECRET_ACCESS_KEY": "lsldtestsecret",
           "AWS_EC2_METADATA_DISABLED": "true", **(env or {})}
    return subprocess.run([sys.executable, "-m", "lsld_engine.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def _status(args: list[str]) -> int:
    """``main``'s status; a usage error leaves ``main`` as ``SystemExit`` (the entry point's status)."""
    try:
        return main(args)
    except SystemExit as e:
        return int(e.code)


def test_a_refused_endpoint_is_one_line_within_seconds(tmp_path):
    video = make_video(tmp_path / "a.mp4", VideoSpec(duration=2.0))
    before = Path(video).read_bytes()
    keep = tmp_path / "earlier.jsonl"
    keep.write_text('{"video_id": "x"}\n')
    endpoint = f"http://127.0.0.1:{free_port()}"  # bound, then closed: connections are refused
    t0 = time.monotonic()
    res = _cli(["parse", str(video), "--out", "s3://bucket/results/", "--s3-endpoint", endpoint, *ENCODERS],
               cwd=tmp_path)
    took = time.monotonic() - t0
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert endpoint in lines[0] and "s3://bucket/results/" in lines[0] and "--s3-endpoint" in lines[0]
    assert took < 30
    assert Path(video).read_bytes() == before and keep.read_text() == '{"video_id": "x"}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mp4", "earlier.jsonl"]  # no local "s3:" folder


def test_eval_of_results_behind_a_refused_endpoint_is_one_line(tmp_path):
    from lsld_engine.data.llp import CLASSES

    (tmp_path / "AVVP_test_pd.csv").write_text(f"filename\tevent_labels\nclipA\t{CLASSES[0]}\n")
    rows = f"filename\tonset\toffset\tevent_labels\nclipA\t0\t5\t{CLASSES[0]}\n"
    (tmp_path / "AVVP_eval_audio.csv").write_text(rows)
    (tmp_path / "AVVP_eval_visual.csv").write_text(rows)
    endpoint = f"http://127.0.0.1:{free_port()}"
    res = _cli(["eval", "--pred", "s3://bucket/results/", "--annotations", str(tmp_path)], cwd=tmp_path,
               env={"AWS_ENDPOINT_URL": endpoint})
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and endpoint in lines[0] and "s3://bucket/results/" in lines[0], res.stderr


def test_object_store_inputs_without_ray_keep_the_uri(tmp_path, capsys):
    out = tmp_path / "r.jsonl"
    assert _status(["parse", "s3://bucket/archive/", "--out", str(out), *ENCODERS]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "s3://bucket/archive/: object-store inputs need --ray" in err
    assert "s3:/bucket" not in err.replace("s3://bucket", "")
    assert not out.exists()
    (tmp_path / "list.txt").write_text("s3://bucket/archive/x.mp4\n")
    assert _status(["parse", "--list", str(tmp_path / "list.txt"), "--out", str(out), *ENCODERS]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "s3://bucket/archive/x.mp4" in err and "--ray" in err
    assert _status(["parse", "--list", "s3://bucket/list.txt", "--out", str(out), *ENCODERS]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "s3://bucket/list.txt:" in err


@pytest.mark.slow
def test_a_missing_bucket_is_one_line(tmp_path, monkeypatch, capsys):
    pytest.importorskip("moto", reason="moto is not installed (pip install 'lsld-engine[dev]')")
    from lsld_engine.testing.s3server import make_bucket, s3_server

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "lsldtestkey")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "lsldtestsecret")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    video = make_video(tmp_path / "a.mp4", VideoSpec(duration=2.0))
    with s3_server(log=tmp_path / "moto.log") as url:
        make_bucket(url, "bucket")
        for out in ("s3://nobucket/results/", "s3://nobucket"):
            assert _status(["parse", str(video), "--out", out, "--s3-endpoint", url, *ENCODERS]) == 2
            err = capsys.readouterr().err
            assert err.count("\n") == 1 and out in err and url in err and "bucket" in err, err
        # an input in a missing bucket (the object-store results folder reads its inputs itself)
        assert _status(["parse", "s3://nobucket/archive/", "--out", "s3://bucket/results/", "--s3-endpoint", url,
                     *ENCODERS]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "s3://nobucket/archive/" in err, err
