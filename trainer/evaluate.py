"""Evaluation on a held-out split with the verifiable rewards: accuracy, components, pass@k.

The model answers every question of the split ``n`` times through a rollout engine of
:mod:`curation.engines` (transformers, or vLLM on GPUs); each answer is scored by a reward
preset. The report (JSON) holds ``accuracy`` (mean correctness over all answers, the pass@1
estimate), ``components`` (the mean of every reward component over the answers it applies
to, and of the total), ``per_task`` (the same per task), ``pass_at_k`` (unbiased estimator,
when ``n > 1``) and the generation settings. Every answer, with its scores, is written next
to the report as JSON lines, so a number can always be traced to the answers behind it.

Example::

    report = evaluate(EvalConfig(model="runs/x/stage2", data="runs/x/splits/test.parquet",
                                 preset="pebr_stage2", n=4))
    report["accuracy"], report["pass_at_k"]["4"]
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalConfig:
    """Options of ``pebr eval``."""

    model: str = field(metadata={"help": "Model directory (a stage output) or Hub id."})
    data: str = field(metadata={"help": "Held-out split: a canonical Parquet file."})
    preset: str = field(default="pebr_stage2", metadata={"help": "Reward preset scoring each answer."})
    n: int = field(default=1, metadata={"help": "Answers per question (pass@k for k up to n)."})
    image_root: str | None = field(
        default=None, metadata={"help": "Image root (None: a report's or the file's dir)."}
    )
    max_samples: int | None = field(default=None, metadata={"help": "Evaluate the first N questions only."})
    temperature: float | None = field(
        default=None, metadata={"help": "Sampling temperature; None: greedy for n=1, 1.0 for n>1."}
    )
    top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling mass."})
    max_new_tokens: int = field(default=2048, metadata={"help": "Most tokens of an answer."})
    batch_size: int = field(default=8, metadata={"help": "Questions per generation batch."})
    seed: int = field(default=0, metadata={"help": "Sampling seed."})
    preset_overrides: dict[str, Any] = field(default_factory=dict, metadata={"help": "Preset overrides."})
    backend: str = field(
        default="transformers",
        metadata={"help": "Generation engine of curation.engines: transformers or vllm."},
    )

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")
        if self.batch_size < 1 or self.max_new_tokens < 1:
            raise ValueError("batch_size and max_new_tokens must be >= 1")
        if self.temperature is not None and self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if self.backend not in ("transformers", "vllm"):
            raise ValueError(f"backend must be 'transformers' or 'vllm', got {self.backend!r}")
        if self.n > 1 and self.temperature == 0:
            raise ValueError("n > 1 with temperature 0 gives n identical answers; sample (temperature > 0)")

    @property
    def sampling_temperature(self) -> float:
        if self.temperature is not None:
            return self.temperature
        return 0.0 if self.n == 1 else 1.0


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of a question with ``c`` correct answers out of ``n`` (Chen et al., 2021)."""
    if not 1 <= k <= n:
        raise ValueError(f"k must be in [1, n={n}], got {k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def k_values(n: int) -> list[int]:
    """1, 2, 4, ... up to ``n``, and ``n`` itself."""
    ks, k = [], 1
    while k < n:
        ks.append(k)
        k *= 2
    return [*ks, n]


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def summarise(rows: Sequence[Mapping[str, Any]], n: int) -> dict[str, Any]:
    """Accuracy, component means and pass@k of scored answers (``uid``, ``correct``, ``total``,
    ``components``)."""
    correct = [float(r["correct"]) for r in rows if r["correct"] is not None]
    components: dict[str, list[float]] = defaultdict(list)
    for r in rows:
        components["total"].append(r["total"])
        for name, value in r["components"].items():
            values = components[name]  # listed even when it never applies (mean None)
            if value is not None:
                values.append(value)
    out: dict[str, Any] = {
        "questions": len({r["uid"] for r in rows}),
        "answers": len(rows),
        "accuracy": _mean(correct),
        "judged": len(correct),
        "components": {name: _mean(v) for name, v in components.items()},
    }
    if n > 1:
        by_question: dict[str, list[bool]] = defaultdict(list)
        for r in rows:
            if r["correct"] is not None:
                by_question[r["uid"]].append(bool(r["correct"]))
        out["pass_at_k"] = {
            str(k): _mean([pass_at_k(len(v), sum(v), k) for v in by_question.values() if len(v) >= k])
            for k in k_values(n)
        }
    return out


def evaluate(
    config: EvalConfig,
    out: str | Path | None = None,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Generate ``n`` answers per question, score them, summarise; write the report to ``out``
    (and the answers to ``<out stem>.samples.jsonl``) when given."""
    import torch

    from curation.engines import RolloutRequest, SamplingParams, make_engine
    from rewards.presets import get_preset
    from trainer.data import read_records, resolve_image_root

    start = time.perf_counter()
    preset = get_preset(config.preset, config.preset_overrides or None)
    records = read_records(config.data, config.max_samples)
    root = resolve_image_root(config.data, config.image_root)
    device = "cuda" if torch.cuda.is_available() else None
    engine = make_engine(config.backend, config.model, batch_size=config.batch_size, device=device)
    temperature = config.sampling_temperature
    sampling = SamplingParams(
        n=config.n,
        temperature=temperature,
        top_p=config.top_p,
        max_new_tokens=config.max_new_tokens,
        seed=config.seed,
    )
    rows: list[dict[str, Any]] = []
    for begin in range(0, len(records), config.batch_size):
        chunk = records[begin : begin + config.batch_size]
        requests = [
            RolloutRequest(
                uid=rec["uid"],
                question=rec["question"],
                images=tuple(rec.get("images") or ()),
                sample_indices=tuple(range(config.n)),
                image_root=root,
            )
            for rec in chunk
        ]
        outs = engine.generate(requests, sampling)
        pairs = [(rec, sample) for rec, samples in zip(chunk, outs, strict=True) for sample in samples]
        results = preset.score_batch(
            [s.text for _, s in pairs],
            [rec for rec, _ in pairs],
            [s.n_tokens for _, s in pairs],
            image_root=root,
        )
        for (rec, sample), res in zip(pairs, results, strict=True):
            rows.append(
                {
                    "uid": rec["uid"],
                    "task": rec.get("task") or "other",
                    "sample": sample.sample_index,
                    "response": sample.text,
                    "n_tokens": sample.n_tokens,
                    "finish_reason": sample.finish_reason,
                    "correct": res.correct,
                    "total": res.total,
                    "components": res.components,
                    "details": res.details,
                }
            )
        if progress:
            progress(min(begin + config.batch_size, len(records)), len(records))

    report: dict[str, Any] = {
        "model": config.model,
        "model_id": engine.model_id,
        "data": config.data,
        "preset": preset.name,
        "n": config.n,
        **summarise(rows, config.n),
        "per_task": {
            task: summarise([r for r in rows if r["task"] == task], config.n)
            for task in sorted({r["task"] for r in rows})
        },
        "generation": {**asdict(config), "temperature": temperature},
        "seconds": round(time.perf_counter() - start, 3),
    }
    if out is not None:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        samples = out.with_suffix(".samples.jsonl")
        with open(samples, "w", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row, default=str) + "\n")
        report["samples_file"] = str(samples)
        out.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    return report
