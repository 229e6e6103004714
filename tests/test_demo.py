"""`pebr demo`'s wiring, at smoke size: every step runs from the previous one's output, both
filters account for every record, the export's card carries the RL pool's funnel, and a rerun
skips the finished work."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "trainer" / "recipes" / "smoke.yaml"


@pytest.mark.slow
def test_demo_at_smoke_size_runs_every_step_and_reruns_from_its_outputs(tmp_path):
    from trainer.demo import run_demo

    kwargs = dict(
        recipe=SMOKE,
        sizes=(60, 24, 6),
        eval_questions=3,
        eval_max_new_tokens=8,
        overrides={"difficulty": {"max_questions": 8}},
    )
    out = tmp_path / "demo"
    summary = run_demo(out, **kwargs)

    # the SFT filter drops exactly the generated defects; the RL pool (canonical Parquet) has none
    sft = summary["filter"]["sft"]
    defects = {k: v for k, v in summary["data"]["defects"].items() if k != "none" and v}
    assert sft["records"] == 60
    assert sft["kept"] == summary["data"]["defects"]["none"]
    assert sum(sft["dropped"].values()) == sum(defects.values())
    assert summary["filter"]["rl_pool"] == {"records": 24, "kept": 24, "dropped": {}}

    steps = summary["pipeline"]
    assert steps["sft"]["status"] == "done"
    assert steps["difficulty"]["rollouts_new"] == 8 * 2  # max_questions x the smoke recipe's n
    config = json.loads((out / "train" / "pipeline.json").read_text())["config"]
    assert config["difficulty"]["pool"] == str(out / "pool" / "kept.parquet")
    assert config["sft"]["data"]["train"] == str(out / "filter" / "kept.parquet")
    # the tiny model's tokenizer learns the synthetic data's text (found through the filter's
    # report), not the built-in corpus: else the sectioned answers take far more tokens
    tiny = json.loads((out / "train" / "base_model" / "pebr_tiny.json").read_text())
    assert Path(tiny["data_dir"]) == out / "data"

    # evaluation of the SFT and the final model on the held-out split
    assert set(summary["eval"]) == {"sft", "final"}
    assert json.loads(Path(summary["eval"]["sft"]["report"]).read_text())["questions"] == 3

    # the export: Hub layout, the held-out split carried along, the pool's funnel on the card
    hf = out / "hf"
    assert summary["export"]["splits"]["test"] == 6
    exported, skipped = summary["export"]["splits"], summary["export"]["skipped"]
    # every scored question is in one bucket split; an empty one is skipped with a reason
    assert sum(exported.get(s, 0) for s in ("perception", "reasoning", "hard")) == 8
    assert all(s in exported or s in skipped for s in ("perception", "reasoning", "hard"))
    card = (hf / "README.md").read_text()
    funnel = card.split("## Filter funnel", 1)[1].split("\n## ", 1)[0]
    assert "Not recorded" not in funnel
    assert "24" in funnel  # the RL pool's records, all kept
    assert json.loads((out / "summary.json").read_text())["export"] == summary["export"]

    # the table `pebr demo` ends with names every step
    from rich.console import Console

    from trainer.demo import summary_table

    console = Console(width=200, record=True)
    console.print(summary_table(summary))
    text = console.export_text()
    for row in ("filter (sft)", "filter (rl_pool)", "difficulty", "splits", "eval (final)", "export"):
        assert row in text
    assert f"kept {sft['kept']} of 60" in text

    # a rerun trains nothing again and gives the same summary
    again = run_demo(out, **kwargs)
    assert again["pipeline"]["sft"]["status"] == "skipped (done before)"
    assert again["eval"] == summary["eval"]
