"""Scale out on Ray (`--ray`): same records as one machine, resume, driver and worker kills, broken videos.

One local Ray instance for the module, sized for a 2-core CI machine (2 CPUs, a 256 MiB object
store, no dashboard, no usage stats); the commands join it instead of starting their own. Videos
are small generated clips; the encoders are random-weight small CLIP / CLAP towers and a random
small HAN (the same networks in every process: they are built from a fixed seed).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'lsld-engine[ray]')")
pytest.importorskip("pyarrow", reason="pyarrow is not installed (pip install 'lsld-engine[ray]')")

from lsld_engine.cli import main  # noqa: E402
from lsld_engine.records.results import read_results, shard_files  # noqa: E402
from lsld_engine.scale import cluster  # noqa: E402
from lsld_engine.scale.sinks import read_manifest  # noqa: E402
from lsld_engine.testing.videos import VideoSpec, make_video  # noqa: E402
from rule_helpers import assert_events_follow_rule, event_keys, rule_events, swap_sensitive_thresholds  # noqa: E402

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
ENCODERS = ["--random-weights", "--small", "--precision", "fp32", "--quiet"]  # fp32: some runs drive torch fp32
CLIPS = {
    "clipA_0_10": VideoSpec(freq=440.0),
    "clipB_5_15": VideoSpec(freq=1500.0, amps=(0.1, 0.1), audio_onset=4.0),
    "clipD_1_11": VideoSpec(freq=880.0, acodec=None),
    "clipE_3_13": VideoSpec(freq=330.0, pattern="texture", duration=6.0),
}


@pytest.fixture(scope="module")
def ray_local():
    """A local Ray instance shared by the module; returns its GCS address (for subprocess drivers)."""
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    # the workers import this checkout (not another install of lsld_engine)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    cluster.connect("local", num_cpus=2, object_store_mb=256)
    yield ray.get_runtime_context().gcs_address
    cluster.shutdown()


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """Four clips (one 6 s, one without audio), a 25-s video in a subfolder, and a broken file."""
    d = tmp_path_factory.mktemp("videos")
    for name, spec in CLIPS.items():
        make_video(d / f"{name}.mp4", spec)
    (d / "sub").mkdir()
    make_video(d / "sub" / "long_video.mkv", VideoSpec(container="mkv", duration=25.0, freq=500.0))
    (d / "broken.mp4").write_bytes(b"\x00not a video" * 100)
    return d


ALL_IDS = sorted([*CLIPS, "long_video", "broken"])


@pytest.fixture(scope="module")
def single(videos, tmp_path_factory):
    """The single-machine engine's records (with probabilities) on the same inputs and weights."""
    out = tmp_path_factory.mktemp("single") / "results.jsonl"
    assert main(["parse", str(videos), "--out", str(out), "--workers", "0", "--save-probs", *ENCODERS]) == 1
    return read_results(out)


def ray_parse(videos, out, *extra) -> int:
    return main(["parse", str(videos), "--out", str(out), "--ray", *ENCODERS, *extra])


def assert_same_records(got: dict, want: dict, probs: bool = True) -> None:
    """Same videos, statuses, durations and events; scores and probabilities to float tolerance."""
    assert sorted(got) == sorted(want)
    for vid, w in want.items():
        g = got[vid]
        assert g["status"] == w["status"], vid
        if w["status"] != "ok":
            # the same problem; the file is named as given (a path, or a URI)
            assert g["error"].replace(g["path"], "FILE") == w["error"].replace(w["path"], "FILE")
            assert g["error"].startswith(g["path"])
            continue
        assert (g["duration"], g["segments"], g["has_audio"]) == (w["duration"], w["segments"], w["has_audio"])
        for track in w["events"]:
            ge, we = g["events"][track], w["events"][track]
            assert [(e["label"], e["onset"], e["offset"]) for e in ge] == \
                [(e["label"], e["onset"], e["offset"]) for e in we], (vid, track)
            np.testing.assert_allclose([e["score"] for e in ge], [e["score"] for e in we], atol=1e-4)
        if probs:
            for key in ("probs", "window_probs"):
                for t in ("audio", "visual"):
                    np.testing.assert_allclose(g[key][t], w[key][t], atol=2e-4, err_msg=f"{vid} {key} {t}")


def test_ray_parse_gives_the_single_machine_records(ray_local, videos, single, tmp_path):
    out = tmp_path / "results"
    assert ray_parse(videos, out, "--save-probs", "--shard-rows", "3") == 1  # 1: the broken video failed
    got = read_results(out)
    assert_same_records(got, single)
    assert got["broken"]["status"] == "error" and "broken.mp4" in got["broken"]["error"]
    assert len(shard_files(out)) >= 2  # 6 records, 3 a shard
    m = read_manifest(out)
    assert (m["videos"], m["ok"], m["error"], m["inputs"], m["format"]) == (6, 5, 1, 6, "jsonl")



def test_ray_actors_apply_each_threshold_to_its_own_probability(ray_local, videos, single, tmp_path):
    """Non-default thresholds picked from the single-machine probabilities so that swapping them
    changes the events: the actors' records are the rule with the thresholds the right way round."""
    seg_t, video_t = swap_sensitive_thresholds(single)
    out = tmp_path / "results"
    assert ray_parse(videos, out, "--save-probs", "--seg-threshold", str(seg_t), "--video-threshold", str(video_t)) == 1
    got = read_results(out)
    assert sorted(got) == ALL_IDS
    assert_events_follow_rule(got, seg_t, video_t)
    ok = [vid for vid, r in single.items() if r["status"] == "ok"]
    # the same probabilities as one machine, so the same events as the rule on one machine's
    for vid in ok:
        np.testing.assert_allclose(got[vid]["probs"]["audio"], single[vid]["probs"]["audio"], atol=2e-4)
        assert event_keys(got[vid]["events"]) == event_keys(rule_events(single[vid], seg_t, video_t)), vid
    # and the swap would have shown
    assert [event_keys(rule_events(single[v], video_t, seg_t)) for v in ok] != [event_keys(got[v]["events"]) for v in ok]


def test_ray_parquet_results_through_pyarrow_filesystems(ray_local, videos, single, tmp_path):
    """Inputs and results as ``file://`` URIs: the code path of object stores (pyarrow.fs listing,
    inputs copied to the decode task, shards put whole)."""
    out = f"file://{tmp_path}/results_pq"
    assert ray_parse(f"file://{videos}", out, "--format", "parquet", "--save-probs") == 1
    assert shard_files(out) and all(s.startswith("file://") and s.endswith(".parquet") for s in shard_files(out))
    got = read_results(out)
    assert_same_records(got, single)
    assert got["clipA_0_10"]["path"] == f"file://{videos}/clipA_0_10.mp4"
    assert read_manifest(out)["format"] == "parquet" and read_manifest(tmp_path / "results_pq")["videos"] == 6


def test_resume_skips_done_videos_and_never_writes_one_twice(ray_local, videos, single, tmp_path, capsys):
    out = tmp_path / "results"
    assert ray_parse(videos, out, "--limit", "3") == 1  # the first three by path include the broken file
    first = read_results(out)
    assert len(first) == 3 and read_manifest(out)["videos"] == 3
    capsys.readouterr()
    ray_parse(videos, out, "--decode-timeout", "300")  # decode tasks in child processes: same records
    assert "skipped 3 already done" in capsys.readouterr().err
    got = read_results(out)  # raises on a video in two shards
    assert_same_records(got, single, probs=False)
    assert {k: got[k] for k in first} == first  # the first run's records are kept, not rewritten
    shards = shard_files(out)
    assert ray_parse(videos, out) == 0  # everything done: nothing to write
    assert shard_files(out) == shards and read_manifest(out)["skipped"] == len(ALL_IDS)


def _wait_for_shards(out: Path, n: int, proc: subprocess.Popen, deadline_s: float = 300) -> None:
    t0 = time.monotonic()
    while len(shard_files(out)) < n:
        assert proc.poll() is None, f"driver exited early ({proc.returncode})"
        assert time.monotonic() - t0 < deadline_s, "no progress"
        time.sleep(0.05)


def test_driver_killed_twice_then_resumed_gives_the_same_records(ray_local, videos, single, tmp_path):
    """SIGKILL the driver (a separate process on this module's cluster) after its first shard,
    again after one more, then resume: the set of records is that of an uninterrupted run.
    (One video per decode task, encoder call and shard: records reach the driver one by one.)"""
    out = tmp_path / "results"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "lsld_engine.cli", "parse", str(videos), "--out", str(out), "--ray", ray_local,
           "--shard-rows", "1", "--ray-decode-batch", "1", "--ray-encode-batch", "1", "--save-probs", *ENCODERS]
    seen = []
    for _ in range(2):
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            _wait_for_shards(out, len(shard_files(out)) + 1, proc)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        seen.append(len(read_results(out)))
        assert read_manifest(out) is None  # a killed run leaves no manifest
    # each kill kept what was written (a fast machine may finish the last shards before a kill lands)
    assert 0 < seen[0] < seen[1] <= len(ALL_IDS)
    broken_done = "broken" in read_results(out)
    assert ray_parse(videos, out, "--save-probs") == (0 if broken_done else 1)
    assert_same_records(read_results(out), single)
    assert read_manifest(out)["videos"] == len(ALL_IDS)
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary shard left


def test_a_killed_decode_worker_is_retried_and_nothing_is_lost(ray_local, videos, single, tmp_path):
    from lsld_engine.parsing.pipeline import Summary
    from lsld_engine.scale.engine import RayOptions, plan, run_parse
    from lsld_engine.scale.sinks import ShardSink
    from lsld_engine.scale.sources import list_inputs
    from lsld_engine.testing.faults import KillOnce, killed

    marker = tmp_path / "killed"
    out = tmp_path / "results"
    items = list_inputs([videos])
    opts = plan(RayOptions(), ray.cluster_resources())
    sink = ShardSink(out, "jsonl")
    summary = run_parse(items, sink, "torch", {"random_weights": True, "size": "small"}, opts, save_probs=True,
                        progress=False, summary=Summary(), decode_fn=KillOnce(marker))
    sink.close(inputs=len(items))
    assert killed(marker)  # a decode worker process did die
    assert summary.done == len(ALL_IDS) - 1 and [vid for vid, _ in summary.failed] == ["broken"]
    assert_same_records(read_results(out), single)


def test_ray_extract_writes_the_single_machine_features(ray_local, videos, tmp_path):
    from lsld_engine.data.dataset import CLAP_SUBDIR, CLIP_SUBDIR

    one, many = tmp_path / "one", tmp_path / "many"
    assert main(["extract", str(videos), "--out", str(one), "--workers", "0", "--dtype", "float32", *ENCODERS]) == 1
    assert main(["extract", str(videos), "--out", str(many), "--ray", "--dtype", "float32", *ENCODERS]) == 1
    names = sorted(p.name for p in (one / CLIP_SUBDIR).glob("*.npy"))
    assert names == sorted(p.name for p in (many / CLIP_SUBDIR).glob("*.npy")) and len(names) == 4 + 3
    for sub in (CLIP_SUBDIR, CLAP_SUBDIR):
        for n in names:
            np.testing.assert_allclose(np.load(many / sub / n), np.load(one / sub / n), atol=1e-4)
    log = [json.loads(line) for line in (many / "feats" / "extract_log.jsonl").read_text().splitlines()]
    assert sorted(r["video_id"] for r in log) == ALL_IDS
    assert main(["extract", str(videos), "--out", str(many), "--ray", *ENCODERS]) == 1  # resume: only the broken one
    log2 = (many / "feats" / "extract_log.jsonl").read_text().splitlines()
    assert len(log2) == len(log) + 1 and json.loads(log2[-1])["video_id"] == "broken"


def test_with_a_timeout_a_crashing_decoder_gives_an_error_record(videos, tmp_path):
    """``--decode-timeout``: the decode task decodes in a child process (the single-machine
    decode_stream), so a decoder that dies becomes the video's error record, not a lost task."""
    from lsld_engine.scale.stages import decode_batch
    from lsld_engine.testing.faults import KillOnce

    batch = {"path": [str(videos / "clipA_0_10.mp4"), str(videos / "clipB_5_15.mp4")],
             "video_id": ["clipA_0_10", "clipB_5_15"]}
    out = decode_batch(batch, timeout=300, decode_fn=KillOnce(tmp_path / "killed"))
    assert out["video_id"] == batch["video_id"]
    assert "decoder worker died" in out["error"][0] and out["frames"][0].shape[0] == 0
    assert out["error"][1] == "" and out["frames"][1].shape == (1, 80, 224, 224, 3)


def test_actor_options_leave_unset_device_and_precision_to_the_actors():
    from argparse import Namespace

    from lsld_engine.commands.scale import actor_backend_options

    opts = {"device": "cpu", "precision": "fp32", "size": "small"}
    assert actor_backend_options(Namespace(device=None, precision=None), opts) == {"size": "small"}
    assert actor_backend_options(Namespace(device="cuda", precision=None), opts) == {"device": "cpu", "size": "small"}
    assert actor_backend_options(Namespace(device=None, precision="fp16"), opts) == {"precision": "fp32",
                                                                                      "size": "small"}


def test_plan_refuses_gpu_actors_on_a_cluster_without_gpus():
    """Actors that ask for GPUs the cluster lacks would wait forever: refused with the numbers."""
    from lsld_engine.scale.engine import RayOptions, plan

    with pytest.raises(ValueError, match="--ray-actor-gpus 1: the cluster has 0 GPUs"):
        plan(RayOptions(actor_gpus=1.0), {"CPU": 2.0})
    assert plan(RayOptions(), {"CPU": 8.0, "GPU": 2.0}).actors == 2  # one GPU actor per GPU by default
    assert plan(RayOptions(), {"CPU": 2.0}).actor_gpus == 0.0
