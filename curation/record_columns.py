"""Canonical records (dicts from the converters) gathered into one Arrow batch.

Records that the vectorised path (:mod:`curation.plain_stages`) does not take are converted
one by one; their columns are collected here. Arrays are made straight from buffers, which
is faster than ``pa.array`` on long lists of strings.
"""

from __future__ import annotations

import array
import itertools
from collections.abc import Mapping
from typing import Any

import pyarrow as pa

from curation.schema import IMAGE_TYPE, MESSAGE_TYPE, RECORD_SCHEMA, SIZE_TYPE


def one_array(column: pa.ChunkedArray) -> pa.Array:
    """``column`` as one array: its only chunk as it is (``combine_chunks`` copies even that,
    which for a task's messages is megabytes of text)."""
    return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()


class RecordColumns:
    """Canonical columns of records converted one by one, built flat and assembled once."""

    def __init__(self) -> None:
        self.uid: list[str] = []
        self.source: list[str | None] = []
        self.task: list[str | None] = []
        self.stage_hint: list[str | None] = []
        self.img_off = [0]
        self.img_path: list[str | None] = []
        self.size_off = [0]
        self.size_w: list[int] = []
        self.size_h: list[int] = []
        self.question: list[str] = []
        self.answer: list[str] = []
        self.choices: list[list[str] | None] = []
        self.kw_off = [0]
        self.kw: list[str] = []
        self.boxes: list[list[list[float]] | None] = []
        self.ref_caption: list[str | None] = []
        self.msg_off = [0]
        self.role: list[str] = []
        self.content: list[str] = []
        self.meta: list[str] = []

    def add_record(self, rec: Mapping[str, Any]) -> None:
        """A canonical record dict from a converter."""
        self.uid.append(rec["uid"])
        self.source.append(rec["source"])
        self.task.append(rec["task"])
        self.stage_hint.append(rec["stage_hint"])
        self.img_path.extend(img["path"] for img in rec["images"])
        self.img_off.append(len(self.img_path))
        for s in rec["image_sizes"] or ():
            self.size_w.append(s["width"])
            self.size_h.append(s["height"])
        self.size_off.append(len(self.size_w))
        self.question.append(rec["question"])
        self.answer.append(rec["answer"])
        self.choices.append(rec["choices"])
        self.kw.extend(rec["key_words"] or ())
        self.kw_off.append(len(self.kw))
        self.boxes.append(rec["boxes"])
        self.ref_caption.append(rec["reference_caption"])
        for m in rec["messages"]:
            self.role.append(m["role"])
            self.content.append(m["content"])
        self.msg_off.append(len(self.role))
        self.meta.append(rec["meta"])

    def __len__(self) -> int:
        return len(self.uid)

    def batch(self) -> pa.RecordBatch:
        """The records added so far, as a :data:`curation.schema.RECORD_SCHEMA` batch."""
        n = len(self.uid)
        images = pa.ListArray.from_arrays(
            int32_array(self.img_off),
            pa.StructArray.from_arrays(
                [pa.nulls(len(self.img_path), pa.binary()), string_array(self.img_path)],
                fields=list(IMAGE_TYPE),
            ),
        )
        sizes = pa.ListArray.from_arrays(
            int32_array(self.size_off),
            pa.StructArray.from_arrays(
                [int32_array(self.size_w), int32_array(self.size_h)], fields=list(SIZE_TYPE)
            ),
        )
        kw = pa.ListArray.from_arrays(int32_array(self.kw_off), string_array(self.kw))
        messages = pa.ListArray.from_arrays(
            int32_array(self.msg_off),
            pa.StructArray.from_arrays(
                [string_array(self.role), string_array(self.content)], fields=list(MESSAGE_TYPE)
            ),
        )
        arrays = [
            string_array(self.uid),
            string_array(self.source),
            string_array(self.task),
            string_array(self.stage_hint),
            images,
            sizes,
            string_array(self.question),
            string_array(self.answer),
            _maybe_null(self.choices, RECORD_SCHEMA.field("choices").type),
            kw,
            _maybe_null(self.boxes, RECORD_SCHEMA.field("boxes").type),
            string_array(self.ref_caption),
            messages,
            string_array(self.meta),
        ]
        batch = pa.RecordBatch.from_arrays(arrays, schema=RECORD_SCHEMA)
        assert batch.num_rows == n
        return batch


def int32_array(values: list[int]) -> pa.Array:
    buf = array.array("i", values)
    return pa.Array.from_buffers(pa.int32(), len(buf), [None, pa.py_buffer(buf)])


def _validity(values: list[Any]) -> tuple[Any, int]:
    """(validity bitmap or None, null count) of a list with ``None`` for nulls."""
    if None not in values:
        return None, 0
    bits = bytearray((len(values) + 7) // 8)
    nulls = 0
    for i, v in enumerate(values):
        if v is None:
            nulls += 1
        else:
            bits[i >> 3] |= 1 << (i & 7)
    return pa.py_buffer(bytes(bits)), nulls


# ``pa.array`` of a list or a numpy array imports pandas (0.4 s, 50 MB) to look for pandas
# types; the builders below make arrays from buffers instead


def _bitmap(valid: Any) -> Any:
    import numpy as np

    return pa.py_buffer(np.packbits(np.asarray(valid, dtype=bool), bitorder="little"))


def integers_of(values: Any, type_: pa.DataType | None = None, null: Any = None) -> pa.Array:
    """A numpy array of integers as an Arrow integer array (``int64`` unless ``type_`` says
    another width or sign), null where ``null`` is true."""
    import numpy as np

    type_ = type_ or pa.int64()
    kind = "u" if pa.types.is_unsigned_integer(type_) else "i"
    data = np.ascontiguousarray(values, dtype=f"<{kind}{type_.bit_width // 8}")
    nulls = 0 if null is None else int(np.count_nonzero(null))
    validity = _bitmap(~np.asarray(null, dtype=bool)) if nulls else None
    return pa.Array.from_buffers(type_, len(data), [validity, pa.py_buffer(data)], null_count=nulls)


def bool_of(values: Any) -> pa.Array:
    """A numpy array of truth values as an Arrow ``bool`` array."""
    return pa.Array.from_buffers(pa.bool_(), len(values), [None, _bitmap(values)])


def pick_strings(names: list[str | None], codes: Any) -> pa.Array:
    """``names[codes[i]]`` for each ``i``, as an Arrow string array (a name may be ``None``)."""
    return string_array(names).take(integers_of(codes, pa.int32()))


def string_array(values: list[str | None]) -> pa.Array:
    n = len(values)
    validity, nulls = _validity(values)
    if nulls:
        if nulls == n:
            return pa.nulls(n, pa.string())
        values = [v if v is not None else "" for v in values]
    # one encode of the joined text (the UTF-8 of a concatenation is the concatenation of the
    # UTF-8s); only non-ASCII strings need their own encoded length
    data = "".join(values).encode("utf-8")  # type: ignore[arg-type]
    offsets = array.array("i", [0])
    offsets.extend(itertools.accumulate(len(v) if v.isascii() else len(v.encode("utf-8")) for v in values))  # type: ignore[union-attr]
    return pa.Array.from_buffers(
        pa.string(), n, [validity, pa.py_buffer(offsets), pa.py_buffer(data)], null_count=nulls
    )


def text_array(pieces: list[bytes]) -> pa.Array:
    """Byte strings as an Arrow string array, bytes that are not UTF-8 shown as U+FFFD."""
    import numpy as np

    offsets = np.zeros(len(pieces) + 1, dtype=np.int64)
    np.cumsum([len(p) for p in pieces], out=offsets[1:])
    if offsets[-1] < 1 << 31:
        data = pa.py_buffer(b"".join(pieces))
        binary = pa.Array.from_buffers(
            pa.binary(), len(pieces), [None, pa.py_buffer(offsets.astype(np.int32)), data]
        )
        try:
            return binary.cast(pa.string())  # checks the UTF-8
        except pa.ArrowInvalid:
            pass
    return string_array([p.decode("utf-8", "replace") for p in pieces])


def _maybe_null(values: list[Any], type_: pa.DataType) -> pa.Array:
    if all(v is None for v in values):
        return pa.nulls(len(values), type_)
    return pa.array(values, type_)  # rare (a converter filled it): fine to import compute here
