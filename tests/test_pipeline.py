"""`pebr train pipeline` with the smoke recipe: every stage runs from the previous stage's
directory; a rerun skips them all."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from train_helpers import write_split

from trainer.stages import read_stage

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "trainer" / "recipes" / "smoke.yaml"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipedata")
    sft = write_split(root / "filter", "kept.parquet", 6)
    splits = root / "splits"
    write_split(splits, "perception.parquet", 4, with_messages=False, seed=1)
    write_split(splits, "reasoning.parquet", 4, with_messages=False, seed=2)
    return sft, splits


@pytest.mark.slow
def test_smoke_pipeline_with_ready_splits(inputs, tmp_path, capsys):
    from trainer.cli import run

    sft, splits = inputs
    out = tmp_path / "run"
    args = [
        "train",
        "pipeline",
        "--config",
        str(SMOKE),
        "--out",
        str(out),
        "--set",
        f"sft.data.train={sft}",
        "--set",
        f"splits.from_dir={splits}",
    ]
    assert run(args) == 0
    assert (out / "base_model" / "config.json").is_file()  # tiny:nano, built in the run directory
    stages = {name: read_stage(out / name) for name in ("sft", "stage1", "stage2")}
    assert all(info["status"] == "done" for info in stages.values())
    # each stage starts from the previous stage's directory and reads its split
    assert stages["sft"]["config"]["model"]["path"] == str(out / "base_model")
    assert stages["stage1"]["config"]["model"]["path"] == str(out / "sft")
    assert stages["stage1"]["config"]["data"]["train"] == str(splits / "perception.parquet")
    assert stages["stage2"]["config"]["model"]["path"] == str(out / "stage1")
    assert stages["stage2"]["config"]["data"]["train"] == str(splits / "reasoning.parquet")
    assert stages["stage1"]["config"]["reward_preset"] == "pebr_stage1"
    assert stages["stage2"]["config"]["reward_preset"] == "pebr_stage2"
    summary = json.loads((out / "pipeline.json").read_text())
    assert summary["steps"]["difficulty"]["status"] == "skipped"
    assert summary["steps"]["stage2"]["status"] == "done"
    capsys.readouterr()

    # rerun: every finished stage is skipped, nothing is retrained
    finished = {name: info["finished_at"] for name, info in stages.items()}
    assert run(args) == 0
    assert {name: read_stage(out / name)["finished_at"] for name in stages} == finished
    steps = json.loads((out / "pipeline.json").read_text())["steps"]
    assert {steps[n]["status"] for n in ("sft", "stage1", "stage2")} == {"skipped (done before)"}


def _replay_file(pool: Path, out: Path, n: int, pattern: tuple[int, ...] | None = None) -> Path:
    """Rollouts for every pool question, as a PeBR rollout file: by default question i is
    answered right n/n times (i % 3 == 0, easy), once (medium) or never (hard); ``pattern``
    gives the right answers per question in turn instead."""
    from curation.schema import from_arrow, read_parquet

    rows = []
    for i, rec in enumerate(from_arrow(read_parquet(str(pool)))):
        cycle = pattern or (n, 1, 0)
        right = cycle[i % len(cycle)]
        for k in range(n):
            answer = rec["answer"] if k < right else "99"
            rows.append({"qid": rec["uid"], "response": f"### The final answer is: {answer}", "score": None})
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return out


@pytest.mark.slow
def test_smoke_pipeline_scores_splits_and_rebuckets(inputs, tmp_path):
    """SFT -> difficulty (replayed rollouts, rescored with pebr_sample) -> splits -> stage 1 ->
    re-bucketing of the reasoning split -> stage 2, all through the curation package."""
    from trainer.cli import run

    sft, _ = inputs
    pool = write_split(tmp_path / "pool", "rl.parquet", 9, with_messages=False, seed=5)
    replay = _replay_file(pool, tmp_path / "rollouts.jsonl", n=2)
    out = tmp_path / "run"
    code = run(
        [
            "train",
            "pipeline",
            "--config",
            str(SMOKE),
            "--out",
            str(out),
            "--set",
            f"sft.data.train={sft}",
            "--set",
            f"difficulty.pool={pool}",
            "--set",
            "difficulty.backend=replay",
            "--set",
            f"difficulty.options.path={replay}",
            "--set",
            "rebucket.enabled=true",
        ]
    )
    assert code == 0
    report = json.loads((out / "splits" / "splits_report.json").read_text())
    assert {k: report["counts"][k] for k in ("easy", "medium", "hard")} == {"easy": 3, "medium": 3, "hard": 3}
    s1, s2 = read_stage(out / "stage1"), read_stage(out / "stage2")
    assert s1["config"]["data"]["train"] == str(out / "splits" / "perception.parquet")
    assert s1["summary"]["prompts"] == 3
    # stage 2 reads the re-bucketed reasoning split (scored again, by the same replayed file here)
    assert s2["config"]["data"]["train"] == str(out / "rebucket" / "splits" / "reasoning.parquet")
    assert s2["summary"]["prompts"] == 3
    steps = json.loads((out / "pipeline.json").read_text())["steps"]
    assert steps["difficulty"]["buckets_all_or_none"]["easy"] == 3
    assert steps["splits"]["counts"]["easy"] == 3
    assert steps["rebucket"]["status"] == "done"


@pytest.mark.slow
def test_empty_easy_bucket_skips_stage1(inputs, tmp_path):
    """A warm-up model that solves nothing every time leaves no perception data: stage 1 is
    skipped (and said so) and stage 2 starts from the SFT model."""
    from trainer.cli import run

    sft, _ = inputs
    pool = write_split(tmp_path / "pool", "rl.parquet", 4, with_messages=False, seed=6)
    replay = _replay_file(pool, tmp_path / "rollouts.jsonl", n=2, pattern=(1, 0))
    out = tmp_path / "run"
    sets = [f"sft.data.train={sft}", f"difficulty.pool={pool}", "difficulty.backend=replay"]
    sets += [f"difficulty.options.path={replay}", "rebucket.enabled=true"]
    args = ["train", "pipeline", "--config", str(SMOKE), "--out", str(out)]
    assert run([*args, *[x for item in sets for x in ("--set", item)]]) == 0
    steps = json.loads((out / "pipeline.json").read_text())["steps"]
    assert steps["stage1"] == {"status": "skipped", "reason": "the perception (easy) split is empty"}
    assert steps["rebucket"]["reason"] == "stage 1 did not run"
    assert read_stage(out / "stage2")["config"]["model"]["path"] == str(out / "sft")
    assert not (out / "stage1").exists()


@pytest.mark.slow
@pytest.mark.parametrize("adaptive", [False, True])
def test_threshold_rule_takes_the_scoring_n_and_the_held_out_split_follows(inputs, tmp_path, adaptive):
    """A recipe's `splits.rule` need not repeat n (the scoring's n is used), and a pool scored
    through a `max_questions` slice still records the held-out test.parquet next to it. With
    `difficulty.adaptive` the scoring stops each question once that rule decides it: the same
    buckets from fewer rollouts."""
    from trainer.cli import run

    sft, _ = inputs
    pool = write_split(tmp_path / "pool", "rl.parquet", 8, with_messages=False, seed=7)
    test = write_split(tmp_path / "pool", "test.parquet", 2, with_messages=False, seed=8)
    replay = _replay_file(pool, tmp_path / "rollouts.jsonl", n=4, pattern=(4, 2, 1, 0))
    out = tmp_path / "run"
    sets = [f"sft.data.train={sft}", f"difficulty.pool={pool}", "difficulty.backend=replay"]
    sets += [f"difficulty.options.path={replay}", "difficulty.n=4", "difficulty.max_questions=8"]
    sets += ["splits.rule={kind: thresholds, easy_min: 0.5, hard_max: 0.0}", "stage1.max_steps=1"]
    sets += ["stage2.max_steps=1", f"difficulty.adaptive={str(adaptive).lower()}"]
    args = ["train", "pipeline", "--config", str(SMOKE), "--out", str(out)]
    assert run([*args, *[x for item in sets for x in ("--set", item)]]) == 0
    report = json.loads((out / "splits" / "splits_report.json").read_text())
    from curation.rollouts import RolloutStore

    stored = len(RolloutStore(out / "difficulty").read())
    # right answers come first: 4 or 2 right are easy after 2 samples; 1 or 0 right need all 4
    assert stored == (2 * (2 + 2 + 4 + 4) if adaptive else 8 * 4)
    # pass rates 1, 0.5, 0.25, 0 in turn: easy >= 0.5, hard <= 0
    assert {k: report["counts"][k] for k in ("easy", "medium", "hard", "undecided")} == {
        "easy": 4,
        "medium": 2,
        "hard": 2,
        "undecided": 0,
    }
    assert report["rule"]["n"] == 4
    assert report["test_path"] == str(test.resolve())
