"""Small deterministic engines, a preset and questions for the difficulty and splits tests."""

from __future__ import annotations

import time
from collections.abc import Sequence

from curation.engines import GeneratedSample, RolloutRequest, SamplingParams
from curation.schema import make_record
from rewards.presets import RewardResult, ScoreError

TASKS = ("count", "color", "arithmetic")


def questions(k: int, *, source: str = "synthetic") -> list[dict]:
    """``k`` canonical records; record ``i`` has answer ``str(i)`` and a PeBR qid ``q{i}``."""
    return [
        make_record(
            question=f"How many circles are there? ({i})",
            answer=str(i),
            task=TASKS[i % len(TASKS)],
            source=source if i % 4 else "other",
            meta={"pebr": {"qid": f"q{i}"}},
        )
        for i in range(k)
    ]


def index_of(request: RolloutRequest) -> int:
    return int(request.qid[1:])


class PatternEngine:
    """Answers question ``i``'s sample ``j`` correctly when ``pattern(i, j)`` is true.

    Counts the samples it produced; ``delay`` seconds per call (to be killed mid-run).
    """

    backend = "scripted"

    def __init__(self, pattern, model_id: str = "pattern-model", delay: float = 0.0):
        self.pattern = pattern
        self.model_id = model_id
        self.delay = delay
        self.produced = 0
        self.calls: list[int] = []

    def generate(
        self, requests: Sequence[RolloutRequest], sampling: SamplingParams
    ) -> list[list[GeneratedSample]]:
        if self.delay:
            time.sleep(self.delay)
        out = []
        for r in requests:
            assert len(r.sample_indices) == sampling.n
            i = index_of(r)
            samples = []
            for j in r.sample_indices:
                answer = str(i) if self.pattern(i, j) else "wrong"
                samples.append(GeneratedSample(f"### The final answer is: {answer}", 7, "stop", j))
            out.append(samples)
        self.produced += sum(len(s) for s in out)
        self.calls.append(len(requests))
        return out


def mixed_pattern(i: int, j: int) -> bool:
    """easy (all right) for i % 4 == 0, hard for i % 4 == 1, medium otherwise (right at j % (i % 4) == 0)."""
    kind = i % 4
    if kind == 0:
        return True
    if kind == 1:
        return False
    return j % kind == 0


class ExactMatchPreset:
    """A reward preset stand-in: correct when the final answer equals the gold answer;
    a response ``"unscorable"`` is a scoring error."""

    name = "exact_match"

    def score_batch(
        self, responses, records, n_tokens=None, image_root=None, workers=1, *, on_error="raise", **_
    ):
        out = []
        for k, (resp, rec) in enumerate(zip(responses, records, strict=True)):
            if resp == "unscorable":
                out.append(ScoreError(k, rec["uid"], "ValueError: unscorable"))
                continue
            ok = resp.rsplit(":", 1)[-1].strip() == rec["answer"]
            out.append(
                RewardResult(1.0 if ok else 0.0, {"accuracy": 1.0 if ok else 0.0}, {"accuracy": 1.0}, ok)
            )
        return out
