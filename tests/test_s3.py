"""Inputs and results on an S3-compatible object store, on one machine (moto's server on 127.0.0.1).

The endpoint comes from ``AWS_ENDPOINT_URL`` (or ``--s3-endpoint``), dummy credentials from the
environment. ``parse`` to ``s3://bucket/results/`` writes a results folder of shards (as ``--ray``
does), resumes there, and ``eval --pred s3://...`` reads it; ``extract`` refuses an object-store
root with one line; the secret key appears in no output, result or log. The same on a Ray cluster
whose nodes lack the endpoint variable: tests/test_ray_cluster.py.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

pytest.importorskip("pyarrow", reason="pyarrow is not installed (pip install 'lsld-engine[ray]')")
pytest.importorskip("moto", reason="moto is not installed (pip install 'lsld-engine[dev]')")

from lsld_engine.cli import main  # noqa: E402
from lsld_engine.records.results import read_results, shard_files  # noqa: E402
from lsld_engine.scale.sinks import read_manifest  # noqa: E402
from lsld_engine.testing.raycluster import env_vars  # noqa: E402
from lsld_engine.testing.s3server import make_bucket, s3_server, upload  # noqa: E402
from lsld_engine.testing.videos import VideoSpec, make_video  # noqa: E402

pytestmark = pytest.mark.slow

ENCODERS = ["--random-weights", "--small", "--quiet", "--workers", "0"]
SECRET = "lsld-test-secret-Zq81"  # a dummy secret key: must never appear in outputs or results
CLIPS = {"clipA": VideoSpec(freq=440.0), "clipB": VideoSpec(freq=1500.0, duration=6.0),
         "clipC": VideoSpec(freq=880.0, acodec=None, duration=4.0)}


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """moto on 127.0.0.1 with ``bucket/archive/{a,b}/*.mp4`` and a broken file; the endpoint and
    dummy keys in the environment while the module runs."""
    d = tmp_path_factory.mktemp("s3videos")
    with env_vars(AWS_ACCESS_KEY_ID="lsldtestkey", AWS_SECRET_ACCESS_KEY=SECRET, AWS_ENDPOINT_URL=None), \
            s3_server(log=d / "moto.log") as url:
        os.environ["AWS_ENDPOINT_URL"] = url
        make_bucket(url, "bucket")
        files = {}
        for i, (name, spec) in enumerate(CLIPS.items()):
            files[f"bucket/archive/{'ab'[i % 2]}/{name}.mp4"] = make_video(d / f"{name}.mp4", spec)
        (d / "broken.mp4").write_bytes(b"\x00not a video" * 50)
        files["bucket/archive/b/broken.mp4"] = d / "broken.mp4"
        files["bucket/archive/notes.txt"] = d / "broken.mp4"  # not matched by the glob
        upload(url, files)
        yield {"endpoint": url, "local": d}


def _no_secret(*texts: str) -> None:
    for t in texts:
        assert SECRET not in t


def test_parse_reads_and_writes_an_object_store_and_resumes(s3, tmp_path, capsys):
    local = tmp_path / "single.jsonl"
    assert main(["parse", str(s3["local"]), "--out", str(local), "--save-probs", *ENCODERS]) == 1
    want = read_results(local)
    out = "s3://bucket/results/"
    args = ["parse", "s3://bucket/archive/**/*.mp4", "--out", out, "--format", "parquet", "--save-probs",
            "--shard-rows", "2", *ENCODERS]
    assert main([*args, "--limit", "2"]) in (0, 1)
    assert len(read_results(out)) == 2 and read_manifest(out)["videos"] == 2
    assert main(args) == 1  # resumes: the two others (one broken)
    err = capsys.readouterr().err
    assert "skipped 2 already done" in err
    got = read_results(out)
    assert sorted(got) == sorted(want) == ["broken", "clipA", "clipB", "clipC"]
    for vid, w in want.items():
        g = got[vid]
        assert g["status"] == w["status"]
        assert g["path"].startswith("s3://bucket/archive/") and g["path"].endswith(Path(w["path"]).name)
        if w["status"] == "ok":
            assert g["events"] == w["events"] or all(
                [(e["label"], e["onset"], e["offset"]) for e in g["events"][t]]
                == [(e["label"], e["onset"], e["offset"]) for e in w["events"][t]] for t in w["events"])
            import numpy as np

            np.testing.assert_allclose(g["probs"]["audio"], w["probs"]["audio"], atol=2e-4)
            np.testing.assert_allclose(g["probs"]["visual"], w["probs"]["visual"], atol=2e-4)
        else:
            assert g["error"].startswith("s3://bucket/archive/b/broken.mp4") and "lsld-" not in g["error"]
    assert all(s.endswith(".parquet") for s in shard_files(out)) and len(shard_files(out)) >= 2
    m = read_manifest(out)
    assert (m["videos"], m["ok"], m["error"], m["format"]) == (4, 3, 1, "parquet")
    assert main(args) == 0  # all done: nothing to do
    assert read_manifest(out)["videos"] == 4
    # eval reads the folder on the object store: the same scores as the local file
    capsys.readouterr()
    ann = _annotations(tmp_path / "ann", sorted(want))
    scores = []
    for pred in (out, str(local)):
        assert main(["eval", "--pred", pred, "--annotations", str(ann), "--allow-missing", "--json"]) == 0
        res = capsys.readouterr()
        scores.append(json.loads(res.out))
        _no_secret(res.out, res.err)
    assert scores[0] == scores[1] and len(scores[0]) >= 10
    _no_secret(err, json.dumps(got), (s3["local"] / "moto.log").read_text(errors="replace"))


def _annotations(d: Path, ids: list[str]) -> Path:
    """An LLP-format annotation folder (test split) naming ``ids``: one class each, both modalities."""
    from lsld_engine.data.llp import CLASSES

    d.mkdir()
    (d / "AVVP_test_pd.csv").write_text("filename\tevent_labels\n" + "".join(
        f"{v}\t{CLASSES[i]}\n" for i, v in enumerate(ids)))
    rows = "filename\tonset\toffset\tevent_labels\n" + "".join(f"{v}\t0\t5\t{CLASSES[i]}\n" for i, v in enumerate(ids))
    (d / "AVVP_eval_audio.csv").write_text(rows)
    (d / "AVVP_eval_visual.csv").write_text(rows)
    return d


def test_no_resume_refuses_a_folder_with_results_and_extract_refuses_an_object_store(s3, capsys):
    out = "s3://bucket/results-nr/"
    args = ["parse", "s3://bucket/archive/a/clipA.mp4", "--out", out, *ENCODERS]
    assert main(args) == 0
    assert main([*args, "--no-resume"]) == 2
    assert "already holds results" in capsys.readouterr().err
    assert main(["extract", "s3://bucket/archive/a/", "--out", "s3://bucket/feats/", *ENCODERS]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not to an object store" in err and "s3://bucket/feats/" in err


def test_an_explicit_endpoint_option_is_used(s3, monkeypatch, capsys):
    """``--s3-endpoint`` without the variable; without either, the store is not found (AWS is asked,
    which fails: no network), so the option is really what makes it work."""
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    out = "s3://bucket/results-opt/"
    assert main(["parse", "s3://bucket/archive/a/clipA.mp4", "--out", out, "--s3-endpoint", s3["endpoint"],
                 *ENCODERS]) == 0
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3["endpoint"])
    assert list(read_results(out)) == ["clipA"]
