"""One unit of filter work, run in a worker process (or in the calling process with ``workers=0``).

A worker reads one :class:`curation.io.Task`'s records, runs the text stages, checks the
images (through the shared metadata cache), and builds the canonical columns of the records
that survive, as an Arrow batch. Duplicates are left to the main process, which sees the
records in input order.

Records in a plain sharegpt layout (see :mod:`curation.plain_parse`) go through the
vectorised stages of :mod:`curation.plain_stages`, which only ever certify that a record
passes; every other record, and every record those stages do not pass, goes through the
per-record path below (``orjson``, :mod:`curation.filters`, :mod:`curation.convert`), which
decides and words the reasons. Tests compare the two paths on the same inputs.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import pyarrow as pa

from curation import speedups
from curation.convert import from_pebr, from_sharegpt
from curation.filter_config import FilterConfig
from curation.filters import (
    CODES,
    Drop,
    ParsedRecord,
    canonical_answer,
    check_empty_answer,
    check_image,
    check_image_tags,
    check_reflective,
    duplicate_key,
    fast_final_answer,
    parse_record,
)
from curation.images import ImageChecker, ImageInfo, cache_rows
from curation.io import Task, trim_spans
from curation.record_columns import RecordColumns, one_array

logger = logging.getLogger(__name__)

__all__ = ["BadRecordError", "ChunkResult", "FilterWorker", "fast_final_answer"]

_DEFAULT_SOURCE = {"sharegpt": "sharegpt", "pebr": "pebr_grpo", "canonical": "canonical"}


class BadRecordError(Exception):
    """A record that is not valid JSON, in strict mode: ``(byte offset, line or None, message)``."""

    def __init__(self, offset: int, line: int | None, message: str) -> None:
        super().__init__(offset, line, message)
        self.offset, self.line, self.message = offset, line, message


@dataclass
class ChunkResult:
    """What a worker hands back for one task.

    ``codes[i]`` is 0 for a record that passed every stage so far (a *candidate*) or the
    :data:`curation.filters.CODES` value of its drop reason, with the reason's detail in
    ``details[i]``. Candidates appear in ``batches`` (canonical columns, one after another)
    and ``dup_keys`` in input order. ``raw`` is each record's JSON (row tasks).
    """

    number: int
    first: int
    n: int
    codes: bytearray
    details: dict[int, str]
    dup_keys: list[bytes]
    batches: list[pa.RecordBatch]
    raw: list[bytes] | None = None
    #: the candidates' batches spilled to shared memory (see :mod:`curation.spill`) instead
    #: of ``batches``; :meth:`take_batches` reads them back
    batch_file: str | None = None
    cache: dict[str, Any] = field(default_factory=dict)
    stats: dict[str, int] = field(default_factory=dict)
    plain: int = 0  # records decided by the vectorised path
    #: span tasks: each record's span without its surrounding blanks (relative to the task's
    #: base), the newlines before each record's start and in the whole task (for line numbers)
    tight_starts: np.ndarray | None = None
    tight_ends: np.ndarray | None = None
    newlines_before: np.ndarray | None = None
    newlines: int = 0
    #: span tasks: the text of the records this worker dropped (``codes`` not 0 on return),
    #: one after another in ``dropped_text``, record ``dropped_rows[k]`` ending at
    #: ``dropped_ends[k]``; dropped.parquet quotes it without reading the input again
    dropped_rows: np.ndarray | None = None
    dropped_ends: np.ndarray | None = None
    dropped_text: bytes = b""

    def take_batches(self) -> list[pa.RecordBatch]:
        """The candidates' batches, from shared memory when they were spilled there."""
        if self.batch_file is not None:
            from curation.spill import load

            self.batches, self.batch_file = load(self.batch_file), None
        return self.batches


@dataclass
class _Verdicts:
    """The outcome of one task, filled record by record or in bulk."""

    n: int
    codes: bytearray = field(init=False)
    details: dict[int, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.codes = bytearray(self.n)

    def drop(self, i: int, drop: Drop) -> None:
        self.codes[i] = CODES[drop.reason]
        self.details[i] = drop.detail


class FilterWorker:
    """The per-process state of the filter: config, layout, image checker with its cache."""

    def __init__(
        self,
        config: FilterConfig,
        layout: str,
        image_root: str,
        cache: Any = None,
        messages_key: str | None = None,
    ) -> None:
        from curation.plain_parse import CONVERSATIONS, MESSAGES

        self.config = config
        self.layout = layout
        self.source = config.source or _DEFAULT_SOURCE[layout]
        self.patterns = config.patterns_lower
        self.checker = ImageChecker(
            image_root,
            verify=config.verify_images,
            decode_max_pixels=config.max_pixels,
            cache=cache,
        )
        self._parse = parse_record(layout)
        self._mapped = bool(config.columns)
        # the vectorised path: plain sharegpt records, in the spelling of the first records
        self.plain = None
        if layout == "sharegpt" and not self._mapped:
            self.plain = CONVERSATIONS if messages_key == "conversations" else MESSAGES

    def close(self) -> None:
        self.checker.close()

    def run(self, task: Task) -> ChunkResult:
        """Filter one task's records (every stage but duplicates)."""
        before = self.checker.stats()
        buf = task.read_range() if task.starts is not None else None
        verdicts = _Verdicts(len(task))
        probed: list[tuple[str, ImageInfo]] = []
        batches: list[tuple[np.ndarray, pa.RecordBatch, list[bytes]]] = []
        rows = raw = None
        if task.rows is not None:
            rows = task.rows.to_pylist()
            key = self._images_key
            raw = [orjson.dumps(_paths_only(r, key), default=_json_default) for r in rows]
        slow = np.arange(len(task))
        if self.plain is not None:
            slow = self._run_plain(task, buf, verdicts, probed, batches)
        if len(slow):
            records = self._records(task, buf, rows, slow, verdicts)
            batches.append(self._run_records(records, task.starts is not None, verdicts, probed))
        after = self.checker.stats()
        candidates, dup_keys = _merge(batches)
        tight = _tight_spans(buf, task) if buf is not None else None
        dropped = None
        if tight is not None:
            assert buf is not None
            rows = np.flatnonzero(np.frombuffer(verdicts.codes, dtype=np.uint8))
            lo, hi = tight[0][rows], tight[1][rows]
            text = b"".join([buf[a:b] for a, b in zip(lo.tolist(), hi.tolist(), strict=True)])
            dropped = (rows, np.cumsum(hi - lo), text)
        return ChunkResult(
            number=task.number,
            first=task.first,
            n=len(task),
            codes=verdicts.codes,
            details=verdicts.details,
            dup_keys=dup_keys,
            batches=candidates,
            raw=raw,
            cache=cache_rows(probed),
            stats={k: after[j] - before[j] for j, k in enumerate(after._fields)},
            plain=len(task) - len(slow),
            tight_starts=tight[0] if tight else None,
            tight_ends=tight[1] if tight else None,
            newlines_before=tight[2] if tight else None,
            newlines=tight[3] if tight else 0,
            dropped_rows=dropped[0] if dropped else None,
            dropped_ends=dropped[1] if dropped else None,
            dropped_text=dropped[2] if dropped else b"",
        )

    @property
    def _images_key(self) -> str:
        return self.config.columns.get("images", "images")

    # ------------------------------------------------------------------ the vectorised path

    def _run_plain(
        self,
        task: Task,
        buf: bytes | None,
        verdicts: _Verdicts,
        probed: list[tuple[str, ImageInfo]],
        batches: list[tuple[np.ndarray, pa.RecordBatch, list[bytes]]],
    ) -> np.ndarray:
        """Decide the plain records of a task in bulk; returns the records left to the per-record path."""
        from curation.plain_parse import parse_plain, plain_rows
        from curation.plain_stages import (
            canonical_batch,
            duplicate_keys,
            image_stages,
            text_stages,
            uids,
        )

        cfg = self.config
        if buf is not None:
            parsed = parse_plain(buf, task.starts, task.ends, task.fmt, self.plain)
        else:
            parsed = plain_rows(task.rows, self.plain)
        if not len(parsed.rows):
            return parsed.slow
        n = len(parsed.rows)
        text = text_stages(parsed.table, self.plain, cfg)
        passed = np.zeros(n, dtype=bool)
        passed[text.passed] = True
        decided = passed.copy()  # here: passed, or dropped as reflective with the detail worded
        decided[text.reflective] = True
        for r, detail in zip(parsed.rows[text.reflective].tolist(), text.reflective_details, strict=True):
            verdicts.drop(r, Drop("reflective", detail))
        images = image_stages(one_array(parsed.table.column(1)).filter(pa.array(passed)), self.checker, cfg)
        probed += images.probed
        for r, drop in images.drops.items():
            verdicts.drop(int(parsed.rows[text.passed[r]]), drop)
        keep = pa.array(images.ok)
        final = text.passed[images.ok]
        question, answer = text.question.filter(keep), text.answer.filter(keep)
        uid = uids(question, answer, images.hex, images.offsets)
        dup_keys = []
        if cfg.drop_duplicates:
            dup_keys = duplicate_keys(question, images.hex, images.offsets, lazy=buf is not None)
        chosen = np.zeros(n, dtype=bool)
        chosen[final] = True
        messages = one_array(parsed.table.column(0)).filter(pa.array(chosen))  # filter copies less than take
        batch = canonical_batch(uid, self.source, images, question, answer, messages, self.plain)
        batches.append((parsed.rows[final], batch, dup_keys))
        # rows a text stage did not pass, but for the reflective ones dropped above: the
        # per-record path decides (and words) them
        return np.union1d(parsed.slow, parsed.rows[~decided])

    # ------------------------------------------------------------------ the per-record path

    def _run_records(
        self,
        records: Iterator[tuple[int, Any]],
        lazy_keys: bool,
        verdicts: _Verdicts,
        probed: list[tuple[str, ImageInfo]],
    ) -> tuple[np.ndarray, pa.RecordBatch, list[bytes]]:
        """Decide ``(index, record)`` pairs one by one; returns the candidates' columns.

        ``lazy_keys``: duplicate keys may leave the question out (the main process can re-read
        span records to compare questions).
        """
        cfg = self.config
        cols = RecordColumns()
        dup_keys: list[bytes] = []
        candidates = []
        check = self.checker.check
        for i, rec in records:
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
                    canonical = self._convert(parsed, digests, sizes)
                    cols.add_record(canonical)
                    candidates.append(i)
                    if cfg.drop_duplicates:
                        dup_keys.append(duplicate_key(digests, canonical["question"], lazy=lazy_keys))
            if drop is not None:
                verdicts.drop(i, drop)
        return np.array(candidates, dtype=np.int64), cols.batch(), dup_keys

    def _records(
        self, task: Task, buf: bytes | None, rows: list[Any] | None, which: np.ndarray, verdicts: _Verdicts
    ) -> Iterator[tuple[int, Any]]:
        """``(index, record)`` of records ``which``; bad JSON is recorded (or raised, in strict mode)."""
        if rows is not None:
            for i in which.tolist():
                yield i, rows[i]
            return
        assert buf is not None
        view = memoryview(buf)  # orjson parses slices of it without copying them
        loads = orjson.loads
        for i in which.tolist():
            s, e = int(task.starts[i]), int(task.ends[i])
            try:
                rec = loads(view[s:e])
            except orjson.JSONDecodeError as exc:
                offset, message = _locate_error(buf[s:e], exc)
                offset += task.base + s
                line = int(task.lines[i]) if task.lines is not None else None
                if not self.config.skip_bad_lines:
                    raise BadRecordError(offset, line, message) from None
                where = f"line {line}, byte {offset}" if line is not None else f"byte {offset}"
                verdicts.drop(i, Drop("bad_json", f"{message} ({where})"))
                continue
            yield i, rec

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
        answer = canonical_answer(parsed)
        if self.config.drop_empty_answers:
            drop = check_empty_answer(parsed, answer)
            if drop is not None:
                return drop, None, None
        return None, parsed, answer

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


def _merge(
    parts: list[tuple[np.ndarray, pa.RecordBatch, list[bytes]]],
) -> tuple[list[pa.RecordBatch], list[bytes]]:
    """The candidates of both paths in input order: slices of their batches (no copies) and keys."""
    parts = [p for p in parts if len(p[0])]
    if len(parts) <= 1:
        return [p[1] for p in parts], parts[0][2] if parts else []
    index = np.concatenate([p[0] for p in parts])
    source = np.concatenate([np.full(len(p[0]), k) for k, p in enumerate(parts)])
    position = np.concatenate([np.arange(len(p[0])) for p in parts])
    order = np.argsort(index, kind="stable")
    source, position = source[order], position[order]
    starts = np.flatnonzero(
        np.concatenate(([True], (source[1:] != source[:-1]) | (position[1:] != position[:-1] + 1)))
    )
    lengths = np.diff(np.concatenate((starts, [len(order)])))
    batches, keys = [], []
    for at, length in zip(starts.tolist(), lengths.tolist(), strict=True):
        part, first = parts[int(source[at])], int(position[at])
        batches.append(part[1].slice(first, length))
        keys += part[2][first : first + length]
    return batches, keys


def _tight_spans(buf: bytes, task: Task) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, int]:
    """Each record's span without the blanks around it and, for a JSON list (JSON Lines
    tasks carry their line numbers), the newlines before each record and in the task.

    So that the main process can copy kept records from the input file and name the line of
    dropped ones without reading the task's bytes itself.
    """
    a = np.frombuffer(buf, dtype=np.uint8)
    lo, hi = trim_spans(a, task.starts, task.ends)
    if task.lines is not None:
        return lo, hi, None, 0
    if speedups.native is not None:
        raw, total = speedups.native.newlines_before(buf, lo)
        return lo, hi, np.frombuffer(raw, dtype=np.int64), total
    newline_at = np.flatnonzero(a == 0x0A)
    return lo, hi, np.searchsorted(newline_at, lo), len(newline_at)


def _canonical_row(
    rec: Mapping[str, Any], images: tuple[str, ...], sizes: list[tuple[int, int]]
) -> dict[str, Any]:
    """A canonical input row as it goes to ``kept.parquet``: unchanged, except that image paths
    become ``{"bytes": None, "path": p}`` structs and missing image sizes are the measured ones."""
    from curation.schema import RECORD_SCHEMA

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
_SPILL_DIR: str | None = None


class _NoPandas:
    """A meta path finder that makes ``import pandas`` fail (in worker processes only)."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name == "pandas" or name.startswith("pandas."):
            raise ModuleNotFoundError("pandas is not loaded in pebr filter workers", name=name)
        return None


def init_worker(
    config: FilterConfig,
    layout: str,
    image_root: str,
    cache_path: str | None,
    messages_key: str | None,
    spill_dir: str | None = None,
) -> None:
    """Pool initializer: build this process's :class:`FilterWorker` (loads the image cache once).

    ``spill_dir``: where results are handed back (:mod:`curation.spill`), or ``None`` to pickle.
    """
    global _WORKER, _SPILL_DIR
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    # pyarrow imports pandas (about 0.4 s and 50 MB here) the first time it converts a Python
    # value, only to look for pandas types, and a worker has none: an import that fails tells
    # pyarrow there is no pandas (a spawned worker is a fresh process of its own; a forked
    # one is a copy of the main process, which does not load pandas either)
    if "pandas" not in sys.modules:
        sys.meta_path.insert(0, _NoPandas())
    from curation.images import load_cache

    cache = load_cache(cache_path, image_root) if cache_path else None
    _WORKER = FilterWorker(config, layout, image_root, cache, messages_key)
    _SPILL_DIR = spill_dir


def run_task(task: Task) -> ChunkResult:
    """Pool entry point."""
    assert _WORKER is not None, "init_worker was not called in this process"
    res = _WORKER.run(task)
    if _SPILL_DIR is not None and res.batches:
        from curation.spill import spill

        path = spill(res.batches, _SPILL_DIR, f"{os.getpid()}-{task.number}")
        if path is not None:
            res.batches, res.batch_file = [], path
    return res
