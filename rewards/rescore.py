"""(Re)score stored rollouts with a preset: read Parquet/JSONL, join records, write results.

A rollout row needs an id (``uid``, ``qid`` or ``id``) and a ``response``; the record it is
scored against comes from the row's own canonical columns (``answer``, ``task``,
``key_words``...) or, with a records file, from the record with the same ``uid`` (or ``qid``).
Token counts are read from ``n_tokens`` or ``response_length`` when present.

Every input row comes out, in order: scored rows get ``reward_total``, ``reward_<component>``,
``correct`` and ``reward_details`` (JSON); rows that cannot be scored keep ``error`` with the
reason and their line (JSONL) or row number, never silently dropped.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rewards.presets import RECORD_COLUMNS, RewardPreset, RewardResult, ScoreError

ID_COLUMNS = ("uid", "qid", "id")
TOKEN_COLUMNS = ("n_tokens", "response_length")


@dataclass(frozen=True)
class Row:
    """One input row and where it came from (1-based JSONL line or Parquet row number)."""

    where: str
    data: dict[str, Any] | None
    error: str | None = None


def _check_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return "parquet"
    if suffix in (".jsonl", ".json", ".ndjson"):
        return "jsonl"
    raise ValueError(f"{path}: unknown format {suffix!r}; use .parquet or .jsonl")


def read_rows(path: str | Path) -> list[Row]:
    """Rows of a Parquet or JSONL file; a bad JSONL line becomes an error row, not a crash."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"rollouts file not found: {path}")
    if _check_format(path) == "parquet":
        import pyarrow.parquet as pq

        return [Row(f"row {i + 1}", r) for i, r in enumerate(pq.read_table(path).to_pylist())]
    import orjson

    rows = []
    with open(path, "rb") as fh:
        for i, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                value = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                rows.append(Row(f"line {i}", None, f"invalid JSON: {exc}"))
                continue
            if not isinstance(value, dict):
                rows.append(Row(f"line {i}", None, f"expected a JSON object, got {type(value).__name__}"))
                continue
            rows.append(Row(f"line {i}", value))
    return rows


def load_records(path: str | Path) -> dict[str, dict[str, Any]]:
    """Records of a Parquet/JSONL file indexed by ``uid`` (and by ``qid`` from meta or a column)."""
    index: dict[str, dict[str, Any]] = {}
    for row in read_rows(path):
        if row.data is None:
            raise ValueError(f"{path}: {row.where}: {row.error}")
        rec = row.data
        keys = [rec.get("uid"), rec.get("qid")]
        meta = rec.get("meta")
        if isinstance(meta, str) and meta.startswith("{"):
            keys.append(json.loads(meta).get("qid"))
        for key in keys:
            if key is not None:
                index.setdefault(str(key), rec)
    if not index:
        raise ValueError(f"{path}: no record has a uid or qid")
    return index


def _row_id(data: Mapping[str, Any]) -> str | None:
    for col in ID_COLUMNS:
        if data.get(col) is not None:
            return str(data[col])
    return None


def prepare(
    rows: Sequence[Row], records: Mapping[str, Mapping[str, Any]] | None
) -> list[tuple[str, dict[str, Any], int | None] | str]:
    """Per row, ``(response, record, n_tokens)`` or an error message."""
    out: list[tuple[str, dict[str, Any], int | None] | str] = []
    for row in rows:
        if row.data is None:
            out.append(f"{row.where}: {row.error}")
            continue
        data = row.data
        rid = _row_id(data)
        if rid is None:
            out.append(f"{row.where}: no id column (one of {list(ID_COLUMNS)})")
            continue
        if not isinstance(data.get("response"), str):
            out.append(
                f"{row.where} (id {rid}): 'response' must be a string, got {data.get('response')!r:.60}"
            )
            continue
        if records is not None:
            rec = records.get(rid)
            if rec is None:
                out.append(f"{row.where}: no record with uid/qid {rid!r} in the records file")
                continue
            record = dict(rec)
        else:
            record = {c: data[c] for c in RECORD_COLUMNS if c in data}
            record.setdefault("uid", rid)
        n_tokens = next((int(data[c]) for c in TOKEN_COLUMNS if data.get(c) is not None), None)
        out.append((data["response"], record, n_tokens))
    return out


def score_rows(
    preset: RewardPreset,
    rows: Sequence[Row],
    records: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    image_root: str | None = None,
    workers: int = 1,
    progress: Callable[[int], None] | None = None,
) -> tuple[list[dict[str, Any]], list[str]]:
    """Score rows; returns the output rows (input columns + rewards) and the error messages."""
    prepared = prepare(rows, records)
    ok = [i for i, p in enumerate(prepared) if not isinstance(p, str)]
    if progress and len(ok) < len(prepared):
        progress(len(prepared) - len(ok))
    triples = [prepared[i] for i in ok]
    results: list[RewardResult | ScoreError] = preset.score_batch(
        [t[0] for t in triples],  # type: ignore[index]
        [t[1] for t in triples],  # type: ignore[index]
        [t[2] for t in triples],  # type: ignore[index]
        image_root=image_root,
        workers=workers,
        on_error="collect",
        progress=progress,
    )
    by_row: dict[int, RewardResult | ScoreError] = dict(zip(ok, results, strict=True))
    components = list(preset.weights)
    out_rows, errors = [], []
    for i, (row, prep) in enumerate(zip(rows, prepared, strict=True)):
        base = dict(row.data or {})
        base.update({"reward_total": None, **{f"reward_{c}": None for c in components}})
        base.update(correct=None, reward_details=None, error=None)
        res = by_row.get(i)
        if isinstance(prep, str):
            base["error"] = prep
        elif isinstance(res, ScoreError):
            base["error"] = f"{row.where} (id {res.uid}): {res.error}"
        else:
            base.update(res.to_row())
            base["reward_details"] = json.dumps(res.details, default=str, ensure_ascii=False)
        if base["error"]:
            errors.append(base["error"])
        out_rows.append(base)
    return out_rows, errors


def write_rows(rows: Sequence[Mapping[str, Any]], path: str | Path) -> None:
    """Write rows as Parquet (zstd) or JSONL, by the file's suffix."""
    path = Path(path)
    fmt = _check_format(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist([dict(r) for r in rows]), path, compression="zstd")
        return
    import orjson

    with open(path, "wb") as fh:
        for r in rows:
            fh.write(orjson.dumps(r, default=_jsonable) + b"\n")


def _jsonable(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        import base64

        return base64.b64encode(bytes(value)).decode()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")
