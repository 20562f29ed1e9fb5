"""The resume reader (``records.readers.read_records``): what it accepts, what it refuses (naming the
file and line, leaving the file as it was), and the one repair it makes to a file a killed run left
(a cut-off last record). Pure file tests, no media: the mutation run of ``readers`` uses them."""
from __future__ import annotations

import json

import pytest

from lsld_engine.records.readers import read_records
from lsld_engine.records.untrusted import InputFileError


def _line(vid: str, **extra) -> bytes:
    return (json.dumps({"video_id": vid, **extra}) + "\n").encode()


def _refused(path, *needles: str) -> str:
    before = path.read_bytes()
    with pytest.raises(InputFileError) as e:
        read_records(path)
    msg = str(e.value)
    assert str(path) in msg and all(n in msg for n in needles), msg
    assert path.read_bytes() == before  # left untouched
    return msg


def test_a_missing_file_is_no_records_and_a_folder_is_refused(tmp_path):
    assert read_records(tmp_path / "absent.jsonl") == {}
    with pytest.raises(InputFileError, match="not a regular file; give a JSONL file path") as e:
        read_records(tmp_path)
    assert str(tmp_path) in str(e.value)


def test_the_last_line_of_a_video_wins_and_blank_lines_are_skipped(tmp_path):
    p = tmp_path / "r.jsonl"
    p.write_bytes(_line("a", n=1) + b"\n  \n" + _line("b") + _line("a", n=2))
    before = p.read_bytes()
    recs = read_records(p)
    assert sorted(recs) == ["a", "b"] and recs["a"]["n"] == 2
    assert p.read_bytes() == before  # a clean file is not touched


def test_a_file_that_is_not_records_is_refused_by_its_first_bytes(tmp_path):
    p = tmp_path / "movie.jsonl"
    data = b"\x00\x00\x00\x18ftypmp42" + bytes(range(200))
    p.write_bytes(data)
    msg = _refused(p, "not a JSONL file of records", "left untouched")
    assert repr(data[:16]) in msg and repr(data[:17]) not in msg  # the first 16 bytes are shown, no more
    assert msg.endswith("left untouched: pass another path, or remove it to start over")
    x = tmp_path / "x.jsonl"  # only a BOM and blank space are skipped before the first "{"
    x.write_bytes(b'X{"video_id": "a"}\n')
    _refused(x, "not a JSONL file of records")


def test_a_bom_and_leading_blank_space_are_not_mistaken_for_a_binary_file(tmp_path):
    p = tmp_path / "bom.jsonl"
    p.write_bytes(b"\xef\xbb\xbf" + b" \t\r\n" * 3 + _line("a"))
    assert list(read_records(p)) == ["a"]
    # a BOM is only a first-line thing: on line 2 it is not a record
    q = tmp_path / "bom2.jsonl"
    q.write_bytes(_line("a") + b"\xef\xbb\xbf" + _line("b"))
    _refused(q, ":2")


@pytest.mark.parametrize("bad, why", [
    (b"[1, 2]\n", "not a record line"),
    (b'{"video": "x"}\n', "not a record line"),
    (b'{"video_id": ""}\n', "not a record line"),
    (b'{"video_id": 7}\n', "not a record line"),
    (b"\xff\xfe{}\n", "not UTF-8 text"),
])
def test_a_bad_line_is_refused_naming_file_and_line(tmp_path, bad, why):
    p = tmp_path / "r.jsonl"
    p.write_bytes(_line("a") + _line("b") + bad + _line("c"))
    msg = _refused(p, why, f"{p}:3")
    assert msg.endswith("fix or remove the file to start over")


def test_a_record_cut_off_by_a_kill_is_removed_and_appending_resumes_on_a_clean_line(tmp_path):
    p = tmp_path / "r.jsonl"
    whole = _line("a") + _line("b")
    p.write_bytes(whole + b'{"video_id": "c", "events": {"au')
    assert sorted(read_records(p, repair=False)) == ["a", "b"]
    assert p.read_bytes().endswith(b'"au')  # repair=False: nothing changed
    assert sorted(read_records(p)) == ["a", "b"]  # repair is the default
    assert p.read_bytes() == whole
    one = tmp_path / "one.jsonl"  # the first (and only, cut) line may start with a BOM
    one.write_bytes(b'\xef\xbb\xbf{"video_id": "c", "ev')
    assert read_records(one) == {} and one.read_bytes() == b""


def test_a_complete_last_record_without_its_newline_gets_one(tmp_path):
    p = tmp_path / "r.jsonl"
    p.write_bytes(_line("a") + _line("b")[:-1])
    assert sorted(read_records(p)) == ["a", "b"]
    assert p.read_bytes() == _line("a") + _line("b")
    one = tmp_path / "one.jsonl"  # a one-line file: its only line may carry the BOM
    one.write_bytes(b"\xef\xbb\xbf" + _line("z")[:-1])
    assert list(read_records(one)) == ["z"] and one.read_bytes().endswith(b"}\n")


def test_a_cut_last_line_that_is_not_a_record_is_refused(tmp_path):
    p = tmp_path / "r.jsonl"
    p.write_bytes(_line("a") + b"garbage without newline")
    msg = _refused(p, f"{p}:2", "the last line is cut off and is not a record")
    assert msg.endswith("pass another path, or fix or remove the file")
