"""Parse results as Parquet: one row per video, events as nested lists (needs pyarrow).

The one schema (:func:`schema`) of ``--format parquet``, for single files and the shards of a
results folder alike. Columns follow the JSONL record (docs/formats.md); fields a record does not
have are null, and reading drops nulls again, so a record survives the round trip::

    video_id  string            status  string ("ok" | "error")     error  string
    path      string            duration  double                   segments  int32
    has_audio bool
    events    struct<audio, visual, audio_visual: list<struct<label string, onset double,
                                                               offset double, score double>>>
    probs, window_probs   struct<audio, visual: list<list<double>>>   (``--save-probs`` only)
"""
from __future__ import annotations

import os
from typing import IO

from lsld_engine.records.events import TRACKS

#: Scalar columns, in order, with their Arrow type names.
SCALARS: tuple[tuple[str, str], ...] = (("video_id", "string"), ("status", "string"), ("error", "string"),
                                        ("path", "string"), ("duration", "float64"), ("segments", "int32"),
                                        ("has_audio", "bool_"))
#: Probability columns of ``--save-probs`` (tracks ``audio`` and ``visual``).
PROB_COLUMNS: tuple[str, ...] = ("probs", "window_probs")


def pyarrow():
    """The pyarrow module, or an ImportError that says how to install it."""
    try:
        import pyarrow as pa
        import pyarrow.parquet  # noqa: F401 - the submodule the writers use
    except ModuleNotFoundError:
        raise ModuleNotFoundError("--format parquet needs pyarrow: pip install 'lsld-engine[parquet]' "
                                  "(or pyarrow)", name="pyarrow") from None
    return pa


def schema():
    """The Arrow schema of a results table."""
    pa = pyarrow()
    event = pa.struct([("label", pa.string()), ("onset", pa.float64()), ("offset", pa.float64()),
                       ("score", pa.float64())])
    probs = pa.struct([(t, pa.list_(pa.list_(pa.float64()))) for t in ("audio", "visual")])
    return pa.schema([*((n, getattr(pa, t)()) for n, t in SCALARS),
                      ("events", pa.struct([(t, pa.list_(event)) for t in TRACKS])),
                      *((c, probs) for c in PROB_COLUMNS)])


def records_to_table(records: list[dict]):
    """A ``pyarrow.Table`` of ``records`` (one row each; fields outside the schema are not kept)."""
    pa = pyarrow()
    s = schema()
    rows = []
    for r in records:
        row = {name: r.get(name) for name in s.names}
        if row["events"] is not None:
            row["events"] = {t: [{"label": e["label"], "onset": e["onset"], "offset": e["offset"],
                                  "score": e.get("score")} for e in row["events"].get(t, [])] for t in TRACKS}
        rows.append(row)
    return pa.Table.from_pylist(rows, schema=s)


def table_to_records(table) -> list[dict]:
    """Records of a results table (nulls dropped, so they read like JSONL records)."""
    out = []
    for row in table.to_pylist():
        rec = {k: v for k, v in row.items() if v is not None}
        if "events" in rec:
            rec["events"] = {t: [{k: v for k, v in e.items() if v is not None} for e in rec["events"].get(t) or []]
                             for t in TRACKS}
        out.append(rec)
    return out


def open_writer(where: str | os.PathLike | IO[bytes]):
    """A ``pyarrow.parquet.ParquetWriter`` of the results schema on a path or binary file."""
    pyarrow()
    import pyarrow.parquet as pq

    return pq.ParquetWriter(str(where) if isinstance(where, (str, os.PathLike)) else where, schema())


def read_parquet_records(path: str | os.PathLike | IO[bytes]) -> dict[str, dict]:
    """``{video_id: record}`` of a results Parquet file (file order, validated like a JSONL line;
    a repeated id raises :class:`~lsld_engine.records.writers.PredictionsError`)."""
    pyarrow()
    import pyarrow.parquet as pq

    from lsld_engine.records.readers import PredictionsError, check_record

    name = str(path) if isinstance(path, (str, os.PathLike)) else getattr(path, "name", "<parquet>")
    try:
        table = pq.read_table(path)
    except Exception as e:  # pyarrow raises ArrowInvalid / OSError for a truncated or foreign file
        raise PredictionsError(f"{name}: not a readable Parquet file ({e})") from None
    missing = [n for n in ("video_id", "status") if n not in table.column_names]
    if missing:
        raise PredictionsError(f"{name}: not a results Parquet file (no column {', '.join(missing)})")
    records: dict[str, dict] = {}
    for i, rec in enumerate(table_to_records(table)):
        where = f"{name}: row {i}"
        check_record(rec, where)
        if rec["video_id"] in records:
            raise PredictionsError(f"{where}: duplicate video_id {rec['video_id']!r}; keep one row per video")
        records[rec["video_id"]] = rec
    return records


def read_parquet_statuses(path: str | os.PathLike) -> dict[str, str]:
    """``{video_id: status}`` of a results Parquet file (cheap: two columns are read)."""
    pyarrow()
    import pyarrow.parquet as pq

    t = pq.read_table(path, columns=["video_id", "status"])
    return dict(zip(map(str, t.column("video_id").to_pylist()), map(str, t.column("status").to_pylist())))
