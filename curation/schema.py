"""The canonical record schema that every pebr stage speaks.

One record is one question about one or more images, with its gold answer and whatever
else a stage needs (SFT conversation, key words, gold boxes, reference caption). The same
schema is used in memory (a ``dict`` per record), in Arrow/Polars frames and in Parquet.

Images follow the Hugging Face ``Image`` feature's storage layout: each image is a struct
``{"bytes": binary | null, "path": string | null}``. ``path`` is relative to an image root
(the root is a property of the dataset, never of the record), ``bytes`` holds embedded
content (for exports). Gold boxes are absolute pixel coordinates ``[x1, y1, x2, y2]`` in the
first image.

``meta`` is a JSON object serialised as text: it carries what a converter needs to restore
the source layout exactly (see :mod:`curation.convert`) and free-form provenance (scene
graph, generator parameters).

Example::

    >>> rec = make_record(question="How many circles?", answer="3", images=["a.jpg"],
    ...                   task="count", stage_hint="perception", source="synthetic")
    >>> validate_record(rec)
    []
    >>> table = to_arrow([rec])
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pyarrow as pa

SCHEMA_VERSION = 1

TASKS = (
    "count",
    "color",
    "shape",
    "position",
    "grounding",
    "caption",
    "arithmetic",
    "comparison",
    "multiple_choice",
    "math",
    "other",
)
STAGE_HINTS = ("perception", "reasoning")

IMAGE_TYPE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
SIZE_TYPE = pa.struct([("width", pa.int32()), ("height", pa.int32())])
MESSAGE_TYPE = pa.struct([("role", pa.string()), ("content", pa.string())])

RECORD_SCHEMA = pa.schema(
    [
        pa.field("uid", pa.string(), nullable=False),
        pa.field("source", pa.string()),
        pa.field("task", pa.string()),
        pa.field("stage_hint", pa.string()),
        pa.field("images", pa.list_(IMAGE_TYPE)),
        pa.field("image_sizes", pa.list_(SIZE_TYPE)),
        pa.field("question", pa.string()),
        pa.field("answer", pa.string()),
        pa.field("choices", pa.list_(pa.string())),
        pa.field("key_words", pa.list_(pa.string())),
        pa.field("boxes", pa.list_(pa.list_(pa.float64()))),
        pa.field("reference_caption", pa.string()),
        pa.field("messages", pa.list_(MESSAGE_TYPE)),
        pa.field("meta", pa.string()),
    ],
    metadata={b"pebr_schema_version": str(SCHEMA_VERSION).encode()},
)

COLUMNS = tuple(RECORD_SCHEMA.names)
_LIST_COLUMNS = ("images", "image_sizes", "key_words", "messages")


def image_digest(data: bytes) -> str:
    """Content digest of one image file, used inside :func:`compute_uid`."""
    return hashlib.sha256(data).hexdigest()


def compute_uid(question: str, answer: str, image_keys: Sequence[str]) -> str:
    """Stable id of a record: a hash of its images, question and answer.

    ``image_keys`` should be content digests (:func:`image_digest`) when the image bytes
    are known; converters that only see paths pass ``"path:<relative path>"`` instead, so
    the uid is still stable for the same file layout. Each part is length-prefixed, so no
    two different inputs can collide by concatenation.
    """
    h = hashlib.blake2b(digest_size=16)
    for part in (*image_keys, "\x00q", question or "", "\x00a", answer or ""):
        raw = part.encode("utf-8", "surrogatepass")
        h.update(len(raw).to_bytes(8, "little"))
        h.update(raw)
    return h.hexdigest()


def image_keys_for(images: Sequence[Mapping[str, Any]]) -> list[str]:
    """The keys :func:`compute_uid` hashes for a list of image structs."""
    keys = []
    for img in images:
        if img.get("bytes") is not None:
            keys.append(image_digest(img["bytes"]))
        else:
            keys.append("path:" + str(img.get("path")))
    return keys


def as_image(value: str | bytes | Mapping[str, Any]) -> dict[str, Any]:
    """Normalise a path, raw bytes or an ``{"bytes", "path"}`` mapping to an image struct."""
    if isinstance(value, str):
        return {"bytes": None, "path": value}
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"bytes": bytes(value), "path": None}
    if isinstance(value, Mapping):
        return {"bytes": value.get("bytes"), "path": value.get("path")}
    raise TypeError(f"an image must be a path, bytes or a {{'bytes', 'path'}} mapping, got {type(value)!r}")


def make_record(
    *,
    question: str,
    answer: str,
    images: Iterable[str | bytes | Mapping[str, Any]] = (),
    uid: str | None = None,
    source: str | None = None,
    task: str | None = None,
    stage_hint: str | None = None,
    image_sizes: Iterable[Sequence[int] | Mapping[str, int]] | None = None,
    choices: Sequence[str] | None = None,
    key_words: Sequence[str] = (),
    boxes: Sequence[Sequence[float]] | None = None,
    reference_caption: str | None = None,
    messages: Sequence[Mapping[str, str]] = (),
    meta: Mapping[str, Any] | str | None = None,
) -> dict[str, Any]:
    """Build a canonical record, filling defaults and the uid when it is not given."""
    imgs = [as_image(i) for i in images]
    sizes = None
    if image_sizes is not None:
        sizes = [
            {"width": int(s["width"]), "height": int(s["height"])}
            if isinstance(s, Mapping)
            else {"width": int(s[0]), "height": int(s[1])}
            for s in image_sizes
        ]
    if isinstance(meta, str):
        meta_text = meta
    else:
        meta_text = json.dumps(dict(meta or {}), ensure_ascii=False, sort_keys=True)
    return {
        "uid": uid or compute_uid(question, answer, image_keys_for(imgs)),
        "source": source,
        "task": task,
        "stage_hint": stage_hint,
        "images": imgs,
        "image_sizes": sizes,
        "question": question,
        "answer": answer,
        "choices": list(choices) if choices is not None else None,
        "key_words": list(key_words),
        "boxes": [[float(v) for v in b] for b in boxes] if boxes is not None else None,
        "reference_caption": reference_caption,
        "messages": [{"role": m["role"], "content": m["content"]} for m in messages],
        "meta": meta_text,
    }


def meta_of(record: Mapping[str, Any]) -> dict[str, Any]:
    """The record's ``meta`` as a dict (it is stored as JSON text)."""
    raw = record.get("meta")
    if not raw:
        return {}
    if isinstance(raw, Mapping):
        return dict(raw)
    value = json.loads(raw)
    if not isinstance(value, dict):
        raise ValueError(
            f"record {record.get('uid')!r}: meta must be a JSON object, got {type(value).__name__}"
        )
    return value


def image_paths(record: Mapping[str, Any]) -> list[str | None]:
    return [img.get("path") for img in record.get("images") or []]


def validate_record(record: Mapping[str, Any]) -> list[str]:
    """Problems with one record, as readable sentences; an empty list means valid."""
    problems: list[str] = []
    missing = [c for c in COLUMNS if c not in record]
    if missing:
        problems.append(f"missing columns {missing}")
    if not isinstance(record.get("uid"), str) or not record.get("uid"):
        problems.append("uid must be a non-empty string")
    for col in ("question", "answer"):
        if not isinstance(record.get(col), str):
            problems.append(f"{col} must be a string, got {type(record.get(col)).__name__}")
    task = record.get("task")
    if task is not None and task not in TASKS:
        problems.append(f"task {task!r} is not one of {list(TASKS)}")
    hint = record.get("stage_hint")
    if hint is not None and hint not in STAGE_HINTS:
        problems.append(f"stage_hint {hint!r} is not one of {list(STAGE_HINTS)}")
    images = record.get("images") or []
    for i, img in enumerate(images):
        if not isinstance(img, Mapping) or (img.get("bytes") is None and not img.get("path")):
            problems.append(f"images[{i}] has neither bytes nor a path")
    sizes = record.get("image_sizes")
    if sizes is not None and len(sizes) != len(images):
        problems.append(f"image_sizes has {len(sizes)} entries for {len(images)} images")
    for i, box in enumerate(record.get("boxes") or []):
        if len(box) != 4:
            problems.append(f"boxes[{i}] must have 4 coordinates [x1, y1, x2, y2], got {len(box)}")
    choices = record.get("choices")
    if choices is not None and not all(isinstance(c, str) for c in choices):
        problems.append("choices must be strings")
    for i, msg in enumerate(record.get("messages") or []):
        if not isinstance(msg, Mapping) or not isinstance(msg.get("content"), str) or not msg.get("role"):
            problems.append(f"messages[{i}] must have a role and string content")
    try:
        meta_of(record)
    except (ValueError, TypeError) as exc:
        problems.append(f"meta is not a JSON object: {exc}")
    return problems


def check_records(records: Iterable[Mapping[str, Any]]) -> None:
    """Raise ``ValueError`` naming the first invalid record and its problems."""
    for i, rec in enumerate(records):
        problems = validate_record(rec)
        if problems:
            raise ValueError(f"record {i} (uid={rec.get('uid')!r}): " + "; ".join(problems))


def to_arrow(records: Iterable[Mapping[str, Any]], *, validate: bool = True) -> pa.Table:
    """Records (dicts) to an Arrow table in the canonical schema."""
    records = list(records)
    if validate:
        check_records(records)
    columns = {c: [r.get(c) for r in records] for c in COLUMNS}
    for c in _LIST_COLUMNS:
        if c != "image_sizes":
            columns[c] = [v if v is not None else [] for v in columns[c]]
    return pa.table(columns, schema=RECORD_SCHEMA)


def from_arrow(table: pa.Table) -> list[dict[str, Any]]:
    """An Arrow table in the canonical schema back to records (dicts)."""
    return conform(table).to_pylist()


def conform(table: pa.Table) -> pa.Table:
    """Select, order and cast a table's columns to the canonical schema.

    Columns the schema does not know are an error (they would be silently lost); missing
    optional columns are filled with nulls.
    """
    extra = [c for c in table.column_names if c not in COLUMNS]
    if extra:
        raise ValueError(f"columns {extra} are not in the canonical schema; known columns: {list(COLUMNS)}")
    if "uid" not in table.column_names:
        raise ValueError("the canonical schema needs a 'uid' column")
    arrays = []
    for field in RECORD_SCHEMA:
        if field.name in table.column_names:
            arrays.append(table.column(field.name).cast(field.type))
        else:
            arrays.append(pa.nulls(table.num_rows, field.type))
    return pa.Table.from_arrays(arrays, schema=RECORD_SCHEMA)


def empty_table() -> pa.Table:
    return RECORD_SCHEMA.empty_table()


def read_parquet(path: str) -> pa.Table:
    """Read a canonical Parquet file, checking its columns."""
    import pyarrow.parquet as pq

    return conform(pq.read_table(path))


def write_parquet(table_or_records: pa.Table | Iterable[Mapping[str, Any]], path: str) -> None:
    """Write records or a table to Parquet in the canonical schema (zstd)."""
    import pyarrow.parquet as pq

    table = table_or_records if isinstance(table_or_records, pa.Table) else to_arrow(table_or_records)
    pq.write_table(conform(table), path, compression="zstd")
