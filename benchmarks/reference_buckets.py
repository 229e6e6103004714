"""A faithful re-implementation of PeBR-R1's bucketing script, the baseline of
``bench_buckets.py`` and the oracle of the PeBR-compatibility tests.

The algorithm (from the published script; paths are arguments here instead of constants):
per rollout line ``json.loads`` (lines that fail to decode are skipped with a message), keep
``qid`` and ``score.accuracy`` when both are present, then per qid count accuracies equal to
1.0: 8 is easy, 0 is hard, anything else medium (a warning is printed for counts other than
8); load the dataset with ``json.load`` and write the records of each bucket, in dataset
order, with ``json.dump(..., ensure_ascii=False, indent=2)``.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict


def reference_split(rollouts: str, dataset: str, out_dir: str, n: int = 8) -> list[str]:
    """Run the reference algorithm; returns the messages it would print."""
    messages: list[str] = []
    accs_by_qid: dict = defaultdict(list)
    with open(rollouts, encoding="utf-8") as f:
        for line in f:
            try:
                data = json.loads(line)
                qid = data.get("qid")
                acc = data.get("score", {}).get("accuracy", None)
                if qid is not None and acc is not None:
                    accs_by_qid[qid].append(acc)
            except json.JSONDecodeError as e:
                messages.append(f"JSON decode error: {e}")
    easy, medium, hard = set(), set(), set()
    for qid, accs in accs_by_qid.items():
        if len(accs) != n:
            messages.append(f"Warning: qid={qid} has {len(accs)} samples, expected {n}.")
        correct = sum(1 for a in accs if a == 1.0)
        if correct == n:
            easy.add(qid)
        elif correct == 0:
            hard.add(qid)
        else:
            medium.add(qid)
    with open(dataset, encoding="utf-8") as f:
        all_data = json.load(f)
    os.makedirs(out_dir, exist_ok=True)
    for name, qids in (("easycase.json", easy), ("mediumcase.json", medium), ("hardcase.json", hard)):
        chosen = [sample for sample in all_data if sample.get("qid") in qids]
        with open(os.path.join(out_dir, name), "w", encoding="utf-8") as f:
            json.dump(chosen, f, ensure_ascii=False, indent=2)
        messages.append(f"Saved {name} with {len(chosen)} samples.")
    return messages
