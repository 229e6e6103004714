"""Reading a splits directory: the hand-off between ``pebr curate split`` and the exporters.

A splits directory (SPLITS_DIR) holds::

    perception.parquet    easy bucket   -> stage 1 (perception RL)
    reasoning.parquet     medium bucket -> stage 2 (reasoning RL)
    hard.parquet          hard bucket   -> review queue
    difficulty.parquet    uid, model_id, n, n_correct, pass_rate, wilson_lo, wilson_hi, bucket
    splits_report.json    model_id, rule, counts, per_task, per_source, sampling, preset, data,
                          image_root, commands, and optionally test_path, filter_report

The split files are in the canonical schema (:mod:`curation.schema`); image paths are relative
to ``image_root``. Optional report keys may be missing: :func:`read_splits_dir` records what
is absent instead of failing, and the data card says so.

Example::

    >>> run = read_splits_dir("runs/demo/splits")          # doctest: +SKIP
    >>> run.split_paths["perception"], run.model_id         # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

logger = logging.getLogger(__name__)

REPORT_FILE = "splits_report.json"
DIFFICULTY_FILE = "difficulty.parquet"

#: The split files a splits directory must hold, in card order, with the bucket each one is.
BUCKET_SPLITS = {"perception": "easy", "reasoning": "medium", "hard": "hard"}
#: Every split an export knows: the three bucket splits and the held-out test split.
ALL_SPLITS = ("perception", "reasoning", "hard", "test")
#: What each split is for, as the card and the CLI say it.
SPLIT_ROLES = {
    "perception": "stage 1: perception RL (the easy bucket: every rollout correct)",
    "reasoning": "stage 2: reasoning RL (the medium bucket: some rollouts correct)",
    "hard": "review queue (the hard bucket: no rollout correct); fix gold answers before training on it",
    "test": "held-out evaluation; never trained on",
}
BUCKETS = ("easy", "medium", "hard")

DIFFICULTY_COLUMNS = ("uid", "model_id", "n", "n_correct", "pass_rate", "wilson_lo", "wilson_hi", "bucket")


@dataclass(frozen=True)
class FilterFunnel:
    """The curation filter's funnel: records in, records dropped per reason, records kept."""

    input: int
    drops: dict[str, int]
    kept: int
    path: str

    @property
    def dropped(self) -> int:
        return sum(self.drops.values())


@dataclass(frozen=True)
class SplitsRun:
    """A splits directory, read and checked; paths are absolute."""

    root: Path
    report: dict[str, Any]
    split_paths: dict[str, Path]
    difficulty_path: Path
    image_root: Path | None
    funnel: FilterFunnel | None
    #: why the funnel is absent (no key in the report, or a missing file); ``None`` when present
    funnel_note: str | None
    notes: list[str] = field(default_factory=list)

    @property
    def model_id(self) -> str | None:
        return self.report.get("model_id")

    def read_difficulty(self) -> pa.Table:
        """difficulty.parquet, restricted to the report's rollout model when it names one."""
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        table = pq.read_table(self.difficulty_path)
        missing = [c for c in DIFFICULTY_COLUMNS if c not in table.column_names]
        if missing:
            raise ValueError(
                f"{self.difficulty_path}: missing columns {missing}; expected {list(DIFFICULTY_COLUMNS)}"
            )
        if self.model_id is not None:
            table = table.filter(pc.equal(table["model_id"], self.model_id))
        counts = Counter(table["uid"].to_pylist())
        if len(counts) != table.num_rows:
            dup = next(u for u, c in counts.items() if c > 1)
            raise ValueError(
                f"{self.difficulty_path}: uid {dup!r} has more than one row for model {self.model_id!r}"
            )
        return table


def resolve_report_path(root: Path, value: str | None) -> Path | None:
    """A path from the report: absolute as written, relative ones against the splits directory
    first (the split command writes its own directory's files that way), then the working directory."""
    if not value:
        return None
    path = Path(value)
    if path.is_absolute():
        return path
    for base in (root, Path.cwd()):
        if (base / path).exists():
            return (base / path).resolve()
    return (root / path).resolve()


# ``records`` first: ``pebr curate filter``'s own report.json (where ``input`` is the file's path)
_FUNNEL_INPUT_KEYS = ("records", "input", "n_input", "total", "in")
_FUNNEL_DROP_KEYS = ("dropped", "drops", "drop_reasons", "reasons", "dropped_by_reason")
_FUNNEL_KEPT_KEYS = ("kept", "n_kept", "output", "out")


def _first(mapping: Mapping[str, Any], keys: tuple[str, ...]) -> Any:
    for key in keys:
        if key in mapping:
            return mapping[key]
    return None


def read_filter_funnel(path: str | Path) -> FilterFunnel:
    """Read a curation filter ``report.json`` as a funnel.

    Reads ``pebr curate filter``'s ``report.json`` (``records``, ``dropped``, ``kept``), and
    ``{"input": N, "dropped": {reason: count}, "kept": K}`` with the common spellings of
    those keys (``n_input``/``total``, ``drops``/``drop_reasons``, ``n_kept``); drops may also be a
    list of ``{"reason", "count"}`` objects. Anything else is a ``ValueError`` naming the file.
    """
    path = Path(path)
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, Mapping):
        raise ValueError(f"{path}: a filter report must be a JSON object, got {type(data).__name__}")
    raw_in, raw_drops, raw_kept = (
        _first(data, _FUNNEL_INPUT_KEYS),
        _first(data, _FUNNEL_DROP_KEYS),
        _first(data, _FUNNEL_KEPT_KEYS),
    )
    if isinstance(raw_drops, list):
        try:
            raw_drops = {str(d["reason"]): d["count"] for d in raw_drops}
        except (KeyError, TypeError) as exc:
            raise ValueError(f"{path}: drops as a list need 'reason' and 'count' in each item") from exc
    if not isinstance(raw_in, int) or not isinstance(raw_kept, int) or not isinstance(raw_drops, Mapping):
        raise ValueError(
            f"{path}: a filter report needs an input count ({'/'.join(_FUNNEL_INPUT_KEYS)}), drops per "
            f"reason ({'/'.join(_FUNNEL_DROP_KEYS)}) and a kept count ({'/'.join(_FUNNEL_KEPT_KEYS)}); "
            f"keys found: {sorted(data)}"
        )
    drops = {}
    for reason, count in raw_drops.items():
        if not isinstance(count, int) or count < 0:
            raise ValueError(
                f"{path}: drop count for {reason!r} must be a non-negative integer, got {count!r}"
            )
        if count:  # a reason that dropped nothing is not a step of the funnel
            drops[str(reason)] = count
    funnel = FilterFunnel(input=raw_in, drops=drops, kept=raw_kept, path=str(path))
    if funnel.input - funnel.dropped != funnel.kept:
        # a record dropped for two reasons may be counted twice; say so rather than "fix" numbers
        logger.warning(
            "%s: input %d - dropped %d != kept %d (records counted under several reasons?)",
            path,
            funnel.input,
            funnel.dropped,
            funnel.kept,
        )
    return funnel


def read_splits_dir(path: str | Path) -> SplitsRun:
    """Read and check a splits directory; raises ``FileNotFoundError``/``ValueError`` naming the problem."""
    root = Path(path).resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"splits directory {root} does not exist")
    report_path = root / REPORT_FILE
    if not report_path.is_file():
        raise FileNotFoundError(f"{report_path} not found: is {root} the output of `pebr curate split`?")
    report = json.loads(report_path.read_text(encoding="utf-8"))
    if not isinstance(report, dict):
        raise ValueError(f"{report_path}: must be a JSON object")

    split_paths: dict[str, Path] = {}
    for name in BUCKET_SPLITS:
        file = root / f"{name}.parquet"
        if not file.is_file():
            raise FileNotFoundError(f"{file} not found; a splits directory holds {list(BUCKET_SPLITS)}")
        split_paths[name] = file
    notes: list[str] = []
    test = resolve_report_path(root, report.get("test_path"))
    if test is None and (root / "test.parquet").is_file():
        test = root / "test.parquet"
    if test is not None:
        if not test.is_file():
            raise FileNotFoundError(f"{report_path}: the held-out test split {test} does not exist")
        split_paths["test"] = test
    else:
        notes.append("no held-out test split was recorded")

    difficulty = root / DIFFICULTY_FILE
    if not difficulty.is_file():
        raise FileNotFoundError(f"{difficulty} not found; it holds the pass rates the buckets come from")

    image_root = resolve_report_path(root, report.get("image_root"))
    if image_root is not None and not image_root.is_dir():
        raise FileNotFoundError(f"{report_path}: image_root {image_root} is not a directory")

    funnel, funnel_note = None, None
    filter_path = resolve_report_path(root, report.get("filter_report"))
    if filter_path is None:
        funnel_note = "the splits report records no filter report, so the filter funnel is unknown"
    elif not filter_path.is_file():
        funnel_note = f"the filter report recorded at {report.get('filter_report')} was not found"
        logger.warning("%s: %s", report_path, funnel_note)
    else:
        funnel = read_filter_funnel(filter_path)
    for key in ("model_id", "sampling", "preset", "commands"):
        if key not in report:
            notes.append(f"the splits report has no '{key}'")
    return SplitsRun(
        root=root,
        report=report,
        split_paths=split_paths,
        difficulty_path=difficulty,
        image_root=image_root,
        funnel=funnel,
        funnel_note=funnel_note,
        notes=notes,
    )
