"""The filter's output writers: kept.json copied on a thread, Parquet row groups on a thread."""

from __future__ import annotations

import json
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curation.filter_pipeline import _KeptJson
from curation.io import BadInputError
from curation.parquet_out import RowGroupWriter

RECORDS = [{"id": i, "text": f"record {i} " + "x" * (i * 37 % 300)} for i in range(200)]


def _source(tmp_path):
    """A JSON list file, and the (offset, length) of each record's text in it."""
    texts = [json.dumps(r).encode() for r in RECORDS]
    data, spans = bytearray(b"[\n"), []
    for i, t in enumerate(texts):
        spans.append((len(data), len(t)))
        data += t + (b",\n" if i < len(texts) - 1 else b"\n]\n")
    path = tmp_path / "in.json"
    path.write_bytes(bytes(data))
    return path, spans


def _keep(spans, wanted):
    return [spans[i] for i in wanted]


@pytest.mark.parametrize("kernel_copy", [True, False])
def test_kept_json_holds_the_chosen_records_in_order(tmp_path, monkeypatch, kernel_copy):
    src, spans = _source(tmp_path)
    if not kernel_copy:  # another file system: copy_file_range refuses, the bytes go through us

        def refuse(*args):
            raise OSError(18, "Invalid cross-device link")

        monkeypatch.setattr(os, "copy_file_range", refuse, raising=False)
    wanted = [i for i in range(len(RECORDS)) if i % 7 != 3]
    out = tmp_path / "kept.json"
    kept = _KeptJson(out)
    fd = os.open(src, os.O_RDONLY)
    try:
        for start in range(0, len(wanted), 15):  # many small calls, as tasks come in
            part = wanted[start : start + 15]
            kept.copy(fd, _keep(spans, part), len(part))
        kept.write([json.dumps({"id": "extra"}).encode()], 1)
        kept.close()
    finally:
        os.close(fd)
    assert kept.count == len(wanted) + 1
    assert json.loads(out.read_bytes()) == [RECORDS[i] for i in wanted] + [{"id": "extra"}]


def test_kept_json_of_nothing_is_an_empty_list(tmp_path):
    kept = _KeptJson(tmp_path / "kept.json")
    kept.close()
    assert json.loads((tmp_path / "kept.json").read_text()) == []


def test_an_input_that_shrinks_while_it_is_copied_is_an_error_not_a_short_file(tmp_path, monkeypatch):
    src, spans = _source(tmp_path)
    monkeypatch.setattr(os, "copy_file_range", lambda *a: 0, raising=False)  # end of file
    monkeypatch.setattr(os, "pread", lambda *a: b"")
    kept = _KeptJson(tmp_path / "kept.json")
    fd = os.open(src, os.O_RDONLY)
    try:
        kept.copy(fd, spans[:3], 3)
        with pytest.raises(BadInputError, match="shrank"):
            kept.close()
    finally:
        kept.abort()
        os.close(fd)


SCHEMA = pa.schema([("i", pa.int64()), ("s", pa.string())])


def _table(lo, hi):
    return pa.table({"i": range(lo, hi), "s": [f"row {k}" for k in range(lo, hi)]}, schema=SCHEMA)


@pytest.mark.parametrize("background", [False, True])
def test_row_groups_are_written_in_order_whole(tmp_path, background):
    path = tmp_path / "out.parquet"
    schema = SCHEMA
    w = RowGroupWriter(path, schema, 100, background=background, compression="zstd")
    for lo in range(0, 1000, 30):
        w.write([_table(lo, lo + 30)])
    w.close()
    f = pq.ParquetFile(path)
    assert f.read().equals(_table(0, 1020))
    assert f.metadata.num_row_groups == 9  # 120 rows at a time (4 parts), then the last 60
    assert w.count == 1020


def test_a_row_group_that_fails_on_the_thread_fails_the_close(tmp_path):
    schema = SCHEMA
    w = RowGroupWriter(tmp_path / "no such dir" / "out.parquet", schema, 10, background=True)
    w.write([_table(0, 20)])  # the file is opened on the thread, and cannot be
    with pytest.raises(OSError, match="no such dir"):
        w.close()
    w.abort()  # after a failure, nothing more is raised


def test_abort_drops_buffered_rows_and_closes_the_file(tmp_path):
    path = tmp_path / "out.parquet"
    w = RowGroupWriter(path, SCHEMA, 10, background=True)
    w.write([_table(0, 25)])
    w.write([_table(25, 30)])
    w.abort()
    assert pq.ParquetFile(path).read().equals(_table(0, 25))
