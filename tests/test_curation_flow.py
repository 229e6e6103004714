"""The curation packages working together as a user chains them on the command line:
synthetic data -> rollouts (replayed, with a known mix of right and wrong answers) -> scoring
-> splits -> Hugging Face export with its card -> load_dataset."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
import yaml

from trainer.cli import run


@pytest.fixture(scope="module")
def flow(tmp_path_factory):
    root = tmp_path_factory.mktemp("flow")
    data = root / "data"
    assert run(["-q", "data", "synth", "--out", str(data), "--sft", "20", "--rl", "30", "--test", "6"]) == 0
    records = pq.read_table(data / "rl.parquet").to_pylist()
    # question i gets i % 5 correct answers out of 4: 0 -> hard, 4 -> easy, 1-3 -> medium
    lines, expected = [], {}
    for i, rec in enumerate(records):
        qid = json.loads(rec["meta"]).get("pebr", {}).get("qid", rec["uid"])
        k = min(i % 5, 4)
        expected[rec["uid"]] = "hard" if k == 0 else "easy" if k == 4 else "medium"
        for s in range(4):
            response = rec["answer"] if s < k else "### The final answer is: definitely not this"
            lines.append({"qid": qid, "response": response, "ground_truth": rec["answer"]})
    rollouts = root / "rollout_results.jsonl"
    rollouts.write_text("".join(json.dumps(x) + "\n" for x in lines))
    run_dir, splits, hf = root / "run", root / "splits", root / "hf"
    score = ["-q", "curate", "score", "--data", str(data / "rl.parquet"), "--model", str(rollouts)]
    assert run([*score, "--backend", "replay", "--n", "4", "--out", str(run_dir)]) == 0
    assert run(["-q", "curate", "split", "--run", str(run_dir), "--out", str(splits)]) == 0
    assert run(["-q", "curate", "export", "--splits", str(splits), "--out", str(hf)]) == 0
    return {"root": root, "data": data, "splits": splits, "hf": hf, "expected": expected}


def test_buckets_follow_the_rollouts(flow):
    buckets = {}
    for name, bucket in (("perception", "easy"), ("reasoning", "medium"), ("hard", "hard")):
        for uid in pq.read_table(flow["splits"] / f"{name}.parquet").column("uid").to_pylist():
            buckets[uid] = bucket
    assert buckets == flow["expected"]


def test_export_loads_with_the_held_out_split_and_a_matching_card(flow):
    import datasets

    ds = datasets.load_dataset(str(flow["hf"]), cache_dir=str(flow["root"] / "cache"))
    report = json.loads((flow["splits"] / "splits_report.json").read_text())
    # the synthetic test split rides along as the held-out split
    assert report["test_path"] == str((flow["data"] / "test.parquet").resolve())
    assert ds["test"].num_rows == pq.read_metadata(flow["data"] / "test.parquet").num_rows
    counts = {"perception": "easy", "reasoning": "medium", "hard": "hard"}
    for split, bucket in counts.items():
        assert ds[split].num_rows == report["counts"][bucket]
        assert ds[split][0]["images"][0].size[0] >= 28  # decoded PIL images, embedded bytes
    card = (flow["hf"] / "README.md").read_text()
    meta = yaml.safe_load(card.split("---")[1])
    sizes = {s["name"]: s["num_examples"] for s in meta["dataset_info"]["splits"]}
    assert sizes == {split: ds[split].num_rows for split in ds}
    assert "pebr curate score" in card
