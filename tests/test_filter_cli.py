"""``pebr curate filter`` through the root CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
from _filter_fixtures import build_dataset, write_json, write_jsonl

from trainer.cli import run


def _args(src: Path, images: Path, out: Path, *extra: str) -> list[str]:
    return [
        "curate",
        "filter",
        "--input",
        str(src),
        "--image-root",
        str(images),
        "--out",
        str(out),
        "--workers",
        "0",
        *extra,
    ]


def test_filter_command_writes_outputs_and_prints_the_table(tmp_path, capsys):
    records, expected, images = build_dataset(tmp_path)
    src = write_json(records, tmp_path / "mulberry.json")
    assert run(_args(src, images, tmp_path / "out")) == 0
    out = capsys.readouterr().out
    assert "input" in out
    assert "kept" in out
    assert "dropped: reflective" in out
    for name in ("kept.json", "kept.parquet", "dropped.parquet", "report.json", "dataset_info.json"):
        assert (tmp_path / "out" / name).exists(), name
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["kept"] == sum(e is None for e in expected)
    assert report["kept"] + report["dropped_total"] == len(records)


def test_options_and_config_file(tmp_path):
    records, _expected, images = build_dataset(tmp_path)
    src = write_json(records, tmp_path / "d.json")
    cfg = tmp_path / "curation.yaml"
    cfg.write_text("filter:\n  min_side: 45\n  reflective_patterns: ['step 1']\n  cache: false\n")
    assert run(_args(src, images, tmp_path / "out", "--config", str(cfg), "--no-dedup")) == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["config"]["min_side"] == 45
    assert report["config"]["drop_duplicates"] is False
    assert report["dropped"]["duplicate"] == 0
    assert report["dropped"]["reflective"] > 20  # every answer has a "### Step 1:" header
    # a command-line option beats the file
    assert run(_args(src, images, tmp_path / "out2", "--config", str(cfg), "--min-side", "10")) == 0
    assert json.loads((tmp_path / "out2" / "report.json").read_text())["config"]["min_side"] == 10


def test_user_errors_are_one_red_line_with_exit_code_2(tmp_path, capsys):
    _records, _expected, images = build_dataset(tmp_path)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": []}\n{"messages": [\n')
    assert run(_args(bad, images, tmp_path / "out")) == 2
    err = "".join(capsys.readouterr().err.split())  # rich wraps long lines
    assert "bad.jsonl:line2(byte31):invalidJSON" in err
    assert "--skip-bad-lines" in err
    assert run(_args(bad, images, tmp_path / "out", "--skip-bad-lines")) == 0
    dropped = pq.read_table(tmp_path / "out" / "dropped.parquet").to_pylist()
    assert [(r["line"], r["reason"]) for r in dropped] == [(1, "malformed"), (2, "bad_json")]
    cfg = tmp_path / "c.yaml"
    cfg.write_text("min_sid: 3\n")
    assert run(_args(bad, images, tmp_path / "out", "--config", str(cfg))) == 2
    assert "unknownkeys['min_sid']" in "".join(capsys.readouterr().err.split())
    assert run(_args(tmp_path / "missing.json", images, tmp_path / "out")) == 2


def test_jsonl_input_through_the_cli(tmp_path):
    records, _expected, images = build_dataset(tmp_path)
    src = write_jsonl(records, tmp_path / "d.jsonl")
    assert run(_args(src, images, tmp_path / "out", "--no-cache")) == 0
    assert json.loads((tmp_path / "out" / "report.json").read_text())["format"] == "jsonl"


def test_the_example_config_holds_the_defaults():
    from curation.filter_config import FilterConfig, load_filter_config

    assert load_filter_config(Path(__file__).parents[1] / "curation" / "curation.yaml") == FilterConfig()
