"""`pebr eval`: report layout, pass@k, per-task breakdown, the answers file, the CLI table."""

from __future__ import annotations

import json
import math

import pytest

from trainer.evaluate import EvalConfig, k_values, pass_at_k, summarise


@pytest.mark.parametrize(
    ("n", "c", "k", "expected"),
    [
        (4, 0, 1, 0.0),  # never right
        (4, 4, 1, 1.0),  # always right
        (4, 1, 1, 0.25),  # pass@1 is the plain rate
        (4, 1, 4, 1.0),  # one of four samples is right
        (4, 1, 2, 0.5),  # 1 - C(3,2)/C(4,2) = 1 - 3/6
        (8, 2, 4, 1 - math.comb(6, 4) / math.comb(8, 4)),  # the unbiased estimator
        (3, 2, 2, 1.0),  # fewer wrong answers than k: certain
    ],
)
def test_pass_at_k(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected)


def test_pass_at_k_rejects_k_out_of_range():
    with pytest.raises(ValueError, match=r"k must be in \[1, n=2\]"):
        pass_at_k(2, 1, 3)


@pytest.mark.parametrize(("n", "ks"), [(1, [1]), (2, [1, 2]), (5, [1, 2, 4, 5]), (8, [1, 2, 4, 8])])
def test_k_values(n, ks):
    assert k_values(n) == ks


def _row(uid, task, correct, fmt):
    return {
        "uid": uid,
        "task": task,
        "correct": correct,
        "total": fmt,
        "components": {"format": fmt, "acc": None},
    }


def test_summarise_means_and_not_applicable_components():
    rows = [
        _row("a", "count", True, 1.0),
        _row("a", "count", False, 0.0),
        _row("b", "color", False, 1.0),
        _row("b", "color", None, 0.5),  # no gold answer: not judged, not counted as wrong
    ]
    out = summarise(rows, n=2)
    assert out["questions"] == 2
    assert out["answers"] == 4
    assert out["judged"] == 3
    assert out["accuracy"] == pytest.approx(1 / 3)
    assert out["components"]["format"] == pytest.approx(2.5 / 4)
    assert out["components"]["acc"] is None  # never applicable
    # pass@2 counts only questions with 2 judged answers ("b" has one)
    assert out["pass_at_k"] == {"1": pytest.approx((0.5 + 0.0) / 2), "2": pytest.approx(1.0)}


def test_eval_config_checks():
    with pytest.raises(ValueError, match="n must be >= 1"):
        EvalConfig(model="m", data="d", n=0)
    with pytest.raises(ValueError, match="identical answers"):
        EvalConfig(model="m", data="d", n=2, temperature=0.0)
    assert EvalConfig(model="m", data="d").sampling_temperature == 0.0  # greedy for n=1
    assert EvalConfig(model="m", data="d", n=4).sampling_temperature == 1.0


@pytest.fixture(scope="module")
def test_split(tmp_path_factory):
    from curation.synth import generate_dataset

    out = tmp_path_factory.mktemp("synth")
    generate_dataset(out, sft=0, rl=0, test=6, seed=3)
    return out / "test.parquet"


@pytest.mark.parametrize("n", [1, 2])
def test_pebr_eval_cli(tiny_nano_dir, test_split, tmp_path, capsys, monkeypatch, n):
    from curation.schema import from_arrow, read_parquet
    from trainer.cli import run

    monkeypatch.setenv("COLUMNS", "200")  # a table wide enough for every column header

    out = tmp_path / "report.json"
    args = ["eval", "--model", str(tiny_nano_dir), "--data", str(test_split), "--preset", "pebr_stage2"]
    code = run([*args, "--n", str(n), "--out", str(out), "--max-new-tokens", "8", "--batch-size", "4"])
    assert code == 0
    report = json.loads(out.read_text())
    records = from_arrow(read_parquet(str(test_split)))
    assert report["questions"] == len(records)
    assert report["answers"] == len(records) * n
    assert set(report["components"]) == {"accuracy", "format", "total"}
    assert set(report["per_task"]) == {r["task"] for r in records}
    assert sum(part["questions"] for part in report["per_task"].values()) == len(records)
    assert ("pass_at_k" in report) == (n > 1)
    # every number traces back to the answers written next to the report
    answers = [json.loads(line) for line in (tmp_path / "report.samples.jsonl").read_text().splitlines()]
    assert len(answers) == len(records) * n
    judged = [a["correct"] for a in answers if a["correct"] is not None]
    assert report["accuracy"] == pytest.approx(sum(judged) / len(judged))
    assert all(a["n_tokens"] <= 8 for a in answers)
    table = capsys.readouterr().out
    assert "accuracy" in table
    assert "reward:format" in table
    assert ("pass@2" in table) == (n > 1)
    assert "count" in table or "color" in table


def test_pebr_eval_missing_data_is_a_user_error(tiny_nano_dir, tmp_path, capsys):
    from trainer.cli import run

    code = run(["eval", "--model", str(tiny_nano_dir), "--data", str(tmp_path / "nope.parquet")])
    assert code == 2
    assert "does not exist" in " ".join(capsys.readouterr().err.split())  # rich wraps lines
