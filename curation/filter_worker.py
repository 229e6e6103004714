"""One unit of filter work, run in a worker process (or in-process with ``workers=0``).

A worker parses one :class:`curation.io.Task`'s records, runs the text stages, checks the
images (through the shared metadata cache), and builds the canonical columns of the records
that survive, as an Arrow batch. Duplicates are left to the main process, which sees the
records in input order.

The canonical columns come from the same code as the per-record converters: records in
Mulberry's plain layout (``messages`` of ``role``/``content`` turns, then ``images``) take a
fast path whose every column is what :func:`curation.convert.from_sharegpt` gives (tests
compare the two on samples); any other record goes through the converter itself.
"""

from __future__ import annotations

import array
import hashlib
import itertools
import json
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
import pyarrow as pa

from curation.convert import from_pebr, from_sharegpt, strip_image_tags
from curation.filter_config import FilterConfig
from curation.filters import (
    CODES,
    IMAGE_TAG,
    Drop,
    ParsedRecord,
    check_empty_answer,
    check_image,
    check_image_tags,
    check_reflective,
    duplicate_key,
    parse_record,
)
from curation.images import OK, ImageChecker, ImageInfo, cache_rows, load_cache
from curation.io import Task
from curation.schema import IMAGE_TYPE, MESSAGE_TYPE, RECORD_SCHEMA, SIZE_TYPE
from rewards.sections import _HEADER_RE, FINAL_ANSWER

logger = logging.getLogger(__name__)

_FA_LITERAL = FINAL_ANSWER.removeprefix("###").strip()  # "The final answer is:"
_FA_PREFIX = re.compile(r"[ \t]*###[ \t]*")
_DEFAULT_SOURCE = {"sharegpt": "sharegpt", "pebr": "pebr_grpo", "canonical": "canonical"}


def fast_final_answer(text: str) -> str | None:
    """Exactly :func:`rewards.sections.final_answer`, without parsing every section.

    The last ``### The final answer is:`` header is found from the end (a header is the
    literal at a line start after ``[ \\t]*###[ \\t]*``, which is what the shared regex
    matches); its body runs to the next header of any kind.
    """
    end = len(text)
    while True:
        p = text.rfind(_FA_LITERAL, 0, end)
        if p < 0:
            return None
        line_start = text.rfind("\n", 0, p) + 1
        if _FA_PREFIX.fullmatch(text, line_start, p):
            break
        end = p + len(_FA_LITERAL) - 1
    body_start = p + len(_FA_LITERAL)
    nxt = _HEADER_RE.search(text, body_start)
    return text[body_start : nxt.start() if nxt else len(text)].strip()


def _part(raw: bytes) -> bytes:
    return len(raw).to_bytes(8, "little") + raw


_UID_Q = _part(b"\x00q")
_UID_A = _part(b"\x00a")


def fast_uid(question: str, answer: str, digests: list[str]) -> str:
    """Exactly :func:`curation.schema.compute_uid`: the same length-prefixed bytes, hashed at once."""
    q = question.encode("utf-8", "surrogatepass")
    a = answer.encode("utf-8", "surrogatepass")
    parts = [_part(d.encode("utf-8", "surrogatepass")) for d in digests]
    parts += (_UID_Q, len(q).to_bytes(8, "little"), q, _UID_A, len(a).to_bytes(8, "little"), a)
    return hashlib.blake2b(b"".join(parts), digest_size=16).hexdigest()


_NOT_PLAIN = object()


class BadRecordError(Exception):
    """A record that is not valid JSON, in strict mode: ``(byte offset, line or None, message)``."""

    def __init__(self, offset: int, line: int | None, message: str) -> None:
        super().__init__(offset, line, message)
        self.offset, self.line, self.message = offset, line, message


@dataclass
class ChunkResult:
    """What a worker sends back for one task.

    ``codes[i]`` is 0 for a record that passed every stage so far (a *candidate*) or the
    :data:`curation.filters.CODES` value of its drop reason, with the reason's detail in
    ``details[i]``. Candidates appear in ``batch`` (canonical columns) and ``dup_keys`` in
    input order.
    """

    number: int
    first: int
    n: int
    codes: bytearray
    details: dict[int, str]
    dup_keys: list[bytes]
    batch: pa.RecordBatch
    raw: list[bytes] | None = None
    cache: dict[str, Any] = field(default_factory=dict)
    stats: dict[str, int] = field(default_factory=dict)


class _Columns:
    """Canonical columns of the candidates of one task, built flat and assembled once."""

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

    def add_fast(
        self,
        uid: str,
        source: str,
        paths: tuple[str, ...],
        sizes: list[tuple[int, int]],
        question: str,
        answer: str,
        turns: list[Any],
    ) -> None:
        self.uid.append(uid)
        self.source.append(source)
        self.task.append(None)
        self.stage_hint.append(None)
        self.img_path.extend(paths)
        self.img_off.append(len(self.img_path))
        for w, h in sizes:
            self.size_w.append(w)
            self.size_h.append(h)
        self.size_off.append(len(self.size_w))
        self.question.append(question)
        self.answer.append(answer)
        self.choices.append(None)
        self.kw_off.append(len(self.kw))
        self.boxes.append(None)
        self.ref_caption.append(None)
        for t in turns:
            self.role.append(t["role"])
            self.content.append(t["content"])
        self.msg_off.append(len(self.role))
        self.meta.append("{}")

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

    def batch(self) -> pa.RecordBatch:
        n = len(self.uid)
        images = pa.ListArray.from_arrays(
            _int32_array(self.img_off),
            pa.StructArray.from_arrays(
                [pa.nulls(len(self.img_path), pa.binary()), _string_array(self.img_path)],
                fields=list(IMAGE_TYPE),
            ),
        )
        sizes = pa.ListArray.from_arrays(
            _int32_array(self.size_off),
            pa.StructArray.from_arrays(
                [_int32_array(self.size_w), _int32_array(self.size_h)], fields=list(SIZE_TYPE)
            ),
        )
        kw = pa.ListArray.from_arrays(_int32_array(self.kw_off), _string_array(self.kw))
        messages = pa.ListArray.from_arrays(
            _int32_array(self.msg_off),
            pa.StructArray.from_arrays(
                [_string_array(self.role), _string_array(self.content)], fields=list(MESSAGE_TYPE)
            ),
        )
        arrays = [
            _string_array(self.uid),
            _string_array(self.source),
            _string_array(self.task),
            _string_array(self.stage_hint),
            images,
            sizes,
            _string_array(self.question),
            _string_array(self.answer),
            _maybe_null(self.choices, RECORD_SCHEMA.field("choices").type),
            kw,
            _maybe_null(self.boxes, RECORD_SCHEMA.field("boxes").type),
            _string_array(self.ref_caption),
            messages,
            _string_array(self.meta),
        ]
        batch = pa.RecordBatch.from_arrays(arrays, schema=RECORD_SCHEMA)
        assert batch.num_rows == n
        return batch


# Arrow arrays straight from buffers: ``pa.array`` would import ``pyarrow.compute``, which
# costs each worker process about 50 MB of memory for nothing it uses.


def _int32_array(values: list[int]) -> pa.Array:
    buf = array.array("i", values)
    return pa.Array.from_buffers(pa.int32(), len(buf), [None, pa.py_buffer(buf)])


def _string_array(values: list[str | None]) -> pa.Array:
    n = len(values)
    validity = None
    nulls = 0
    if None in values:
        mask = [v is not None for v in values]
        nulls = n - sum(mask)
        if nulls == n:
            return pa.nulls(n, pa.string())
        bits = bytearray((n + 7) // 8)
        for i, present in enumerate(mask):
            if present:
                bits[i >> 3] |= 1 << (i & 7)
        validity = pa.py_buffer(bytes(bits))
        values = [v if v is not None else "" for v in values]
    # one encode of the joined text (the UTF-8 of a concatenation is the concatenation of the
    # UTF-8s); only non-ASCII strings need their own encoded length
    data = "".join(values).encode("utf-8")  # type: ignore[arg-type]
    offsets = array.array("i", [0])
    offsets.extend(itertools.accumulate(len(v) if v.isascii() else len(v.encode("utf-8")) for v in values))  # type: ignore[union-attr]
    return pa.Array.from_buffers(
        pa.string(), n, [validity, pa.py_buffer(offsets), pa.py_buffer(data)], null_count=nulls
    )


def _maybe_null(values: list[Any], type_: pa.DataType) -> pa.Array:
    if all(v is None for v in values):
        return pa.nulls(len(values), type_)
    return pa.array(values, type_)  # rare (a converter filled it): fine to import compute here


def _is_plain_sharegpt(rec: dict[str, Any]) -> bool:
    """A record :func:`from_sharegpt` converts with an empty ``meta`` (no layout to remember)."""
    if len(rec) != 2:
        return False
    keys = iter(rec)
    if next(keys) != "messages" or next(keys) != "images" or type(rec["images"]) is not list:
        return False
    for turn in rec["messages"]:
        if len(turn) != 2:
            return False
        it = iter(turn)
        if next(it) != "role" or next(it) != "content" or turn["role"] in ("human", "gpt"):
            return False
    return True


class FilterWorker:
    """The per-process state of the filter: config, layout, image checker with its cache."""

    def __init__(
        self,
        config: FilterConfig,
        layout: str,
        image_root: str,
        cache_path: str | None,
    ) -> None:
        self.config = config
        self.layout = layout
        self.source = config.source or _DEFAULT_SOURCE[layout]
        self.patterns = config.patterns_lower
        cache = load_cache(cache_path, image_root) if cache_path else None
        self.checker = ImageChecker(
            image_root,
            verify=config.verify_images,
            decode_max_pixels=config.max_pixels,
            cache=cache,
        )
        self._parse = parse_record(layout)
        self._mapped = bool(config.columns)
        self._fast_ok = layout == "sharegpt" and not self._mapped
        self._lazy_keys = False

    def _fast(
        self,
        rec: Any,
        cols: _Columns,
        dup_keys: list[bytes],
        probed: list[tuple[str, ImageInfo]],
    ) -> Drop | object | None:
        """Every stage for a record in Mulberry's plain layout, in one pass.

        Returns ``_NOT_PLAIN`` (use the general path, which also words the errors) for any
        record that is not plain sharegpt with well-typed turns. The order of the stages and
        their outcome are the general path's; tests compare the two.
        """
        if type(rec) is not dict or len(rec) != 2:
            return _NOT_PLAIN
        keys = iter(rec)
        if next(keys) != "messages" or next(keys) != "images":
            return _NOT_PLAIN
        msgs = rec["messages"]
        images = rec["images"]
        if type(msgs) is not list or not msgs or type(images) is not list:
            return _NOT_PLAIN
        user = assistant = None
        tags = 0
        reflective = None
        patterns = self.patterns
        for i, turn in enumerate(msgs):
            if type(turn) is not dict or len(turn) != 2:
                return _NOT_PLAIN
            tk = iter(turn)
            if next(tk) != "role" or next(tk) != "content":
                return _NOT_PLAIN
            role = turn["role"]
            content = turn["content"]
            if type(role) is not str or type(content) is not str:
                return _NOT_PLAIN
            if role == "assistant":
                assistant = content
                if reflective is None:
                    low = content.lower()
                    for pattern in patterns:
                        if pattern in low:
                            reflective = Drop("reflective", f"turn {i} contains {pattern!r}")
                            break
            elif role == "user":
                if user is None:
                    user = content
                tags += content.count(IMAGE_TAG)
            elif role == "human" or role == "gpt":
                return _NOT_PLAIN
        if user is None:
            return _NOT_PLAIN
        for p in images:
            if type(p) is not str:
                return _NOT_PLAIN
        cfg = self.config
        if cfg.check_image_tags and tags != len(images):
            return Drop("malformed", f"{tags} <image> tag(s) for {len(images)} image(s)")
        if reflective is not None:
            return reflective
        if assistant is None:
            answer = ""
            if cfg.drop_empty_answers:
                return Drop("empty_answer", "no assistant turn")
        else:
            answer = fast_final_answer(assistant)
            if answer is None:
                answer = assistant.strip()
            if cfg.drop_empty_answers and not answer:
                if not assistant.strip():
                    return Drop("empty_answer", "the assistant turn is empty")
                return Drop("empty_answer", "the final-answer section is empty")
        digests = []
        sizes = []
        check = self.checker.check
        for rel in images:
            info, was_read = check(rel)
            if was_read:
                probed.append((rel, info))
            if info.status != OK or info.decode_error is not None or (info.width or 0) < cfg.min_side:
                drop = check_image(info, rel, cfg)
                if drop is not None:
                    return drop
            w = info.width
            h = info.height
            if w * h > cfg.max_pixels or h < cfg.min_side:
                return check_image(info, rel, cfg)
            digests.append(info.sha256)
            sizes.append((w, h))
        question = strip_image_tags(user)
        cols.add_fast(fast_uid(question, answer, digests), self.source, images, sizes, question, answer, msgs)
        if cfg.drop_duplicates:
            dup_keys.append(duplicate_key(digests, question, lazy=self._lazy_keys))
        return None

    def close(self) -> None:
        self.checker.close()

    # ------------------------------------------------------------------ records

    def _load(self, task: Task) -> tuple[list[Any], list[bytes] | None, dict[int, str]]:
        """Parsed records of a task (``None`` for bad JSON), the raw JSON of row tasks, bad-JSON details."""
        bad: dict[int, str] = {}
        if task.rows is not None:
            rows = task.rows.to_pylist()
            key = self.config.columns.get("images", "images")
            raw = [orjson.dumps(_paths_only(r, key), default=_json_default) for r in rows]
            return rows, raw, bad
        buf = task.read_range()
        view = memoryview(buf)  # orjson parses slices of it without copying them
        records: list[Any] = []
        loads = orjson.loads
        for i, (s, e) in enumerate(zip(task.starts.tolist(), task.ends.tolist(), strict=True)):
            try:
                records.append(loads(view[s:e]))
            except orjson.JSONDecodeError as exc:
                records.append(None)
                offset, message = _locate_error(buf[s:e], exc)
                offset += task.base + s
                line = int(task.lines[i]) if task.lines is not None else None
                if not self.config.skip_bad_lines:
                    raise BadRecordError(offset, line, message) from None
                where = f"line {line}, byte {offset}" if line is not None else f"byte {offset}"
                bad[i] = f"{message} ({where})"
        return records, None, bad

    def run(self, task: Task) -> ChunkResult:
        # the main process can re-read span records, so it settles image-key collisions itself
        self._lazy_keys = task.starts is not None
        records, raw, bad = self._load(task)
        before = self.checker.stats()
        cfg = self.config
        n = len(records)
        codes = bytearray(n)
        details: dict[int, str] = {}
        dup_keys: list[bytes] = []
        cols = _Columns()
        probed: list[tuple[str, ImageInfo]] = []
        check = self.checker.check
        fast = self._fast if self._fast_ok else None
        for i, rec in enumerate(records):
            if i in bad:
                codes[i] = CODES["bad_json"]
                details[i] = bad[i]
                continue
            if fast is not None:
                drop = fast(rec, cols, dup_keys, probed)
                if drop is not _NOT_PLAIN:
                    if drop is not None:
                        codes[i] = CODES[drop.reason]
                        details[i] = drop.detail
                    continue
            drop, parsed, answer = self._text_stages(rec)
            if drop is None:
                assert parsed is not None
                assert answer is not None
                digests: list[str] = []
                sizes: list[tuple[int, int]] = []
                for rel in parsed.images:
                    info, was_read = check(rel)
                    if was_read:
                        probed.append((rel, info))
                    drop = check_image(info, rel, cfg)
                    if drop is not None:
                        break
                    digests.append(info.sha256)
                    sizes.append((info.width, info.height))
                if drop is None:
                    self._add_canonical(parsed, answer, digests, sizes, cols, dup_keys)
            if drop is not None:
                codes[i] = CODES[drop.reason]
                details[i] = drop.detail
        after = self.checker.stats()
        stats = {k: after[j] - before[j] for j, k in enumerate(after._fields)}
        return ChunkResult(
            number=task.number,
            first=task.first,
            n=n,
            codes=codes,
            details=details,
            dup_keys=dup_keys,
            batch=cols.batch(),
            raw=raw,
            cache=cache_rows(probed),
            stats=stats,
        )

    def _text_stages(self, rec: Any) -> tuple[Drop | None, ParsedRecord | None, str | None]:
        """Structure, tags, reflective text and empty answers; also returns the canonical answer."""
        parsed = self._parse(rec, self.config.columns)
        if isinstance(parsed, Drop):
            return parsed, None, None
        if self.config.check_image_tags:
            drop = check_image_tags(parsed)
            if drop is not None:
                return drop, None, None
        drop = check_reflective(parsed, self.patterns)
        if drop is not None:
            return drop, None, None
        answer = self._answer(parsed)
        if self.config.drop_empty_answers:
            drop = check_empty_answer(parsed, answer)
            if drop is not None:
                return drop, None, None
        return None, parsed, answer

    @staticmethod
    def _answer(parsed: ParsedRecord) -> str:
        """The canonical ``answer``, as the converters compute it."""
        text = parsed.answer_text
        if parsed.layout in ("pebr", "canonical"):
            return text or ""
        if text is None:
            return ""
        answer = fast_final_answer(text)
        return answer if answer is not None else text.strip()

    def _add_canonical(
        self,
        parsed: ParsedRecord,
        answer: str,
        digests: list[str],
        sizes: list[tuple[int, int]],
        cols: _Columns,
        dup_keys: list[bytes],
    ) -> None:
        rec = parsed.record
        if parsed.layout == "sharegpt" and not self._mapped and type(rec) is dict and _is_plain_sharegpt(rec):
            user = next(c for r, c in parsed.turns if r == "user")
            question = strip_image_tags(user)
            uid = fast_uid(question, answer, digests)
            cols.add_fast(uid, self.source, parsed.images, sizes, question, answer, rec["messages"])
        else:
            canonical = self._convert(parsed, digests, sizes)
            cols.add_record(canonical)
            question = canonical["question"]
        if self.config.drop_duplicates:
            dup_keys.append(duplicate_key(digests, question, lazy=self._lazy_keys))

    def _convert(
        self, parsed: ParsedRecord, digests: list[str], sizes: list[tuple[int, int]]
    ) -> dict[str, Any]:
        rec = parsed.record
        if parsed.layout == "canonical":
            return _canonical_row(rec, parsed.images, sizes)
        if parsed.layout == "sharegpt":
            if self._mapped:
                rec = _standard_sharegpt(parsed, self.config.columns)
            return from_sharegpt(rec, source=self.source, image_keys=digests, image_sizes=sizes)
        if self._mapped:
            rec = _standard_pebr(rec, self.config.columns)
        out = from_pebr(rec, source=self.source, image_keys=digests)
        out["image_sizes"] = [{"width": w, "height": h} for w, h in sizes]
        return out


def _canonical_row(
    rec: Mapping[str, Any], images: tuple[str, ...], sizes: list[tuple[int, int]]
) -> dict[str, Any]:
    """A canonical input row as it goes to ``kept.parquet``: unchanged, except that image paths
    become ``{"bytes": None, "path": p}`` structs and missing image sizes are the measured ones."""
    row = {name: rec.get(name) for name in RECORD_SCHEMA.names}
    row["images"] = [{"bytes": None, "path": p} for p in images]
    if not row["image_sizes"]:
        row["image_sizes"] = [{"width": w, "height": h} for w, h in sizes]
    row["messages"] = row["messages"] or []
    meta = row["meta"]
    if meta is None:
        row["meta"] = "{}"
    elif not isinstance(meta, str):
        row["meta"] = json.dumps(meta, default=_json_default, ensure_ascii=False, sort_keys=True)
    return row


def _standard_sharegpt(parsed: ParsedRecord, columns: Mapping[str, str]) -> dict[str, Any]:
    """A mapped record renamed to plain sharegpt (unmapped keys ride along into ``meta``)."""
    rec = parsed.record
    used = {columns.get("messages", "messages"), columns.get("images", "images")}
    out: dict[str, Any] = {
        "messages": [{"role": r, "content": c} for r, c in parsed.turns],
        "images": list(parsed.images),
    }
    out.update({k: v for k, v in rec.items() if k not in used})
    return out


def _standard_pebr(rec: Mapping[str, Any], columns: Mapping[str, str]) -> dict[str, Any]:
    out = {}
    renamed = {columns.get(k, k): k for k in ("qid", "problem", "answer", "images", "key_words")}
    for k, v in rec.items():
        out[renamed.get(k, k)] = v
    if isinstance(out.get("images"), list):
        out["images"] = [i["path"] if isinstance(i, Mapping) else i for i in out["images"]]
    return out


def _paths_only(row: dict[str, Any], key: str) -> dict[str, Any]:
    """A row whose images are Hugging Face ``{"bytes": None, "path": p}`` structs, with plain paths.

    So that ``kept.json`` from Parquet or a saved dataset is sharegpt JSON LLaMA-Factory reads.
    """
    images = row.get(key)
    if isinstance(images, list) and any(isinstance(i, Mapping) for i in images):
        if all(isinstance(i, Mapping) and i.get("bytes") is None and "path" in i for i in images):
            return {**row, key: [i["path"] for i in images]}
    elif isinstance(images, Mapping) and images.get("bytes") is None and "path" in images:
        return {**row, key: images["path"]}
    return row


def _json_default(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        import base64

        return {"base64": base64.b64encode(bytes(value)).decode()}
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def _locate_error(span: bytes, exc: orjson.JSONDecodeError) -> tuple[int, str]:
    """(byte offset within the span, message) of a JSON error, naming bad UTF-8 precisely."""
    try:
        text = span.decode("utf-8")
    except UnicodeDecodeError as uexc:
        return uexc.start, f"not valid UTF-8 (byte {span[uexc.start]:#04x})"
    message = str(exc).split(": line ")[0]
    if not span.strip():
        return 0, "empty record (a stray comma or blank line)"
    return len(text[: exc.pos].encode("utf-8")), f"invalid JSON: {message}"


# --------------------------------------------------------------------------- process pool glue

_WORKER: FilterWorker | None = None


def init_worker(config: FilterConfig, layout: str, image_root: str, cache_path: str | None) -> None:
    """Pool initializer: build this process's :class:`FilterWorker` (loads the image cache once)."""
    global _WORKER
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    _WORKER = FilterWorker(config, layout, image_root, cache_path)


def run_task(task: Task) -> ChunkResult:
    """Pool entry point."""
    assert _WORKER is not None, "init_worker was not called in this process"
    return _WORKER.run(task)
