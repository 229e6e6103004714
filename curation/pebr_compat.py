"""PeBR-R1 compatible buckets: ``easycase.json``, ``mediumcase.json``, ``hardcase.json``.

PeBR-R1's bucketing script reads the rollout loop's ``rollout_results.jsonl`` (one line per
rollout: ``qid``, ``response``, ``ground_truth``, ``score.accuracy``), counts per qid the
rollouts whose accuracy equals 1.0, calls a qid easy when that count is 8, hard when it is
0 and medium otherwise, and writes the records of ``pebr_grpo_dataset.json`` with those
qids, in dataset order, with ``json.dump(records, f, ensure_ascii=False, indent=2)``.

:func:`split_pebr` writes the same three files, byte for byte, several times faster
(:mod:`curation.fastjsonl` reads the rollout file without decoding the responses; orjson
writes the records where its output is provably identical to ``json.dump``'s, Python's
encoder elsewhere), and reports what the reference passes over in silence:

==========================  ==========================================================
irregularity                what happens (``irregular="reference"``, the default)
==========================  ==========================================================
malformed line              skipped, as the reference does; listed with its line number
                            (lines the reference would crash on - not an object,
                            ``score`` not an object, unhashable qid, invalid UTF-8 - are
                            skipped and listed too)
line without qid/accuracy   skipped, as the reference does; counted and listed
qid with != n rollouts      bucketed like the reference (easy iff exactly ``n`` correct,
                            hard iff none, else medium), listed with its bucket;
                            ``irregular="exclude"`` leaves such qids out of every file,
                            ``irregular="rate"`` buckets them by all/none/some correct
dataset qid never rolled    in no file, as the reference; listed ("unrolled")
duplicate dataset qid       every record with the qid goes to the qid's bucket, as the
                            reference; listed
rollout qid not in dataset  ignored, as the reference; counted ("orphans")
dataset record without qid  in no file, as the reference; listed by index
==========================  ==========================================================
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields
from itertools import repeat
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

BUCKETS = ("easy", "medium", "hard")
#: The reference's output names, next to each other in the output directory.
FILE_NAMES = {"easy": "easycase.json", "medium": "mediumcase.json", "hard": "hardcase.json"}
REPORT_NAME = "buckets_report.json"
IRREGULAR_POLICIES = ("reference", "exclude", "rate")


@dataclass(frozen=True)
class PebrCompatConfig:
    """Options of :func:`split_pebr`; the defaults reproduce PeBR-R1's script."""

    #: Rollouts per question (the reference hard-codes 8): easy means exactly ``n`` correct.
    n: int = 8
    #: An accuracy equal to this counts as correct (the reference compares ``acc == 1.0``).
    correct_value: float = 1.0
    #: How qids with a rollout count other than ``n`` are bucketed (see the module docstring).
    irregular: str = "reference"
    #: The rollout line's id field and the path of its accuracy.
    qid_key: str = "qid"
    accuracy_path: tuple[str, ...] = ("score", "accuracy")
    #: Threads for the rollout scan, and the bytes each scan step indexes at once.
    workers: int = 2
    chunk_bytes: int = 4 << 20
    #: At most this many examples per list in the report (counts are always complete).
    max_listed: int = 1000

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")
        if self.irregular not in IRREGULAR_POLICIES:
            raise ValueError(f"irregular must be one of {list(IRREGULAR_POLICIES)}, got {self.irregular!r}")
        if not self.accuracy_path:
            raise ValueError("accuracy_path must name at least one key")


@dataclass
class RolloutTally:
    """Per-qid rollout counts read from a rollout file, and what could not be read.

    String qids (the normal case) are in ``table`` (polars: ``qid``, ``n`` rollouts counted,
    ``c`` correct); qids of other JSON types, which only the slow path sees, are in ``other``.
    """

    table: Any = None
    other: dict[Any, list[int]] = field(default_factory=dict)
    n_lines: int = 0
    fast_lines: int = 0
    #: (line number, reason, start of the line) for lines ``json.loads`` rejects and lines the
    #: reference would crash on.
    malformed: list[tuple[int, str, str]] = field(default_factory=list)
    #: (line number, reason) for valid lines without a qid or an accuracy (skipped).
    skipped: list[tuple[int, str]] = field(default_factory=list)
    fast_unavailable: str | None = None

    @property
    def counts(self) -> dict[Any, list[int]]:
        """Every qid's ``[rollouts, correct]`` as a dict (Python equality between qids)."""
        out: dict[Any, list[int]] = {}
        if self.table is not None:
            for qid, n, c in self.table.select("qid", "n", "c").iter_rows():
                out[qid] = [n, c]
        for qid, (n, c) in self.other.items():
            out[qid] = [n, c]
        return out


def _preview(raw: bytes, limit: int = 120) -> str:
    text = raw.decode("utf-8", "replace")
    return text if len(text) <= limit else text[:limit] + "..."


def _universal_lines(raw: bytes) -> list[bytes]:
    """One ``\\n``-delimited line split like Python's text mode (universal newlines), which the
    reference reads with: a final ``\\r`` is part of the line break, other ``\\r`` break lines."""
    if b"\r" not in raw:
        return [raw]
    if raw.endswith(b"\r"):
        raw = raw[:-1]
    return raw.split(b"\r")


def tally_rollouts(
    path: str | os.PathLike[str], config: PebrCompatConfig = PebrCompatConfig()
) -> RolloutTally:
    """Count rollouts and correct rollouts per qid, exactly as the reference's loop does."""
    import numpy as np

    from curation.fastjsonl import scan_jsonl

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"rollout file {path} does not exist")
    scan = scan_jsonl(
        path,
        key=(config.qid_key,),
        scalar=config.accuracy_path,
        workers=config.workers,
        chunk_bytes=config.chunk_bytes,
    )
    import polars as pl
    import pyarrow as pa

    tally = RolloutTally(n_lines=scan.n_lines, fast_lines=scan.n_fast, fast_unavailable=scan.fast_unavailable)
    frames = []
    if scan.n_fast:
        # Scalar tokens are few ("1.0", "0.0"): decode each once with json.loads.
        values = [json.loads(t) for t in scan.scalar_tokens]
        counted = np.array([v is not None for v in values], dtype=bool)
        correct = np.array([v is not None and v == config.correct_value for v in values], dtype=bool)
        rows_counted = counted[scan.scalar_index]
        idx = scan.key_index[rows_counted]
        n_keys = len(scan.keys)
        n = np.bincount(idx, minlength=n_keys)
        c = np.bincount(idx, minlength=n_keys, weights=correct[scan.scalar_index][rows_counted])
        frames.append(
            pl.DataFrame(
                {
                    "qid": pl.from_arrow(scan.keys.cast(pa.string())),
                    "n": n,
                    "c": c.astype(np.int64),
                }
            ).filter(pl.col("n") > 0)
        )
        for line_no in scan.key_line[~rows_counted].tolist():
            tally.skipped.append((int(line_no), f"no {'.'.join(config.accuracy_path)}"))
    slow: dict[Any, list[int]] = {}
    for line_no, raw in scan.slow_lines:
        # A carriage return splits one physical line into several for the reference (it reads
        # in text mode); the parts keep the physical line's number.
        for part in _universal_lines(raw):
            _tally_line(tally, slow, line_no, part, config)
    strings = {q: v for q, v in slow.items() if type(q) is str}
    tally.other = {q: v for q, v in slow.items() if type(q) is not str}
    if strings:
        frames.append(
            pl.DataFrame(
                {
                    "qid": list(strings),
                    "n": [v[0] for v in strings.values()],
                    "c": [v[1] for v in strings.values()],
                },
                schema={"qid": pl.String, "n": pl.Int64, "c": pl.Int64},
            )
        )
    schema = {"qid": pl.String, "n": pl.Int64, "c": pl.Int64}
    frames = [f.cast(schema) for f in frames]
    table = pl.concat(frames) if frames else pl.DataFrame(schema=schema)
    if strings and scan.n_fast:
        table = table.group_by("qid", maintain_order=True).agg(pl.col("n").sum(), pl.col("c").sum())
    tally.table = table
    return tally


def _tally_line(
    tally: RolloutTally, counts: dict[Any, list[int]], line_no: int, raw: bytes, config: PebrCompatConfig
) -> None:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        tally.malformed.append(
            (line_no, f"invalid UTF-8 ({exc.reason}; the reference would crash)", _preview(raw))
        )
        return
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        tally.malformed.append((line_no, f"not JSON ({exc.msg}, column {exc.colno})", _preview(raw)))
        return
    if not isinstance(obj, dict):
        tally.malformed.append(
            (
                line_no,
                f"a JSON {type(obj).__name__}, not an object (the reference would crash)",
                _preview(raw),
            )
        )
        return
    qid = obj.get(config.qid_key)
    node: Any = obj
    for i, key in enumerate(config.accuracy_path):
        default = {} if i < len(config.accuracy_path) - 1 else None
        if not isinstance(node, dict):
            tally.malformed.append(
                (
                    line_no,
                    f"{'.'.join(config.accuracy_path[:i])} is a {type(node).__name__}, not an object "
                    "(the reference would crash)",
                    _preview(raw),
                )
            )
            return
        node = node.get(key, default)
    acc = node
    if qid is None or acc is None:
        missing = config.qid_key if qid is None else ".".join(config.accuracy_path)
        tally.skipped.append((line_no, f"no {missing}"))
        return
    try:
        entry = counts.get(qid)
    except TypeError:
        tally.malformed.append(
            (line_no, f"qid is a {type(qid).__name__} (unhashable; the reference would crash)", _preview(raw))
        )
        return
    if entry is None:
        entry = counts[qid] = [0, 0]
    entry[0] += 1
    entry[1] += 1 if acc == config.correct_value else 0


def bucket_of(n_rollouts: int, n_correct: int, config: PebrCompatConfig) -> str | None:
    """The bucket of one qid (``None`` when the irregular policy leaves it out)."""
    regular = n_rollouts == config.n
    if not regular and config.irregular == "exclude":
        return None
    if config.irregular == "rate" and not regular:
        full = n_correct == n_rollouts
    else:
        full = n_correct == config.n
    if full:
        return "easy"
    if n_correct == 0:
        return "hard"
    return "medium"


@dataclass
class PebrSplitReport:
    """What :func:`split_pebr` did; ``to_dict()`` is written as ``buckets_report.json``."""

    rollouts: str
    dataset: str
    out_dir: str
    config: dict[str, Any]
    lines: int
    fast_lines: int
    rollouts_counted: int
    qids: dict[str, int]
    records: dict[str, int]
    outputs: dict[str, str]
    malformed_lines: list[dict[str, Any]]
    malformed_count: int
    skipped_lines: list[dict[str, Any]]
    skipped_count: int
    irregular: list[dict[str, Any]]
    irregular_count: int
    unrolled_qids: list[Any]
    unrolled_count: int
    duplicate_qids: list[dict[str, Any]]
    duplicate_count: int
    orphan_qids: list[Any]
    orphan_count: int
    records_without_qid: list[int]
    records_without_qid_count: int
    python_encoded_records: int
    seconds: float
    fast_path_note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def summary_lines(self) -> list[str]:
        """A few readable lines for the terminal."""
        out = [
            f"{self.lines} lines, {self.rollouts_counted} rollouts counted for {sum(self.qids.values())} qids",
            "qids:    " + ", ".join(f"{b} {self.qids.get(b, 0)}" for b in BUCKETS),
            "records: " + ", ".join(f"{b} {self.records.get(b, 0)}" for b in BUCKETS),
        ]
        for label, count in (
            ("malformed lines (skipped)", self.malformed_count),
            ("lines without qid/accuracy (skipped)", self.skipped_count),
            (
                f"qids with a rollout count other than {self.config['n']} ({self.config['irregular']})",
                self.irregular_count,
            ),
            ("dataset qids without rollouts (in no file)", self.unrolled_count),
            ("qids shared by several dataset records", self.duplicate_count),
            ("rollout qids not in the dataset", self.orphan_count),
            ("dataset records without a qid", self.records_without_qid_count),
        ):
            if count:
                out.append(f"{label}: {count}")
        for item in self.malformed_lines[:5]:
            out.append(f"  line {item['line']}: {item['reason']}")
        return out


_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1  # orjson's integer range


def _needs_json(obj: Any) -> bool:
    """Whether a decoded value holds what orjson writes differently from ``json`` or not at all:
    a float anywhere, or an integer beyond 64 bits (the common shapes are checked fast)."""
    if type(obj) is dict:
        for v in obj.values():
            t = type(v)
            if t is str or t is bool or v is None:
                continue
            if t is int and _INT_MIN <= v <= _INT_MAX:
                continue
            if t is list and all(type(x) is str for x in v):
                continue
            if _needs_json_deep(v):
                return True
        return False
    return _needs_json_deep(obj)


def _needs_json_deep(obj: Any) -> bool:
    stack = [obj]
    while stack:
        o = stack.pop()
        t = type(o)
        if t is float or (t is int and not _INT_MIN <= o <= _INT_MAX):
            return True
        if t is dict:
            stack.extend(o.values())
        elif t is list:
            stack.extend(o)
    return False


def _encode(records: list[Any], floats: set[int]) -> bytes:
    """``json.dumps(records, ensure_ascii=False, indent=2)`` as UTF-8 bytes.

    orjson writes everything but floats exactly as ``json`` does (strings, escapes, key order,
    indentation, empty containers: tested); records holding a float or a huge integer
    (``floats``, by position) go through Python's encoder.
    """
    import orjson

    if not records:
        return b"[]"
    try:
        if not floats:
            return orjson.dumps(records, option=orjson.OPT_INDENT_2)
        parts = []
        for i, rec in enumerate(records):
            if i in floats:
                text = json.dumps(rec, ensure_ascii=False, indent=2).encode("utf-8")
            else:
                text = orjson.dumps(rec, option=orjson.OPT_INDENT_2)
            parts.append(b"  " + text.replace(b"\n", b"\n  "))
        return b"[\n" + b",\n".join(parts) + b"\n]"
    except (TypeError, UnicodeEncodeError) as exc:
        raise ValueError(
            f"a record cannot be written as UTF-8 JSON ({exc}); the reference script would crash too"
        ) from exc


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


_LOOKBACK = 16


def numbers_outside_strings(raw: bytes) -> bool:
    """Whether a JSON text may hold a number token (one outside every string).

    A number token follows ``:``, ``[`` or ``,`` (after whitespace). A quick vectorised look
    at every number-like start rules most texts out; when one looks like a token, an exact
    check finds whether it sits outside the strings (quotes not escaped by a backslash run
    delimit them). ``False`` proves the decoded data holds no float (nor an integer orjson
    would turn into one), so orjson may write all of it.
    """
    import numpy as np

    c = np.frombuffer(raw, dtype=np.uint8)
    is_digit = (c >= ord("0")) & (c <= ord("9"))
    starts = np.flatnonzero(is_digit)
    if len(starts) == 0:
        return False
    # token starts: a digit not preceded by a digit (an optional minus sign before it)
    prev = c[np.maximum(starts - 1, 0)]
    starts = starts[(starts == 0) | ~is_digit[np.maximum(starts - 1, 0)]]
    prev = c[np.maximum(starts - 1, 0)]
    starts = np.where(prev == ord("-"), starts - 1, starts)
    # the previous non-whitespace byte
    ws = np.zeros(256, dtype=bool)
    ws[list(b" \t\r\n")] = True
    opener = np.zeros(256, dtype=bool)
    opener[list(b":[,")] = True
    pos = starts - 1
    for _ in range(_LOOKBACK):
        valid = pos >= 0
        if not valid.any():
            break
        b = c[np.maximum(pos, 0)]
        blank = valid & ws[b]
        if np.any(valid & ~blank & opener[b]):
            return _numbers_outside_strings_exact(c)
        pos = pos[blank] - 1
        if len(pos) == 0:
            return False
    # whitespace runs longer than the look-back: decide exactly
    return bool(len(pos)) and _numbers_outside_strings_exact(c)


def _numbers_outside_strings_exact(c) -> bool:
    import numpy as np

    digits = np.flatnonzero((c >= ord("0")) & (c <= ord("9")))
    pos = np.flatnonzero((c == 0x22) | (c == 0x5C))
    is_quote = c[pos] == 0x22
    bpos = pos[~is_quote]
    quotes = pos[is_quote]
    if len(bpos):
        idx = np.arange(len(bpos))
        new_run = np.ones(len(bpos), dtype=bool)
        new_run[1:] = np.diff(bpos) != 1
        run_start = np.maximum.accumulate(np.where(new_run, idx, 0))
        escaped = np.zeros(len(c) + 1, dtype=bool)
        escaped[bpos[(idx - run_start) % 2 == 0] + 1] = True
        quotes = quotes[~escaped[quotes]]
    # inside a string iff an odd number of structural quotes come before the digit
    return bool(np.any(np.searchsorted(quotes, digits) % 2 == 0))


def _bucket_expr(config: PebrCompatConfig):
    import polars as pl

    n, c = pl.col("n"), pl.col("c")
    full = c == config.n
    if config.irregular == "rate":
        full = pl.when(n == config.n).then(c == config.n).otherwise(c == n)
    bucket = pl.when(full).then(pl.lit("easy")).when(c == 0).then(pl.lit("hard")).otherwise(pl.lit("medium"))
    if config.irregular == "exclude":
        bucket = pl.when(n == config.n).then(bucket).otherwise(pl.lit(None, dtype=pl.String))
    return bucket.alias("bucket")


@dataclass
class _Selection:
    selected: dict[str, list[int]]
    buckets: dict[str, int]  # qids per bucket
    irregular: list[dict[str, Any]]
    irregular_count: int
    unrolled: list[Any]
    unrolled_count: int
    unrolled_records: int
    duplicates: list[dict[str, Any]]
    duplicate_count: int
    orphans: list[Any]
    orphan_count: int
    no_qid: list[int]
    no_qid_count: int


def _select_vectorised(tally: RolloutTally, qids: Any, config: PebrCompatConfig) -> _Selection:
    """Records per bucket when every qid is a string (or missing): polars joins."""
    import polars as pl

    m = config.max_listed
    table = tally.table.with_columns(_bucket_expr(config))
    records = pl.DataFrame({"qid": pl.Series(qids, dtype=pl.String)}).with_row_index("i")
    joined = records.join(table, on="qid", how="left", maintain_order="left")
    selected = {b: joined.filter(pl.col("bucket") == b)["i"].to_list() for b in BUCKETS}
    present = joined.filter(pl.col("qid").is_not_null())
    unrolled = present.filter(pl.col("n").is_null()).unique("qid", maintain_order=True)["qid"]
    dup = (
        present.group_by("qid", maintain_order=True)
        .agg(pl.len().alias("records"), pl.col("bucket").first())
        .filter(pl.col("records") > 1)
    )
    orphans = table.join(records.select("qid").unique(), on="qid", how="anti", maintain_order="left")["qid"]
    irregular = table.filter(pl.col("n") != config.n).select(
        "qid", pl.col("n").alias("rollouts"), pl.col("c").alias("correct"), "bucket"
    )
    counts = table["bucket"].value_counts()
    per_bucket = {b: 0 for b in BUCKETS}
    for b, k in counts.iter_rows():
        if b is not None:
            per_bucket[b] = k
    return _Selection(
        selected=selected,
        buckets=per_bucket,
        irregular=irregular.head(m).to_dicts(),
        irregular_count=irregular.height,
        unrolled=unrolled.head(m).to_list(),
        unrolled_count=unrolled.len(),
        unrolled_records=present.filter(pl.col("n").is_null()).height,
        duplicates=dup.head(m).to_dicts(),
        duplicate_count=dup.height,
        orphans=orphans.head(m).to_list(),
        orphan_count=orphans.len(),
        no_qid=joined.filter(pl.col("qid").is_null())["i"].head(m).to_list(),
        no_qid_count=joined["qid"].null_count(),
    )


def _select_python(tally: RolloutTally, records: list[Any], config: PebrCompatConfig) -> _Selection:
    """Records per bucket with Python's equality between qids (any JSON qid type)."""
    m = config.max_listed
    counts = tally.counts
    buckets = {qid: bucket_of(n, c, config) for qid, (n, c) in counts.items()}
    selected: dict[str, list[int]] = {b: [] for b in BUCKETS}
    seen: dict[Any, int] = {}
    no_qid: list[int] = []
    unrolled: dict[Any, int] = {}
    for i, rec in enumerate(records):
        if not isinstance(rec, Mapping):
            raise ValueError(
                f"dataset record {i} is a {type(rec).__name__}, not an object (the reference would crash)"
            )
        qid = rec.get("qid")
        if qid is None:
            no_qid.append(i)
            continue
        try:
            bucket = buckets.get(qid)
            seen[qid] = seen.get(qid, 0) + 1
        except TypeError as exc:
            raise ValueError(
                f"dataset record {i} has an unhashable qid {qid!r:.60} (the reference would crash)"
            ) from exc
        if bucket is not None:
            selected[bucket].append(i)
        elif qid not in counts:
            unrolled[qid] = unrolled.get(qid, 0) + 1
    irregular = [
        {"qid": q, "rollouts": n, "correct": c, "bucket": buckets[q]}
        for q, (n, c) in counts.items()
        if n != config.n
    ]
    duplicates = [{"qid": q, "records": k, "bucket": buckets.get(q)} for q, k in seen.items() if k > 1]
    orphans = [q for q in counts if q not in seen]
    per_bucket = {b: 0 for b in BUCKETS}
    for b in buckets.values():
        if b is not None:
            per_bucket[b] += 1
    return _Selection(
        selected=selected,
        buckets=per_bucket,
        irregular=_jsonable(irregular[:m]),
        irregular_count=len(irregular),
        unrolled=_jsonable(list(unrolled)[:m]),
        unrolled_count=len(unrolled),
        unrolled_records=sum(unrolled.values()),
        duplicates=_jsonable(duplicates[:m]),
        duplicate_count=len(duplicates),
        orphans=_jsonable(orphans[:m]),
        orphan_count=len(orphans),
        no_qid=no_qid[:m],
        no_qid_count=len(no_qid),
    )


def _load_dataset(path: Path) -> tuple[list[Any], bool]:
    """The dataset list and whether it was read with ``json`` (exact values) or orjson."""
    import orjson

    raw = path.read_bytes()
    try:
        records, exact = orjson.loads(raw), False
    except orjson.JSONDecodeError:
        try:
            records, exact = json.loads(raw.decode("utf-8")), True
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"dataset {path} is not valid JSON: {exc}") from exc
    if not isinstance(records, list):
        raise ValueError(f"dataset {path} must be a JSON list of records, got a {type(records).__name__}")
    if not exact and numbers_outside_strings(raw):
        # orjson reads integers beyond 64 bits as floats: use json's exact values.
        records, exact = json.loads(raw.decode("utf-8")), True
    return records, exact


def split_pebr(
    rollouts: str | os.PathLike[str],
    dataset: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    config: PebrCompatConfig = PebrCompatConfig(),
) -> PebrSplitReport:
    """Write ``easycase.json``/``mediumcase.json``/``hardcase.json`` and ``buckets_report.json``.

    The three files are byte-identical to PeBR-R1's script on the same inputs (with the
    default config); the report lists every irregularity (see the module docstring).
    """
    import polars as pl

    t0 = time.perf_counter()
    dataset = Path(dataset)
    if not dataset.is_file():
        raise FileNotFoundError(f"dataset {dataset} does not exist")
    # The dataset is read while the rollout scan runs (numpy releases the GIL).
    with ThreadPoolExecutor(1) as pool:
        loading = pool.submit(_load_dataset, dataset)
        tally = tally_rollouts(rollouts, config)
        records, exact = loading.result()
    vectorised = not tally.other
    qids: list[Any] = []
    if vectorised:
        try:
            qids = list(map(dict.get, records, repeat("qid")))
            pl.Series(qids, dtype=pl.String, strict=True)  # every qid a string (or missing)
        except (TypeError, pl.exceptions.PolarsError):
            vectorised = False
    sel = _select_vectorised(tally, qids, config) if vectorised else _select_python(tally, records, config)
    del qids
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    outputs, python_encoded = {}, 0
    for b in BUCKETS:
        chosen = [records[i] for i in sel.selected[b]]
        floats = {k for k, rec in enumerate(chosen) if _needs_json(rec)} if exact else set()
        python_encoded += len(floats)
        target = out / FILE_NAMES[b]
        _atomic_write(target, _encode(chosen, floats))
        outputs[b] = str(target)
    m = config.max_listed
    report = PebrSplitReport(
        rollouts=str(Path(rollouts).resolve()),
        dataset=str(dataset.resolve()),
        out_dir=str(out.resolve()),
        config={**asdict(config), "accuracy_path": list(config.accuracy_path)},
        lines=tally.n_lines,
        fast_lines=tally.fast_lines,
        rollouts_counted=int(tally.table["n"].sum()) + sum(n for n, _ in tally.other.values()),
        qids=sel.buckets,
        records={b: len(sel.selected[b]) for b in BUCKETS}
        | {"unrolled": sel.unrolled_records, "total": len(records)},
        outputs=outputs,
        malformed_lines=[{"line": ln, "reason": r, "text": t} for ln, r, t in tally.malformed[:m]],
        malformed_count=len(tally.malformed),
        skipped_lines=[{"line": ln, "reason": r} for ln, r in tally.skipped[:m]],
        skipped_count=len(tally.skipped),
        irregular=sel.irregular,
        irregular_count=sel.irregular_count,
        unrolled_qids=sel.unrolled,
        unrolled_count=sel.unrolled_count,
        duplicate_qids=sel.duplicates,
        duplicate_count=sel.duplicate_count,
        orphan_qids=sel.orphans,
        orphan_count=sel.orphan_count,
        records_without_qid=sel.no_qid,
        records_without_qid_count=sel.no_qid_count,
        python_encoded_records=python_encoded,
        seconds=round(time.perf_counter() - t0, 3),
        fast_path_note=tally.fast_unavailable,
    )
    _atomic_write(out / REPORT_NAME, json.dumps(report.to_dict(), indent=2, ensure_ascii=False).encode())
    for line in report.summary_lines():
        log.debug(line)
    return report


def _jsonable(items: Iterable[Any]) -> list[Any]:
    """Report entries with qids JSON can hold (qids are usually strings; keep others readable)."""
    out = []
    for item in items:
        if isinstance(item, dict):
            out.append(
                {
                    k: (v if isinstance(v, (str, int, float, bool, type(None))) else repr(v))
                    for k, v in item.items()
                }
            )
        else:
            out.append(item if isinstance(item, (str, int, float, bool, type(None))) else repr(item))
    return out
