"""``filter_dataset``: run the filter stages over a dataset and write the run directory.

Outputs in ``out_dir``:

=====================  =======================================================================
``kept.json``          the kept records, in input order, each byte for byte as in the input
                       (JSON/JSONL sources), ready for LLaMA-Factory
``dataset_info.json``  a LLaMA-Factory entry for ``kept.json`` (sharegpt inputs)
``kept.parquet``       the kept records in the canonical schema (:mod:`curation.schema`)
``dropped.parquet``    every dropped record: input index, reason, detail, line/byte offset and
                       its original JSON text
``report.json``        counts (input, per drop reason, kept), image-check counters, config
=====================  =======================================================================

``kept + dropped == input`` is checked before anything is published; the files are written
under temporary names and renamed at the end, so a failed run leaves no half-written output.

Example::

    >>> report = filter_dataset("mulberry_sft.json", "images/", "runs/filter")  # doctest: +SKIP
    >>> report.kept, report.dropped["reflective"]
    (243718, 7553)
"""

from __future__ import annotations

import collections
import itertools
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from curation.filter_config import FilterConfig
from curation.filters import CODES, REASONS, detect_layout
from curation.images import CACHE_FILENAME, CacheWriter, cache_table, load_cache
from curation.io import BadInputError, InputSource, Task, describe_position
from curation.parquet_out import InOrderThread, RowGroupWriter
from curation.processes import remove_stale

logger = logging.getLogger(__name__)

KEPT_JSON = "kept.json"
KEPT_PARQUET = "kept.parquet"
DROPPED_PARQUET = "dropped.parquet"
REPORT_JSON = "report.json"
DATASET_INFO = "dataset_info.json"
_OUTPUTS = (KEPT_JSON, KEPT_PARQUET, DROPPED_PARQUET)  # written under temporary names, then renamed
_ROWS_PER_GROUP = 8192  # Parquet row group size of the outputs
_REASON_OF = {code: reason for reason, code in CODES.items()}

#: ``progress(records_done, fraction_done)``: called after each unit of work.
ProgressCallback = Callable[[int, float], None]


@dataclass
class FilterReport:
    """What a filter run did; ``report.json`` is :meth:`to_dict`."""

    input: str
    format: str
    layout: str
    image_root: str
    out_dir: str
    records: int = 0
    kept: int = 0
    dropped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REASONS, 0))
    images: dict[str, int] = field(default_factory=dict)
    cache_path: str | None = None
    seconds: float = 0.0
    config: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())

    def to_dict(self) -> dict[str, Any]:
        import PIL

        return {
            "input": self.input,
            "format": self.format,
            "layout": self.layout,
            "image_root": self.image_root,
            "out_dir": self.out_dir,
            "records": self.records,
            "kept": self.kept,
            "dropped_total": self.dropped_total,
            "dropped": dict(self.dropped),
            "images": dict(self.images),
            "cache_path": self.cache_path,
            "seconds": round(self.seconds, 3),
            "pillow_version": PIL.__version__,
            "config": self.config,
            "outputs": dict(self.outputs),
        }


class AccountingError(RuntimeError):
    """kept + dropped != input: a bug, never a property of the data."""


# --------------------------------------------------------------------------- outputs


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class _KeptJson:
    """Streams ``kept.json``: a JSON list of the kept records' original text.

    Records from a JSON or JSONL file are copied from the input file by the kernel
    (``copy_file_range``), a run of consecutive kept records at a time, so their bytes never
    pass through this process; records from other inputs are written from their JSON text.
    The writes run in order on a thread of their own (they release the GIL) while the caller
    goes on; an error one met is raised by the next call.
    """

    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0), 0o644)
        self.count = 0
        self.started = False
        self._kernel_copy = hasattr(os, "copy_file_range")
        self._thread = InOrderThread("kept-json", 8)

    def _sep(self) -> bytes:
        sep = b",\n  " if self.started else b"[\n  "
        self.started = True
        return sep

    def write(self, pieces: list[Any], records: int) -> None:
        """Append ``pieces`` (each one record's JSON text)."""
        if not pieces:
            return
        self._thread.submit(_write_all, self.fd, self._sep() + b",\n  ".join(pieces))
        self.count += records

    def copy(self, src_fd: int, runs: list[tuple[int, int]], records: int) -> None:
        """Append byte ranges ``(offset, length)`` of the input file, each one or more records."""
        if runs:
            self._thread.submit(
                self._copy, src_fd, [(self._sep(), offset, length) for offset, length in runs]
            )
        self.count += records

    def _copy(self, src_fd: int, runs: list[tuple[bytes, int, int]]) -> None:
        for sep, offset, length in runs:
            _write_all(self.fd, sep)
            while length > 0:
                n = 0
                if self._kernel_copy:
                    try:
                        n = os.copy_file_range(src_fd, self.fd, length, offset)
                    except OSError:  # another file system or kernel: copy through this process
                        self._kernel_copy = False
                if not n:
                    data = os.pread(src_fd, min(length, 1 << 24), offset)
                    if not data:
                        raise BadInputError("the input file shrank while kept.json was being written")
                    _write_all(self.fd, data)
                    n = len(data)
                offset += n
                length -= n

    def close(self) -> None:
        try:
            self._thread.wait()
        finally:
            self._thread.stop()
        _write_all(self.fd, b"\n]\n" if self.started else b"[]\n")
        os.close(self.fd)
        self.fd = -1

    def abort(self) -> None:
        self._thread.stop()  # a write in flight finishes; what it raised is moot now
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _parquet_out(path: Path, schema: Any, background: bool = False) -> RowGroupWriter:
    """A writer of one of the run's Parquet outputs, in row groups of about ``_ROWS_PER_GROUP``."""
    # dictionary encoding and statistics only where values repeat (uids and texts are unique)
    small = [f.name for f in schema if f.name in ("source", "task", "stage_hint", "meta", "reason")]
    return RowGroupWriter(
        path,
        schema,
        _ROWS_PER_GROUP,
        background=background,
        compression="zstd",
        use_dictionary=small,
        write_statistics=[*small, "index"],
    )


def dropped_schema() -> Any:
    import pyarrow as pa

    return pa.schema(
        [
            pa.field("index", pa.int64(), nullable=False),
            pa.field("reason", pa.string(), nullable=False),
            pa.field("detail", pa.string()),
            pa.field("line", pa.int64()),
            pa.field("offset", pa.int64()),
            pa.field("raw", pa.string()),
        ]
    )


class _LineCounter:
    """Line numbers of a JSON file's tasks, which arrive in order.

    Workers count the newlines in their task; the few bytes between two tasks are counted here.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.offset = 0
        self.line = 1

    def task(self, base: int, length: int, newlines: int) -> int:
        """The line number at byte ``base``, the start of the next task of ``length`` bytes
        holding ``newlines`` newlines."""
        if base > self.offset:
            self.line += _pread(self.path, self.offset, base - self.offset).count(b"\n")
        at_base = self.line
        self.line += newlines
        self.offset = base + length
        return at_base


_FDS: dict[str, int] = {}


def _fd(path: str) -> int:
    """A descriptor of ``path`` kept open for the run (see ``_close_fds``)."""
    fd = _FDS.get(path)
    if fd is None:
        fd = _FDS[path] = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    return fd


def _pread(path: str, offset: int, length: int) -> bytes:
    """Bytes of ``path`` through a descriptor kept open for the run."""
    return os.pread(_fd(path), length, offset)


def _close_fds() -> None:
    while _FDS:
        os.close(_FDS.popitem()[1])


# --------------------------------------------------------------------------- the run


def _default_cache_path(image_root: Path, out_dir: Path) -> Path:
    if os.access(image_root, os.W_OK):
        return image_root / CACHE_FILENAME
    logger.info("image root %s is not writable; keeping the image cache in %s", image_root, out_dir)
    return out_dir / CACHE_FILENAME


def _choose_layout(source: InputSource, config: FilterConfig) -> tuple[str, str | None]:
    """The layout, and the messages key of the first sharegpt record (for dataset_info)."""
    samples = source.first_records()
    for rec in samples:
        layout = detect_layout(rec, config.columns)
        if layout is not None and config.layout in ("auto", layout):
            mkey = None
            if layout == "sharegpt":
                mkey = config.columns.get("messages") or (
                    "messages" if "messages" in rec else "conversations"
                )
            return layout, mkey
    if config.layout != "auto":
        return config.layout, config.columns.get("messages", "messages")
    if not samples:
        return "sharegpt", "messages"  # nothing parseable to look at: every record will be dropped
    raise ValueError(
        f"{source.path}: cannot tell the layout from the first records (no 'messages', "
        "'conversations' or 'problem' key); set layout or a column mapping"
    )


def _dataset_info_entry(layout: str, mkey: str | None, config: FilterConfig) -> dict[str, Any] | None:
    if layout != "sharegpt":
        return None
    cols = config.columns
    images_key = cols.get("images", "images")
    if mkey == "conversations" and "messages" not in cols:
        tags = {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt"}
    else:
        tags = {
            "role_tag": cols.get("role", "role"),
            "content_tag": cols.get("content", "content"),
            "user_tag": cols.get("user", "user"),
            "assistant_tag": cols.get("assistant", "assistant"),
        }
    tags["system_tag"] = cols.get("system", "system")
    return {
        "file_name": KEPT_JSON,
        "formatting": "sharegpt",
        "columns": {"messages": mkey or "messages", "images": images_key},
        "tags": tags,
    }


_BROKEN_POOL = (
    "a filter worker process died. Where worker processes are started with 'spawn' (not Linux, "
    "or threads were running), they re-import the calling script: call filter_dataset under "
    '`if __name__ == "__main__":` (or pass workers=0); a worker killed for memory shows the same error'
)

#: ``PEBR_FILTER_START=spawn`` (or ``fork``, ``forkserver``) overrides the choice below
START_METHOD_ENV = "PEBR_FILTER_START"


def _start_method() -> str:
    """How worker processes start: ``fork`` on Linux while this process runs a single thread
    (workers then share its imports and its loaded image cache instead of each importing and
    loading them, about 0.5 s of CPU per worker), else ``spawn``, which is safe with threads
    and the same on every OS."""
    import multiprocessing
    import sys
    import threading

    forced = os.environ.get(START_METHOD_ENV)
    if forced:
        if forced not in multiprocessing.get_all_start_methods():
            raise ValueError(f"{START_METHOD_ENV}={forced!r}: not a start method on this system")
        return forced
    if sys.platform.startswith("linux") and threading.active_count() == 1:
        return "fork"
    return "spawn"


def _results(
    source: InputSource,
    config: FilterConfig,
    layout: str,
    messages_key: str | None,
    image_root: Path,
    cache_path: Path | None,
) -> Iterator[tuple[Task, Any]]:
    """(task, ChunkResult) in input order, from worker processes or from this process.

    Processes, not threads: the per-record path, the image probes and the hashing of the
    uids hold the GIL, and on two cores threads ran them one at a time (the cold run was
    slower with threads than with processes). Each worker loads the image cache once.
    Workers hand their batches back through shared memory (:mod:`curation.spill`).
    """
    import multiprocessing

    from curation.filter_worker import FilterWorker, init_worker, run_task
    from curation.spill import spill_dir

    tasks = source.tasks(config.chunk_records)
    n_workers = config.n_workers
    if n_workers == 0:
        cache = load_cache(cache_path, image_root) if cache_path is not None else None
        worker = FilterWorker(config, layout, str(image_root), cache, messages_key)
        try:
            for task in tasks:
                yield task, worker.run(task)
        finally:
            worker.close()
        return
    method = _start_method()
    cache_arg = str(cache_path) if cache_path is not None else None
    if method == "fork":
        # every worker needs it (about 0.25 s to import): imported once, here, and inherited.
        # The image cache is not: each worker builds its own lookup while this process starts
        # scanning, which measured 0.2 s faster than loading it here before forking.
        import pyarrow.compute  # noqa: F401
    ctx = multiprocessing.get_context(method)
    window: collections.deque[tuple[Task, Future]] = collections.deque()
    with (
        spill_dir() as spill,
        ProcessPoolExecutor(
            max_workers=n_workers,
            mp_context=ctx,
            initializer=init_worker,
            initargs=(config, layout, str(image_root), cache_arg, messages_key, spill),
        ) as pool,
    ):
        try:
            for task in tasks:
                try:
                    window.append((task, pool.submit(run_task, task)))
                except BrokenProcessPool as exc:
                    raise RuntimeError(_BROKEN_POOL) from exc
                # a bounded window keeps memory flat: results are consumed in order
                while len(window) > 2 * n_workers + 1:
                    t, fut = window.popleft()
                    yield t, fut.result()
            while window:
                t, fut = window.popleft()
                yield t, fut.result()
        except BrokenProcessPool as exc:
            raise RuntimeError(_BROKEN_POOL) from exc
        finally:
            for _t, fut in window:
                fut.cancel()


def filter_dataset(
    input: str | os.PathLike[str],
    image_root: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    config: FilterConfig | None = None,
    *,
    progress: ProgressCallback | None = None,
) -> FilterReport:
    """Filter ``input`` (JSON list, JSONL, Parquet or a saved dataset) into ``out_dir``.

    ``image_root`` is the directory the records' relative image paths start from. Returns
    the :class:`FilterReport` also written to ``report.json``. Raises
    :class:`curation.io.BadInputError` (a ``ValueError``) for unreadable input unless
    ``config.skip_bad_lines``, ``FileNotFoundError`` for a missing input or image root.
    """
    from curation.filter_worker import BadRecordError

    config = config or FilterConfig()
    t0 = time.perf_counter()
    input_path = Path(input)
    root = Path(image_root)
    if not root.is_dir():
        raise FileNotFoundError(f"image root {root} is not a directory")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # outputs half-written or moved aside (see _replace) by an earlier run that was killed
    remove_stale(out, [f".{name}.{kind}-" for name in _OUTPUTS for kind in ("tmp", "old")])
    source = InputSource(input_path, split=config.split, skip_bad_lines=config.skip_bad_lines)
    layout, mkey = _choose_layout(source, config)
    cache_path = None
    if config.cache:
        cache_path = Path(config.cache_path) if config.cache_path else _default_cache_path(root, out)
    report = FilterReport(
        input=str(input_path),
        format=source.fmt,
        layout=layout,
        image_root=str(root),
        out_dir=str(out),
        cache_path=str(cache_path) if cache_path else None,
        config=config.to_dict(),
    )
    logger.info("filtering %s (%s, %s layout) with images under %s", input_path, source.fmt, layout, root)

    from curation.schema import RECORD_SCHEMA

    tmp = {name: out / f".{name}.tmp-{os.getpid()}" for name in _OUTPUTS}
    kept_json = _KeptJson(tmp[KEPT_JSON])
    # kept.parquet is most of this process's work (about 0.7 CPU-s for 240K records): encoded
    # on a thread while the next results are taken in. The thread starts at the first row
    # group, after the worker processes were forked.
    kept_pq = _parquet_out(tmp[KEPT_PARQUET], RECORD_SCHEMA, background=True)
    dropped_pq = _parquet_out(tmp[DROPPED_PARQUET], dropped_schema())
    dedup = _Dedup(source, layout, config)
    cache_out = CacheWriter(cache_path, root) if cache_path is not None else None
    image_stats: collections.Counter[str] = collections.Counter()
    lines = _LineCounter(source.path) if source.fmt == "json" else None
    done = plain = 0
    try:
        try:
            for task, res in _results(source, config, layout, mkey, root, cache_path):
                _absorb(task, res, source, config, dedup, kept_json, kept_pq, dropped_pq, lines, report)
                if cache_out is not None and res.cache and res.cache["n"]:
                    cache_out.write(cache_table(res.cache))
                image_stats.update(res.stats)
                plain += res.plain
                done += res.n
                if progress is not None:
                    if source.has_spans:
                        frac = (task.base + task.length) / max(source.total_bytes, 1)
                    else:
                        frac = done / max(source.total_rows or done, 1)
                    progress(done, frac)
        except BadRecordError as exc:
            where = (
                f"line {exc.line} (byte {exc.offset})"
                if exc.line is not None
                else describe_position(source.path, exc.offset)
            )
            raise BadInputError(
                f"{source.path}: {where}: {exc.message}; use --skip-bad-lines to drop such records"
            ) from None
        kept_json.close()
        kept_pq.close()
        dropped_pq.close()
        _close_fds()
        report.records = source.n_records
        report.images = dict(image_stats)
        logger.info("%d of %d records decided by the vectorised stages", plain, report.records)
        _check_accounting(report, kept_json.count, kept_pq.count, dropped_pq.count)
    except BaseException:
        kept_json.abort()  # first: its thread may still be copying from the input's fd
        _close_fds()
        if cache_out is not None:
            cache_out.abort()
        for w in (kept_pq, dropped_pq):
            try:
                w.abort()
            except Exception:
                logger.debug("could not close a partial output", exc_info=True)
        for p in tmp.values():
            p.unlink(missing_ok=True)
        raise

    for name, path in tmp.items():
        _replace(path, out / name)
        report.outputs[name] = str(out / name)
    entry = _dataset_info_entry(layout, mkey, config)
    if entry is not None:
        name = config.dataset_name or f"{input_path.stem}_kept"
        _write_dataset_info(out / DATASET_INFO, name, entry)
        report.outputs[DATASET_INFO] = str(out / DATASET_INFO)
    if cache_out is not None:
        new_rows = cache_out.commit()
        if new_rows:
            logger.info("image cache %s: %d entries new or changed", cache_path, new_rows)
    report.seconds = time.perf_counter() - t0
    report.outputs[REPORT_JSON] = str(out / REPORT_JSON)
    (out / REPORT_JSON).write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
    logger.info(
        "%d records: %d kept, %d dropped (%s) in %.1fs",
        report.records,
        report.kept,
        report.dropped_total,
        ", ".join(f"{k} {v}" for k, v in report.dropped.items() if v),
        report.seconds,
    )
    return report


class _Dedup:
    """The duplicate stage, run in input order in the main process.

    ``F`` keys (images + normalised question) are final. ``I`` keys (images only, see
    :func:`curation.filters.duplicate_key`) are settled here: on a collision the normalised
    questions are compared, the earlier record's question being read back from the input.
    """

    def __init__(self, source: InputSource, layout: str, config: FilterConfig) -> None:
        self.source = source
        self.layout = layout
        self.columns = config.columns
        self.seen: dict[bytes, Any] = {}
        self._firsts: list[int] = []
        self._spans: list[tuple[Any, Any]] = []

    def add_task(self, task: Task) -> None:
        if task.starts is not None:
            self._firsts.append(task.first)
            self._spans.append((task.starts + task.base, task.ends + task.base))

    def _question(self, index: int) -> str:
        import bisect

        import orjson

        from curation.convert import strip_image_tags
        from curation.filters import parse_record

        t = bisect.bisect_right(self._firsts, index) - 1
        starts, ends = self._spans[t]
        k = index - self._firsts[t]
        rec = orjson.loads(_pread(self.source.path, int(starts[k]), int(ends[k] - starts[k])))
        parsed = parse_record(self.layout)(rec, self.columns)
        if not hasattr(parsed, "turns"):  # it was kept earlier, so it parsed then
            raise RuntimeError(f"record {index} no longer parses: {parsed}")
        return strip_image_tags(next(c for r, c in parsed.turns if r == "user"))

    def collide(self, key: bytes, entry: Any, index: int, question: Callable[[], str]) -> int | None:
        """A key seen before: the earlier record this one duplicates, or ``None`` (then remembered)."""
        from curation.filters import question_key

        if key[:1] == b"F":
            return entry
        if type(entry) is int:
            entry = {question_key(self._question(entry)): entry}
            self.seen[key] = entry
        qk = question_key(question())
        first = entry.get(qk)
        if first is None:
            entry[qk] = index
        return first


def _runs_np(positions: Any) -> tuple[Any, Any]:
    """Maximal runs of consecutive integers in a sorted numpy array: the first and the last
    (inclusive) of each run, as two arrays."""
    import numpy as np

    if len(positions) == 0:
        return positions[:0], positions[:0]
    breaks = np.flatnonzero(positions[1:] - positions[:-1] != 1)
    firsts = np.concatenate((positions[:1], positions[breaks + 1]))
    lasts = np.concatenate((positions[breaks], positions[-1:]))
    return firsts, lasts


def _settle_duplicates(
    dedup: _Dedup, keys: list[bytes], indices: list[int], question: Callable[[int], str]
) -> list[tuple[int, int]]:
    """Run the duplicate stage over one result's candidates, in input order: ``(j, first)``
    for each candidate ``j`` (a position in ``keys``) that duplicates record ``first``.
    ``question(j)`` is the text of candidate ``j``'s question.

    Nearly every key is new: those are remembered in bulk, and only the keys met before or
    more than once in ``keys`` are settled one by one.
    """
    seen = dedup.seen
    special = seen.keys() & keys  # in C
    if len(set(keys)) != len(keys):
        special |= {k for k, n in collections.Counter(keys).items() if n > 1}
    if not special:
        seen.update(zip(keys, indices, strict=True))
        return []
    earlier = {k: seen[k] for k in special if k in seen}
    seen.update(zip(keys, indices, strict=True))  # wrong only for the special keys: mended here
    for k in special:
        if k in earlier:
            seen[k] = earlier[k]
        else:
            del seen[k]
    dups = []
    for j in itertools.compress(range(len(keys)), map(special.__contains__, keys)):
        key, index = keys[j], indices[j]
        entry = seen.get(key)
        if entry is None:
            seen[key] = index
            continue
        first = dedup.collide(key, entry, index, lambda j=j: question(j))
        if first is not None:
            dups.append((j, first))
    return dups


def _absorb(
    task: Task,
    res: Any,
    source: InputSource,
    config: FilterConfig,
    dedup: _Dedup,
    kept_json: _KeptJson,
    kept_pq: RowGroupWriter,
    dropped_pq: RowGroupWriter,
    lines: _LineCounter | None,
    report: FilterReport,
) -> None:
    """Decide duplicates for one result (in input order) and write its kept and dropped records."""
    import numpy as np
    import pyarrow as pa

    from curation.record_columns import integers_of, string_array, text_array
    from curation.schema import RECORD_SCHEMA

    dedup.add_task(task)
    candidates = pa.Table.from_batches(res.take_batches(), schema=RECORD_SCHEMA)
    codes = res.codes
    details = res.details
    cand = np.flatnonzero(np.frombuffer(codes, dtype=np.uint8) == 0)
    keep_rows = np.arange(len(cand))
    if config.drop_duplicates and len(cand):
        questions = candidates.column("question")
        dups = _settle_duplicates(
            dedup, res.dup_keys, (cand + res.first).tolist(), lambda j: questions[j].as_py()
        )
        for j, first in dups:
            codes[cand[j]] = CODES["duplicate"]
            details[int(cand[j])] = f"same images and question as record {first}"
        if dups:
            keep_rows = np.delete(keep_rows, [j for j, _ in dups])
    kept_idx = cand[keep_rows]

    # kept.json: each run of consecutive kept records is one slice of the input, so the
    # records (and the separators between them) are the input's bytes
    spans = res.tight_starts is not None
    if spans:
        s, e, base = res.tight_starts, res.tight_ends, task.base
        # JSON Lines have no commas between records: there every record is its own piece
        firsts, lasts = _runs_np(kept_idx) if source.fmt == "json" else (kept_idx, kept_idx)
        starts = s[firsts].astype(np.int64)
        lengths = (e[lasts] - starts).tolist()
        kept_json.copy(
            _fd(source.path), list(zip((starts + base).tolist(), lengths, strict=True)), len(kept_idx)
        )
    else:
        kept_json.write([res.raw[i] for i in kept_idx.tolist()], len(kept_idx))
    if len(keep_rows) == candidates.num_rows:
        kept_pq.write(res.batches)
    else:
        kept_pq.write(
            [
                b
                for a, z in zip(*(r.tolist() for r in _runs_np(keep_rows)), strict=True)
                for b in candidates.slice(a, z - a + 1).to_batches()
            ]
        )
    report.kept += len(kept_idx)

    line_base = None
    if spans and task.lines is None:
        assert lines is not None
        line_base = lines.task(task.base, task.length, res.newlines)
    if len(kept_idx) == res.n:
        return
    all_codes = np.frombuffer(codes, dtype=np.uint8)
    dropped = np.flatnonzero(all_codes)
    dropped_codes = all_codes[dropped]
    for code, count in zip(*np.unique(dropped_codes, return_counts=True), strict=True):
        report.dropped[_REASON_OF[int(code)]] += int(count)
    reasons = [_REASON_OF[c] for c in dropped_codes.tolist()]
    if spans:
        offsets = task.base + s[dropped].astype(np.int64)
        if line_base is None:
            line_nos = integers_of(np.asarray(task.lines)[dropped])
        else:
            line_nos = integers_of(line_base + res.newlines_before[dropped].astype(np.int64))
        texts = _dropped_texts(res, dropped, source.path, offsets, (e[dropped] - s[dropped]).astype(np.int64))
        offset_col = integers_of(offsets)
    else:
        texts = [res.raw[i] for i in dropped.tolist()]
        line_nos = offset_col = pa.nulls(len(dropped), pa.int64())
    # from buffers and numpy: building them from Python lists would import pandas here
    arrays = [
        integers_of(dropped + res.first),
        string_array(reasons),
        string_array([details.get(i) for i in dropped.tolist()]),
        line_nos,
        offset_col,
        text_array(texts),
    ]
    dropped_pq.write([pa.RecordBatch.from_arrays(arrays, schema=dropped_pq.schema)])


def _dropped_texts(res: Any, dropped: Any, path: str, offsets: Any, lengths: Any) -> list[bytes]:
    """The input text of each dropped record: from what the worker sent along for the records
    it dropped, read from the input for the rest (duplicates, decided here)."""
    sent = {}
    if res.dropped_rows is not None:
        sent = dict(zip(res.dropped_rows.tolist(), res.dropped_ends.tolist(), strict=True))
    text = res.dropped_text
    out = []
    for i, off, n in zip(dropped.tolist(), offsets.tolist(), lengths.tolist(), strict=True):
        end = sent.get(i)
        out.append(_pread(path, off, n) if end is None else text[end - n : end])
    return out


def _replace(src: Path, dst: Path) -> None:
    """``os.replace(src, dst)``, without ext4 writing ``src`` out first.

    ext4 (``auto_da_alloc``) flushes a file renamed over an existing one to disk before the
    rename returns: 0.3 s for a 400 MB ``kept.json`` replacing an earlier run's. Moving the
    old file aside first makes it a rename to a free name; the old file is then removed.
    """
    aside = dst.with_name(f".{dst.name}.old-{os.getpid()}")
    try:
        os.rename(dst, aside)
    except FileNotFoundError:
        aside = None
    try:
        os.rename(src, dst)
    except BaseException:
        if aside is not None:
            os.rename(aside, dst)
        raise
    if aside is not None:
        aside.unlink()


def _check_accounting(report: FilterReport, json_count: int, kept_rows: int, dropped_rows: int) -> None:
    if report.kept + report.dropped_total != report.records:
        raise AccountingError(
            f"kept {report.kept} + dropped {report.dropped_total} != input {report.records}"
        )
    if json_count != report.kept or kept_rows != report.kept:
        raise AccountingError(f"kept {report.kept} but wrote {json_count} JSON and {kept_rows} Parquet rows")
    if dropped_rows != report.dropped_total:
        raise AccountingError(f"dropped {report.dropped_total} but wrote {dropped_rows} rows")


def _write_dataset_info(path: Path, name: str, entry: dict[str, Any]) -> None:
    """Add (or replace) this dataset's entry in a LLaMA-Factory ``dataset_info.json``."""
    info: dict[str, Any] = {}
    if path.exists():
        try:
            info = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path} is not valid JSON ({exc}); remove it or fix it") from exc
        if not isinstance(info, dict):
            raise ValueError(f"{path} must hold a JSON object of datasets")
    info[name] = entry
    path.write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
