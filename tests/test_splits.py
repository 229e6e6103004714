"""Perception/reasoning splits (curation.splits) and the ``pebr curate score`` / ``split`` commands."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest

from curation.difficulty import AdaptiveConfig, BucketRule, score_dataset
from curation.engines import SamplingParams
from curation.schema import COLUMNS, RECORD_SCHEMA, read_parquet, write_parquet
from curation.splits import DIFFICULTY_FILE, REPORT_FILE, SPLIT_FILES, build_splits
from tests.rollout_helpers import ExactMatchPreset, PatternEngine, mixed_pattern, questions
from trainer.cli import run


@pytest.fixture
def data_dir(tmp_path) -> Path:
    d = tmp_path / "data"
    d.mkdir()
    write_parquet(questions(16), str(d / "rl.parquet"))
    write_parquet(questions(3, source="held-out"), str(d / "test.parquet"))
    return d


def _score(data_dir, run_dir, engine, **kw):
    kw.setdefault("sampling", SamplingParams(n=8))
    return score_dataset(data_dir / "rl.parquet", engine, run_dir, preset=ExactMatchPreset(), **kw)


def test_splits_layout_and_report(tmp_path, data_dir):
    _score(data_dir, tmp_path / "run", PatternEngine(mixed_pattern), command="pebr curate score ...")
    report = build_splits(tmp_path / "run", tmp_path / "splits", command="pebr curate split ...")
    out = tmp_path / "splits"
    records = {r["uid"]: (i, r) for i, r in enumerate(questions(16))}
    expected = {"easy": [0], "hard": [1], "medium": [2, 3]}
    for bucket, name in SPLIT_FILES.items():
        table = pq.read_table(out / name)
        assert table.schema.names == list(COLUMNS)  # canonical schema, nothing added
        assert table.schema.equals(RECORD_SCHEMA, check_metadata=False)
        got = read_parquet(str(out / name)).to_pylist()
        assert all(records[r["uid"]][0] % 4 in expected[bucket] for r in got)
        assert [r["uid"] for r in got] == [u for u, (i, _) in records.items() if i % 4 in expected[bucket]]
        assert got[0] == records[got[0]["uid"]][1]  # records unchanged
    difficulty = pl.read_parquet(out / DIFFICULTY_FILE)
    assert difficulty.height == 16
    assert {"uid", "model_id", "n", "n_correct", "pass_rate", "wilson_lo", "wilson_hi", "bucket"} <= set(
        difficulty.columns
    )
    saved = json.loads((out / REPORT_FILE).read_text())
    assert saved == json.loads(json.dumps(report.to_dict()))
    assert saved["counts"] == {"easy": 4, "medium": 8, "hard": 4, "undecided": 0}
    # medium: i in 2, 3, 6, 7, 10, 11, 14, 15; the task is TASKS[i % 3]
    assert saved["by_task"]["medium"] == {"arithmetic": 3, "color": 2, "count": 3}
    assert saved["by_source"]["easy"] == {"other": 4}  # every 4th record has source "other"
    assert saved["image_root"] == str(data_dir.resolve())
    assert saved["test_path"] == str(data_dir / "test.parquet")
    assert saved["data_path"] == str((data_dir / "rl.parquet").resolve())
    assert saved["sampling"]["temperature"] == 1.2
    assert saved["n"] == 8
    assert saved["preset"] == "exact_match"
    assert saved["rollouts"]["rollouts_stored"] == 128
    assert saved["commands"] == ["pebr curate score ...", "pebr curate split ..."]
    assert saved["transitions"] is None


def test_rebucketing_with_a_later_model(tmp_path, data_dir):
    _score(data_dir, tmp_path / "run", PatternEngine(mixed_pattern, model_id="warmup"))
    first = build_splits(tmp_path / "run", tmp_path / "s1")
    later = PatternEngine(lambda i, j: i % 4 != 1, model_id="after-stage1")
    _score(data_dir, tmp_path / "run", later)
    assert later.produced == 128  # the warm-up model's rollouts are not recomputed
    report = build_splits(tmp_path / "run", tmp_path / "s2")
    assert report.model_id == "after-stage1"
    assert report.previous_model_id == "warmup"
    moved = {(t["from_bucket"], t["to_bucket"]): t["questions"] for t in report.transitions}
    assert moved == {("easy", "easy"): 4, ("hard", "hard"): 4, ("medium", "easy"): 8}
    # the first model's buckets are still there, by id
    again = build_splits(tmp_path / "run", tmp_path / "s3", model_id="warmup")
    assert again.counts == first.counts
    with pytest.raises(ValueError, match="no rollouts of model 'nope'"):
        build_splits(tmp_path / "run", tmp_path / "s4", model_id="nope")


def test_threshold_rule(tmp_path, data_dir):
    _score(data_dir, tmp_path / "run", PatternEngine(mixed_pattern))
    # medium questions pass 4/8 (i % 4 == 2) or 3/8 (i % 4 == 3)
    report = build_splits(
        tmp_path / "run", tmp_path / "s", BucketRule("thresholds", 8, easy_min=0.5, hard_max=0.4)
    )
    assert report.counts == {"easy": 8, "medium": 0, "hard": 8, "undecided": 0}
    assert report.rule["kind"] == "thresholds"


def test_an_adaptive_run_splits_only_with_the_rule_it_stopped_by(tmp_path, data_dir):
    _score(data_dir, tmp_path / "run", PatternEngine(mixed_pattern), adaptive=AdaptiveConfig())
    with pytest.raises(ValueError, match="sampled adaptively"):
        build_splits(
            tmp_path / "run", tmp_path / "s", BucketRule("thresholds", 8, easy_min=0.9, hard_max=0.1)
        )
    report = build_splits(tmp_path / "run", tmp_path / "s")  # the PeBR rule is exact on adaptive runs
    assert report.counts == {"easy": 4, "medium": 8, "hard": 4, "undecided": 0}

    rule = BucketRule("thresholds", 8, easy_min=0.5, hard_max=0.4)
    _score(data_dir, tmp_path / "run2", PatternEngine(mixed_pattern), adaptive=AdaptiveConfig(rule=rule))
    with pytest.raises(ValueError, match="sampled adaptively"):
        build_splits(tmp_path / "run2", tmp_path / "s2")  # the PeBR rule needs what was not sampled
    report = build_splits(tmp_path / "run2", tmp_path / "s2", rule)
    assert report.counts == {"easy": 8, "medium": 0, "hard": 8, "undecided": 0}  # as test_threshold_rule


def test_split_needs_a_run(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"run\.json"):
        build_splits(tmp_path / "nothing", tmp_path / "s")


def _synth_replay(tmp_path) -> tuple[Path, Path]:
    """The synthetic RL pool and a replay file answering each question with its gold answer
    (sample 0..k-1) or a wrong one, so the real pebr_sample preset buckets them."""
    from curation.synth import generate_dataset

    data = tmp_path / "synth"
    generate_dataset(data, sft=2, rl=12, test=2, seed=0)
    lines = []
    for i, rec in enumerate(read_parquet(str(data / "rl.parquet")).to_pylist()):
        right = (8, 0, 3)[i % 3]
        for j in range(8):
            answer = rec["answer"] if j < right else "definitely not the answer"
            lines.append(json.dumps({"uid": rec["uid"], "response": f"### The final answer is: {answer}"}))
    replay = tmp_path / "replay.jsonl"
    replay.write_text("\n".join(lines) + "\n")
    return data, replay


def test_cli_score_and_split_with_the_real_preset(tmp_path, capsys):
    data, replay = _synth_replay(tmp_path)
    args = [
        "curate",
        "score",
        "--data",
        str(data / "rl.parquet"),
        "--model",
        str(replay),
        "--backend",
        "replay",
        "--id-column",
        "uid",
        "--out",
        str(tmp_path / "run"),
        "--adaptive",
    ]
    assert run(args) == 0
    out = capsys.readouterr().out
    assert "buckets: easy 4, medium 4, hard 4, undecided 0" in out
    assert "saved)" in out
    assert run(args) == 0  # a rerun has nothing left to do
    assert "0 new rollouts" in capsys.readouterr().out
    assert run(["curate", "split", "--run", str(tmp_path / "run"), "--out", str(tmp_path / "splits")]) == 0
    report = json.loads((tmp_path / "splits" / REPORT_FILE).read_text())
    assert report["counts"] == {"easy": 4, "medium": 4, "hard": 4, "undecided": 0}
    assert report["test_path"] == str(data / "test.parquet")
    assert report["commands"][0].startswith("pebr curate score --data")
    assert "--adaptive" in report["commands"][0]
    assert report["commands"][-1].startswith("pebr curate split --out")


def test_cli_adaptive_score_by_a_threshold_rule_then_split_by_it(tmp_path, capsys):
    data, replay = _synth_replay(tmp_path)
    rule = ["--rule", "thresholds", "--easy-min", "0.5", "--hard-max", "0.2"]
    common = ["--data", str(data / "rl.parquet"), "--model", str(replay), "--backend", "replay"]
    common += ["--id-column", "uid"]
    assert run(["curate", "score", *common, "--out", str(tmp_path / "fixed")]) == 0
    assert run(["curate", "score", *common, "--out", str(tmp_path / "run"), "--adaptive", *rule]) == 0
    assert "saved)" in capsys.readouterr().out
    for name in ("fixed", "run"):
        assert (
            run(
                [
                    "curate",
                    "split",
                    "--run",
                    str(tmp_path / name),
                    "--out",
                    str(tmp_path / f"s-{name}"),
                    *rule,
                ]
            )
            == 0
        )
    fixed, adaptive = (json.loads((tmp_path / f"s-{k}" / REPORT_FILE).read_text()) for k in ("fixed", "run"))
    assert adaptive["counts"] == fixed["counts"]
    assert adaptive["counts"]["undecided"] == 0
    # the PeBR rule cannot bucket questions that stopped by another rule
    assert run(["curate", "split", "--run", str(tmp_path / "run"), "--out", str(tmp_path / "s-pebr")]) == 2
    assert "sampled adaptively" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["curate", "split", "--out", "x"], "give --run"),  # nothing to split
        (["curate", "split", "--out", "x", "--run", "r", "--rollouts", "f"], "not both"),  # two modes at once
        (
            ["curate", "split", "--out", "x", "--rollouts", "f", "--dataset", "d", "--format", "csv"],
            "--format",
        ),
        (
            [
                "curate",
                "score",
                "--data",
                "nope.parquet",
                "--model",
                "m.jsonl",
                "--backend",
                "replay",
                "--out",
                "o",
            ],
            "does not exist",
        ),  # missing replay file
        (["curate", "score", "--data", "d", "--model", "m", "--backend", "magic", "--out", "o"], "backend"),
    ],
)
def test_cli_user_errors(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    assert run(args) == 2
    assert message in capsys.readouterr().err
