"""Parse a chunk of JSON records straight into Arrow columns, when they are *plain* sharegpt.

A plain record is ``{"messages": [{"role": str, "content": str}, ...], "images": [str, ...]}``
with exactly those keys, in that order, spelled without escapes (or the same with
``conversations``/``from``/``value``). Such records convert to the canonical schema with an
empty ``meta``, so their columns can be built without touching each record in Python.

The parser (``pyarrow.json``) is stricter than the filter's per-record parser (``orjson``) on
every point that matters here: it refuses lone surrogates, control characters, extra or
repeated keys and values of another type (tests hold it to that), and Arrow's validation of
the result refuses bad UTF-8. What it does not see is key order, and it accepts a
byte-order mark and several objects in one span; those are checked on the bytes:

- every span holds one object: its first and last non-blank bytes are ``{`` and ``}``, and
  the parser returned one row per span (spans are bracket-balanced, so no object can
  straddle two of them);
- the keys come in the plain order, unescaped: in a record that the strict schema accepted,
  the strings are, in order, the record's first key, each turn's four strings, then the
  other key and the image paths, so the expected key of each key position is known and its
  bytes are compared.

Anything else (a chunk the parser refuses is split until the refusals are isolated) is
returned as *slow* rows, for the per-record path, which words the reasons.

With the C extension built, ``native.parse_plain`` does all of this in one pass instead: it
reads each span as exactly the plain layout (keys, their order, the punctuation between
them), validates and unescapes the strings into Arrow buffers, and refuses each point above
itself. It takes a fifth of the CPU time of ``pyarrow.json`` plus the byte checks (0.11
against 0.53 s for the first 65,536 records of the generated 260K set), and a test holds
the two to the same verdicts and values on thousands of edited records.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from curation import speedups
from curation.io import _real_quotes, trim_spans
from curation.record_columns import one_array

#: a run of spans the parser refuses is halved until the refusals are isolated in runs of at
#: most this many records, parsing at most ``SPLIT_BUDGET`` times the chunk's records in all
#: (a chunk of mostly odd records is soon left to the per-record path as a whole)
MIN_SPLIT = 4
SPLIT_BUDGET = 6


@dataclass(frozen=True)
class PlainKeys:
    """The key spelling of one plain sharegpt layout."""

    messages: str
    role: str
    content: str
    roles_plain: frozenset[str]  # raw roles the converter keeps without noting them in meta
    role_alias: dict[str, str]  # raw role -> canonical role
    meta: str  # the canonical ``meta`` of such a record

    def schema(self) -> pa.Schema:
        turn = pa.struct([(self.role, pa.string()), (self.content, pa.string())])
        return pa.schema([(self.messages, pa.list_(turn)), ("images", pa.list_(pa.string()))])


MESSAGES = PlainKeys(
    "messages",
    "role",
    "content",
    roles_plain=frozenset(),  # any role but human/gpt, see ``plain_roles_ok``
    role_alias={},
    meta="{}",
)
CONVERSATIONS = PlainKeys(
    "conversations",
    "from",
    "value",
    roles_plain=frozenset({"human", "gpt", "system"}),
    role_alias={"human": "user", "gpt": "assistant"},
    meta='{"sharegpt": {"messages_key": "conversations"}}',
)


@dataclass
class ParsedChunk:
    """A chunk's plain records as one Arrow table, and the records left to the per-record path.

    ``rows[i]`` is the chunk index of ``table`` row ``i`` (ascending); ``slow`` lists the
    chunk indices that are not in the table.
    """

    table: pa.Table
    rows: np.ndarray
    slow: np.ndarray


def _span_edges_ok(a: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Per span: its first non-blank byte is ``{`` and its last is ``}``."""
    lo, hi = trim_spans(a, starts, ends)
    ok = lo < hi
    ok[ok] = (a[lo[ok]] == 0x7B) & (a[hi[ok] - 1] == 0x7D)
    return ok


def _read(data: memoryview, schema: pa.Schema, multiline: bool) -> pa.Table | None:
    import pyarrow.json as pj

    opts = pj.ParseOptions(
        explicit_schema=schema, newlines_in_values=multiline, unexpected_field_behavior="error"
    )
    try:
        # one block: the chunk is small, and each worker process parses its own chunks
        table = pj.read_json(
            pa.py_buffer(data),
            read_options=pj.ReadOptions(use_threads=False, block_size=max(len(data), 1 << 16) + 1),
            parse_options=opts,
        )
        table.validate(full=True)  # the parser copies string bytes without checking UTF-8
    except (pa.ArrowException, ValueError):  # the parser's refusals, bad UTF-8
        return None
    return table


def _segments(
    a: np.ndarray, starts: np.ndarray, ends: np.ndarray, schema: pa.Schema, multiline: bool
) -> list[tuple[int, int, pa.Table | None]]:
    """``(first, stop, table or None)`` runs of spans, splitting runs the parser refuses.

    Only runs of spans that start with ``{`` and end with ``}`` are parsed (the others are
    not plain records), so a run parsed into one row per span is one object per span.
    """
    out: list[tuple[int, int, pa.Table | None]] = []
    edges = np.concatenate(([False], _span_edges_ok(a, starts, ends), [False]))
    flips = np.flatnonzero(edges[1:] != edges[:-1])  # where runs of good spans start and stop
    todo = [(int(lo), int(hi)) for lo, hi in zip(flips[0::2], flips[1::2], strict=True)][::-1]
    bad = np.flatnonzero(~edges[1:-1])
    out += [(int(i), int(i) + 1, None) for i in bad]
    view = memoryview(a)
    budget = SPLIT_BUDGET * len(starts)
    while todo:
        lo, hi = todo.pop()
        if budget < 0:
            out.append((lo, hi, None))
            continue
        budget -= hi - lo
        table = _read(view[starts[lo] : ends[hi - 1]], schema, multiline)
        if table is not None and table.num_rows == hi - lo:
            out.append((lo, hi, table))
        elif hi - lo <= MIN_SPLIT:
            out.append((lo, hi, None))
        else:
            mid = (lo + hi) // 2
            todo += [(mid, hi), (lo, mid)]  # popped in order: lo..mid first
    out.sort(key=lambda s: s[0])
    return out


def _keys_ok(
    a: np.ndarray,
    quotes: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    table: pa.Table,
    keys: PlainKeys,
) -> np.ndarray:
    """Per row: non-null lists, the exact number of strings, keys in the plain order.

    ``quotes`` are the offsets of the unescaped quotes of ``a``.
    """
    import pyarrow.compute as pc

    msgs = one_array(table.column(0))
    imgs = one_array(table.column(1))
    n = len(msgs)
    m = pc.list_value_length(msgs).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    k = pc.list_value_length(imgs).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    ok = (m > 0) & imgs.is_valid().to_numpy(zero_copy_only=False)
    first = np.searchsorted(quotes, starts)
    count = np.searchsorted(quotes, ends) - first
    ok &= count == 2 * (2 + 4 * m + k)
    # the string that opens each key: record key 0, each turn's key 1 + 4j and 3 + 4j, then the
    # record's second key at 1 + 4m (string t of a row opens at quote ``first + 2t``)
    rows = np.flatnonzero(ok)
    turn_row = np.repeat(rows, m[rows])
    turn_no = np.arange(len(turn_row)) - np.repeat(np.cumsum(m[rows]) - m[rows], m[rows])
    base = first[turn_row] + 2 * (1 + 4 * turn_no)
    checks = (
        (first[rows], rows, keys.messages),
        (base, turn_row, keys.role),
        (base + 4, turn_row, keys.content),
        (first[rows] + 2 * (1 + 4 * m[rows]), rows, "images"),
    )
    for qi, owner, key in checks:
        want = np.frombuffer(f'"{key}"'.encode(), dtype=np.uint8)
        pos = quotes[qi]
        window = a[np.minimum(pos[:, None] + np.arange(len(want)), len(a) - 1)]
        bad = ~(window == want).all(axis=1)
        ok[owner[bad]] = False
    assert len(ok) == n
    return ok


def parse_plain(buf: bytes, starts: np.ndarray, ends: np.ndarray, fmt: str, keys: PlainKeys) -> ParsedChunk:
    """Parse the spans ``buf[starts[i]:ends[i]]`` of a JSON list (``fmt="json"``) or JSON Lines."""
    if speedups.native is not None:
        return _parse_native(buf, starts, ends, keys)
    return _parse_arrow(buf, starts, ends, fmt, keys)


def _parse_arrow(buf: bytes, starts: np.ndarray, ends: np.ndarray, fmt: str, keys: PlainKeys) -> ParsedChunk:
    """:func:`parse_plain` by ``pyarrow.json`` and the checks above (without the C extension)."""
    a = np.frombuffer(buf, dtype=np.uint8)
    multiline = fmt == "json"
    if multiline and len(starts) > 1:
        # the list's commas become blanks: the parser reads a stream of objects
        a = a.copy()
        a[ends[:-1]] = 0x0A
    schema = keys.schema()
    quotes = None
    tables, rows, slow = [], [], []
    for lo, hi, table in _segments(a, starts, ends, schema, multiline):
        idx = np.arange(lo, hi)
        if table is None:
            slow.append(idx)
            continue
        if quotes is None:
            quotes, _ = _real_quotes(a, 0)  # spans start outside strings
        ok = _keys_ok(a, quotes, starts[lo:hi], ends[lo:hi], table, keys)
        if not ok.all():
            slow.append(idx[~ok])
            table = table.filter(pa.array(ok))
            idx = idx[ok]
        tables.append(table)
        rows.append(idx)
    empty = np.zeros(0, dtype=np.int64)
    return ParsedChunk(
        table=pa.concat_tables(tables) if tables else schema.empty_table(),
        rows=np.concatenate(rows) if rows else empty,
        slow=np.sort(np.concatenate(slow)) if slow else empty,
    )


def _parse_native(buf: bytes, starts: np.ndarray, ends: np.ndarray, keys: PlainKeys) -> ParsedChunk:
    """:func:`parse_plain` by the compiled parser (``native.parse_plain``), which reads each
    span as exactly the plain layout (keys, order, punctuation), refusing what ``pyarrow.json``
    and the checks above refuse, and writes the strings straight into Arrow buffers."""
    ok_raw, turns, role_off, role, content_off, content, image_rows, image_off, image = (
        speedups.native.parse_plain(
            buf,
            np.ascontiguousarray(starts, dtype=np.int64),
            np.ascontiguousarray(ends, dtype=np.int64),
            keys.messages.encode(),
            keys.role.encode(),
            keys.content.encode(),
        )
    )
    ok = np.frombuffer(ok_raw, dtype=np.bool_)
    schema = keys.schema()

    def strings(offsets: bytes, data: bytes) -> pa.Array:
        return pa.Array.from_buffers(
            pa.string(), len(offsets) // 4 - 1, [None, pa.py_buffer(offsets), pa.py_buffer(data)]
        )

    turn_type = schema.field(0).type.value_type
    turn = pa.StructArray.from_arrays(
        [strings(role_off, role), strings(content_off, content)], fields=list(turn_type)
    )
    n = len(turns) // 4 - 1
    msgs = pa.Array.from_buffers(schema.field(0).type, n, [None, pa.py_buffer(turns)], children=[turn])
    imgs = pa.Array.from_buffers(
        schema.field(1).type, n, [None, pa.py_buffer(image_rows)], children=[strings(image_off, image)]
    )
    return ParsedChunk(
        table=pa.Table.from_arrays([msgs, imgs], schema=schema),
        rows=np.flatnonzero(ok),
        slow=np.flatnonzero(~ok),
    )


def plain_rows(batch: pa.RecordBatch, keys: PlainKeys) -> ParsedChunk:
    """The same for a batch of a Parquet file or a saved dataset (typed columns: no key order)."""
    import pyarrow.compute as pc

    n = batch.num_rows
    schema = keys.schema()
    everything = np.arange(n)
    if batch.schema.names != schema.names:
        return ParsedChunk(schema.empty_table(), np.zeros(0, dtype=np.int64), everything)
    try:
        table = pa.Table.from_batches([batch]).cast(schema)
    except (pa.ArrowException, ValueError):  # other types (image structs, numbers): per record
        return ParsedChunk(schema.empty_table(), np.zeros(0, dtype=np.int64), everything)
    msgs = one_array(table.column(0))
    imgs = one_array(table.column(1))
    turns = msgs.flatten()
    parent = pc.list_parent_indices(msgs).to_numpy(zero_copy_only=False)
    ok = (
        pc.list_value_length(msgs).fill_null(0).to_numpy(zero_copy_only=False) > 0
    ) & imgs.is_valid().to_numpy(zero_copy_only=False)
    for values, owner in (
        (turns, parent),
        *((child, parent) for child in turns.flatten()),
        (imgs.flatten(), pc.list_parent_indices(imgs).to_numpy(zero_copy_only=False)),
    ):
        ok[owner[values.is_null().to_numpy(zero_copy_only=False)]] = False
    rows = np.flatnonzero(ok)
    return ParsedChunk(table.filter(pa.array(ok)), rows, np.flatnonzero(~ok))
