from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curation.schema import make_record, write_parquet
from rewards.alignment import CLIP_ENV
from rewards.rescore import write_rows
from rewards.sections import render_sections
from trainer.cli import run

CAPTION = "A red circle in the upper left and a blue square in the lower right."
LEXICAL = ["--set", "alignment.similarity=lexical", "--set", "accuracy.caption_similarity=lexical"]


@pytest.fixture(autouse=True)
def _no_clip_env(monkeypatch):
    monkeypatch.delenv(CLIP_ENV, raising=False)


def _records():
    return [
        make_record(
            uid="cap",
            question="Describe the image.",
            answer="",
            task="caption",
            key_words=["red circle", "blue square"],
            reference_caption=CAPTION,
        ),
        make_record(
            uid="grd",
            question="Where is the square?",
            answer="[56, 24, 88, 56]",
            task="grounding",
            boxes=[[56, 24, 88, 56]],
            images=["square.png"],
            image_sizes=[(96, 64)],
        ),
    ]


def test_score_jsonl_with_inline_columns(tmp_path):
    rows = [
        {
            "uid": "grd",
            "response": "<answer>[56, 24, 88, 56]</answer>",
            "task": "grounding",
            "boxes": [[56, 24, 88, 56]],
            "image_sizes": [[96, 64]],
            "n_tokens": 10,
        },
        {
            "uid": "grd2",
            "response": "[0, 0, 96, 64]",
            "task": "grounding",
            "boxes": [[56, 24, 88, 56]],
            "image_sizes": [[96, 64]],
        },
    ]
    src, out = tmp_path / "rollouts.jsonl", tmp_path / "scored.jsonl"
    write_rows(rows, src)
    assert run(["rewards", "score", "--preset", "grounding_iou", "--input", str(src), "--out", str(out)]) == 0
    scored = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["uid"] for r in scored] == ["grd", "grd2"]
    assert scored[0]["reward_grounding"] == 1.0
    assert scored[0]["correct"] is True
    assert scored[1]["correct"] is False
    assert scored[1]["reward_grounding"] == pytest.approx(32 * 32 / (96 * 64))
    assert json.loads(scored[0]["reward_details"])["preset"] == "grounding_iou"


def test_score_parquet_joined_with_records_and_workers(tmp_path):
    data = tmp_path / "records.parquet"
    write_parquet(_records(), str(data))
    good = render_sections(CAPTION + " It is a red circle and a blue square.", "r", ["s"], "done")
    rollouts = pa.table(
        {
            "uid": ["cap", "cap", "grd", "grd"],
            "response": [good, "nothing", "### The final answer is: [56, 24, 88, 56]", "no box"],
            "response_length": [100, 100, 1024, 10],
        }
    )
    src, out = tmp_path / "rollouts.parquet", tmp_path / "scored.parquet"
    pq.write_table(rollouts, src)
    base = ["rewards", "score", "-i", str(src), "-o", str(out), "--data", str(data)]
    assert run([*base, "-p", "pebr_stage2", *LEXICAL[2:], "--workers", "2"]) == 0
    table = pq.read_table(out).to_pylist()
    assert [r["uid"] for r in table] == ["cap", "cap", "grd", "grd"]
    assert {"reward_total", "reward_accuracy", "reward_format", "correct", "error"} <= set(table[0])
    # caption accuracy is the lexical similarity to the reference (a longer paraphrase here)
    assert table[0]["reward_total"] == pytest.approx(0.9 * table[0]["reward_accuracy"] + 0.1)
    assert table[0]["reward_accuracy"] > 0.7
    assert table[0]["correct"] is True
    assert table[1]["reward_total"] < 0.3
    assert table[2]["reward_format"] == 0.0
    assert table[2]["correct"] is True
    assert table[3]["correct"] is False
    # stage 1 has nothing to reward on the grounding record: reported, not paid for brevity
    assert run([*base, "-p", "pebr_stage1", *LEXICAL]) == 1
    table = pq.read_table(out).to_pylist()
    assert table[0]["reward_total"] == pytest.approx(1.0)
    assert table[1]["reward_length"] == 1.0  # response_length 100
    assert "needs one of ['alignment', 'keywords']" in table[2]["error"]
    assert table[2]["reward_total"] is None


def test_bad_rows_are_reported_not_dropped(tmp_path, capsys):
    src, out = tmp_path / "rollouts.jsonl", tmp_path / "scored.jsonl"
    src.write_text(
        '{"uid": "grd", "response": "[56, 24, 88, 56]"}\n'
        "{not json\n"
        '{"response": "no id"}\n'
        '{"uid": "missing", "response": "x"}\n'
        '{"uid": "grd", "response": 5}\n'
    )
    data = tmp_path / "records.parquet"
    write_parquet(_records(), str(data))
    rc = run(["rewards", "score", "-p", "grounding_iou", "-i", str(src), "-o", str(out), "--data", str(data)])
    assert rc == 1
    scored = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(scored) == 5  # every input row comes out
    assert scored[0]["error"] is None
    assert scored[0]["reward_total"] == pytest.approx(0.9)
    errors = [r["error"] for r in scored[1:]]
    assert "line 2: invalid JSON" in errors[0]
    assert "line 3: no id column" in errors[1]
    assert "no record with uid/qid 'missing'" in errors[2]
    assert "line 5 (id grd): 'response' must be a string" in errors[3]
    assert "bad row" in capsys.readouterr().err


def test_score_user_errors_exit_2(tmp_path):
    assert (
        run(
            [
                "rewards",
                "score",
                "-p",
                "nope",
                "-i",
                str(tmp_path / "x.jsonl"),
                "-o",
                str(tmp_path / "o.jsonl"),
            ]
        )
        == 2
    )
    (tmp_path / "x.csv").write_text("a")
    assert (
        run(
            [
                "rewards",
                "score",
                "-p",
                "pebr_stage2",
                "-i",
                str(tmp_path / "x.csv"),
                "-o",
                str(tmp_path / "o.jsonl"),
            ]
        )
        == 2
    )


def test_audit_fails_on_keyword_stuffing_for_pebr_stage1(tmp_path, capsys):
    data = tmp_path / "records.jsonl"
    write_rows(_records(), data)
    report = tmp_path / "audit.json"
    rc = run(["rewards", "audit", "-p", "pebr_stage1", "--data", str(data), "--out", str(report), *LEXICAL])
    assert rc == 1
    result = json.loads(report.read_text())
    assert result["failed"] == ["keyword_stuffing"]
    stuffing = next(p for p in result["probes"] if p["name"] == "keyword_stuffing")
    # PeBR's substring keywords pay 0.4 * 1.0 (+ 0.1 length) for a list of key words
    assert stuffing["component_means"]["keywords"] == 1.0
    assert stuffing["mean"] == pytest.approx(0.5)
    assert result["control"]["mean"] > 0.9  # the right answer still pays
    assert "keyword_stuffing" in capsys.readouterr().out


def test_audit_passes_for_the_guarded_preset(tmp_path):
    data = tmp_path / "records.jsonl"
    write_rows(_records(), data)
    report = tmp_path / "audit.json"
    rc = run(
        ["rewards", "audit", "-p", "pebr_stage1_guarded", "--data", str(data), "--out", str(report), *LEXICAL]
    )
    assert rc == 0
    result = json.loads(report.read_text())
    assert result["failed"] == []
    assert {p["name"] for p in result["probes"]} >= {
        "empty",
        "fifty_boxes",
        "whole_image_box",
        "code_injection",
    }
    assert all(p["mean"] <= 0.2 for p in result["probes"])


def test_audit_thresholds_are_configurable(tmp_path):
    data = tmp_path / "records.jsonl"
    write_rows(_records(), data)
    argv = [
        "rewards",
        "audit",
        "-p",
        "pebr_stage1",
        "--data",
        str(data),
        *LEXICAL,
        "--hack",
        "keyword_stuffing",
    ]
    assert run([*argv, "--hack-threshold", "keyword_stuffing=0.6"]) == 0
    assert run([*argv, "--max-hack-reward", "0.6"]) == 0
    assert run([*argv, "--max-hack-reward", "0.4"]) == 1
    assert run([*argv, "--hack", "no_such_hack"]) == 2


def test_audit_on_builtin_records_stage2(tmp_path):
    report = tmp_path / "audit.json"
    rc = run(["rewards", "audit", "-p", "pebr_stage2", "--out", str(report)])
    result = json.loads(report.read_text())
    assert result["n_records"] == 11  # one per task
    assert rc == (1 if result["failed"] else 0)
    code = next(p for p in result["probes"] if p["name"] == "code_injection")
    assert code["reason"] != "the payload's code ran"
    assert code["n_correct"] == 0


def test_list_presets(capsys):
    assert run(["rewards", "list"]) == 0
    out = capsys.readouterr().out
    assert "pebr_stage1" in out
    assert "pebr_stage2" in out


@pytest.mark.parametrize(
    ("response", "gold", "extra", "rc"),
    [
        ("### The final answer is: 3", "3", [], 0),  # right: exit 0
        ("### The final answer is: 4", "3", [], 1),  # wrong: exit 1
        ("### The final answer is: B", "B", ["--choice", "A", "--choice", "B"], 0),  # option letter
    ],
)
def test_grade_command(response, gold, extra, rc, capsys):
    assert run(["rewards", "grade", response, gold, *extra]) == rc
    assert "extracted" in capsys.readouterr().out


def test_set_values_are_yaml(tmp_path):
    src, out = tmp_path / "r.jsonl", tmp_path / "o.jsonl"
    write_rows([{"uid": "a", "response": "x", "task": "count", "answer": "3"}], src)
    argv = ["rewards", "score", "-p", "pebr_stage2", "-i", str(src), "-o", str(out)]
    assert run([*argv, "--set", "format={weight: 0.5, style: think_answer}"]) == 0
    row = json.loads(out.read_text())
    assert json.loads(row["reward_details"])["components"]["format"]["style"] == "think_answer"
    assert run([*argv, "--set", "format.colour=red"]) == 2
