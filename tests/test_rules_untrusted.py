"""Untrusted-input readers (lsld_engine/records/untrusted.py): exact limits and exact one-line messages.

Written to kill the mutants of ``scripts/mutation.py untrusted`` (docs/testing.md): each test pins a
boundary or a message a user sees, not just "an error was raised".
"""
import io
import json
import zipfile

import numpy as np
import pytest

from lsld_engine.errors import LsldError
from lsld_engine.records.untrusted import MAX_INT_DIGITS, InputFileError, json_line, load_npz


def test_integer_digit_limit_is_exactly_twenty_with_or_without_sign():
    assert MAX_INT_DIGITS == 20
    assert json_line("9" * 20, "f:1") == int("9" * 20)
    assert json_line("-" + "9" * 20, "f:1") == -int("9" * 20)
    with pytest.raises(InputFileError) as e:
        json_line("1" * 21, "f:3")
    assert str(e.value) == "f:3: integer with 21 digits (at most 20)"
    with pytest.raises(InputFileError) as e:
        json_line("-" + "1" * 21, "f:4")
    assert str(e.value) == "f:4: integer with 21 digits (at most 20)"


def test_floats_pass_through_and_overflow_is_refused_with_a_cut_message():
    assert json_line('{"p": 0.25, "q": -1.5e3}', "f:1") == {"p": 0.25, "q": -1500.0}
    with pytest.raises(InputFileError) as e:
        json_line("1e400", "f:2")
    assert str(e.value) == "f:2: number 1e400 is out of range"
    long = "1" + "0" * 30 + ".5e400"
    with pytest.raises(InputFileError) as e:
        json_line(long, "f:5")
    assert str(e.value) == f"f:5: number {long[:20]}... is out of range"
    # exactly 20 characters: no ellipsis; 21: cut with one
    twenty = "1.00000000000000e400"
    assert len(twenty) == 20
    with pytest.raises(InputFileError) as e:
        json_line(twenty, "f:6")
    assert str(e.value) == f"f:6: number {twenty} is out of range"
    with pytest.raises(InputFileError) as e:
        json_line(twenty + "0", "f:7")
    assert str(e.value) == f"f:7: number {twenty}... is out of range"


@pytest.mark.parametrize("const", ["NaN", "Infinity", "-Infinity"])
def test_json_constants_outside_the_standard_are_refused(const):
    with pytest.raises(InputFileError) as e:
        json_line(f'{{"x": {const}}}', "r.jsonl:7")
    assert str(e.value) == f"r.jsonl:7: {const} is not a number JSON allows"


def test_malformed_json_names_line_message_and_column():
    with pytest.raises(InputFileError) as e:
        json_line('{"a": 1,}', "r.jsonl:2")
    err = json.JSONDecodeError  # the message format is the stdlib's: pin ours around it
    try:
        json.loads('{"a": 1,}')
    except err as x:
        expected = f"r.jsonl:2: not valid JSON ({x.msg} at column {x.colno})"
    assert str(e.value) == expected
    assert isinstance(e.value, LsldError) and isinstance(e.value, ValueError)


def test_deep_nesting_is_one_line_not_a_recursion_traceback():
    with pytest.raises(InputFileError) as e:
        json_line("[" * 100_000 + "]" * 100_000, "deep.jsonl:1")
    assert str(e.value) == "deep.jsonl:1: JSON nested too deeply; not a record line"


def test_other_value_errors_are_wrapped_with_their_type(monkeypatch):
    import lsld_engine.records.untrusted as u

    def boom(*a, **k):
        raise ValueError("x" * 200)

    monkeypatch.setattr(u.json, "loads", boom)
    with pytest.raises(InputFileError) as e:
        json_line("1", "f:9")
    assert str(e.value) == "f:9: not valid JSON (ValueError: " + "x" * 80 + ")"


def _npz(path, **arrays):
    np.savez(path, **arrays)
    return path


def test_load_npz_reads_every_array_and_checks_required(tmp_path):
    p = _npz(tmp_path / "a.npz", x=np.arange(3), y=np.array(["a", "b"]))
    got = load_npz(p, required=("x",))
    assert sorted(got) == ["x", "y"]
    np.testing.assert_array_equal(got["x"], [0, 1, 2])
    assert list(got["y"]) == ["a", "b"]
    assert load_npz(str(p)).keys() == got.keys()
    with pytest.raises(InputFileError) as e:
        load_npz(p, required=("x", "z", "w"))
    assert str(e.value) == f"{p}: missing array(s) ['z', 'w']; it holds ['x', 'y']"


def test_load_npz_missing_file_is_file_not_found(tmp_path):
    p = tmp_path / "nope.npz"
    with pytest.raises(FileNotFoundError) as e:
        load_npz(p)
    assert str(e.value) == f"{p}: no such file"
    with pytest.raises(FileNotFoundError):
        load_npz(tmp_path)  # a folder is not a file


def test_load_npz_random_bytes_and_single_npy(tmp_path):
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip at all" * 10)
    with pytest.raises(InputFileError) as e:
        load_npz(junk)
    # random bytes look like a pickle to numpy: refused as such, the exception's type named
    assert str(e.value).startswith(f"{junk}: not a readable .npz archive (ValueError: ")
    single = tmp_path / "one.npz"
    with open(single, "wb") as f:
        np.save(f, np.arange(4))
    with pytest.raises(InputFileError) as e:
        load_npz(single)
    assert str(e.value) == f"{single}: a single .npy array, not an .npz archive of named arrays"


def test_load_npz_object_array_is_refused_without_unpickling(tmp_path):
    p = tmp_path / "obj.npz"
    np.savez(p, ok=np.zeros(2), bad=np.array([{"a": 1}], dtype=object))
    with pytest.raises(InputFileError) as e:
        load_npz(p)
    assert str(e.value) == (f"{p}: array 'bad' is an object array (it would need pickle, which is never "
                            "loaded); save plain numeric or string arrays")


def test_load_npz_corrupt_member_is_unreadable(tmp_path):
    p = tmp_path / "bad.npz"
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("x.npy", b"\x93NUMPY garbage header")
    with pytest.raises(InputFileError) as e:
        load_npz(p)
    msg = str(e.value)
    assert msg.startswith(f"{p}: array 'x' is unreadable (")
    assert "pickle" not in msg


def test_load_npz_member_with_a_bad_crc_names_the_error_type(tmp_path):
    buf = io.BytesIO()
    np.save(buf, np.arange(100))
    raw = buf.getvalue()
    p = tmp_path / "crc.npz"
    with zipfile.ZipFile(p, "w") as z:  # stored, not deflated: the payload bytes are in the file
        z.writestr("x.npy", raw)
    data = bytearray(p.read_bytes())
    data[data.find(raw[-20:]) + 5] ^= 0xFF
    p.write_bytes(bytes(data))
    with pytest.raises(InputFileError) as e:
        load_npz(p)
    assert str(e.value) == f"{p}: array 'x' is unreadable (BadZipFile: Bad CRC-32 for file 'x.npy')"


def test_load_npz_value_error_without_pickle_keeps_its_message(tmp_path, monkeypatch):
    p = _npz(tmp_path / "v.npz", x=np.arange(2))
    real_load = np.load

    class Z:
        def __init__(self, z):
            self.z, self.files = z, z.files

        def __getitem__(self, k):
            raise ValueError("bad shape")

        def __enter__(self):
            return self

        def __exit__(self, *a):
            self.z.close()

    def fake(path, allow_pickle=False):
        assert allow_pickle is False
        return Z(real_load(path))

    import lsld_engine.records.untrusted as u
    monkeypatch.setattr(u.np.lib.npyio, "NpzFile", Z)
    monkeypatch.setattr(u.np, "load", fake)
    with pytest.raises(InputFileError) as e:
        load_npz(p)
    assert str(e.value) == f"{p}: array 'x' is unreadable (bad shape)"


def test_load_npz_never_allows_pickle(tmp_path, monkeypatch):
    p = _npz(tmp_path / "n.npz", x=np.arange(2))
    seen = {}
    real_load = np.load

    def spy(path, *a, **k):
        seen.update(k)
        return real_load(path, *a, **k)

    import lsld_engine.records.untrusted as u
    monkeypatch.setattr(u.np, "load", spy)
    load_npz(p)
    assert seen.get("allow_pickle") is False
