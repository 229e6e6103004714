"""The rollout store: every sampled response, in full, with its rewards, in Parquet shards.

A run directory holds ``run.json`` (what was scored, how; see :mod:`curation.difficulty`) and
``rollouts/``, a set of Parquet shards written atomically (a temporary file, then a hard
link to the final name, which fails instead of overwriting). One row is one rollout, keyed
by ``(model_id, uid, sample_index)``:

==================  ===========================================================
column              meaning
==================  ===========================================================
uid                 the question (canonical record uid)
sample_index        0-based index of the sample for this question and model
response            the full generated text
n_tokens            tokens generated (stop token included), when known
finish_reason       ``stop``, ``length``, or what the backend says
model_id            which model produced it (buckets are keyed by it)
backend             ``transformers``, ``vllm``, ``replay``
temperature, top_p  sampling parameters
max_new_tokens      generation budget
seed                base seed of the run
preset              reward preset the row was scored with
reward_total        the preset's total reward
correct             whether the response is correct (null: not decidable)
components          JSON text: ``{"components": {...}, "details": {...}}``
score_error         why scoring failed (then reward_total and correct are null)
round               adaptive sampling round (0 for fixed-n runs)
created_at          when the row was written (UTC)
==================  ===========================================================

Appends drop rows whose key is already stored, so a rerun never duplicates a row; reading
deduplicates defensively all the same. Small shards are merged by :meth:`RolloutStore.compact`,
whose output names the shards it replaces in its Parquet metadata, so a crash in the
middle never shows a row twice.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from curation.processes import remove_stale

if TYPE_CHECKING:
    import polars as pl

log = logging.getLogger(__name__)

ROLLOUT_SCHEMA = pa.schema(
    [
        pa.field("uid", pa.string(), nullable=False),
        pa.field("sample_index", pa.int32(), nullable=False),
        pa.field("response", pa.string()),
        pa.field("n_tokens", pa.int32()),
        pa.field("finish_reason", pa.string()),
        pa.field("model_id", pa.string(), nullable=False),
        pa.field("backend", pa.string()),
        pa.field("temperature", pa.float64()),
        pa.field("top_p", pa.float64()),
        pa.field("max_new_tokens", pa.int32()),
        pa.field("seed", pa.int64()),
        pa.field("preset", pa.string()),
        pa.field("reward_total", pa.float64()),
        pa.field("correct", pa.bool_()),
        pa.field("components", pa.string()),
        pa.field("score_error", pa.string()),
        pa.field("round", pa.int32()),
        pa.field("created_at", pa.timestamp("us", tz="UTC")),
    ]
)
KEY = ("model_id", "uid", "sample_index")
ROLLOUTS_DIR = "rollouts"
_SHARD_KINDS = ("part", "compact")  # shards appended, and shards merged by compact()
_SHARD_RE = re.compile(rf"^({'|'.join(_SHARD_KINDS)})-(\d+)\.parquet$")
_SUPERSEDES = b"pebr_supersedes"
#: Shards below this many rows are merged by :meth:`RolloutStore.compact`.
COMPACT_BELOW_ROWS = 50_000


class RolloutStore:
    """Parquet shards of rollouts under ``run_dir/rollouts``.

    Example::

        store = RolloutStore("runs/difficulty")
        store.append([{"uid": "u1", "sample_index": 0, "model_id": "m", "response": "..."}])
        store.done_keys("m")   # {("m", "u1", 0)}
        store.read("m")        # a polars DataFrame, one row per key
    """

    def __init__(self, run_dir: str | os.PathLike[str]):
        self.run_dir = Path(run_dir)
        self.dir = self.run_dir / ROLLOUTS_DIR
        self._keys: set[tuple[str, str, int]] | None = None

    # ------------------------------------------------------------------ listing

    def shards(self) -> list[Path]:
        """The live shards, oldest first; superseded shards left by a crash are removed."""
        if not self.dir.is_dir():
            return []
        found: list[tuple[int, str, Path]] = []
        for p in self.dir.iterdir():
            m = _SHARD_RE.match(p.name)
            if m:
                found.append((int(m.group(2)), m.group(1), p))
        found.sort()
        superseded: set[str] = set()
        for _, kind, p in found:
            if kind == "compact":
                superseded.update(_supersedes(p))
        live = []
        for _, _, p in found:
            if p.name in superseded:
                log.info("removing %s, already merged into a compacted shard", p)
                p.unlink(missing_ok=True)
            else:
                live.append(p)
        return live

    def _next_index(self) -> int:
        if not self.dir.is_dir():
            return 0
        idx = [int(m.group(2)) for p in self.dir.iterdir() if (m := _SHARD_RE.match(p.name))]
        return max(idx, default=-1) + 1

    # ------------------------------------------------------------------ keys

    def done_keys(self, model_id: str | None = None) -> set[tuple[str, str, int]]:
        """Keys ``(model_id, uid, sample_index)`` already stored (for one model, or all)."""
        if self._keys is None:
            keys: set[tuple[str, str, int]] = set()
            for shard in self.shards():
                import pyarrow.parquet as pq

                t = pq.read_table(shard, columns=list(KEY))
                keys.update(
                    zip(
                        t.column("model_id").to_pylist(),
                        t.column("uid").to_pylist(),
                        t.column("sample_index").to_pylist(),
                        strict=True,
                    )
                )
            self._keys = keys
        if model_id is None:
            return set(self._keys)
        return {k for k in self._keys if k[0] == model_id}

    def model_ids(self) -> list[str]:
        """Model ids with rollouts in the store, in order of first appearance."""
        seen: dict[str, None] = {}
        for shard in self.shards():
            import pyarrow.parquet as pq

            for m in pq.read_table(shard, columns=["model_id"]).column("model_id").unique().to_pylist():
                seen.setdefault(m, None)
        return list(seen)

    # ------------------------------------------------------------------ writing

    def append(self, rows: Iterable[Mapping[str, Any]] | pa.Table) -> Path | None:
        """Write rows as one new shard (atomically); rows whose key is stored are dropped.

        Returns the shard's path, or ``None`` when nothing was new.
        """
        table = rows if isinstance(rows, pa.Table) else to_table(list(rows))
        table = conform(table)
        known = self.done_keys()
        keep, batch_keys = [], set()
        for i, key in enumerate(
            zip(
                table.column("model_id").to_pylist(),
                table.column("uid").to_pylist(),
                table.column("sample_index").to_pylist(),
                strict=True,
            )
        ):
            if key in known or key in batch_keys:
                continue
            batch_keys.add(key)
            keep.append(i)
        if len(keep) < table.num_rows:
            log.debug("append: %d of %d rows already stored", table.num_rows - len(keep), table.num_rows)
            table = table.take(pa.array(keep, type=pa.int64()))
        if table.num_rows == 0:
            return None
        path = self._write_shard(table, "part")
        assert self._keys is not None
        self._keys |= batch_keys
        return path

    def _write_shard(self, table: pa.Table, kind: str, metadata: dict[bytes, bytes] | None = None) -> Path:
        import pyarrow.parquet as pq

        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.dir / f".{kind}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        if metadata:
            table = table.replace_schema_metadata({**(table.schema.metadata or {}), **metadata})
        pq.write_table(table, tmp, compression="zstd")
        try:
            idx = self._next_index()
            while True:
                target = self.dir / f"{kind}-{idx:05d}.parquet"
                try:
                    # A hard link fails if the name exists: two writers never overwrite.
                    os.link(tmp, target)
                    break
                except FileExistsError:
                    idx += 1
        finally:
            tmp.unlink(missing_ok=True)
        return target

    def compact(self, below_rows: int = COMPACT_BELOW_ROWS) -> Path | None:
        """Merge the shards smaller than ``below_rows`` into one; returns the new shard."""
        import pyarrow.parquet as pq

        small = [p for p in self.shards() if pq.ParquetFile(p).metadata.num_rows < below_rows]
        if len(small) < 2:
            return None
        merged = pa.concat_tables([conform(pq.read_table(p)) for p in small])
        merged = _dedup_table(merged)
        target = self._write_shard(
            merged, "compact", {_SUPERSEDES: json.dumps([p.name for p in small]).encode()}
        )
        for p in small:
            p.unlink(missing_ok=True)
        log.info("compacted %d shards (%d rows) into %s", len(small), merged.num_rows, target.name)
        return target

    def clean_temporary(self) -> int:
        """Remove temporary files left by killed writers; returns how many."""
        return len(remove_stale(self.dir, [f".{kind}.tmp-" for kind in _SHARD_KINDS]))

    # ------------------------------------------------------------------ reading

    def scan(self) -> pl.LazyFrame:
        """A lazy frame over every live shard (not deduplicated; see :meth:`read`)."""
        import polars as pl

        shards = self.shards()
        if not shards:
            return pl.LazyFrame(schema=pl.from_arrow(ROLLOUT_SCHEMA.empty_table()).schema)
        return pl.scan_parquet([str(p) for p in shards])

    def read(self, model_id: str | None = None, columns: list[str] | None = None) -> pl.DataFrame:
        """The stored rollouts (one model's, or all), one row per key, in write order."""
        import polars as pl

        lf = self.scan()
        if model_id is not None:
            lf = lf.filter(pl.col("model_id") == model_id)
        if columns is not None:
            lf = lf.select(list(dict.fromkeys([*KEY, *columns])))
        return lf.unique(subset=list(KEY), keep="first", maintain_order=True).collect()


def _supersedes(path: Path) -> list[str]:
    import pyarrow.parquet as pq

    meta = pq.read_schema(path).metadata or {}
    raw = meta.get(_SUPERSEDES)
    return json.loads(raw) if raw else []


def _dedup_table(table: pa.Table) -> pa.Table:
    import polars as pl

    df = pl.from_arrow(table)
    assert isinstance(df, pl.DataFrame)
    return conform(df.unique(subset=list(KEY), keep="first", maintain_order=True).to_arrow())


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def to_table(rows: list[Mapping[str, Any]]) -> pa.Table:
    """Rows (dicts) to an Arrow table in :data:`ROLLOUT_SCHEMA`; unknown keys are an error."""
    names = set(ROLLOUT_SCHEMA.names)
    for i, row in enumerate(rows):
        extra = set(row) - names
        if extra:
            raise ValueError(
                f"rollout row {i}: unknown columns {sorted(extra)}; known: {ROLLOUT_SCHEMA.names}"
            )
        for col in KEY:
            if row.get(col) is None:
                raise ValueError(f"rollout row {i}: {col!r} is required")
    created = now_utc()
    columns = {}
    for field in ROLLOUT_SCHEMA:
        values = [r.get(field.name) for r in rows]
        if field.name == "created_at":
            values = [v or created for v in values]
        elif field.name == "round":
            values = [0 if v is None else v for v in values]
        columns[field.name] = pa.array(values, type=field.type)
    return pa.table(columns, schema=ROLLOUT_SCHEMA)


def conform(table: pa.Table) -> pa.Table:
    """Cast a table to :data:`ROLLOUT_SCHEMA` (missing optional columns become null)."""
    extra = [c for c in table.column_names if c not in ROLLOUT_SCHEMA.names]
    if extra:
        raise ValueError(f"columns {extra} are not rollout columns; known: {ROLLOUT_SCHEMA.names}")
    arrays = []
    for field in ROLLOUT_SCHEMA:
        if field.name in table.column_names:
            arrays.append(table.column(field.name).cast(field.type))
        elif not field.nullable:
            raise ValueError(f"rollout table needs a {field.name!r} column")
        else:
            arrays.append(pa.nulls(table.num_rows, field.type))
    return pa.Table.from_arrays(arrays, schema=ROLLOUT_SCHEMA)
