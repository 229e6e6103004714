"""The filter's stages over a table of plain sharegpt records (:mod:`curation.plain_parse`), as columns.

Each stage here *certifies* that a record passes: a record that a stage would drop, or
that it cannot decide exactly, is handed back to the per-record path, which decides and
words the reason. The one exception is the reflective stage, which also drops, with the
per-record path's words, the records whose first flagged assistant turn is ASCII (see
below: there its search is exact). Each stage below says why its claim is exact:

- tags, user and assistant turns: plain counts over the turns;
- reflective: Python's ``str.lower()`` maps every character to one character, ASCII only
  from ASCII, except U+0130 (to "i" + a combining dot) and U+212A KELVIN SIGN (to "k"); a
  test checks this on every code point. So an ASCII pattern's match is a case-insensitive
  match where those two may stand in, which :func:`reflective_matches` searches for (on
  ASCII text nothing stands in, so there it is exact). Non-ASCII patterns are checked with
  ``str.lower()`` itself.
- answer: the text after the last final-answer header is taken with a regex only when no
  ``#`` follows the header (so no later header can exist); other texts use
  :func:`curation.filters.fast_final_answer`. Stripping uses Python's whitespace set.
- images: :meth:`curation.images.ImageChecker.check_many`, the per-record check's own code,
  reference by reference in the per-record order (first images first, later ones only for
  records whose earlier images passed), so even the image counters are the same.
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curation.filter_config import FilterConfig
from curation.filters import IMAGE_TAG
from curation.image_cache import raw_digests
from curation.images import ImageBatch, ImageChecker
from curation.plain_parse import PlainKeys
from curation.record_columns import one_array
from curation.schema import IMAGE_TYPE, MESSAGE_TYPE, RECORD_SCHEMA, SIZE_TYPE

#: every character ``str.strip()`` removes (``str.isspace``; a test recomputes it)
PY_WHITESPACE = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
    "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
#: a final-answer header at a line start, with no "#" after it (so no later header)
_FINAL_ANSWER_TAIL = r"(?:^|\n)[ \t]*###[ \t]*The final answer is:(?P<answer>[^#]*)\z"


def _np(array: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return array.to_numpy(zero_copy_only=False)


def _trim(texts: pa.Array) -> pa.Array:
    return pc.utf8_trim(texts, characters=PY_WHITESPACE)


def _first_per_parent(positions: np.ndarray, parent: np.ndarray, n: int, last: bool = False) -> np.ndarray:
    """For each of ``n`` parents, the first (or last) of ``positions`` (ascending) it owns, or -1."""
    out = np.full(n, -1, dtype=np.int64)
    if not len(positions):
        return out
    owners = parent[positions]
    change = owners[1:] != owners[:-1]
    pick = np.concatenate((change, [True])) if last else np.concatenate(([True], change))
    out[owners[pick]] = positions[pick]
    return out


def _any(masks: list[np.ndarray], n: int) -> np.ndarray:
    out = np.zeros(n, dtype=bool)
    for m in masks:
        out |= m
    return out


def reflective_matches(content: pa.Array, patterns_lower: tuple[str, ...]) -> list[np.ndarray]:
    """For each pattern, the texts that may contain it the way ``str.lower()`` sees them
    (``out[j][i]`` for text ``i`` and pattern ``j``): a superset, exact on ASCII texts, whose
    ``str.lower()`` only lowers A-Z, which is all the case-insensitive search folds there.

    For an ASCII pattern, a match in ``text.lower()`` is made of ASCII characters equal to
    the pattern's up to case, KELVIN SIGNs standing for "k", and possibly a last U+0130
    standing for a final "i" (its lower case goes on with a combining dot). RE2's
    case-insensitive match folds "k" with the KELVIN SIGN (a test holds it to that); the
    U+0130 case gets its own search. Non-ASCII patterns are looked for in ``str.lower()``.
    """
    if not all(p.isascii() for p in patterns_lower):
        lowered = [t.lower() if t is not None else None for t in content.to_pylist()]
        return [np.array([t is not None and p in t for t in lowered], dtype=bool) for p in patterns_lower]
    out = []
    for p in patterns_lower:
        flags = _np(pc.match_substring(content, p, ignore_case=True)).astype(bool)
        if p.endswith("i"):
            prefix = "".join(f"\\x{{{ord(c):x}}}" for c in p[:-1])
            flags |= _np(pc.match_substring_regex(content, f"(?i){prefix}\\x{{130}}")).astype(bool)
        out.append(flags)
    return out


def _reflective_verdicts(
    content: pa.Array,
    matches: list[np.ndarray],
    flags: np.ndarray,
    parent: np.ndarray,
    starts: np.ndarray,
    eligible: np.ndarray,
    patterns_lower: tuple[str, ...],
) -> tuple[np.ndarray, list[str]]:
    """The rows the reflective stage drops that can be worded here, and the per-record path's
    detail for each (:func:`curation.filters.check_reflective`: the first assistant turn whose
    lower case holds a pattern, and the first such pattern). ``flags`` are the assistant
    turns any of ``matches`` flags.

    A row qualifies when it passes the stages before (``eligible``) and its first flagged
    assistant turn is ASCII, where the flags are exact (the turns before it were not flagged,
    so hold no pattern). Other flagged rows are left to the per-record path.
    """
    first = _first_per_parent(np.flatnonzero(flags), parent, len(eligible))
    rows = np.flatnonzero(eligible & (first >= 0))
    turns = first[rows]
    ascii_ = _np(pc.string_is_ascii(content.take(pa.array(turns)))).astype(bool)
    rows, turns = rows[ascii_], turns[ascii_]
    which = np.argmax(np.stack([m[turns] for m in matches]), axis=0)  # the first pattern found
    details = [
        f"turn {t} contains {patterns_lower[j]!r}"
        for t, j in zip((turns - starts[rows]).tolist(), which.tolist(), strict=True)
    ]
    return rows, details


def _final_answers(content: pa.Array, turns: np.ndarray) -> pa.Array:
    """The canonical answer from each of the turns ``turns`` (ascending): :func:`fast_final_answer`,
    or the stripped text when there is no final-answer header."""
    from curation.filters import fast_final_answer

    chosen = np.zeros(len(content), dtype=bool)
    chosen[turns] = True
    texts = content.filter(pa.array(chosen))
    found = pc.struct_field(pc.extract_regex(texts, _FINAL_ANSWER_TAIL), [0])
    answer = _trim(found)
    missing = np.flatnonzero(_np(found.is_null()))
    if len(missing):  # a "#" after the header, or no header at all
        values = answer.to_pylist()
        for i in missing.tolist():
            text = texts[i].as_py()
            body = fast_final_answer(text)
            values[i] = body if body is not None else text.strip()
        answer = pa.array(values, pa.string())
    return answer


@dataclass
class TextResult:
    """Rows of the table that pass every text stage, with their canonical question and answer."""

    passed: np.ndarray  # row numbers, ascending
    question: pa.Array
    answer: pa.Array
    reflective: np.ndarray  # rows the reflective stage drops, decided here (ascending)
    reflective_details: list[str]  # the per-record path's detail for each


def text_stages(table: pa.Table, keys: PlainKeys, config: FilterConfig) -> TextResult:
    """Structure (roles, a user turn), ``<image>`` tags, reflective text and empty answers."""
    msgs = one_array(table.column(0))
    n = len(msgs)
    parent = _np(pc.list_parent_indices(msgs)).astype(np.int64)
    role, content = msgs.flatten().flatten()  # adjusted for slices, unlike ``field(i)``
    ok = np.ones(n, dtype=bool)
    if keys.roles_plain:
        bad_role = ~_np(pc.is_in(role, pa.array(sorted(keys.roles_plain)))).astype(bool)
    else:  # sharegpt spellings would be renamed and remembered in meta
        bad_role = _np(pc.is_in(role, pa.array(["human", "gpt"]))).astype(bool)
    ok[parent[bad_role]] = False
    for raw, canonical in keys.role_alias.items():
        role = pc.if_else(pc.equal(role, raw), canonical, role)
    is_user = _np(pc.equal(role, "user")).astype(bool)
    is_asst = _np(pc.equal(role, "assistant")).astype(bool)
    user_turns = np.flatnonzero(is_user)
    first_user = _first_per_parent(user_turns, parent, n)
    ok &= first_user >= 0
    # user turns without their tags: the question, and (by the length lost) the tag count
    user = content.filter(pa.array(is_user))
    # the literal kernel, as ``str.replace`` (a third of the CPU of the regex kernel with
    # pyarrow 26: 0.08 against 0.29 s for the user turns of 260K records)
    untagged = pc.replace_substring(user, IMAGE_TAG, "")
    if config.check_image_tags:
        lost = _np(pc.binary_length(user)) - _np(pc.binary_length(untagged))
        per_row = np.bincount(parent[user_turns], weights=lost // len(IMAGE_TAG), minlength=n)
        n_images = _np(pc.list_value_length(one_array(table.column(1)))).astype(np.int64)
        ok &= per_row == n_images
    matches = reflective_matches(content, config.patterns_lower)
    flags = _any(matches, len(content)) & is_asst
    if flags.any():
        offsets = _np(msgs.offsets).astype(np.int64)
        starts = offsets[:n] - offsets[0]  # each row's first turn in ``content``
        args = (matches, flags, parent, starts, ok, config.patterns_lower)
        reflective, reflective_details = _reflective_verdicts(content, *args)
    else:
        reflective, reflective_details = np.zeros(0, dtype=np.int64), []
    ok[parent[flags]] = False
    last_asst = _first_per_parent(np.flatnonzero(is_asst), parent, n, last=True)
    ok &= last_asst >= 0  # no assistant turn: the per-record path words it
    rows = np.flatnonzero(ok)
    answer = _final_answers(content, last_asst[rows])
    if config.drop_empty_answers:
        keep = _np(pc.not_equal(answer, "")).astype(bool)
        rows, answer = rows[keep], answer.filter(pa.array(keep))
    first_user_pos = np.searchsorted(user_turns, first_user[rows])  # its place among the user turns
    question = _trim(untagged.take(pa.array(first_user_pos)))
    return TextResult(rows, question, answer, reflective, reflective_details)


@dataclass
class ImageResult:
    """Per row: passes the image stages (``ok``), or the Drop of its first failing image."""

    ok: np.ndarray
    drops: dict[int, Any]  # row -> Drop
    paths: pa.Array  # the image paths of the ``ok`` rows, flat, in order
    offsets: np.ndarray  # list offsets of ``paths`` per ``ok`` row
    width: np.ndarray
    height: np.ndarray
    hex: np.ndarray  # (len(paths), 64) SHA-256 hex digits
    probed: list[tuple[str, Any]]  # (path, ImageInfo) of the files read


def image_stages(images: pa.ListArray, checker: ImageChecker, config: FilterConfig) -> ImageResult:
    """Check each row's images in order, as the per-record path does, a position at a time."""
    from curation.filters import check_image

    n = len(images)
    offsets = _np(images.offsets).astype(np.int64)
    offsets = offsets - offsets[0]
    counts = np.diff(offsets)
    flat = images.flatten()
    ref_batch = np.zeros(len(flat), dtype=np.int64)  # which check_many call answered the reference
    ref_index = np.zeros(len(flat), dtype=np.int64)  # and its position in that call
    batches: list[ImageBatch] = []
    ok = np.ones(n, dtype=bool)
    drops: dict[int, Any] = {}
    probed: list[tuple[str, Any]] = []
    position = 0
    while True:
        rows = np.flatnonzero(ok & (counts > position))
        if not len(rows):
            break
        refs = offsets[rows] + position
        # one check per reference, as the per-record path makes (a second one is a cache hit)
        batch = checker.check_many(flat.take(pa.array(refs)).to_pylist())
        batches.append(batch)
        idx = np.arange(len(refs))
        good = (
            batch.status_ok
            & (batch.width * batch.height <= config.max_pixels)
            & (batch.width >= config.min_side)
            & (batch.height >= config.min_side)
        )
        if config.verify_images:
            good &= ~batch.decode_error
        ref_batch[refs] = len(batches) - 1
        ref_index[refs] = idx
        read = np.flatnonzero(batch.opened).tolist()
        probed += zip(map(batch.rels.__getitem__, read), map(batch.infos.__getitem__, read), strict=True)
        bad = ~good[idx]
        for r, i in zip(rows[bad].tolist(), idx[bad].tolist(), strict=True):
            drop = check_image(batch.info(i), batch.rels[i], config)
            assert drop is not None, f"image stages disagree on {batch.rels[i]!r}"
            ok[r] = False
            drops[r] = drop
        position += 1
    kept_refs = np.flatnonzero(np.repeat(ok, counts))
    width = np.zeros(len(kept_refs), dtype=np.int64)
    height = np.zeros(len(kept_refs), dtype=np.int64)
    hexes = np.zeros((len(kept_refs), 64), dtype=np.uint8)
    for b, batch in enumerate(batches):
        mine = ref_batch[kept_refs] == b
        i = ref_index[kept_refs[mine]]
        width[mine], height[mine], hexes[mine] = batch.width[i], batch.height[i], batch.hex[i]
    return ImageResult(
        ok=ok,
        drops=drops,
        paths=flat.take(pa.array(kept_refs)),
        offsets=np.concatenate(([0], np.cumsum(counts[ok]))).astype(np.int64),
        width=width,
        height=height,
        hex=hexes,
        probed=probed,
    )


# --------------------------------------------------------------------------- canonical columns


def _fixed_binary(data: np.ndarray, width: int) -> pa.Array:
    """``len(data) / width`` binary values of ``width`` bytes each, from one buffer."""
    data = np.ascontiguousarray(data).view(np.uint8).reshape(-1)
    n = len(data) // width
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int32)
    return pa.Array.from_buffers(pa.binary(), n, [None, pa.py_buffer(offsets), pa.py_buffer(data)])


def _runs(data: np.ndarray, offsets: np.ndarray, width: int) -> pa.Array:
    """Binary values made of the ``width``-byte items ``offsets[i]:offsets[i+1]`` of ``data``."""
    n = len(offsets) - 1
    data = np.ascontiguousarray(data).reshape(-1)
    byte_offsets = (offsets * width).astype(np.int32)
    return pa.Array.from_buffers(pa.binary(), n, [None, pa.py_buffer(byte_offsets), pa.py_buffer(data)])


def _blake2b_each(values: pa.Array) -> list[str]:
    """The 16-byte BLAKE2b hex digest of each binary value, over slices of the array's buffer
    (no copies)."""
    _validity, offsets_buf, data = values.buffers()
    offsets = np.frombuffer(offsets_buf, dtype=np.int32)[values.offset : values.offset + len(values) + 1]
    view = memoryview(data) if data is not None else memoryview(b"")
    blake2b = hashlib.blake2b
    return [blake2b(view[s:e], digest_size=16).hexdigest() for s, e in itertools.pairwise(offsets.tolist())]


_LEN64 = np.frombuffer((64).to_bytes(8, "little"), dtype=np.uint8)
_UID_Q = pa.scalar((2).to_bytes(8, "little") + b"\x00q", pa.binary())
_UID_A = pa.scalar((2).to_bytes(8, "little") + b"\x00a", pa.binary())


def uids(question: pa.Array, answer: pa.Array, hexes: np.ndarray, offsets: np.ndarray) -> list[str]:
    """:func:`curation.schema.compute_uid` of each row: the same length-prefixed bytes, hashed."""
    parts = np.empty((len(hexes), 72), dtype=np.uint8)
    parts[:, :8] = _LEN64
    parts[:, 8:] = hexes
    q = question.cast(pa.binary())
    a = answer.cast(pa.binary())
    q_len = _np(pc.binary_length(q)).astype("<i8")
    a_len = _np(pc.binary_length(a)).astype("<i8")
    joined = pc.binary_join_element_wise(
        _runs(parts, offsets, 72), _UID_Q, _fixed_binary(q_len, 8), q, _UID_A, _fixed_binary(a_len, 8), a, b""
    )
    return _blake2b_each(joined)


def duplicate_keys(
    question: pa.Array, hexes: np.ndarray, offsets: np.ndarray, lazy: bool = True
) -> list[bytes]:
    """:func:`curation.filters.duplicate_key` of each row.

    ``lazy`` keys (images only) cost one hash per row; the others normalise each question
    in Python (row tasks, whose questions the main process cannot read back).
    """
    from curation.filters import duplicate_key

    if not lazy:
        text = hexes.tobytes().decode("ascii")
        bounds = (offsets * 64).tolist()
        return [
            duplicate_key([text[p : p + 64] for p in range(s, e, 64)], q)
            for s, e, q in zip(bounds[:-1], bounds[1:], question.to_pylist(), strict=True)
        ]
    # I keys are the raw digests (see duplicate_key)
    raw = raw_digests(hexes.reshape(-1))
    bounds = (offsets * 32).tolist()
    keys = [b"I" + raw[s:e] for s, e in itertools.pairwise(bounds)]
    for i in np.flatnonzero(np.diff(offsets) == 0).tolist():  # no images: the key holds the question
        keys[i] = duplicate_key([], question[i].as_py(), lazy=True)
    return keys


def canonical_batch(
    uid: list[str],
    source: str,
    images: ImageResult,
    question: pa.Array,
    answer: pa.Array,
    messages: pa.ListArray,
    keys: PlainKeys,
) -> pa.RecordBatch:
    """The canonical columns (:data:`curation.schema.RECORD_SCHEMA`) of plain records."""
    n = len(uid)
    n_img = len(images.paths)
    offsets = pa.array(images.offsets.astype(np.int32))
    image_col = pa.ListArray.from_arrays(
        offsets,
        pa.StructArray.from_arrays([pa.nulls(n_img, pa.binary()), images.paths], fields=list(IMAGE_TYPE)),
    )
    sizes = pa.ListArray.from_arrays(
        offsets,
        pa.StructArray.from_arrays(
            [pa.array(images.width.astype(np.int32)), pa.array(images.height.astype(np.int32))],
            fields=list(SIZE_TYPE),
        ),
    )
    role, content = messages.flatten().flatten()
    for raw, canonical in keys.role_alias.items():
        role = pc.if_else(pc.equal(role, raw), canonical, role)
    msg_offsets = _np(messages.offsets).astype(np.int32)
    messages = pa.ListArray.from_arrays(
        pa.array(msg_offsets - msg_offsets[0]),
        pa.StructArray.from_arrays([role, content], fields=list(MESSAGE_TYPE)),
    )
    schema = RECORD_SCHEMA
    arrays = [
        pa.array(uid, pa.string()),
        pa.repeat(pa.scalar(source, pa.string()), n),
        pa.nulls(n, pa.string()),
        pa.nulls(n, pa.string()),
        image_col,
        sizes,
        question,
        answer,
        pa.nulls(n, schema.field("choices").type),
        pa.ListArray.from_arrays(pa.array(np.zeros(n + 1, dtype=np.int32)), pa.array([], pa.string())),
        pa.nulls(n, schema.field("boxes").type),
        pa.nulls(n, pa.string()),
        messages,
        pa.repeat(pa.scalar(keys.meta, pa.string()), n),
    ]
    return pa.RecordBatch.from_arrays(arrays, schema=schema)
