"""Ray on several nodes of one machine: the single-machine records from a multi-node cluster, a
node lost mid-run, a node that joins, object-store inputs on nodes without the endpoint, and
cluster shape mistakes, each refused in one line.

One cluster for the module (``lsld_engine.testing.raycluster``): a head node without CPUs (the
driver's) and two worker nodes of 1 CPU and a 100 MiB object store each, every node with its own
raylet and store, under its own temporary folder; torn down when the module ends, failed or not,
and checked for leftover processes. The nodes are started without ``AWS_ENDPOINT_URL`` (set on the
driver only, later) and with a folder they cannot see (``LSLD_TEST_NODE_HIDES``).
"""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'lsld-engine[ray]')")
pytest.importorskip("pyarrow", reason="pyarrow is not installed (pip install 'lsld-engine[ray]')")

from lsld_engine.cli import main  # noqa: E402
from lsld_engine.results import read_results  # noqa: E402
from lsld_engine.scale import trace  # noqa: E402
from lsld_engine.scale.sinks import read_manifest  # noqa: E402
from lsld_engine.testing import raycluster  # noqa: E402
from lsld_engine.testing.videos import VideoSpec, make_video  # noqa: E402

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
ENCODERS = ["--random-weights", "--small", "--quiet"]
# fractions of a node's CPU, so a decode task and an encoder actor always fit on one surviving node
SHAPE = ["--ray-actor-cpus", "0.5", "--ray-decode-cpus", "0.5", "--ray-decode-batch", "1", "--ray-encode-batch", "1"]
CLIPS = {
    "clipA": VideoSpec(freq=440.0),
    "clipB": VideoSpec(freq=1500.0, amps=(0.1, 0.1), audio_onset=2.0, duration=6.0),
    "clipC": VideoSpec(freq=880.0, acodec=None, duration=6.0),
    "clipD": VideoSpec(freq=330.0, pattern="texture", duration=6.0),
    "clipE": VideoSpec(freq=660.0, duration=4.0),
    "clipF": VideoSpec(freq=990.0, duration=4.0),
}
SECRET = "lsld-cluster-secret-Wm42"


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    d = tmp_path_factory.mktemp("cvideos")
    (d / "all").mkdir()
    for name, spec in CLIPS.items():
        make_video(d / "all" / f"{name}.mp4", spec)
    (d / "hidden").mkdir()
    make_video(d / "hidden" / "unseen.mp4", VideoSpec(duration=2.0))
    return d


@pytest.fixture(scope="module")
def single(videos, tmp_path_factory):
    """The single-machine engine's records (with probabilities): what every cluster run must give."""
    out = tmp_path_factory.mktemp("csingle") / "results.jsonl"
    assert main(["parse", str(videos / "all"), "--out", str(out), "--workers", "0", "--save-probs", *ENCODERS]) == 0
    return read_results(out)


@pytest.fixture(scope="module")
def cluster(videos, tmp_path_factory):
    """Head (0 CPUs) + 2 worker nodes (1 CPU, 100 MiB store each); ``LSLD_RAY_TRACE`` records where work ran."""
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "AWS_ACCESS_KEY_ID": "lsldclusterkey", "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_ENDPOINT_URL": None,
           "AWS_EC2_METADATA_DISABLED": "true", raycluster_hide(): str(videos / "hidden"), "HF_HUB_OFFLINE": "1"}
    with raycluster.env_vars(**env), raycluster.local_cluster(workers=2, cpus=1, store_mb=100) as c:
        yield c


def raycluster_hide() -> str:
    from lsld_engine.scale.stages import HIDDEN_VARIABLE

    return HIDDEN_VARIABLE


@pytest.fixture()
def traced(tmp_path, monkeypatch):
    path = tmp_path / "trace.jsonl"
    monkeypatch.setenv(trace.TRACE_VARIABLE, str(path))
    return path


def assert_same_records(got: dict, want: dict) -> None:
    assert sorted(got) == sorted(want)
    for vid, w in want.items():
        g = got[vid]
        assert (g["status"], g["duration"], g["segments"], g["has_audio"]) == \
            (w["status"], w["duration"], w["segments"], w["has_audio"]), vid
        for t in w["events"]:
            assert [(e["label"], e["onset"], e["offset"]) for e in g["events"][t]] == \
                [(e["label"], e["onset"], e["offset"]) for e in w["events"][t]], (vid, t)
        for key in ("probs", "window_probs"):
            for t in ("audio", "visual"):
                np.testing.assert_allclose(g[key][t], w[key][t], atol=2e-4, err_msg=f"{vid} {key} {t}")


def nodes_by_stage(path: Path) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for line in trace.read(path):
        out.setdefault(line["stage"], set()).add(line["node"])
    return out


def worker_ids(cluster) -> set[str]:
    return {n.node_id for n in cluster.worker_nodes}


def test_parse_and_extract_on_three_nodes_give_the_single_machine_results(cluster, videos, single, traced, tmp_path):
    out = tmp_path / "results"
    assert main(["parse", str(videos / "all"), "--out", str(out), "--ray", cluster.address, "--save-probs",
                 *SHAPE, *ENCODERS]) == 0
    assert_same_records(read_results(out), single)
    where = nodes_by_stage(traced)
    assert where["decode"] | where["encode"] <= worker_ids(cluster)  # the head has no CPUs: no work there
    assert len(where["decode"] | where["encode"]) == 2, where  # both worker nodes did work
    # extract: the same feature files as one machine (a folder every node sees: one machine here)
    from lsld_engine.dataset import CLAP_SUBDIR, CLIP_SUBDIR

    one, many = tmp_path / "one", tmp_path / "many"
    assert main(["extract", str(videos / "all"), "--out", str(one), "--workers", "0", "--dtype", "float32",
                 *ENCODERS]) == 0
    assert main(["extract", str(videos / "all"), "--out", str(many), "--ray", cluster.address, "--dtype", "float32",
                 *SHAPE, *ENCODERS]) == 0
    names = sorted(p.name for p in (one / CLIP_SUBDIR).glob("*.npy"))
    assert names and names == sorted(p.name for p in (many / CLIP_SUBDIR).glob("*.npy"))
    for sub in (CLIP_SUBDIR, CLAP_SUBDIR):
        for n in names:
            np.testing.assert_allclose(np.load(many / sub / n), np.load(one / sub / n), atol=1e-4)
