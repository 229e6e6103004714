"""Perception and reasoning splits from a scored run: PeBR-R1's stage data.

``build_splits(run_dir, out_dir)`` buckets every question of the run's data with one
model's rollouts and writes, in the canonical schema:

=====================  ===============================================================
file                   content
=====================  ===============================================================
perception.parquet     the easy bucket: stage 1 (perception RL) data
reasoning.parquet      the medium bucket: stage 2 (reasoning RL) data
hard.parquet           the hard bucket: left out of training, a review queue
difficulty.parquet     per-question stats of the model (pass rate, Wilson bounds, bucket)
splits_report.json     model id, rule, counts, per-task and per-source balance,
                       transitions from the previous model, sampling settings, preset,
                       n, adaptive savings, data path, absolute image root, held-out
                       test path, and the commands that produced the run
=====================  ===============================================================

Buckets are keyed by model id: scoring the same data again with a later model (after
stage 1, say) into the same run directory and splitting with ``model_id`` of that model
re-buckets without recomputing the first model's rollouts; the report then shows how
questions moved (easy to medium, ...).
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from curation.difficulty import (
    BUCKETS,
    RUN_FILE,
    UNDECIDED,
    BucketRule,
    load_questions,
    question_stats,
    read_run,
    transitions,
)
from curation.rollouts import RolloutStore

log = logging.getLogger(__name__)

SPLIT_FILES = {"easy": "perception.parquet", "medium": "reasoning.parquet", "hard": "hard.parquet"}
DIFFICULTY_FILE = "difficulty.parquet"
REPORT_FILE = "splits_report.json"


@dataclass
class SplitReport:
    """What :func:`build_splits` wrote; ``to_dict()`` is ``splits_report.json``."""

    run_dir: str
    out_dir: str
    model_id: str
    rule: dict[str, Any]
    counts: dict[str, int]
    by_task: dict[str, dict[str, int]]
    by_source: dict[str, dict[str, int]]
    previous_model_id: str | None
    transitions: list[dict[str, Any]] | None
    sampling: dict[str, Any]
    backend: str | None
    preset: str | None
    n: int
    adaptive: dict[str, Any] | None
    rollouts: dict[str, Any]
    data_path: str | None
    image_root: str | None
    test_path: str | None
    filter_report: str | None
    undecided: list[str]
    outputs: dict[str, str]
    commands: list[str | None]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _write_atomic(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    write(tmp)
    os.replace(tmp, path)


def _balance(records: list[dict[str, Any]], buckets: dict[str, str], key: str) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for rec in records:
        b = buckets.get(rec["uid"], UNDECIDED)
        value = rec.get(key) or "unknown"
        out.setdefault(b, {})
        out[b][value] = out[b].get(value, 0) + 1
    return {b: dict(sorted(v.items())) for b, v in sorted(out.items())}


def build_splits(
    run_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    rule: BucketRule | None = None,
    model_id: str | None = None,
    *,
    previous_model_id: str | None = None,
    command: str | None = None,
    filter_report: str | os.PathLike[str] | None = None,
) -> SplitReport:
    """Bucket the run's questions with ``model_id``'s rollouts (the latest scored model by
    default) and write the splits (see the module docstring).

    ``rule`` defaults to PeBR's all/none/mixed rule with the scoring's ``n``. A pass-rate
    threshold rule needs every question fully sampled, so it is refused on adaptive runs.
    ``previous_model_id`` defaults to the model scored before this one in the run.
    ``filter_report`` is the ``report.json`` of the curation filter that produced the data, so
    that the data card can show the filter funnel.
    """
    import polars as pl

    from curation.schema import write_parquet

    t0 = time.perf_counter()
    run_dir = Path(run_dir)
    if filter_report is not None and not Path(filter_report).is_file():
        raise FileNotFoundError(f"filter report {filter_report} does not exist")
    run = read_run(run_dir)
    scorings: dict[str, Any] = run.get("scorings", {})
    model_id = model_id or run.get("latest_model_id")
    if model_id not in scorings:
        raise ValueError(f"{run_dir} has no rollouts of model {model_id!r}; scored models: {list(scorings)}")
    scoring = scorings[model_id]
    n = int(scoring["n"])
    rule = rule or BucketRule(n=n)
    adaptive = scoring.get("adaptive")
    if adaptive:
        stopped_by = adaptive.get("rule") or {"kind": "pebr"}
        wanted = rule.decides()
        if {k: stopped_by.get(k) for k in wanted} != wanted:
            raise ValueError(
                f"the run of {model_id} sampled adaptively, stopping each question once the rule "
                f"{stopped_by} decided its bucket, so another rule ({wanted}) cannot bucket it; split "
                "with that rule, or score again without --adaptive or with this rule"
            )
    data = run.get("data") or {}
    if not data.get("path"):
        raise ValueError(f"{run_dir / RUN_FILE} does not name its data file")
    questions = load_questions(data["path"], run.get("image_root"))
    if questions.fingerprint != data.get("fingerprint"):
        log.warning(
            "the data file %s changed since it was scored; splitting its current questions", data["path"]
        )

    store = RolloutStore(run_dir)
    all_stats = question_stats(store, None, rule)
    uids = pl.Series("uid", [r["uid"] for r in questions.records])
    stats = all_stats.filter((pl.col("model_id") == model_id) & pl.col("uid").is_in(uids.implode()))
    buckets = dict(zip(stats["uid"].to_list(), stats["bucket"].to_list(), strict=True))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    outputs: dict[str, str] = {}
    counts = {b: 0 for b in (*BUCKETS, UNDECIDED)}
    for b, name in SPLIT_FILES.items():
        chosen = [r for r in questions.records if buckets.get(r["uid"]) == b]
        counts[b] = len(chosen)
        path = out / name
        _write_atomic(path, lambda p, chosen=chosen: write_parquet(chosen, str(p)))
        outputs[b] = str(path.resolve())
    undecided = [r["uid"] for r in questions.records if buckets.get(r["uid"], UNDECIDED) == UNDECIDED]
    counts[UNDECIDED] = len(undecided)
    # every question of the data, with the model's stats (undecided when it has none)
    difficulty = (
        pl.DataFrame({"uid": uids})
        .join(stats, on="uid", how="left", maintain_order="left")
        .with_columns(
            pl.col("model_id").fill_null(model_id),
            pl.col("bucket").fill_null(UNDECIDED),
            pl.col("n").fill_null(0),
            pl.col("n_correct").fill_null(0),
            pl.col("wilson_lo").fill_null(0.0),
            pl.col("wilson_hi").fill_null(1.0),
            pl.col("samples").fill_null(0),
        )
    )
    path = out / DIFFICULTY_FILE
    _write_atomic(path, lambda p: difficulty.write_parquet(p, compression="zstd"))
    outputs["difficulty"] = str(path.resolve())

    if previous_model_id is None:
        order = list(scorings)
        idx = order.index(model_id)
        previous_model_id = order[idx - 1] if idx > 0 else None
    moved = None
    if previous_model_id is not None:
        if previous_model_id not in scorings:
            raise ValueError(
                f"no rollouts of previous model {previous_model_id!r}; scored models: {list(scorings)}"
            )
        in_data = all_stats.filter(pl.col("uid").is_in(uids.implode()))
        moved = transitions(in_data, previous_model_id, model_id).to_dicts()

    commands = [c for c in scoring.get("commands", []) if c] + ([command] if command else [])
    report = SplitReport(
        run_dir=str(run_dir.resolve()),
        out_dir=str(out.resolve()),
        model_id=model_id,
        rule=asdict(rule),
        counts=counts,
        by_task=_balance(questions.records, buckets, "task"),
        by_source=_balance(questions.records, buckets, "source"),
        previous_model_id=previous_model_id,
        transitions=moved,
        sampling=scoring.get("sampling", {}),
        backend=scoring.get("backend"),
        preset=scoring.get("preset"),
        n=n,
        adaptive=scoring.get("adaptive"),
        rollouts=_rollout_summary(scoring),
        data_path=data.get("path"),
        image_root=questions.image_root,
        test_path=data.get("test_path") or questions.test_path,
        filter_report=str(Path(filter_report).resolve()) if filter_report else None,
        undecided=undecided,
        outputs=outputs,
        commands=commands,
    )
    path = out / REPORT_FILE
    _write_atomic(path, lambda p: p.write_text(json.dumps(report.to_dict(), indent=2, ensure_ascii=False)))
    log.info(
        "%s: %s in %.2fs",
        model_id,
        ", ".join(f"{b} {counts[b]}" for b in (*BUCKETS, UNDECIDED)),
        time.perf_counter() - t0,
    )
    return report


def _rollout_summary(scoring: dict[str, Any]) -> dict[str, Any]:
    """Rollouts stored, the fixed-n equivalent and the adaptive savings, from the last score."""
    rep = scoring.get("report") or {}
    return {
        k: rep.get(k)
        for k in (
            "rollouts_stored",
            "fixed_equivalent",
            "saved_fraction",
            "rollouts_per_second",
            "unavailable",
        )
    }
