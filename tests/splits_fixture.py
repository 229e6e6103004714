"""Build a small SPLITS_DIR exactly in the layout ``pebr curate split`` writes (test support).

Until the split step lands, the export tests run on this: tiny PNGs made with Pillow, canonical
records from :func:`curation.schema.make_record`, a difficulty table with pass rates and Wilson
intervals, a splits report and (optionally) a filter report and a held-out test split.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from curation.schema import make_record, write_parquet

MODEL_ID = "tiny-qwen2.5-vl-sft"
N_ROLLOUTS = 8
FUNNEL = {"input": 20, "dropped": {"rethink": 4, "image_too_small": 2, "missing_image": 1}, "kept": 13}
PRESET = {"name": "pebr_stage1", "weights": {"alignment": 0.4, "keywords": 0.4, "format": 0.1, "length": 0.1}}
SAMPLING = {"n": N_ROLLOUTS, "temperature": 1.2, "top_p": 0.99, "max_new_tokens": 2048, "seed": 0}

# (split, task, n_correct, image sizes, extra fields) - one row per record
ROWS = [
    ("perception", "count", 8, [(32, 40)], {"key_words": ["three circles"]}),
    ("perception", "color", 8, [(48, 30)], {"key_words": ["red", "square"]}),
    ("perception", "count", 8, [(40, 40), (30, 50)], {}),  # two images
    ("perception", "shape", 8, [(64, 36)], {"boxes": [[1.0, 2.0, 10.0, 12.0]]}),
    ("reasoning", "arithmetic", 2, [(36, 36)], {}),
    ("reasoning", "multiple_choice", 5, [(50, 28)], {"choices": ["A. 1", "B. 2"]}),
    ("reasoning", "math", 7, [(44, 33)], {"sft": True}),  # carries an SFT conversation
    ("hard", "math", 0, [(29, 31)], {}),
    ("hard", "position", 0, [(33, 47)], {}),
    ("test", "count", None, [(38, 42)], {}),
    ("test", "arithmetic", None, [(42, 38)], {}),
]


def wilson(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def bucket_of(k: int, n: int) -> str:
    return "easy" if k == n else "hard" if k == 0 else "medium"


def png(size: tuple[int, int], seed: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, ((seed * 40) % 256, (seed * 90) % 256, 128)).save(buf, format="PNG")
    return buf.getvalue()


@dataclass
class SplitsFixture:
    splits_dir: Path
    image_root: Path
    rows: dict[str, int]
    bucket_counts: dict[str, int]
    #: uid -> list of (width, height)
    sizes: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    records: dict[str, list[dict]] = field(default_factory=dict)


def make_splits_dir(
    root: Path,
    *,
    with_filter_report: bool = True,
    with_test: bool = True,
    empty_hard: bool = False,
    drop_rows: int = 0,
) -> SplitsFixture:
    """Write a splits directory under ``root``; ``drop_rows`` leaves out the last N reasoning rows
    (a second run with changed data)."""
    image_root = root / "images"
    splits_dir = root / "splits"
    splits_dir.mkdir(parents=True, exist_ok=True)
    by_split: dict[str, list[dict]] = {"perception": [], "reasoning": [], "hard": [], "test": []}
    diff_rows = []
    sizes: dict[str, list[tuple[int, int]]] = {}
    rows = list(ROWS)
    if empty_hard:
        rows = [r for r in rows if r[0] != "hard"]
    if drop_rows:
        reasoning = [i for i, r in enumerate(rows) if r[0] == "reasoning"]
        for i in reversed(reasoning[-drop_rows:]):
            del rows[i]
    for i, (split, task, k, image_sizes, extra_fields) in enumerate(rows):
        extra = dict(extra_fields)
        paths = []
        for j, size in enumerate(image_sizes):
            rel = f"{task}/{i:03d}_{j}.png"
            (image_root / rel).parent.mkdir(parents=True, exist_ok=True)
            (image_root / rel).write_bytes(png(size, i * 3 + j))
            paths.append(rel)
        question, answer = f"Question {i} about the {task} image?", str(i)
        if extra.pop("sft", False):
            extra["messages"] = [
                {"role": "user", "content": "<image>" * len(paths) + question},
                {
                    "role": "assistant",
                    "content": f"### Step 1:\nWork it out.\n\n### The final answer is: {answer}",
                },
            ]
        rec = make_record(
            question=question,
            answer=answer,
            images=paths,
            image_sizes=image_sizes,
            task=task,
            stage_hint="reasoning" if split == "reasoning" else "perception",
            source="synthetic",
            meta={"generator": "fixture", "index": i},
            **extra,
        )
        by_split[split].append(rec)
        sizes[rec["uid"]] = list(image_sizes)
        if k is not None:
            lo, hi = wilson(k, N_ROLLOUTS)
            diff_rows.append(
                {
                    "uid": rec["uid"],
                    "model_id": MODEL_ID,
                    "n": N_ROLLOUTS,
                    "n_correct": k,
                    "pass_rate": k / N_ROLLOUTS,
                    "wilson_lo": lo,
                    "wilson_hi": hi,
                    "bucket": bucket_of(k, N_ROLLOUTS),
                }
            )
    # another model's scores for the same questions must not leak into this run's numbers
    diff_rows += [
        {**r, "model_id": "other-model", "n_correct": 0, "pass_rate": 0.0, "bucket": "hard"}
        for r in diff_rows
    ]
    for split in ("perception", "reasoning", "hard"):
        write_parquet(by_split[split], str(splits_dir / f"{split}.parquet"))
    pq.write_table(pa.Table.from_pylist(diff_rows), splits_dir / "difficulty.parquet")
    report = {
        "model_id": MODEL_ID,
        "rule": {"easy": "n_correct == n", "medium": "0 < n_correct < n", "hard": "n_correct == 0"},
        "counts": {
            b: sum(1 for r in diff_rows if r["model_id"] == MODEL_ID and r["bucket"] == b)
            for b in ("easy", "medium", "hard")
        },
        "per_task": {"count": {"easy": 2}, "color": {"easy": 1}},
        "per_source": {"synthetic": len(rows)},
        "sampling": SAMPLING,
        "preset": PRESET,
        "data_path": str(root / "scored.parquet"),
        "image_root": str(image_root),
        "commands": [
            f"pebr curate filter --data {root}/raw --out {root}/filtered",
            f"pebr curate score --data {root}/filtered --model {MODEL_ID} --n {N_ROLLOUTS}",
            f"pebr curate split --scores {root}/scores --out {splits_dir}",
        ],
    }
    if with_test:
        write_parquet(by_split["test"], str(root / "test.parquet"))
        report["test_path"] = str(root / "test.parquet")
    if with_filter_report:
        (root / "filter").mkdir(exist_ok=True)
        (root / "filter" / "report.json").write_text(json.dumps(FUNNEL))
        report["filter_report"] = str(root / "filter" / "report.json")
    (splits_dir / "splits_report.json").write_text(json.dumps(report, indent=2))
    return SplitsFixture(
        splits_dir=splits_dir,
        image_root=image_root,
        rows={s: len(v) for s, v in by_split.items() if v and (with_test or s != "test")},
        bucket_counts=report["counts"],
        sizes=sizes,
        records=by_split,
    )
