"""Reading files a user hands us (JSON lines, ``.npz`` archives) with one-line errors, never a traceback.

Hostile or broken content (a 5,000-digit integer, a 400-digit float that overflows to infinity,
a 100,000-deep nested array, ``NaN``, an object array that would need pickle) becomes an
:class:`InputFileError` whose message names the file (and line) and the problem; the CLI turns it
into one ``error:`` line and exit status 2.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

from lsld_engine.errors import LsldError

#: Longest integer literal accepted in a JSON line (digits). int64 needs 19; anything longer is
#: refused before Python spends quadratic time converting it.
MAX_INT_DIGITS = 20


class InputFileError(LsldError, ValueError):
    """A malformed input file; the message names the file (and line) and the problem."""


def _int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise _Refused(f"integer with {len(text.lstrip('-'))} digits (at most {MAX_INT_DIGITS})")
    return int(text)


def _float(text: str) -> float:
    x = float(text)
    if not math.isfinite(x):
        raise _Refused(f"number {text[:20]}{'...' if len(text) > 20 else ''} is out of range")
    return x


def _constant(name: str):
    raise _Refused(f"{name} is not a number JSON allows")


class _Refused(ValueError):
    pass


def json_line(text: str, where: str):
    """``json.loads(text)`` for one line of a JSONL file; anything malformed or hostile raises
    :class:`InputFileError` ``"<where>: ..."`` (``where`` is e.g. ``"results.jsonl:12"``)."""
    try:
        return json.loads(text, parse_int=_int, parse_float=_float, parse_constant=_constant)
    except _Refused as e:
        raise InputFileError(f"{where}: {e}") from None
    except json.JSONDecodeError as e:
        raise InputFileError(f"{where}: not valid JSON ({e.msg} at column {e.colno})") from None
    except RecursionError:  # the C decoder's own depth guard (thousands of nested brackets)
        raise InputFileError(f"{where}: JSON nested too deeply; not a record line") from None
    except ValueError as e:  # e.g. Python's own integer-digits limit
        raise InputFileError(f"{where}: not valid JSON ({type(e).__name__}: {str(e)[:80]})") from None


def load_npz(path: str | os.PathLike, required: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """All arrays of an ``.npz`` archive, read without pickle.

    Raises :class:`InputFileError` naming ``path`` for a file that is not an npz archive, an object
    array (it would need pickle, which we never load), or a missing ``required`` key;
    ``FileNotFoundError`` when ``path`` does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        z = np.load(path, allow_pickle=False)
    except Exception as e:  # pickled data, random bytes, a truncated zip
        raise InputFileError(f"{path}: not a readable .npz archive ({type(e).__name__}: {e})") from None
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise InputFileError(f"{path}: a single .npy array, not an .npz archive of named arrays")
    arrays: dict[str, np.ndarray] = {}
    with z:
        for k in z.files:
            try:
                arrays[k] = z[k]
            except ValueError as e:
                if "pickle" in str(e).lower():
                    raise InputFileError(f"{path}: array {k!r} is an object array (it would need pickle, "
                                         "which is never loaded); save plain numeric or string arrays") from None
                raise InputFileError(f"{path}: array {k!r} is unreadable ({e})") from None
            except Exception as e:
                raise InputFileError(f"{path}: array {k!r} is unreadable ({type(e).__name__}: {e})") from None
    missing = [k for k in required if k not in arrays]
    if missing:
        raise InputFileError(f"{path}: missing array(s) {missing}; it holds {sorted(arrays)}")
    return arrays
