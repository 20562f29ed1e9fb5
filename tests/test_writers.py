"""Prediction writers (jsonl, csv; parquet in test_results.py) and the validating JSONL reader."""
import csv
import json

import pytest

from lsld_engine.records.writers import (WRITERS, PredictionsError, dumps_record, error_record, get_writer, ok_record,
                                 read_predictions)

EVENTS = {"audio": [{"label": "Speech", "onset": 0.0, "offset": 4.0, "score": 0.93}],
          "visual": [{"label": "Dog", "onset": 2.0, "offset": 10.0, "score": 0.5}],
          "audio_visual": []}


def test_registry_lists_formats():
    assert set(WRITERS) == {"jsonl", "csv", "parquet"}
    with pytest.raises(ValueError, match="unknown output format 'xml'.*jsonl"):
        get_writer("xml", "x")


def test_jsonl_round_trip_and_line_per_video(tmp_path):
    p = tmp_path / "p.jsonl"
    with get_writer("jsonl", p) as w:
        w.write(ok_record("a", EVENTS, 10.0, 10))
        w.write(error_record("b", "no video stream"))
    lines = p.read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[0])["video_id"] == "a"
    recs = read_predictions(p)
    assert list(recs) == ["a", "b"]
    assert recs["a"]["events"] == EVENTS and recs["a"]["segments"] == 10
    assert recs["b"] == {"video_id": "b", "status": "error", "error": "no video stream"}


def test_writer_flushes_each_line(tmp_path):
    p = tmp_path / "p.jsonl"
    w = get_writer("jsonl", p)
    w.write(ok_record("a", EVENTS, 10.0, 10))
    # Readable before close: a killed run keeps every finished video.
    assert read_predictions(p)["a"]["status"] == "ok"
    w.write(ok_record("b", {}, 10.0, 10))
    assert len(p.read_text().splitlines()) == 2
    w.close()
    with get_writer("jsonl", p, append=True) as w2:
        w2.write(error_record("c", "boom"))
    assert list(read_predictions(p)) == ["a", "b", "c"]


def test_csv_writer_rows(tmp_path):
    p = tmp_path / "p.csv"
    with get_writer("csv", p) as w:
        w.write(ok_record("a", EVENTS, 10.0, 10))
        w.write(ok_record("quiet", {}, 10.0, 10))
        w.write(error_record("b", "bad, file"))
    rows = list(csv.DictReader(open(p)))
    assert [(r["video_id"], r["track"], r["label"]) for r in rows] == [
        ("a", "audio", "Speech"), ("a", "visual", "Dog"), ("quiet", "", ""), ("b", "", "")]
    assert rows[0]["onset"] == "0.0" and rows[0]["offset"] == "4.0" and rows[-1]["error"] == "bad, file"
    assert dumps_record(error_record("x", "y"), "csv").splitlines()[0].startswith("video_id,status")


@pytest.mark.parametrize("line,pattern", [
    ('{"video_id": "x", "status": "ok"', "not valid JSON"),
    ('[1, 2]', "expected a JSON object"),
    ('{"status": "ok", "events": {}}', "missing or empty \"video_id\""),
    ('{"video_id": "x", "status": "done"}', "\"status\" must be"),
    ('{"video_id": "x", "status": "error"}', "no \"error\" message"),
    ('{"video_id": "x", "status": "ok"}', "missing \"events\""),
    ('{"video_id": "x", "status": "ok", "events": {"audio": [], "visual": []}}', "events\\['audio_visual'\\] must be"),
    ('{"video_id": "x", "status": "ok", "events": {"audio": [], "visual": [], "audio_visual": [], "aud": []}}',
     "unknown event track"),
    ('{"video_id": "x", "status": "ok", "events": {"audio": [{"label": "Kazoo", "onset": 0, "offset": 1}], '
     '"visual": [], "audio_visual": []}}', "unknown class 'Kazoo'"),
    ('{"video_id": "x", "status": "ok", "events": {"audio": [{"label": "Dog", "onset": 3, "offset": 3}], '
     '"visual": [], "audio_visual": []}}', "onset < offset"),
    ('{"video_id": "x", "status": "ok", "events": {"audio": [{"label": "Dog", "onset": "0", "offset": 3}], '
     '"visual": [], "audio_visual": []}}', "must be numbers"),
])
def test_malformed_line_names_file_and_line(tmp_path, line, pattern):
    p = tmp_path / "p.jsonl"
    good = json.dumps(ok_record("a", EVENTS, 10.0, 10))
    p.write_text(f"{good}\n\n{line}\n")
    with pytest.raises(PredictionsError, match=r"p\.jsonl:3: .*" + pattern):
        read_predictions(p)


def test_duplicate_ids_name_both_lines(tmp_path):
    p = tmp_path / "p.jsonl"
    p.write_text("\n".join(json.dumps(r) for r in [ok_record("a", {}, 10, 10), ok_record("b", {}, 10, 10),
                                                     error_record("a", "x")]) + "\n")
    with pytest.raises(PredictionsError, match=r"p\.jsonl:3: duplicate video_id 'a' \(first on line 1\)"):
        read_predictions(p)


def test_missing_file():
    with pytest.raises(FileNotFoundError, match="nothere.jsonl"):
        read_predictions("nothere.jsonl")
