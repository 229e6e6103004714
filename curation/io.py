"""Readers of raw training data, cut into picklable units of work (:class:`Task`).

==================  =========================================================================
input               how it is read
==================  =========================================================================
JSON list           ``[{...}, {...}]`` (Mulberry/LLaMA-Factory sharegpt, PeBR GRPO): a
                    vectorised scan finds each record's byte span without parsing; workers
                    parse their spans, and kept records are written back byte for byte.
JSON Lines          one record per line (blank lines are skipped).
Parquet             row batches (sharegpt- or PeBR-shaped columns).
saved HF dataset    ``datasets.load_from_disk`` (a ``DatasetDict`` needs ``split``).
==================  =========================================================================

A large JSON file is never turned into millions of Python objects at once: the scanner
keeps a few numpy arrays per 16 MiB block, and each worker parses one task's records.
Bad input (a truncated list, a line that is not JSON, bytes that are not UTF-8) raises
:class:`BadInputError` naming the file, the line and the byte offset.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from curation import speedups

logger = logging.getLogger(__name__)

FORMATS = ("json", "jsonl", "parquet", "hf")
BLOCK_SIZE = 4 << 20  # bytes scanned at a time (its numpy temporaries are a few times this)
MAX_TASK_BYTES = 32 << 20  # a task never holds more than this much JSON text
_WS = b" \t\r\n"
_SHORT = 64  # spans shorter than this are checked for being blank


class BadInputError(ValueError):
    """An input file that cannot be read as the format it claims to be."""


def describe_position(path: str | os.PathLike[str], offset: int) -> str:
    """``"line L (byte B)"`` for a byte offset in a file, counting lines from 1."""
    line = 1
    done = 0
    with open(path, "rb") as f:
        while done < offset:
            block = f.read(min(BLOCK_SIZE, offset - done))
            if not block:
                break
            line += block.count(b"\n")
            done += len(block)
    return f"line {line} (byte {offset})"


def line_of(path: str | os.PathLike[str], offset: int) -> int:
    return int(describe_position(path, offset).split()[1])


# --------------------------------------------------------------------------- tasks


@dataclass
class Task:
    """One unit of work: a run of records, in input order.

    ``first`` is the input index of the first record. Span tasks (JSON, JSONL) carry a byte
    range of the file and each record's ``[start, end)`` offsets relative to it; row tasks
    (Parquet, HF) carry an Arrow record batch.
    """

    number: int
    first: int
    path: str
    fmt: str
    base: int = 0
    length: int = 0
    starts: np.ndarray | None = None
    ends: np.ndarray | None = None
    lines: np.ndarray | None = None
    rows: Any = None  # pyarrow.RecordBatch

    def __len__(self) -> int:
        return len(self.starts) if self.starts is not None else self.rows.num_rows

    def read_range(self) -> bytes:
        """The task's bytes of the file (span tasks)."""
        fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        try:
            parts = []
            done = 0
            while done < self.length:
                chunk = os.pread(fd, self.length - done, self.base + done)
                if not chunk:
                    raise BadInputError(f"{self.path}: the file shrank while it was being read")
                parts.append(chunk)
                done += len(chunk)
        finally:
            os.close(fd)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def spans(self, buf: bytes) -> list[bytes]:
        return [buf[s:e] for s, e in zip(self.starts.tolist(), self.ends.tolist(), strict=True)]


def _tasks_from_spans(
    path: str,
    fmt: str,
    spans: Iterator[tuple[np.ndarray, np.ndarray, np.ndarray | None, bool]],
    chunk_records: int,
) -> Iterator[Task]:
    """Group global ``(starts, ends, lines)`` arrays into tasks of at most ``chunk_records``."""
    pend_s: list[np.ndarray] = []
    pend_e: list[np.ndarray] = []
    pend_l: list[np.ndarray] = []
    pending = 0
    number = first = 0

    def cut(n: int) -> Task:
        nonlocal pend_s, pend_e, pend_l, pending, number, first
        s = np.concatenate(pend_s) if len(pend_s) > 1 else pend_s[0]
        e = np.concatenate(pend_e) if len(pend_e) > 1 else pend_e[0]
        ln = (np.concatenate(pend_l) if len(pend_l) > 1 else pend_l[0]) if pend_l else None
        # also cap the bytes of one task (a few huge records must not make a huge task)
        limit = int(np.searchsorted(e - s[0], MAX_TASK_BYTES, side="right"))
        n = max(1, min(n, limit))
        base = int(s[0])
        task = Task(
            number=number,
            first=first,
            path=path,
            fmt=fmt,
            base=base,
            length=int(e[n - 1]) - base,
            starts=s[:n] - base,
            ends=e[:n] - base,
            lines=ln[:n] if ln is not None else None,
        )
        pend_s, pend_e = [s[n:]], [e[n:]]
        pend_l = [ln[n:]] if ln is not None else []
        pending -= n
        number += 1
        first += n
        return task

    for starts, ends, lines, _is_tail in spans:
        if len(starts) == 0:
            continue
        pend_s.append(starts)
        pend_e.append(ends)
        if lines is not None:
            pend_l.append(lines)
        pending += len(starts)
        while pending >= chunk_records:
            yield cut(chunk_records)
    while pending > 0:
        yield cut(pending)


# --------------------------------------------------------------------------- JSON list scan

# classes of structural bytes, and how each changes the depth
_OBJ, _ARR, _CLOSE_OBJ, _CLOSE_ARR, _COMMA = range(3, 8)
_DELTA = np.array([0, 0, 0, 1, 1, -1, -1, 0], dtype=np.int64)


def _first_byte(path: str) -> tuple[int, int]:
    """(offset, byte) of the first non-whitespace byte after an optional UTF-8 BOM; (-1, -1) if none."""
    with open(path, "rb") as f:
        head = f.read(3)
        offset = 3 if head == b"\xef\xbb\xbf" else 0
        f.seek(offset)
        while block := f.read(1 << 16):
            stripped = block.lstrip(_WS)
            if stripped:
                return offset + len(block) - len(stripped), stripped[0]
            offset += len(block)
    return -1, -1


_BLANK = np.zeros(256, dtype=bool)
_BLANK[list(_WS)] = True
_TRIM_STEPS = 8  # blank bytes skipped vectorised at each span edge; longer runs are stripped one by one


def trim_spans(a: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``[lo, hi)`` of each span ``a[starts[i]:ends[i]]`` without the blanks at its edges."""
    lo = starts.astype(np.int64)  # copies
    hi = ends.astype(np.int64)
    for _ in range(_TRIM_STEPS):
        move = lo < hi
        move[move] = _BLANK[a[lo[move]]]
        lo[move] += 1
        move = hi > lo
        move[move] = _BLANK[a[hi[move] - 1]]
        hi[move] -= 1
    longer = lo < hi
    longer[longer] = _BLANK[a[lo[longer]]] | _BLANK[a[hi[longer] - 1]]
    for k in np.flatnonzero(longer).tolist():
        text = a[lo[k] : hi[k]].tobytes()
        left = len(text) - len(text.lstrip(_WS))
        lo[k] += left
        hi[k] -= len(text) - len(text.rstrip(_WS)) if left < len(text) else 0
    return lo, hi


def _real_quotes(a: np.ndarray, bs_carry: int) -> tuple[np.ndarray, int]:
    """Positions of unescaped quotes in a block (uint8 array), and the backslash run at its end.

    The compiled loop when it is built, else :func:`_real_quotes_np`.
    """
    if speedups.native is not None:
        return speedups.real_quotes(a, bs_carry)
    return _real_quotes_np(a, bs_carry)


def _real_quotes_np(a: np.ndarray, bs_carry: int) -> tuple[np.ndarray, int]:
    """Positions of unescaped quotes in a block, and the backslash run at its end.

    A quote is escaped when an odd run of backslashes precedes it; ``bs_carry`` is the run
    that ended the previous block. Quotes after a backslash are rare, so they are checked
    one by one.
    """
    q = np.flatnonzero(a == 0x22)
    if len(q):
        before = np.zeros(len(q), dtype=bool)
        inner = q > 0
        before[inner] = a[q[inner] - 1] == 0x5C
        if q[0] == 0 and bs_carry:
            before[0] = True
        cand = np.flatnonzero(before)
        if len(cand):
            escaped = []
            for k in cand.tolist():
                p = int(q[k])
                j = p - 1
                while j >= 0 and a[j] == 0x5C:
                    j -= 1
                run = p - 1 - j + (bs_carry if j < 0 else 0)
                if run % 2:
                    escaped.append(k)
            if escaped:
                q = np.delete(q, escaped)
    n = len(a)
    j = n - 1
    while j >= 0 and a[j] == 0x5C:
        j -= 1
    run = n - 1 - j + (bs_carry if j < 0 else 0)
    return q, run


def _between(last_delim: int, dpos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The element spans between the delimiters ``dpos`` (file offsets), continuing from the
    delimiter ``last_delim`` of the blocks before (-1: none yet)."""
    all_delims = np.concatenate(([last_delim], dpos)) if last_delim >= 0 else dpos
    return all_delims[:-1] + 1, all_delims[1:]


class _ListScanner:
    """Finds the byte spans of the elements of a top-level JSON list, block by block.

    Quotes preceded by an odd run of backslashes are escaped; the rest toggle "inside a
    string". Brackets and commas outside strings give the depth; commas at depth 1 separate
    elements. Everything is numpy over the positions of the few interesting bytes, so a
    400 MB file scans in well under a second. Each element's text is only parsed later,
    by ``orjson`` in a worker, which is what checks it is valid JSON.
    """

    def __init__(self, path: str, skip_bad: bool, block_size: int | None = None) -> None:
        self.path = path
        self.skip_bad = skip_bad
        self.block_size = block_size or BLOCK_SIZE

    def _fail(self, offset: int, problem: str) -> BadInputError:
        return BadInputError(f"{self.path}: {describe_position(self.path, offset)}: {problem}")

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray, None, bool]]:
        start, first = _first_byte(self.path)
        if first == -1:
            raise BadInputError(f"{self.path}: the file is empty; expected a JSON list of records")
        if first != ord("["):
            raise self._fail(start, f"expected a JSON list of records ('['), found {chr(first)!r}")
        in_string = 0  # parity: 1 inside a string
        bs_carry = 0  # backslashes ending the previous block
        depth = 0
        last_delim = -1  # offset of the last '[' or depth-1 ','
        closed_at = -1
        commas = 0
        offset = start
        with open(self.path, "rb") as f:
            f.seek(start)
            while block := f.read(self.block_size):
                if closed_at >= 0:
                    if block.strip(_WS):
                        rest = len(block) - len(block.lstrip(_WS))
                        raise self._fail(offset + rest, "unexpected data after the end of the list")
                    offset += len(block)
                    continue
                if speedups.native is not None:
                    fast = speedups.scan_list_block(block, in_string, bs_carry, depth, last_delim == -1)
                    if fast is not None:  # the plain case: commas between records
                        dpos, n_commas, in_string, bs_carry, depth = fast
                        if len(dpos):
                            starts, ends = _between(last_delim, dpos + offset)
                            commas += n_commas
                            last_delim = int(dpos[-1]) + offset
                            if len(starts):
                                yield starts, ends, None, False
                        offset += len(block)
                        continue
                a = np.frombuffer(block, dtype=np.uint8)
                real_quotes, bs_carry = _real_quotes(a, bs_carry)
                # '{' 0x7B and '[' 0x5B (and '}' 0x7D, ']' 0x5D) differ only in bit 0x20
                folded = a | 0x20
                opens = folded == 0x7B
                closes = folded == 0x7D
                commas_mask = a == 0x2C
                sp = np.flatnonzero(opens | closes | commas_mask)
                is_list = (a[sp] & 0x20) == 0
                sc = np.where(
                    commas_mask[sp],
                    _COMMA,
                    np.where(
                        opens[sp], np.where(is_list, _ARR, _OBJ), np.where(is_list, _CLOSE_ARR, _CLOSE_OBJ)
                    ),
                ).astype(np.int64)
                inside = (np.searchsorted(real_quotes, sp) + in_string) & 1
                outside = inside == 0
                sp = sp[outside]
                sc = sc[outside]
                in_string = (in_string + len(real_quotes)) & 1
                delta = _DELTA[sc]
                depth_before = depth + np.cumsum(delta) - delta
                if len(sc):
                    depth = int(depth_before[-1] + delta[-1])
                if len(depth_before) and depth_before.min() < 0:
                    k = int(np.argmax(depth_before < 0))
                    raise self._fail(offset + int(sp[k]), "unbalanced brackets")
                at1 = depth_before == 1
                top = depth_before == 0
                # structure outside the list (after it closed), or a '}' closing the list: the
                # first of either is the error
                outside_list = top.copy()
                if last_delim == -1:
                    first_open = np.flatnonzero(top & (sc == _ARR))
                    if len(first_open):
                        outside_list[first_open[0]] = False
                problems = np.flatnonzero(outside_list | (at1 & (sc == _CLOSE_OBJ)))
                if len(problems):
                    k = int(problems[0])
                    what = (
                        "unexpected data after the end of the list"
                        if outside_list[k]
                        else "'}' where the list should close with ']'"
                    )
                    raise self._fail(offset + int(sp[k]), what)
                delim = (at1 & ((sc == _COMMA) | (sc == _CLOSE_ARR) | (sc == _CLOSE_OBJ))) | (
                    top & (sc == _ARR)
                )
                dpos = sp[delim] + offset
                dcls = sc[delim]
                if len(dpos):
                    starts, ends = _between(last_delim, dpos)
                    if len(ends) and dcls[-1] == _CLOSE_ARR:
                        closed_at = int(ends[-1])
                        # "[ ]" is an empty list, not one blank record
                        if (
                            commas == 0
                            and len(starts) == 1
                            and self._blank(block, offset, starts[0], ends[0])
                        ):
                            starts, ends = starts[:0], ends[:0]
                    commas += int((dcls == _COMMA).sum())
                    last_delim = int(dpos[-1])
                    if len(starts):
                        yield starts.astype(np.int64), ends.astype(np.int64), None, False
                if closed_at >= 0:
                    tail = block[closed_at - offset + 1 :]
                    if tail.strip(_WS):
                        rest = len(tail) - len(tail.lstrip(_WS))
                        raise self._fail(closed_at + 1 + rest, "unexpected data after the end of the list")
                offset += len(block)
        if closed_at < 0:
            what = "inside a string" if in_string else "before the list is closed"
            if not self.skip_bad or last_delim < 0:
                raise self._fail(
                    offset,
                    f"truncated JSON: the file ends {what}"
                    + (f"; the unfinished record starts at byte {last_delim + 1}" if last_delim >= 0 else ""),
                )
            logger.warning("%s: truncated JSON; the unfinished last record is dropped as bad_json", self.path)
            yield np.array([last_delim + 1]), np.array([offset]), None, True

    @staticmethod
    def _blank(block: bytes, offset: int, start: int, end: int) -> bool:
        if end - start >= _SHORT or start < offset:
            return False
        return not block[start - offset : end - offset].strip(_WS)


# --------------------------------------------------------------------------- JSON Lines scan


def _scan_jsonl(
    path: str, block_size: int = BLOCK_SIZE
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, bool]]:
    """Line spans of a JSON Lines file (without the newline), with 1-based line numbers.

    Empty and short whitespace-only lines are skipped; a long whitespace-only line reaches
    the parser and is reported as a bad line.
    """
    block_size = block_size or BLOCK_SIZE
    line_start = 0  # offset of the current line's first byte
    line_no = 1
    offset = 0
    with open(path, "rb") as f:
        head = f.read(3)
        if head == b"\xef\xbb\xbf":
            line_start = offset = 3
        f.seek(offset)
        while block := f.read(block_size):
            nl = np.flatnonzero(np.frombuffer(block, dtype=np.uint8) == 10) + offset
            if len(nl):
                starts = np.concatenate(([line_start], nl[:-1] + 1))
                ends = nl.copy()
                lines = np.arange(line_no, line_no + len(nl), dtype=np.int64)
                line_no += len(nl)
                line_start = int(nl[-1]) + 1
                keep = _nonblank(block, offset, starts, ends)
                yield starts[keep], ends[keep], lines[keep], False
            offset += len(block)
    if line_start < offset:
        starts, ends = np.array([line_start]), np.array([offset])
        with open(path, "rb") as f:
            f.seek(line_start)
            text = f.read(min(offset - line_start, _SHORT))
        if offset - line_start >= _SHORT or text.strip(_WS):
            yield starts, ends, np.array([line_no]), False


def _nonblank(block: bytes, offset: int, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    keep = ends - starts > 0
    short = np.flatnonzero(keep & (ends - starts < _SHORT) & (starts >= offset))
    for k in short.tolist():
        s, e = int(starts[k]) - offset, int(ends[k]) - offset
        if not block[s:e].strip(_WS):
            keep[k] = False
    return keep


# --------------------------------------------------------------------------- sources


def detect_format(path: str | os.PathLike[str]) -> str:
    """``json``, ``jsonl``, ``parquet`` or ``hf`` (a saved dataset directory)."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"input {p} does not exist")
    if p.is_dir():
        if (
            (p / "dataset_info.json").exists()
            or (p / "state.json").exists()
            or (p / "dataset_dict.json").exists()
        ):
            return "hf"
        raise ValueError(f"{p} is a directory but not a saved Hugging Face dataset (no state.json)")
    suffix = p.suffix.lower()
    if suffix == ".parquet":
        return "parquet"
    if suffix == ".jsonl":
        return "jsonl"
    _, first = _first_byte(str(p))
    if first == ord("["):
        return "json"
    if first == ord("{"):
        return "jsonl"
    if first == -1:
        raise BadInputError(f"{p}: the file is empty")
    with open(p, "rb") as f:
        if f.read(4) == b"PAR1":
            return "parquet"
    raise BadInputError(
        f"{p}: cannot tell the format: expected a JSON list ('['), JSON Lines ('{{'), Parquet or "
        f"a saved dataset; the first byte is {bytes([first])!r}"
    )


class InputSource:
    """An input file or dataset, cut into :class:`Task`s in input order.

    After :meth:`tasks` is exhausted, :attr:`n_records` holds the number of records.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        fmt: str | None = None,
        split: str | None = None,
        skip_bad_lines: bool = False,
    ) -> None:
        self.path = str(path)
        self.fmt = fmt or detect_format(path)
        if self.fmt not in FORMATS:
            raise ValueError(f"format must be one of {list(FORMATS)}, got {self.fmt!r}")
        self.split = split
        self.skip_bad_lines = skip_bad_lines
        self.n_records = 0
        self.total_bytes = os.path.getsize(self.path) if os.path.isfile(self.path) else 0
        self.total_rows: int | None = None  # known up front for Parquet and saved datasets

    @property
    def has_spans(self) -> bool:
        return self.fmt in ("json", "jsonl")

    def tasks(self, chunk_records: int) -> Iterator[Task]:
        if self.fmt == "json":
            spans = iter(_ListScanner(self.path, self.skip_bad_lines))
        elif self.fmt == "jsonl":
            spans = _scan_jsonl(self.path)
        else:
            yield from self._row_tasks(chunk_records)
            return
        for task in _tasks_from_spans(self.path, self.fmt, spans, chunk_records):
            self.n_records = task.first + len(task)
            yield task

    def _row_tasks(self, chunk_records: int) -> Iterator[Task]:
        first = 0
        for number, batch in enumerate(self._batches(chunk_records)):
            if batch.num_rows == 0:
                continue
            yield Task(number=number, first=first, path=self.path, fmt=self.fmt, rows=batch)
            first += batch.num_rows
            self.n_records = first

    def _batches(self, chunk_records: int) -> Iterator[Any]:
        if self.fmt == "parquet":
            import pyarrow.parquet as pq

            try:
                pf = pq.ParquetFile(self.path)
            except Exception as exc:
                raise BadInputError(f"{self.path}: not a readable Parquet file: {exc}") from exc
            yield from pf.iter_batches(batch_size=chunk_records)
            return
        table = load_hf_table(self.path, self.split)
        self.total_rows = table.num_rows
        yield from table.to_batches(max_chunksize=chunk_records)

    def first_records(self, limit: int = 50) -> list[Any]:
        """Up to ``limit`` parsed records from the start (to tell the layout); unparseable ones are skipped."""
        import orjson

        out: list[Any] = []
        if self.has_spans:
            try:
                task = next(iter(self.tasks(limit)))
            except StopIteration:
                return out
            buf = task.read_range()
            for span in task.spans(buf):
                try:
                    out.append(orjson.loads(span))
                except orjson.JSONDecodeError:
                    continue
            self.n_records = 0
            return out
        for batch in self._batches(limit):
            out.extend(batch.to_pylist())
            if len(out) >= limit:
                break
        return out[:limit]


def load_hf_table(path: str, split: str | None) -> Any:
    """The Arrow table of a dataset saved with ``save_to_disk`` (row order as the dataset's)."""
    try:
        import datasets
    except ImportError as exc:  # pragma: no cover - datasets is a core dependency
        raise ImportError("reading a saved dataset needs `pip install datasets`") from exc
    ds = datasets.load_from_disk(path)
    if isinstance(ds, datasets.DatasetDict):
        if split is None:
            raise ValueError(f"{path} holds splits {sorted(ds)}; choose one with split")
        if split not in ds:
            raise ValueError(f"{path} has no split {split!r}; splits: {sorted(ds)}")
        ds = ds[split]
    elif split is not None:
        logger.info("%s is a single dataset; ignoring split=%r", path, split)
    if ds._indices is not None:  # a select()/shuffle() view: materialise the row order
        ds = ds.flatten_indices()
    return ds.data.table
