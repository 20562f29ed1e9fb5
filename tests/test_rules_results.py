"""The results readers' validation (writers.read_predictions / check_record, results.py): every refusal
with its exact message, every boundary of an event, files, folders and ``file://`` URIs.

Written to kill the mutants of ``scripts/mutation.py writers results`` (docs/testing.md).
"""
from __future__ import annotations

import io
import json

import pytest

from lsld_engine.records import results as R
from lsld_engine.data.llp import CLASSES
from lsld_engine.records.untrusted import InputFileError
from lsld_engine.records.writers import (WRITERS, CsvEventsWriter, JsonlWriter, PredictionsError, check_record, dumps_record,
                                 error_record, format_of, get_writer, ok_record, printable, read_predictions)

DOG = CLASSES[3]


def ok(vid="a", **events):
    ev = {"audio": [], "visual": [], "audio_visual": []}
    ev.update(events)
    return {"video_id": vid, "status": "ok", "duration": 10.0, "segments": 10, "events": ev}


def ev(on=0.0, off=1.0, label=DOG, **kw):
    return {"label": label, "onset": on, "offset": off, **kw}


def refused(rec, where="f:1"):
    with pytest.raises(PredictionsError) as e:
        check_record(rec, where)
    return str(e.value)


# --- check_record --------------------------------------------------------------------------------
def test_valid_records_pass():
    check_record(ok(), "x")
    check_record(ok(audio=[ev(0, 1), ev(2.5, 3, score=0.5)], visual=[ev(0, 10, score=1)]), "x")
    check_record({"video_id": "b", "status": "error", "error": ""}, "x")


def test_record_structure_messages():
    assert refused([1], "p:3") == "p:3: expected a JSON object, got list"
    assert refused({"status": "ok"}) == 'f:1: missing or empty "video_id" (a string)'
    assert refused({"video_id": "", "status": "ok"}) == 'f:1: missing or empty "video_id" (a string)'
    assert refused({"video_id": 5, "status": "ok"}) == 'f:1: missing or empty "video_id" (a string)'
    assert refused({"video_id": "v", "status": "error"}) == \
        "f:1: video 'v' has status \"error\" but no \"error\" message"
    assert refused({"video_id": "v", "status": "error", "error": 3}).endswith('but no "error" message')
    assert refused({"video_id": "v", "status": "done"}) == \
        "f:1: video 'v': \"status\" must be \"ok\" or \"error\", got 'done'"
    assert refused({"video_id": "v"}) == "f:1: video 'v': \"status\" must be \"ok\" or \"error\", got None"
    assert refused({"video_id": "v", "status": "ok"}) == \
        "f:1: video 'v': missing \"events\" object with tracks audio, visual, audio_visual"
    assert refused({"video_id": "v", "status": "ok", "events": []}).endswith("audio, visual, audio_visual")
    rec = ok("v")
    rec["events"]["speech"] = []
    rec["events"]["noise"] = []
    assert refused(rec) == ("f:1: video 'v': unknown event track(s) ['noise', 'speech']; "
                            "expected ['audio', 'visual', 'audio_visual']")
    for track in ("audio", "visual", "audio_visual"):
        rec = ok("v")
        del rec["events"][track]
        assert refused(rec) == f"f:1: video 'v': events[{track!r}] must be a list"
        rec["events"][track] = {}
        assert refused(rec) == f"f:1: video 'v': events[{track!r}] must be a list"


def test_event_messages_and_boundaries():
    pre = "f:1: video 'v': events['visual'][1]"
    bad = lambda e: refused(ok("v", visual=[ev(), e]))  # noqa: E731
    assert bad([0, 1]) == f"{pre}: expected an object with label, onset, offset"
    assert bad(ev(label="Unicorn")) == f"{pre}: unknown class 'Unicorn' (expected one of the 25 LLP classes)"
    assert bad({"onset": 0, "offset": 1}) == f"{pre}: unknown class None (expected one of the 25 LLP classes)"
    assert bad(ev(on="0", off=1)) == f"{pre}: onset and offset must be numbers (seconds), got '0', 1"
    assert bad(ev(on=0, off=None)) == f"{pre}: onset and offset must be numbers (seconds), got 0, None"
    assert bad(ev(on=True, off=2)).startswith(f"{pre}: onset and offset must be numbers")
    assert bad(ev(on=0, off=float("inf"))).startswith(f"{pre}: onset and offset must be numbers")
    assert bad(ev(on=float("nan"), off=1)).startswith(f"{pre}: onset and offset must be numbers")
    assert bad(ev(on=-0.5, off=1)) == f"{pre}: need 0 <= onset < offset, got onset -0.5, offset 1"
    assert bad(ev(on=2, off=2)) == f"{pre}: need 0 <= onset < offset, got onset 2, offset 2"
    assert bad(ev(on=3, off=2)) == f"{pre}: need 0 <= onset < offset, got onset 3, offset 2"
    assert bad(ev(score="high")) == f"{pre}: score must be a number, got 'high'"
    assert bad(ev(score=None)) == f"{pre}: score must be a number, got None"
    assert bad(ev(score=False)) == f"{pre}: score must be a number, got False"
    # boundaries that pass: onset 0, integer and float seconds, a score of 0
    check_record(ok("v", audio=[ev(0, 0.001), ev(1, 2, score=0)]), "x")
    # the track named is the one at fault
    assert refused(ok("v", audio_visual=[ev(label="X")])).startswith("f:1: video 'v': events['audio_visual'][0]")


# --- read_predictions ----------------------------------------------------------------------------
def write(tmp_path, lines, name="p.jsonl", mode="w"):
    p = tmp_path / name
    if isinstance(lines, bytes):
        p.write_bytes(lines)
    else:
        p.write_text("".join(x + "\n" for x in lines), encoding="utf-8")
    return p


def test_read_predictions_file_order_blank_lines_bom_and_line_numbers(tmp_path):
    a, b = ok("b", audio=[ev(1, 3, score=0.5)]), {"video_id": "a", "status": "error", "error": "x"}
    p = write(tmp_path, [json.dumps(a), "", "   ", json.dumps(b)])
    p.write_bytes(b"\xef\xbb\xbf" + p.read_bytes())  # a BOM on the first line is fine
    lines = {}
    got = read_predictions(p, line_numbers=lines)
    assert list(got) == ["b", "a"] and got["b"] == a and got["a"] == b
    assert lines == {"b": 1, "a": 4}
    assert read_predictions(str(p)) == got


def test_read_predictions_refusals_name_file_and_line(tmp_path):
    p = write(tmp_path, [json.dumps(ok("a")), json.dumps(ok("b")), json.dumps(ok("a"))])
    with pytest.raises(PredictionsError) as e:
        read_predictions(p)
    assert str(e.value) == f"{p}:3: duplicate video_id 'a' (first on line 1); keep one line per video"
    p = write(tmp_path, [json.dumps(ok("a")), "{not json"])
    with pytest.raises(PredictionsError) as e:
        read_predictions(p)
    assert str(e.value).startswith(f"{p}:2: not valid JSON (")
    p = write(tmp_path, [json.dumps(ok("a")), json.dumps({"video_id": "b", "status": "ok"})])
    with pytest.raises(PredictionsError) as e:
        read_predictions(p)
    assert str(e.value).startswith(f"{p}:2: video 'b': missing \"events\"")
    p = write(tmp_path, json.dumps(ok("a")).encode() + b"\n" + b'{"video_id": "\xff"}\n')
    with pytest.raises(PredictionsError) as e:
        read_predictions(p)
    assert str(e.value) == (f"{p}:2: not UTF-8 text (invalid start byte at byte 14); "
                            "is this a predictions JSONL?")
    # a BOM is only allowed on line 1
    p = write(tmp_path, json.dumps(ok("a")).encode() + b"\n\xef\xbb\xbf" + json.dumps(ok("b")).encode() + b"\n")
    with pytest.raises(PredictionsError) as e:
        read_predictions(p)
    assert str(e.value).startswith(f"{p}:2: not valid JSON (")
    p = write(tmp_path, ['{"video_id": "a", "status": "ok", "duration": 1e999}'])
    with pytest.raises(PredictionsError) as e:
        read_predictions(p)
    assert isinstance(e.value, InputFileError)
    assert str(e.value) == f"{p}:1: number 1e999 is out of range"


def test_read_predictions_missing_and_folder(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        read_predictions(tmp_path / "none.jsonl")
    assert str(e.value) == f"predictions file not found: {tmp_path / 'none.jsonl'}"
    with pytest.raises(IsADirectoryError) as e:
        read_predictions(tmp_path)
    assert str(e.value) == f"predictions file {tmp_path} is a folder; pass the JSONL file itself"


# --- writers: records, formats --------------------------------------------------------------------
def test_records_and_formats():
    rec = ok_record("v", {"audio": [ev()]}, 9, 10.0)
    assert rec == {"video_id": "v", "status": "ok", "duration": 9.0, "segments": 10,
                   "events": {"audio": [ev()], "visual": [], "audio_visual": []}}
    assert isinstance(rec["duration"], float) and isinstance(rec["segments"], int)
    assert error_record("v", ValueError("bad")) == {"video_id": "v", "status": "error", "error": "bad"}
    assert list(WRITERS) == ["jsonl", "csv", "parquet"]
    assert format_of("x/r.CSV") == "csv" and format_of("r.parquet") == "parquet" and format_of("r.jsonl") == "jsonl"
    assert format_of("r.txt") == "jsonl" and format_of("r.txt", default="csv") == "csv"
    with pytest.raises(ValueError) as e:
        get_writer("xml", io.StringIO())
    assert str(e.value) == "unknown output format 'xml': expected one of jsonl, csv, parquet"
    assert isinstance(get_writer("csv", io.StringIO()), CsvEventsWriter)
    assert printable({"a\udcff": ["b\udcfe", ("c",), 1]}) == {"a\\xff": ["b\\xfe", ["c"], 1]}


def test_jsonl_and_csv_text():
    rec = ok("v", audio=[ev(0, 2, score=0.5)], visual=[ev(1, 3)])
    line = dumps_record(rec)
    assert line.endswith("\n") and line.count("\n") == 1 and json.loads(line) == rec
    assert dumps_record({"video_id": "é", "status": "error", "error": "ü"}) == \
        '{"video_id": "é", "status": "error", "error": "ü"}\n'
    with pytest.raises(ValueError):
        dumps_record({"video_id": "v", "status": "ok", "duration": float("nan")})
    csv_text = dumps_record(rec, "csv")
    assert csv_text == ("video_id,status,track,label,onset,offset,score,error\n"
                        f"v,ok,audio,{DOG},0,2,0.5,\n"
                        f"v,ok,visual,{DOG},1,3,,\n")
    assert dumps_record({"video_id": "w", "status": "error", "error": "no, stream"}, "csv").splitlines()[1] == \
        'w,error,,,,,,"no, stream"'
    assert dumps_record(ok("z"), "csv").splitlines()[1] == "z,ok,,,,,,"


def test_writer_files_count_append_and_csv_header_once(tmp_path):
    p = tmp_path / "r.csv"
    with get_writer("csv", p) as w:
        w.write(ok("a"))
        assert w.written == 1
    with get_writer("csv", p, append=True) as w:
        w.write(ok("b"))
    assert p.read_text().splitlines() == ["video_id,status,track,label,onset,offset,score,error", "a,ok,,,,,,",
                                          "b,ok,,,,,,"]
    q = tmp_path / "r.jsonl"
    with JsonlWriter(q) as w:
        w.write(ok("a"))
    with JsonlWriter(q, append=True) as w:
        w.write(ok("b"))
    assert list(read_predictions(q)) == ["a", "b"]
    with JsonlWriter(q) as w:  # no append: overwritten
        w.write(ok("c"))
    assert list(read_predictions(q)) == ["c"]


# --- results.py ----------------------------------------------------------------------------------
def test_is_uri():
    assert R.is_uri("s3://b/x") and R.is_uri("file:///tmp/x")
    assert not R.is_uri("/tmp/x") and not R.is_uri("s3:/x")
    assert R.SHARD_PREFIX == "part-" and R.MANIFEST == "_SUCCESS"


def _folder(tmp_path):
    d = tmp_path / "res"
    d.mkdir()
    write(d, [json.dumps(ok("a")), json.dumps(ok("b"))], "part-1-0.jsonl")
    write(d, [json.dumps(ok("c"))], "part-1-1.jsonl")
    write(d, ["junk"], "other.jsonl")          # not a shard: no prefix
    write(d, ["junk"], "part-1-2.jsonl.tmp")   # not complete: wrong suffix
    (d / "part-dir.jsonl").mkdir()             # a folder, not a file
    (d / "_SUCCESS").write_text("{}")
    return d


def test_shard_files_and_read_results_folder(tmp_path):
    d = _folder(tmp_path)
    assert R.shard_files(d) == [str(d / "part-1-0.jsonl"), str(d / "part-1-1.jsonl")]
    assert R.shard_files(tmp_path / "nope") == []
    assert R.is_results_folder(d) and not R.is_results_folder(d / "part-1-0.jsonl")
    assert R.exists(d) and not R.exists(tmp_path / "nope")
    got = R.read_results(d)
    assert list(got) == ["a", "b", "c"]
    assert R.done_ids(d) == {"a", "b", "c"}
    assert R.done_statuses(d) == {"a": "ok", "b": "ok", "c": "ok"}
    write(d, [json.dumps({"video_id": "b", "status": "error", "error": "x"})], "part-2-0.jsonl")
    with pytest.raises(PredictionsError) as e:
        R.read_results(d)
    assert str(e.value) == f"{d / 'part-2-0.jsonl'}: duplicate video_id 'b' (also in {d / 'part-1-0.jsonl'})"
    assert R.done_statuses(d)["b"] == "error"   # later shards win for resume


def test_read_results_errors(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        R.read_results(tmp_path / "none.jsonl")
    assert str(e.value) == f"predictions not found: {tmp_path / 'none.jsonl'}"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError) as e:
        R.read_results(empty)
    assert str(e.value) == (f"{empty} is a folder without result shards (part-*.jsonl / .parquet); "
                            "pass a predictions file, or the results folder of `parse --ray`")
    c = tmp_path / "r.csv"
    c.write_text("video_id,status,track,label,onset,offset,score,error\n")
    with pytest.raises(PredictionsError) as e:
        R.read_results(c)
    assert str(e.value) == f"{c}: a CSV of events cannot be scored; write JSONL or Parquet (--format)"


def test_file_uris_read_like_local_paths_and_errors_name_the_uri(tmp_path):
    d = _folder(tmp_path)
    uri = f"file://{d}"
    assert R.is_results_folder(uri) and R.exists(uri) and not R.exists(f"file://{tmp_path}/nope")
    assert R.shard_files(uri) == [f"{uri}/part-1-0.jsonl", f"{uri}/part-1-1.jsonl"]
    assert R.shard_files(uri + "/") == [f"{uri}/part-1-0.jsonl", f"{uri}/part-1-1.jsonl"]
    assert list(R.read_results(uri)) == ["a", "b", "c"]
    assert R.done_ids(uri) == {"a", "b", "c"}
    single = f"file://{d}/part-1-1.jsonl"
    assert not R.is_results_folder(single)
    assert list(R.read_results(single)) == ["c"]
    assert R.done_statuses(single) == {"c": "ok"}
    bad = write(tmp_path, [json.dumps(ok("a")), "[1]"], "bad.jsonl")
    with pytest.raises(PredictionsError) as e:
        R.read_results(f"file://{bad}")
    assert str(e.value) == f"file://{bad}:2: expected a JSON object, got list"


def test_uri_reads_remove_their_temporary_copy(tmp_path, monkeypatch):
    import os
    import tempfile

    d = _folder(tmp_path)
    made = []
    real = tempfile.mkstemp

    def spy(*a, **k):
        fd, name = real(*a, dir=tmp_path, **k)
        made.append(name)
        return fd, name

    monkeypatch.setattr(tempfile, "mkstemp", spy)
    single = f"file://{d}/part-1-1.jsonl"
    assert R.done_ids(single) == {"c"}
    assert list(R.read_results(single)) == ["c"]
    assert len(made) == 2 and made[0].endswith(".jsonl")
    assert not any(os.path.exists(m) for m in made)
    # a local path is read in place: no copy
    assert R.done_ids(d / "part-1-1.jsonl") == {"c"} and len(made) == 2


def test_done_statuses_of_files_and_missing(tmp_path):
    assert R.done_statuses(tmp_path / "none.jsonl") == {}
    assert R.done_ids(tmp_path / "none.csv") == set()
    p = write(tmp_path, [json.dumps(ok("a")), json.dumps({"video_id": "b", "status": "error", "error": "e"})])
    assert R.done_statuses(p) == {"a": "ok", "b": "error"}
    # the format comes from the suffix unless given
    q = tmp_path / "r.txt"
    q.write_text("video_id,status,track,label,onset,offset,score,error\nx,ok,,,,,,\n")
    assert R.done_statuses(q, "csv") == {"x": "ok"}
    bad = write(tmp_path, ["[1, 2]"], "bad.jsonl")
    with pytest.raises(PredictionsError) as e:
        R.done_statuses(bad)
    assert str(bad) in str(e.value)


def test_csv_statuses_repair_only_when_asked(tmp_path):
    head = "video_id,status,track,label,onset,offset,score,error\n"
    p = tmp_path / "r.csv"
    p.write_text(head + "a,ok,,,,,,\nb,error,,,,,,x\nc,o")
    assert R.read_csv_statuses(p, repair=False) == {"a": "ok", "b": "error"}
    assert p.read_text().endswith("c,o")
    assert R.read_csv_statuses(p) == {"a": "ok", "b": "error"}
    assert p.read_text() == head + "a,ok,,,,,,\nb,error,,,,,,x\n"
    p.write_bytes(b"\xef\xbb\xbf" + head.encode() + b"d,ok,,,,,,\n")
    assert R.read_csv_statuses(p) == {"d": "ok"}
    assert R.read_csv_statuses(tmp_path / "none.csv") == {}
    p.write_text("id,status\na,ok\n")
    with pytest.raises(PredictionsError) as e:
        R.read_csv_statuses(p)
    assert str(e.value) == (f"{p}: not an events CSV of ours (its first line is not "
                            "'video_id,status,track,label,onset,offset,score,error'); "
                            "left untouched: pass another path, or remove it to start over")
    assert p.read_text() == "id,status\na,ok\n"
    p.write_text("")
    assert R.read_csv_statuses(p) == {}
    p.write_text(head + "lonely\n")
    assert R.read_csv_statuses(p) == {}   # a row without a status is not a video


def test_unreadable_parquet_resume_names_the_file(tmp_path):
    pytest.importorskip("pyarrow")
    p = tmp_path / "r.parquet"
    p.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(PredictionsError) as e:
        R.done_statuses(p)
    assert str(e.value).startswith(f"{p}: not a readable results Parquet file (")
    assert str(e.value).endswith("); remove it to start over")


def test_done_statuses_details(tmp_path):
    head = "video_id,status,track,label,onset,offset,score,error\n"
    q = tmp_path / "r.txt"
    q.write_text(head + "x,ok,,,,,,\n")
    assert R.done_ids(q, "csv") == {"x"}            # the format given wins over the suffix
    c = tmp_path / "r.csv"
    c.write_bytes(head.encode() + b"a,ok\n" + b"b\xff,error,,,,,,x\n")
    assert R.read_csv_statuses(c) == {"a": "ok", "b\ufffd": "error"}   # two fields suffice; bad bytes replaced
    j = tmp_path / "r.jsonl"
    j.write_text(json.dumps(ok("a")) + "\n" + json.dumps({"video_id": "nostatus"}) + "\n" + '{"video_id": "c"')
    assert R.done_statuses(j) == {"a": "ok", "nostatus": ""}
    assert j.read_text().endswith("}\n")           # a local file's partial last line is cut off


def test_uri_folder_edge_cases(tmp_path):
    assert R.shard_files(f"file://{tmp_path}/missing") == []       # a missing folder has no shards
    d = tmp_path / "resX"
    d.mkdir()
    write(d, [json.dumps(ok("a"))], "part-0-0.jsonl")
    assert R.shard_files(f"file://{d}/") == [f"file://{d}/part-0-0.jsonl"]   # only the slash is cut
    c = tmp_path / "x.csv"
    c.write_text("Xvideo_id,status,track,label,onset,offset,score,error\na,ok\n")
    with pytest.raises(PredictionsError):
        R.read_csv_statuses(c)        # only a UTF-8 BOM may precede the header


# --- writer life cycle: counts, ownership, a full disk ----------------------------------------------
def test_writer_counts_and_leaves_a_callers_file_open():
    buf = io.StringIO()
    w = get_writer("jsonl", buf)
    w.write(ok("a"))
    w.write(ok("b"))
    assert w.written == 2
    w.close()
    assert not buf.closed and buf.getvalue().count("\n") == 2


def test_writer_closes_the_file_it_opened(tmp_path):
    w = get_writer("jsonl", tmp_path / "r.jsonl")
    w.write(ok("a"))
    w.close()
    assert w._file.closed
    w.close()  # twice is fine


def test_csv_append_to_a_new_or_empty_file_writes_the_header(tmp_path):
    head = "video_id,status,track,label,onset,offset,score,error"
    p = tmp_path / "new.csv"
    with get_writer("csv", p, append=True) as w:
        w.write(ok("a"))
    assert p.read_text().splitlines() == [head, "a,ok,,,,,,"]
    q = tmp_path / "empty.csv"
    q.write_text("")
    with get_writer("csv", q, append=True) as w:
        w.write(ok("b"))
    assert q.read_text().splitlines() == [head, "b,ok,,,,,,"]


full = pytest.mark.skipif(not __import__("os").path.exists("/dev/full"), reason="no /dev/full on this OS")


@full
def test_disk_full_raises_once_not_again_on_close():
    w = get_writer("jsonl", "/dev/full")
    with pytest.raises(OSError):
        w.write(ok("a"))
    assert w.written == 0
    w.close()  # the same error is not raised a second time


@full
def test_disk_full_on_close_alone_is_raised():
    w = get_writer("csv", "/dev/full")   # the header is buffered, not yet written
    with pytest.raises(OSError):
        w.close()


# --- writers: default modes and the Parquet writer ----------------------------------------------------
def test_default_is_overwrite_not_append(tmp_path):
    p = tmp_path / "r.jsonl"
    p.write_text(json.dumps(ok("old")) + "\n")
    with get_writer("jsonl", p) as w:
        w.write(ok("new"))
    assert list(read_predictions(p)) == ["new"]
    c = tmp_path / "r.csv"
    c.write_text("old content\n")
    with CsvEventsWriter(c) as w:
        w.write(ok("new"))
    assert c.read_text().splitlines() == ["video_id,status,track,label,onset,offset,score,error", "new,ok,,,,,,"]


def test_parquet_writer_counts_row_groups_append_and_close(tmp_path):
    pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    from lsld_engine.records.writers import ParquetResultsWriter

    p = tmp_path / "r.parquet"
    w = ParquetResultsWriter(p, row_group_size=2)
    assert w.written == 0
    for v in "abcd":
        w.write(ok(v))
    assert w.written == 4
    w.close()
    w.close()   # a second close does nothing
    meta = pq.ParquetFile(p).metadata
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [2, 2]
    assert list(R.read_results(p)) == ["a", "b", "c", "d"]
    with ParquetResultsWriter(p) as w:          # default: a new file
        w.write(ok("e"))
    assert list(R.read_results(p)) == ["e"]
    with get_writer("parquet", p, append=True) as w:
        w.write(ok("f"))
        assert w.written == 1                    # carried-over rows are not counted as written
    assert list(R.read_results(p)) == ["e", "f"]
    q = tmp_path / "new.parquet"
    with get_writer("parquet", q, append=True) as w:   # append to a file that does not exist yet
        w.write(ok("g"))
    assert list(R.read_results(q)) == ["g"]
    buf = io.BytesIO()
    w = ParquetResultsWriter(buf, append=True)   # a file object: nothing to carry over
    w.write(ok("h"))
    w.close()
    assert buf.getvalue()[:4] == b"PAR1"


def test_parquet_crash_keeps_the_previous_file_and_closes_cleanly(tmp_path):
    pytest.importorskip("pyarrow")
    p = tmp_path / "r.parquet"
    with get_writer("parquet", p) as w:
        w.write(ok("a"))
    before = p.read_bytes()
    w = get_writer("parquet", p, append=True)
    with pytest.raises(RuntimeError):
        with w:
            w.write(ok("b"))
            raise RuntimeError("crash")
    w.close()  # nothing left to close, no error
    assert p.read_bytes() == before and sorted(x.name for x in tmp_path.iterdir()) == ["r.parquet"]
    with pytest.raises(KeyboardInterrupt):     # an interrupt still saves the finished videos
        with get_writer("parquet", p, append=True) as w:
            w.write(ok("c"))
            raise KeyboardInterrupt
    assert list(R.read_results(p)) == ["a", "c"]


def test_parquet_crash_after_a_flushed_row_group_keeps_the_previous_file(tmp_path):
    pytest.importorskip("pyarrow")
    from lsld_engine.records.writers import ParquetResultsWriter

    p = tmp_path / "r.parquet"
    with get_writer("parquet", p) as w:
        w.write(ok("a"))
    with pytest.raises(RuntimeError, match="crash"):   # the crash itself, not another error
        with ParquetResultsWriter(p, append=True, row_group_size=1) as w:
            w.write(ok("b"))      # a full row group: already in the temporary file
            raise RuntimeError("crash")
    assert list(R.read_results(p)) == ["a"] and sorted(x.name for x in tmp_path.iterdir()) == ["r.parquet"]


def test_parquet_default_row_group_is_a_thousand_videos(tmp_path):
    pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    p = tmp_path / "r.parquet"
    with get_writer("parquet", p) as w:
        for i in range(1001):
            w.write({"video_id": f"v{i}", "status": "error", "error": "x"})
    meta = pq.ParquetFile(p).metadata
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [1000, 1]
