"""Input readers: the JSON-list span scanner, JSON Lines, format detection, bad files."""

from __future__ import annotations

import json

import orjson
import pytest

import curation.io as cio
from curation.io import BadInputError, InputSource, detect_format

TRICKY = [
    {"messages": [{"role": "user", "content": 'a "quoted" word, and [brackets] {braces}'}], "images": []},
    {"messages": [{"role": "user", "content": "ends with a backslash \\"}], "images": ["x\\y.png"]},
    {"messages": [{"role": "user", "content": 'escaped \\" then a quote: \\\\"'}], "images": []},
    {"messages": [{"role": "user", "content": "∠ABC = 30°, 日本語, emoji 🙂"}], "images": []},
    {"nested": [[1, [2, {"x": "]"}]], {"y": "}, {"}], "z": None},
    [1, 2, 3],
    "a string record",
    42,
    {},
]


def _spans(path) -> list[bytes]:
    src = InputSource(path)
    out = []
    for task in src.tasks(3):
        buf = task.read_range()
        out.extend(task.spans(buf))
    assert src.n_records == len(out)
    return out


@pytest.mark.parametrize("indent", [None, 2, 4])  # compact, Mulberry's, wider
@pytest.mark.parametrize("block", [7, 64, 1 << 20])  # block edges inside strings, escapes and records
def test_scanner_finds_every_record_exactly(tmp_path, monkeypatch, indent, block):
    monkeypatch.setattr(cio, "BLOCK_SIZE", block)
    path = tmp_path / "d.json"
    path.write_text(json.dumps(TRICKY, indent=indent, ensure_ascii=False), encoding="utf-8")
    spans = _spans(path)
    assert [orjson.loads(s) for s in spans] == TRICKY


@pytest.mark.parametrize("text", ["[]", " [ ] \n", "\ufeff[]"])  # empty lists, with a BOM
def test_empty_lists_have_no_records(tmp_path, text):
    path = tmp_path / "e.json"
    path.write_text(text, encoding="utf-8")
    assert _spans(path) == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[{"a": 1},\n {"b": 2', "truncated JSON"),  # the file ends inside a record
        (
            '[{"a": "unterminated},\n {"b": 2}]',
            "truncated JSON: the file ends inside a string",
        ),  # an open string
        ('[{"a": 1}]\n{"b": 2}', "unexpected data after the end of the list"),  # trailing data
        ('[{"a": 1}}]', "where the list should close"),  # wrong closing bracket
        ("", "empty"),  # empty file
        ("   \n", "empty"),  # whitespace only
    ],
)
def test_broken_json_lists_name_file_line_and_byte(tmp_path, text, message):
    path = tmp_path / "bad.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(BadInputError, match=message) as err:
        InputSource(path, fmt="json" if text.strip() else None).tasks(10).__next__()
    if text.strip():
        assert str(path) in str(err.value)
        assert "line" in str(err.value)
        assert "byte" in str(err.value)


def test_truncated_list_with_skip_bad_lines_yields_the_partial_tail(tmp_path):
    path = tmp_path / "t.json"
    path.write_text('[{"a": 1},\n {"b": 2},\n {"c": ', encoding="utf-8")
    spans = [s for t in InputSource(path, skip_bad_lines=True).tasks(10) for s in t.spans(t.read_range())]
    assert [orjson.loads(s) for s in spans[:2]] == [{"a": 1}, {"b": 2}]
    assert spans[2].strip() == b'{"c":'


def test_jsonl_lines_blank_lines_and_line_numbers(tmp_path, monkeypatch):
    monkeypatch.setattr(cio, "BLOCK_SIZE", 16)
    path = tmp_path / "d.jsonl"
    path.write_bytes(b'{"a": 1}\n\n   \n{"b": "x\\ny"}\r\n{"c": 3}')  # blank, spaces, CRLF, no final newline
    src = InputSource(path)
    tasks = list(src.tasks(2))
    spans = [s for t in tasks for s in t.spans(t.read_range())]
    lines = [int(n) for t in tasks for n in t.lines]
    assert [orjson.loads(s) for s in spans] == [{"a": 1}, {"b": "x\ny"}, {"c": 3}]
    assert lines == [1, 4, 5]


@pytest.mark.parametrize(
    ("name", "content", "fmt"),
    [
        ("a.json", "[{}]", "json"),  # a list
        ("a.json", '{"a": 1}\n{"a": 2}', "jsonl"),  # JSON Lines under .json
        ("a.jsonl", "[1]", "jsonl"),  # the extension decides
        ("a.data", "  [ ]", "json"),  # sniffed
    ],
)
def test_detect_format(tmp_path, name, content, fmt):
    path = tmp_path / name
    path.write_text(content)
    assert detect_format(path) == fmt


def test_detect_format_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        detect_format(tmp_path / "nope.json")
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(BadInputError, match="cannot tell the format"):
        detect_format(tmp_path / "x.txt")
    (tmp_path / "d").mkdir()
    with pytest.raises(ValueError, match="not a saved Hugging Face dataset"):
        detect_format(tmp_path / "d")


def test_trim_spans_strips_blank_edges_like_bytes_strip():
    import random

    import numpy as np

    from curation.io import trim_spans

    rng = random.Random(0)
    parts, starts, ends, pos = [], [], [], 0
    for _ in range(300):
        # blank runs longer than the vectorised steps too, and all-blank spans
        body = rng.choice([b"", b"{}", b'{"a": 1}', b"x"])
        text = bytes(rng.choice(b" \t\r\n") for _ in range(rng.randrange(20))) + body
        text += bytes(rng.choice(b" \t\r\n") for _ in range(rng.randrange(20)))
        starts.append(pos)
        ends.append(pos + len(text))
        parts.append(text + b",")
        pos += len(text) + 1
    buf = b"".join(parts)
    lo, hi = trim_spans(np.frombuffer(buf, dtype=np.uint8), np.array(starts), np.array(ends))
    for s, e, a, b in zip(starts, ends, lo.tolist(), hi.tolist(), strict=True):
        assert buf[a:b] == buf[s:e].strip(b" \t\r\n")
        assert s <= a <= b <= e
