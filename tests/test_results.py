"""Results formats: the registry behind ``--format``, Parquet files, results folders (shards +
manifest), resume of each format, and ``parse --format`` on one machine."""
from __future__ import annotations

import csv
import json
import sys

import pytest

from lsld_engine.cli import build_parser, main
from lsld_engine.records.results import done_ids, done_statuses, read_results, shard_files
from lsld_engine.records.writers import WRITERS, PredictionsError, error_record, format_of, get_writer, ok_record

EVENTS = {"audio": [{"label": "Speech", "onset": 0.0, "offset": 4.0, "score": 0.93}],
          "visual": [{"label": "Dog", "onset": 2.0, "offset": 10.0, "score": 0.5}],
          "audio_visual": [{"label": "Dog", "onset": 2.0, "offset": 4.0}]}  # score is optional


def records():
    a = ok_record("a", EVENTS, 10.0, 10)
    a.update(path="x/a.mp4", has_audio=True, probs={"audio": [[0.1, 0.2]], "visual": [[0.3, 0.4]]})
    return [a, ok_record("quiet", {}, 25.0, 30), error_record("b", "no video stream")]


def test_parse_format_flag_offers_exactly_the_registry():
    p = build_parser(["parse"])
    sub = next(a for a in p._actions if a.dest == "command").choices["parse"]
    fmt = next(a for a in sub._actions if a.dest == "format")
    assert list(fmt.choices) == list(WRITERS)
    assert (format_of("r.csv"), format_of("r.parquet"), format_of("r.jsonl"), format_of("r.out")) == \
        ("csv", "parquet", "jsonl", "jsonl")


def test_parquet_round_trip_keeps_every_record(tmp_path):
    pytest.importorskip("pyarrow")
    p = tmp_path / "r.parquet"
    with get_writer("parquet", p) as w:
        for r in records():
            w.write(r)
    assert read_results(p) == {r["video_id"]: r for r in records()}
    # resume appends: the rows already there are carried over into the new file
    with get_writer("parquet", p, append=True) as w:
        w.write(error_record("c", "boom"))
    assert list(read_results(p)) == ["a", "quiet", "b", "c"]
    assert done_statuses(p) == {"a": "ok", "quiet": "ok", "b": "error", "c": "error"}


def test_parquet_crash_keeps_the_previous_file(tmp_path):
    pytest.importorskip("pyarrow")
    p = tmp_path / "r.parquet"
    with get_writer("parquet", p) as w:
        w.write(records()[0])
    with pytest.raises(RuntimeError):
        with get_writer("parquet", p, append=True) as w:
            w.write(records()[1])
            raise RuntimeError("crash")
    assert list(read_results(p)) == ["a"] and [f.name for f in tmp_path.iterdir()] == ["r.parquet"]


def test_parquet_without_pyarrow_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    with pytest.raises(ModuleNotFoundError, match=r"--format parquet needs pyarrow: pip install"):
        get_writer("parquet", tmp_path / "r.parquet")


def test_unreadable_parquet_is_named(tmp_path):
    pytest.importorskip("pyarrow")
    p = tmp_path / "r.parquet"
    p.write_bytes(b"PAR1 not really")
    with pytest.raises(PredictionsError, match="r.parquet: not a readable"):
        read_results(p)
    with pytest.raises(PredictionsError, match="r.parquet: not a readable"):
        done_ids(p)


def test_csv_resume_ids_and_partial_last_line(tmp_path):
    p = tmp_path / "r.csv"
    with get_writer("csv", p) as w:
        for r in records():
            w.write(r)
    with open(p, "a") as f:
        f.write("c,ok,audio,Spe")  # a kill mid-line
    assert done_statuses(p) == {"a": "ok", "quiet": "ok", "b": "error"}
    assert p.read_text().endswith("no video stream\n")  # the partial line is cut off
    with pytest.raises(PredictionsError, match="CSV of events cannot be scored"):
        read_results(p)


def test_results_folder_shards_manifest_and_duplicates(tmp_path):
    pytest.importorskip("pyarrow")
    from lsld_engine.scale.sinks import ShardSink, read_manifest

    out = tmp_path / "results"
    sink = ShardSink(out, "jsonl", rows_per_shard=2)
    for r in records():
        sink.write(r)
    assert len(shard_files(out)) == 1 and read_manifest(out) is None  # 2 written, 1 buffered
    m = sink.close(inputs=3)
    assert (m["videos"], m["ok"], m["error"], m["shards"]) == (3, 2, 1, 2) and read_manifest(out) == m
    assert read_results(out) == {r["video_id"]: r for r in records()}
    # a second run (Parquet shards in the same folder) drops the manifest until it finishes
    (out / ".part-x.tmp-99.jsonl").write_text("half")  # a killed run's unfinished shard
    sink2 = ShardSink(out, "parquet", rows_per_shard=10)
    assert read_manifest(out) is None and not (out / ".part-x.tmp-99.jsonl").exists()
    sink2.write(error_record("c", "boom"))
    assert sink2.close(inputs=4)["videos"] == 4 and read_results(out)["c"]["status"] == "error"
    # the same video in two shards is an error naming both
    ShardSink(out, "jsonl").close()
    sink3 = ShardSink(out, "jsonl")
    sink3.write(error_record("a", "again"))
    sink3.flush()
    with pytest.raises(PredictionsError, match=r"duplicate video_id 'a' \(also in .*part-"):
        read_results(out)


def test_eval_reads_a_results_folder_and_parquet(tmp_path, capsys):
    pytest.importorskip("pyarrow")
    from lsld_engine.scale.sinks import ShardSink

    ann = tmp_path / "ann"
    ann.mkdir()
    (ann / "AVVP_test_pd.csv").write_text("filename\tevent_labels\nv1\tSpeech\nv2\tDog\n")
    (ann / "AVVP_eval_audio.csv").write_text("filename\tonset\toffset\tevent_labels\nv1\t0\t4\tSpeech\n")
    (ann / "AVVP_eval_visual.csv").write_text("filename\tonset\toffset\tevent_labels\nv2\t2\t10\tDog\n")
    recs = [ok_record("v1", {"audio": [EVENTS["audio"][0]]}, 10.0, 10), ok_record("v2", EVENTS, 10.0, 10)]
    paths = {"jsonl": tmp_path / "r.jsonl", "parquet": tmp_path / "r.parquet", "folder": tmp_path / "res"}
    for fmt in ("jsonl", "parquet"):
        with get_writer(fmt, paths[fmt]) as w:
            for r in recs:
                w.write(r)
    sink = ShardSink(paths["folder"], "parquet", rows_per_shard=1)
    for r in recs:
        sink.write(r)
    sink.close()
    scores = {}
    for name, p in paths.items():
        assert main(["eval", "--pred", str(p), "--annotations", str(ann), "--json"]) == 0
        scores[name] = json.loads(capsys.readouterr().out)
    assert scores["jsonl"] == scores["parquet"] == scores["folder"]
    assert 0 < scores["jsonl"]["seg_a"] <= 100


@pytest.mark.slow
def test_parse_format_csv_and_parquet_on_one_machine_resume(tmp_path):
    """``parse --format``: each format resumes without writing a video twice (torch backend,
    random-weight small towers, two clips and a broken file)."""
    pytest.importorskip("pyarrow")
    from lsld_engine.testing.videos import VideoSpec, make_video

    vids = tmp_path / "v"
    vids.mkdir()
    make_video(vids / "c1.mp4", VideoSpec(duration=3.0))
    make_video(vids / "c2.mp4", VideoSpec(duration=3.0, freq=1500.0))
    (vids / "broken.mp4").write_bytes(b"junk" * 50)
    flags = ["--random-weights", "--small", "--quiet", "--workers", "0"]
    for fmt in ("csv", "parquet"):
        out = tmp_path / f"r.{fmt}"
        assert main(["parse", str(vids), "--out", str(out), "--limit", "2", *flags]) == 1  # broken, c1
        assert done_ids(out) == {"broken", "c1"}
        assert main(["parse", str(vids), "--out", str(out), *flags]) == 0
        assert done_statuses(out) == {"broken": "error", "c1": "ok", "c2": "ok"}
        if fmt == "csv":
            rows = out.read_text().splitlines()
            assert rows[0].startswith("video_id,status") and sum(r.startswith("video_id") for r in rows) == 1
        else:
            assert set(read_results(out)) == {"broken", "c1", "c2"}  # raises on a repeated video
    # the same events in both formats
    q = read_results(tmp_path / "r.parquet")
    rows = list(csv.DictReader(open(tmp_path / "r.csv", encoding="utf-8")))
    csv_events = {(r["video_id"], r["track"], r["label"], float(r["onset"])) for r in rows if r["track"]}
    assert csv_events == {(v, t, e["label"], e["onset"]) for v in ("c1", "c2") for t, evs in q[v]["events"].items()
                          for e in evs}


def test_scale_sources_folders_globs_lists_and_uris(tmp_path):
    """Inputs of ``--ray``: local folders / globs (single-machine rules) and pyarrow URIs, with
    unique ids when stems collide."""
    pytest.importorskip("pyarrow")
    from lsld_engine.scale.sources import list_inputs

    for rel in ("a/x.mp4", "b/x.mp4", "b/y.MKV", "b/notes.txt", "c/z.mp4"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    got = list_inputs([str(tmp_path / "a"), str(tmp_path / "b" / "*.MKV")])
    assert [(v.video_id, v.path) for v in got] == [("x", str(tmp_path / "a/x.mp4")), ("y", str(tmp_path / "b/y.MKV"))]
    # a URI folder (walked by extension) + a list file naming a URI and a relative local path
    lst = tmp_path / "list.txt"
    lst.write_text(f"# videos\nfile://{tmp_path}/c/z.mp4\na/x.mp4\n")
    got = list_inputs([f"file://{tmp_path}/b"], lst)
    assert {v.video_id: v.path for v in got} == {
        "b/x": f"file://{tmp_path}/b/x.mp4", "a/x": str(tmp_path / "a" / "x.mp4"), "y": f"file://{tmp_path}/b/y.MKV",
        "z": f"file://{tmp_path}/c/z.mp4"}
    assert [v.video_id for v in list_inputs([f"file://{tmp_path}/*/x.mp4"])] == ["a/x", "b/x"]
    with pytest.raises(FileNotFoundError, match="no file matches"):
        list_inputs([str(tmp_path / "*.webm")])
    with pytest.raises(FileNotFoundError, match="input not found"):
        list_inputs([f"file://{tmp_path}/nothere"])
