"""Read one string field and one scalar field out of a large JSONL file, fast and exactly.

PeBR's rollout file has one JSON object per line, most of it a long ``response`` string that
bucketing never looks at; only ``qid`` and ``score.accuracy`` matter. Decoding every line
into Python objects (``json.loads`` per line) spends nearly all its time building response
strings. This module finds the two values with numpy over the raw bytes instead, and keeps
``json.loads``'s exact semantics:

1. A *skeleton* is derived from the first line that ``json.loads`` accepts: the sequence of
   string tokens (keys with their exact bytes, values with free content) and the
   punctuation between them, where at most one scalar (number, ``true``, ``false``,
   ``null``) may sit in each gap.
2. Every line is indexed structurally in vectorised passes (a numpy take on simdjson's
   first stage): positions of quotes, backslashes and control bytes; backslash runs give the
   escaped quotes; the remaining (structural) quotes must be exactly the skeleton's, every
   gap and key must equal the skeleton's bytes, every escape must be valid, no raw control
   byte may appear, the bytes must be valid UTF-8, and every scalar slot must be a valid JSON
   scalar. A line passing all of this is valid JSON with the skeleton's structure, so its
   string field is the raw bytes between two known quotes (escape-free by requirement) and
   its scalar is the token in a known slot.
3. Every other line (malformed, a different layout, escapes inside the id, a CRLF line
   ending, a long id, ...) is returned as a *slow line* for the caller to decode with
   ``json.loads``. Correctness never depends on the fast path: it only decides which lines
   are cheap.

Example::

    >>> result = scan_jsonl("rollout_results.jsonl", key=("qid",), scalar=("score", "accuracy"))
    >>> result.keys[:3], result.scalar_tokens[:3], result.slow_lines[:1]
"""

from __future__ import annotations

import json
import logging
import mmap
import os
import re
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger(__name__)

#: Bytes per chunk of the scan (chunks end at a newline; each is indexed on its own).
CHUNK_BYTES = 4 << 20
#: Longest key value (bytes) the fast path extracts; longer ones go to the slow path.
KEY_WINDOW = 64
#: Longest scalar token (bytes) the fast path reads.
SCALAR_WINDOW = 24

_QUOTE, _BACKSLASH, _NEWLINE = 0x22, 0x5C, 0x0A
_ESCAPABLE = np.zeros(256, dtype=bool)
_ESCAPABLE[list(b'"\\/bfnrtu')] = True
_HEX = np.zeros(256, dtype=bool)
_HEX[list(b"0123456789abcdefABCDEF")] = True
_SCALAR_RE = re.compile(
    r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?|true|false|null|NaN|-?Infinity"
)
# Tokens between strings: punctuation, whitespace, and scalars.
_GAP_TOKEN_RE = re.compile(r"\s+|[{}\[\]:,]|" + _SCALAR_RE.pattern)
_PLAIN_KEY_RE = re.compile(r"[A-Za-z0-9_ .-]*")
_BYTE_MASKS = np.array([(1 << (8 * k)) - 1 for k in range(9)], dtype=np.uint64)


@dataclass(frozen=True)
class Skeleton:
    """The byte layout fast lines must have.

    ``gaps[i]`` is the text before string ``i`` (``gaps[-1]`` follows the last string); a gap
    is ``(prefix, suffix)`` with a scalar slot between them, or ``(literal, None)``.
    ``keys[i]`` is the exact content of string ``i`` when it is an object key, else ``None``.
    """

    gaps: tuple[tuple[bytes, bytes | None], ...]
    keys: tuple[bytes | None, ...]
    key_string: int
    scalar_gap: int

    @property
    def n_strings(self) -> int:
        return len(self.keys)

    def pieces(self) -> tuple[list[_Piece], list[tuple[int, int, bool]]]:
        """The line as maximal literal pieces between free parts (string values, scalar slots).

        Returns the pieces and the slots as ``(piece before, piece after, is the target)``.
        """
        items: list[
            tuple[str, object]
        ] = []  # ("lit", bytes, quote column or None) / ("value",) / ("slot", target)
        for gi, (prefix, suffix) in enumerate(self.gaps):
            items.append(("lit", prefix, None))
            if suffix is not None:
                items.append(("slot", gi == self.scalar_gap, None))
                items.append(("lit", suffix, None))
            if gi == len(self.keys):
                break
            key = self.keys[gi]
            if key is not None:
                items.append(("lit", b'"' + key + b'"', 2 * gi))
            else:
                items += [("lit", b'"', 2 * gi), ("value", None, None), ("lit", b'"', 2 * gi + 1)]
        pieces: list[_Piece] = []
        slots: list[tuple[int, int, bool]] = []
        current: _Piece | None = None
        pending_slot: bool | None = None
        for kind, payload, col in items:
            if kind == "lit":
                if current is None:
                    current = _Piece(b"", None, 0)
                if col is not None and current.anchor is None:
                    current.anchor, current.offset = col, len(current.literal)
                current.literal += payload  # type: ignore[operator]
                continue
            if current is not None and current.literal:
                pieces.append(current)
                if pending_slot is not None:
                    slots.append((len(pieces) - 2, len(pieces) - 1, pending_slot))
                    pending_slot = None
            current = None
            if kind == "slot":
                pending_slot = bool(payload)
        if current is not None and current.literal:
            pieces.append(current)
            if pending_slot is not None:
                slots.append((len(pieces) - 2, len(pieces) - 1, pending_slot))
        return pieces, slots


@dataclass
class _Piece:
    literal: bytes
    anchor: int | None  # the quote column whose position fixes the piece
    offset: int  # that quote's offset in the literal


@dataclass
class ScanResult:
    """What :func:`scan_jsonl` found.

    ``keys`` (utf-8 bytes of the string field) and ``scalar_tokens`` (raw JSON token bytes)
    are parallel, one entry per fast line, with ``key_line`` their 1-based line numbers.
    ``slow_lines`` are ``(line_number, raw bytes without the newline)`` for the caller.
    """

    n_lines: int
    keys: Any = None  # a pyarrow binary array of the distinct key values
    key_index: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    key_line: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    scalar_tokens: list[bytes] = field(default_factory=list)
    scalar_index: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    slow_lines: list[tuple[int, bytes]] = field(default_factory=list)
    skeleton: Skeleton | None = None
    fast_unavailable: str | None = None

    @property
    def n_fast(self) -> int:
        return len(self.key_index)


def _get_path(obj: object, path: Sequence[str]) -> object:
    for p in path:
        if not isinstance(obj, dict) or p not in obj:
            return None
        obj = obj[p]
    return obj


def _structural_quotes(line: bytes) -> list[int]:
    """Positions of unescaped quotes in one line."""
    out, i = [], 0
    while i < len(line):
        b = line[i]
        if b == _BACKSLASH:
            i += 2
            continue
        if b == _QUOTE:
            out.append(i)
        i += 1
    return out


def derive_skeleton(line: bytes, key: Sequence[str], scalar: Sequence[str]) -> Skeleton | str:
    """The skeleton of one JSON line, or a sentence saying why it cannot have one."""
    try:
        obj = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return f"first line is not JSON ({exc})"
    if not isinstance(obj, dict):
        return "first line is not a JSON object"
    if not isinstance(_get_path(obj, key), str):
        return f"{'.'.join(key)} is not a string"
    if _get_path(obj, scalar) is None or isinstance(_get_path(obj, scalar), (dict, list, str)):
        return f"{'.'.join(scalar)} is not a number"
    if b"\r" in line:
        return "the line has a carriage return"
    quotes = _structural_quotes(line)
    if len(quotes) % 2:
        return "unbalanced quotes"
    segments = [line[: quotes[0]] if quotes else line]
    strings = []
    for i in range(0, len(quotes), 2):
        strings.append(line[quotes[i] + 1 : quotes[i + 1]])
        end = quotes[i + 2] if i + 2 < len(quotes) else len(line)
        segments.append(line[quotes[i + 1] + 1 : end])
    # Walk the tokens to tell keys from values and find the two paths.
    stack: list[list] = []  # [kind, expecting_key, current_key, seen_keys]
    keys: list[bytes | None] = []
    gaps: list[tuple[bytes, bytes | None]] = []
    key_string = scalar_gap = -1

    def path() -> tuple[str, ...]:
        return tuple(frame[2] for frame in stack if frame[0] == "obj")

    for gi, seg in enumerate(segments):
        text = seg.decode("utf-8")
        pos, slot = 0, None
        while pos < len(text):
            m = _GAP_TOKEN_RE.match(text, pos)
            if m is None:
                return f"unexpected text {text[pos:]!r} between strings"
            tok = m.group()
            if tok in "{[" and len(tok) == 1:
                stack.append(["obj" if tok == "{" else "arr", True, None, set()])
            elif tok in "}]" and len(tok) == 1:
                if not stack:
                    return "unbalanced brackets"
                stack.pop()
            elif tok == ":":
                if stack:
                    stack[-1][1] = False
            elif tok == ",":
                if stack and stack[-1][0] == "obj":
                    stack[-1][1] = True
            elif not tok.isspace():
                if slot is not None:
                    return "two scalars between strings"
                slot = (m.start(), m.end())
                if path() == tuple(scalar):
                    if scalar_gap >= 0:
                        return f"{'.'.join(scalar)} appears twice"
                    scalar_gap = gi
            pos = m.end()
        raw = seg
        if slot is None:
            gaps.append((raw, None))
        else:
            start = len(text[: slot[0]].encode())
            end = len(text[: slot[1]].encode())
            gaps.append((raw[:start], raw[end:]))
        if gi == len(strings):
            break
        s = strings[gi]
        top = stack[-1] if stack else None
        if top is not None and top[0] == "obj" and top[1]:
            if not _PLAIN_KEY_RE.fullmatch(s.decode("utf-8", "replace")) or b"\\" in s:
                return f"key {s!r} is not plain"
            if s in top[3]:
                return f"duplicate key {s!r}"
            top[3].add(s)
            top[2] = s.decode()
            keys.append(s)
        else:
            if path() == tuple(key):
                if key_string >= 0:
                    return f"{'.'.join(key)} appears twice"
                key_string = len(keys)
            keys.append(None)
    if key_string < 0 or scalar_gap < 0:
        return "the fields were not found at the top of the structure"
    skel = Skeleton(tuple(gaps), tuple(keys), key_string, scalar_gap)
    pieces, slots = skel.pieces()
    if any(p.anchor is None for p in pieces[:-1]) or len(slots) != sum(1 for g in gaps if g[1] is not None):
        return "a literal part of the layout has no quote to anchor it"
    return skel


_local = threading.local()


def _scratch(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Two boolean buffers of ``n`` for this thread, reused across chunks (fresh 4 MB
    temporaries per chunk cost page faults)."""
    bufs = getattr(_local, "bufs", None)
    if bufs is None or len(bufs[0]) < n:
        bufs = _local.bufs = (np.empty(n, dtype=bool), np.empty(n, dtype=bool))
    return bufs[0][:n], bufs[1][:n]


class _Chunk:
    """Structural index of one chunk of whole lines, checked against a skeleton."""

    def __init__(self, data: np.ndarray, words: np.ndarray | None, start: int, end: int, skel: Skeleton):
        c = data[start:end]
        self.n = n = len(c)
        self.start = start
        self.skel = skel
        if words is None or end + 2 * KEY_WINDOW > len(data):
            # Near the end of the file: a padded copy, so 8-byte reads never run off the end.
            pad = np.zeros(n + 2 * KEY_WINDOW + 8, dtype=np.uint8)
            pad[:n] = c
            self.words = np.ndarray(shape=(n + 2 * KEY_WINDOW,), dtype="<u8", buffer=pad, strides=(1,))
            self.base = 0
            self.padded = pad
        else:
            self.words, self.base = words, start
            # bytes past the chunk read as the next chunk's; only the file's end needs padding
            self.padded = data[start : end + 8]
        mask, tmp = _scratch(n)
        np.less(c, 0x20, out=mask)
        np.equal(c, _QUOTE, out=tmp)
        mask |= tmp
        np.equal(c, _BACKSLASH, out=tmp)
        mask |= tmp
        pos = np.flatnonzero(mask).astype(np.int32)
        vals = c[pos]
        is_nl = vals == _NEWLINE
        nl = pos[is_nl]
        tail = 1 if n and c[-1] != _NEWLINE else 0
        self.n_lines = nlines = len(nl) + tail
        self.line_start = np.concatenate(([0], nl + 1))[:nlines]
        self.line_end = np.concatenate((nl, [n]))[:nlines]
        bad_pos: list[np.ndarray] = []
        is_ctrl = vals < 0x20
        if np.count_nonzero(is_ctrl) != len(nl):
            # a raw control byte other than the line break: invalid inside a string
            bad_pos.append(pos[is_ctrl & ~is_nl])
        is_quote = vals == _QUOTE
        q = pos[is_quote]
        bpos = pos[vals == _BACKSLASH]
        del pos, vals, is_quote, is_nl, is_ctrl
        self.backslashes = bpos
        if len(bpos):
            # In a run of backslashes every other one, from the first, starts an escape.
            step = np.diff(bpos)
            if np.any(step == 1):
                idx = np.arange(len(bpos), dtype=np.int32)
                new_run = np.ones(len(bpos), dtype=bool)
                new_run[1:] = step != 1
                run_start = np.maximum.accumulate(np.where(new_run, idx, 0))
                es = bpos[(idx - run_start) % 2 == 0]
            else:
                es = bpos
            nxt = self.byte_at(es + 1)
            # the escaped byte must be escapable (a line break is not)
            if not np.all(_ESCAPABLE[nxt]):
                bad_pos.append(es[~_ESCAPABLE[nxt]])
            u = es[nxt == ord("u")]
            if len(u):
                hex_ok = np.ones(len(u), dtype=bool)
                for k in range(2, 6):
                    hex_ok &= _HEX[self.byte_at(u + k)]
                bad_pos.append(u[~hex_ok])
            # quotes right after an escape-starting backslash are content, not structure
            escaped_quotes = es[nxt == _QUOTE] + 1
            if len(escaped_quotes):
                q = np.delete(q, np.searchsorted(q, escaped_quotes))
        # Structural quotes per line, counted with two searches per line (not one per quote).
        first = np.searchsorted(q, self.line_start)
        count = np.searchsorted(q, self.line_end) - first
        ok_line = count == 2 * skel.n_strings
        for bp in bad_pos:
            ok_line[np.searchsorted(nl, bp)] = False
        self.lines = np.flatnonzero(ok_line)
        self._quotes, self._first = q, first[self.lines]
        self.layout = skel.pieces()

    def quote_col(self, col: int) -> np.ndarray:
        """Position of the ``col``-th structural quote of every candidate line."""
        return self._quotes[self._first + col].astype(np.int64)

    def byte_at(self, at: np.ndarray) -> np.ndarray:
        """The byte at chunk positions ``at`` (zero past the end of the chunk)."""
        return self.padded[at]

    def _equal(self, at: np.ndarray, literal: bytes) -> np.ndarray:
        ok = np.ones(len(at), dtype=bool)
        for off in range(0, len(literal), 8):
            word = literal[off : off + 8]
            got = self.words[self.base + at + off]
            if len(word) < 8:
                got = got & np.uint64((1 << (8 * len(word))) - 1)
            ok &= got == np.uint64(int.from_bytes(word, "little"))
        return ok

    def spans(self, start: np.ndarray, length: np.ndarray) -> pa.BinaryArray:
        """The bytes of each span (at most ``KEY_WINDOW`` long) as one Arrow binary array."""
        import pyarrow as pa

        n_words = max(1, -(-int(length.max()) // 8)) if len(length) else 1
        words = np.empty((len(start), n_words), dtype="<u8")
        for w in range(n_words):
            words[:, w] = self.words[self.base + start + 8 * w]
        raw = words.view(np.uint8).reshape(len(start), 8 * n_words)
        flat = np.ascontiguousarray(raw[np.arange(8 * n_words) < length[:, None]])
        offsets = np.zeros(len(start) + 1, dtype=np.int32)
        np.cumsum(length, out=offsets[1:])
        return pa.Array.from_buffers(
            pa.binary(), len(start), [None, pa.py_buffer(offsets), pa.py_buffer(flat)]
        )

    def match(self) -> dict[str, np.ndarray]:
        """The lines (chunk-relative) that match the skeleton and the spans of their fields."""
        skel = self.skel
        pieces, slots = self.layout
        lines = self.lines
        ok = np.ones(len(lines), dtype=bool)
        line_start = self.line_start[lines]
        line_end = self.line_end[lines]
        starts = []
        for piece in pieces:
            if piece.anchor is None:
                start = line_end - len(piece.literal)
            else:
                start = self.quote_col(piece.anchor) - piece.offset
            ok &= self._equal(start, piece.literal)
            starts.append(start)
        ok &= starts[0] == line_start
        if pieces[-1].anchor is not None:
            ok &= starts[-1] + len(pieces[-1].literal) == line_end
        spans = []
        for before, after, target in slots:
            slot_start = starts[before] + len(pieces[before].literal)
            slot_len = starts[after] - slot_start
            ok &= (slot_len >= 1) & (slot_len <= SCALAR_WINDOW)
            spans.append((slot_start, slot_len, target))
        kl = self.quote_col(2 * skel.key_string) + 1
        klen = self.quote_col(2 * skel.key_string + 1) - kl
        ok &= klen <= KEY_WINDOW
        out = {"line": lines[ok], "key_start": kl[ok], "key_len": klen[ok]}
        others = 0
        for st, ln, target in spans:
            name = "scalar" if target else f"slot{others}"
            others += 0 if target else 1
            out[f"{name}_start"], out[f"{name}_len"] = st[ok], ln[ok]
        return out


def _chunk_bounds(buf: mmap.mmap | bytes, size: int, chunk_bytes: int) -> list[tuple[int, int]]:
    bounds, start = [], 0
    while start < size:
        cut = start + chunk_bytes
        if cut >= size:
            bounds.append((start, size))
            break
        nl = buf.find(b"\n", cut)
        end = size if nl < 0 else nl + 1
        bounds.append((start, end))
        start = end
    return bounds


def _first_json_line(buf: mmap.mmap | bytes, size: int, limit: int = 1000) -> bytes | None:
    start = 0
    for _ in range(limit):
        if start >= size:
            return None
        nl = buf.find(b"\n", start)
        end = size if nl < 0 else nl
        line = bytes(buf[start:end])
        try:
            if isinstance(json.loads(line), dict):
                return line
        except (json.JSONDecodeError, UnicodeDecodeError):
            pass
        start = end + 1
    return None


def scan_jsonl(
    path: str | os.PathLike[str],
    *,
    key: Sequence[str] = ("qid",),
    scalar: Sequence[str] = ("score", "accuracy"),
    workers: int = 2,
    chunk_bytes: int = CHUNK_BYTES,
) -> ScanResult:
    """Index a JSONL file: the ``key`` string and ``scalar`` token of every fast line, and the
    raw bytes of every other line (see the module docstring for what is fast)."""
    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        return ScanResult(n_lines=0, fast_unavailable="empty file")
    with open(path, "rb") as fh:
        mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    try:
        return _scan(mm, np.frombuffer(mm, dtype=np.uint8), size, key, scalar, workers, chunk_bytes)
    finally:
        try:
            mm.close()
        except BufferError:
            # numpy views still reference the map; it is closed when they are collected.
            log.debug("mmap of %s is closed by the garbage collector", path)


def _scan(mm, data, size, key, scalar, workers, chunk_bytes) -> ScanResult:
    first = _first_json_line(mm, size)
    skel = derive_skeleton(first, key, scalar) if first is not None else "no JSON object line found"
    if isinstance(skel, str):
        log.info("fast JSONL path unavailable (%s); every line is decoded with json.loads", skel)
        raw = mm[:size].split(b"\n")
        if raw and raw[-1] == b"":
            raw.pop()  # the file ends with a newline: no line after it
        return ScanResult(n_lines=len(raw), slow_lines=list(enumerate(raw, start=1)), fast_unavailable=skel)
    words = np.ndarray(shape=(size - 7,), dtype="<u8", buffer=mm, strides=(1,)) if size >= 8 else None

    def work(bound: tuple[int, int]) -> dict:
        s, e = bound
        ch = _Chunk(data, words, s, e, skel)
        m = ch.match()
        if len(m["line"]) and not _utf8_ok(data[s:e]):
            # Rare: invalid UTF-8 somewhere in the chunk; keep only the lines that are valid.
            good = np.array(
                [_utf8_ok(data[s + ch.line_start[i] : s + ch.line_end[i]]) for i in m["line"]], dtype=bool
            )
            m = {k: v[good] for k, v in m.items()}
        # An escape inside the key would make its raw bytes differ from its value: slow path.
        key_bytes = ch.spans(m["key_start"], m["key_len"])
        offsets = np.frombuffer(key_bytes.buffers()[1], dtype=np.int32)[: len(key_bytes) + 1]
        hits = np.flatnonzero(np.frombuffer(key_bytes.buffers()[2] or b"", dtype=np.uint8) == _BACKSLASH)
        if len(hits):
            keep = np.ones(len(m["line"]), dtype=bool)
            keep[np.searchsorted(offsets, hits, side="right") - 1] = False
            m = {k: v[keep] for k, v in m.items()}
            key_bytes = key_bytes.filter(keep)
        fast = np.zeros(ch.n_lines, dtype=bool)
        fast[m["line"]] = True
        n_slots = sum(1 for k in m if k.startswith("slot") and k.endswith("_start"))
        return {
            "n_lines": ch.n_lines,
            "line": m["line"],
            "abs_start": s + ch.line_start[m["line"]],
            "abs_end": s + ch.line_end[m["line"]],
            "key": key_bytes,
            "scalar": ch.spans(m["scalar_start"], m["scalar_len"]),
            "slots": [ch.spans(m[f"slot{i}_start"], m[f"slot{i}_len"]) for i in range(n_slots)],
            "slow": [
                (int(i), bytes(mm[s + int(ch.line_start[i]) : s + int(ch.line_end[i])]))
                for i in np.flatnonzero(~fast)
            ],
        }

    with ThreadPoolExecutor(max(1, workers)) as pool:
        parts = list(pool.map(work, _chunk_bounds(mm, size, chunk_bytes)))

    import pyarrow as pa

    result = ScanResult(n_lines=0, skeleton=skel)
    line_no, slow = [], []
    for part in parts:
        line_no.append(part["line"].astype(np.int64) + result.n_lines + 1)
        slow.extend((result.n_lines + i + 1, raw) for i, raw in part["slow"])
        result.n_lines += part["n_lines"]
    lines = np.concatenate(line_no)
    abs_start = np.concatenate([p["abs_start"] for p in parts])
    abs_end = np.concatenate([p["abs_end"] for p in parts])
    # Every scalar slot must hold a JSON scalar: checked once per distinct token.
    valid = np.ones(len(lines), dtype=bool)
    scalar = pa.chunked_array([p["scalar"] for p in parts], pa.binary())
    n_slots = len(parts[0]["slots"])
    slot_arrays = [pa.chunked_array([p["slots"][i] for p in parts], pa.binary()) for i in range(n_slots)]
    for arr in [scalar, *slot_arrays]:
        tokens, index = _dictionary(arr)
        good = np.array([_SCALAR_RE.fullmatch(t.decode("latin-1")) is not None for t in tokens], dtype=bool)
        if len(tokens):
            valid &= good[index]
    for i in np.flatnonzero(~valid):
        slow.append((int(lines[i]), bytes(mm[int(abs_start[i]) : int(abs_end[i])])))
    slow.sort(key=lambda item: item[0])
    result.slow_lines = slow
    result.key_line = lines[valid]
    keep = pa.array(valid)
    keys = pa.chunked_array([p["key"] for p in parts], pa.binary()).filter(keep)
    result.keys, result.key_index = _dictionary(keys, as_arrow=True)
    result.scalar_tokens, result.scalar_index = _dictionary(scalar.filter(keep))
    return result


def _utf8_ok(buf: np.ndarray) -> bool:
    """Whether bytes are valid UTF-8 (Arrow's SIMD validator, without building a str)."""
    import pyarrow as pa

    offsets = np.array([0, len(buf)], dtype=np.int64)
    arr = pa.Array.from_buffers(pa.large_utf8(), 1, [None, pa.py_buffer(offsets), pa.py_buffer(buf)])
    try:
        arr.validate(full=True)
    except pa.ArrowInvalid:
        return False
    return True


def _dictionary(arr, as_arrow: bool = False) -> tuple[Any, np.ndarray]:
    """Distinct values of a binary array (a list of bytes, or the Arrow array) and each row's
    index into them (Arrow hashing)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks else pa.array([], pa.binary())
    if len(arr) == 0:
        return (pa.array([], pa.binary()) if as_arrow else []), np.zeros(0, np.int64)
    enc = pc.dictionary_encode(arr)
    values = enc.dictionary if as_arrow else enc.dictionary.to_pylist()
    return values, enc.indices.to_numpy().astype(np.int64)
