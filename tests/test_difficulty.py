"""Difficulty scoring (curation.difficulty): Wilson bounds, bucket rules, resumable and adaptive
sampling, replayed rollout files, a scoring process killed mid-run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest

from curation.difficulty import (
    UNDECIDED,
    AdaptiveConfig,
    BucketRule,
    bucket_expr,
    bucket_for,
    question_stats,
    read_run,
    score_dataset,
    transitions,
    wilson_interval,
)
from curation.engines import ReplayEngine, SamplingParams
from curation.rollouts import KEY, RolloutStore
from tests.rollout_helpers import ExactMatchPreset, PatternEngine, mixed_pattern, questions

REPO = Path(__file__).resolve().parents[1]
PRESET = ExactMatchPreset()


@pytest.mark.parametrize(
    ("correct", "n", "lo", "hi"),
    [
        (0, 0, 0.0, 1.0),  # no samples: no information
        (8, 8, 0.6756, 1.0),  # all correct
        (0, 8, 0.0, 0.3244),  # none correct
        (4, 8, 0.2152, 0.7848),  # half
        (1, 10, 0.0179, 0.4042),  # textbook example
        (7, 8, 0.5291, 0.9776),  # one miss
    ],
)
def test_wilson_interval_known_values(correct, n, lo, hi):
    got = wilson_interval(correct, n)
    assert got == pytest.approx((lo, hi), abs=1e-4)


@pytest.mark.parametrize(
    ("rule", "n", "correct", "bucket"),
    [
        (BucketRule(), 8, 8, "easy"),  # PeBR: 8/8
        (BucketRule(), 8, 0, "hard"),  # PeBR: 0/8
        (BucketRule(), 8, 3, "medium"),  # PeBR: 1..7
        (BucketRule(), 2, 1, "medium"),  # mixed is decided early (adaptive)
        (BucketRule(), 5, 5, UNDECIDED),  # all right so far but fewer than n
        (BucketRule(), 0, 0, UNDECIDED),  # nothing scored
        (BucketRule(n=4), 4, 4, "easy"),  # another n
        (BucketRule("thresholds", 8, easy_min=0.75, hard_max=0.25), 8, 6, "easy"),  # 0.75 >= easy_min
        (BucketRule("thresholds", 8, easy_min=0.75, hard_max=0.25), 8, 2, "hard"),  # 0.25 <= hard_max
        (BucketRule("thresholds", 8, easy_min=0.75, hard_max=0.25), 8, 4, "medium"),  # in between
        (BucketRule("thresholds", 8, easy_min=0.75, hard_max=0.25), 2, 1, UNDECIDED),  # could end 1/8 or 7/8
        (
            BucketRule("thresholds", 8, easy_min=0.75, hard_max=0.25),
            6,
            6,
            "easy",
        ),  # at least 6/8 whatever comes
        (BucketRule("thresholds", 8, easy_min=0.75, hard_max=0.25), 6, 0, "hard"),  # at most 2/8
        (BucketRule("thresholds", 8, easy_min=0.75, hard_max=0.25), 6, 5, UNDECIDED),  # 5/8 or 7/8
        (BucketRule("thresholds", 8, easy_min=0.25, hard_max=0.0), 2, 2, "easy"),  # the demo's rule: 2 right
        (BucketRule("thresholds", 8, easy_min=0.25, hard_max=0.0), 7, 0, UNDECIDED),  # 0/8 or 1/8
        (BucketRule("thresholds", 8, easy_min=0.25, hard_max=0.0), 8, 1, "medium"),
        (BucketRule("thresholds", 4, easy_min=0.5, hard_max=0.25), 6, 2, "medium"),  # more than n: rate 1/3
    ],
)
def test_bucket_rules(rule, n, correct, bucket):
    assert bucket_for(n, correct, rule) == bucket


@pytest.mark.parametrize("rule", [BucketRule(), BucketRule("thresholds", 6, easy_min=0.8, hard_max=0.2)])
def test_vectorised_buckets_and_bounds_agree_with_scalar(rule):
    pairs = [(n, c) for n in range(11) for c in range(n + 1)]
    frame = pl.DataFrame({"n": [p[0] for p in pairs], "c": [p[1] for p in pairs]})
    from curation.difficulty import wilson_exprs

    out = frame.with_columns(
        bucket_expr(pl.col("n"), pl.col("c"), rule), *wilson_exprs(pl.col("c"), pl.col("n"), rule.z)
    )
    for (n, c), b, lo, hi in zip(pairs, out["bucket"], out["wilson_lo"], out["wilson_hi"], strict=True):
        assert b == bucket_for(n, c, rule)
        assert (lo, hi) == pytest.approx(wilson_interval(c, n, rule.z))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "majority"}, "rule kind"),  # unknown rule
        ({"n": 0}, "n must be"),  # no samples
        ({"kind": "thresholds", "easy_min": 0.3, "hard_max": 0.5}, "hard_max < easy_min"),  # crossed
        ({"confidence": 1.0}, "confidence"),  # degenerate interval
    ],
)
def test_bucket_rule_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        BucketRule(**kwargs)


@pytest.mark.parametrize(
    ("rounds", "n", "boundaries"),
    [
        ((2, 1), 8, [2, 3, 4, 5, 6, 7, 8]),  # default: two, then one at a time
        ((2, 2, 4), 8, [2, 4, 8]),  # coarser rounds
        ((3,), 8, [3, 6, 8]),  # last size repeats, capped at n
        ((16,), 8, [8]),  # one round
    ],
)
def test_adaptive_boundaries(rounds, n, boundaries):
    assert AdaptiveConfig(rounds).boundaries(n) == boundaries


def _run(tmp_path, name, engine, records, **kw):
    kw.setdefault("preset", PRESET)
    kw.setdefault("sampling", SamplingParams(n=8))
    report = score_dataset(records, engine, tmp_path / name, **kw)
    return report, question_stats(tmp_path / name, engine.model_id)


def _buckets(stats) -> dict[str, str]:
    return dict(zip(stats["uid"], stats["bucket"], strict=True))


def test_fixed_scoring_buckets_and_stores_everything(tmp_path):
    records = questions(12)
    engine = PatternEngine(mixed_pattern)
    report, stats = _run(tmp_path, "run", engine, records, batch_size=5)
    assert engine.produced == report.rollouts_new == 96
    want = {r["uid"]: ("easy", "hard", "medium", "medium")[i % 4] for i, r in enumerate(records)}
    assert _buckets(stats) == want
    row = stats.filter(pl.col("bucket") == "easy").row(0, named=True)
    assert (row["n"], row["n_correct"], row["pass_rate"]) == (8, 8, 1.0)
    assert row["wilson_lo"] == pytest.approx(0.6756, abs=1e-4)
    frame = RolloutStore(tmp_path / "run").read()
    assert frame["response"].str.starts_with("### The final answer is:").all()  # full text kept
    assert set(frame["temperature"]) == {1.2}
    assert set(frame["top_p"]) == {0.99}
    comp = json.loads(frame["components"][0])
    assert comp["components"] == {"accuracy": frame["reward_total"][0]}
    run = read_run(tmp_path / "run")
    assert run["model_id"] == "pattern-model"
    assert run["n"] == 8
    assert run["adaptive"] is None
    assert run["scorings"]["pattern-model"]["report"]["rollouts_stored"] == 96


def test_adaptive_equals_fixed_with_fewer_rollouts(tmp_path):
    records = questions(40)
    fixed_engine, adaptive_engine = PatternEngine(mixed_pattern), PatternEngine(mixed_pattern)
    fixed, fixed_stats = _run(tmp_path, "fixed", fixed_engine, records)
    adaptive, adaptive_stats = _run(tmp_path, "adaptive", adaptive_engine, records, adaptive=True)
    assert _buckets(adaptive_stats) == _buckets(fixed_stats)
    # medium questions stop after two (j % 2) or three (j % 3) samples; easy and hard take 8
    assert adaptive_engine.produced == adaptive.rollouts_stored == 10 * 8 + 10 * 8 + 10 * 2 + 10 * 2
    assert adaptive.saved_fraction == pytest.approx(1 - 200 / 320)
    assert fixed.saved_fraction == 0
    frame = RolloutStore(tmp_path / "adaptive").read()
    assert frame["round"].max() == 6  # seven rounds for n = 8 with rounds (2, 1)


@pytest.mark.parametrize(
    "rule",
    [
        BucketRule("thresholds", 8, easy_min=0.25, hard_max=0.0),  # the demo's rule
        BucketRule("thresholds", 8, easy_min=0.75, hard_max=0.3),
    ],
)
def test_adaptive_with_a_threshold_rule_equals_fixed(tmp_path, rule):
    records = questions(40)
    fixed_engine, adaptive_engine = PatternEngine(mixed_pattern), PatternEngine(mixed_pattern)
    _run(tmp_path, "fixed", fixed_engine, records)
    adaptive, _ = _run(tmp_path, "adaptive", adaptive_engine, records, adaptive=AdaptiveConfig(rule=rule))
    fixed_stats = question_stats(tmp_path / "fixed", "pattern-model", rule)
    adaptive_stats = question_stats(tmp_path / "adaptive", "pattern-model", rule)
    assert _buckets(adaptive_stats) == _buckets(fixed_stats)
    assert UNDECIDED not in _buckets(adaptive_stats).values()
    assert adaptive_engine.produced == adaptive.rollouts_stored < 320
    if rule.easy_min == 0.25:
        # easy questions stop at 2 right; 1 right in 2 (i % 4 == 2) is easy by the 3rd sample
        # (j = 2 is right); i % 4 == 3 has j = 0 and 3 right: easy after 4; hard needs all 8
        assert adaptive.rollouts_stored == 10 * 2 + 10 * 8 + 10 * 3 + 10 * 4
    run = read_run(tmp_path / "adaptive")
    assert run["adaptive"]["rule"]["easy_min"] == rule.easy_min


def test_rerun_skips_what_is_stored(tmp_path):
    records = questions(8)
    _run(tmp_path, "run", PatternEngine(mixed_pattern), records)
    again = PatternEngine(mixed_pattern)
    report, _ = _run(tmp_path, "run", again, records)
    assert again.produced == 0
    assert report.rollouts_new == 0
    assert report.rollouts_stored == 64
    # more questions: only the new ones are sampled
    more = PatternEngine(mixed_pattern)
    report, stats = _run(tmp_path, "run", more, questions(10))
    assert more.produced == 16
    assert stats.height == 10


class _Crash(RuntimeError):
    pass


def test_crash_loses_only_the_batch_in_flight(tmp_path):
    records = questions(10)

    class Dying(PatternEngine):
        def generate(self, requests, sampling):
            if len(self.calls) == 3:
                raise _Crash("killed")
            return super().generate(requests, sampling)

    with pytest.raises(_Crash):
        _run(tmp_path, "run", Dying(mixed_pattern), records, batch_size=2)
    assert RolloutStore(tmp_path / "run").read().height == 3 * 2 * 8  # three whole batches
    resumed = PatternEngine(mixed_pattern)
    _run(tmp_path, "run", resumed, records, batch_size=2)
    assert resumed.produced == 80 - 48
    clean = PatternEngine(mixed_pattern)
    _run(tmp_path, "clean", clean, records, batch_size=2)
    cols = [*KEY, "response", "correct"]
    a = RolloutStore(tmp_path / "run").read().select(cols).sort(KEY)
    b = RolloutStore(tmp_path / "clean").read().select(cols).sort(KEY)
    assert a.equals(b)


KILL_SCRIPT = textwrap.dedent(
    """
    import sys
    sys.path[:0] = [{repo!r}]
    from curation.difficulty import score_dataset
    from curation.engines import SamplingParams
    from tests.rollout_helpers import ExactMatchPreset, PatternEngine, mixed_pattern, questions

    delay = float(sys.argv[2])
    score_dataset(questions(30), PatternEngine(mixed_pattern, delay=delay), sys.argv[1],
                  sampling=SamplingParams(n=4), preset=ExactMatchPreset(), batch_size=1)
    print("done")
    """
)


def test_killed_process_resumes_to_the_same_table(tmp_path):
    script = tmp_path / "score.py"
    script.write_text(KILL_SCRIPT.format(repo=str(REPO)))
    run_dir = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, str(script), str(run_dir), "0.15"], env=env)
    shards = run_dir / "rollouts"
    deadline = time.time() + 60
    while time.time() < deadline and len(list(shards.glob("part-*.parquet"))) < 3:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = RolloutStore(run_dir).read().height
    assert 3 * 4 <= partial < 30 * 4  # killed mid-run, with whole batches stored
    finish = subprocess.run(
        [sys.executable, str(script), str(run_dir), "0"], env=env, capture_output=True, text=True
    )
    assert finish.returncode == 0, finish.stderr
    clean = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "clean"), "0"], env=env, capture_output=True, text=True
    )
    assert clean.returncode == 0, clean.stderr
    on_disk = pl.concat([pl.from_arrow(pq.read_table(p)) for p in (run_dir / "rollouts").glob("*.parquet")])
    assert on_disk.height == on_disk.unique(subset=list(KEY)).height == 120  # never a duplicate row
    cols = [*KEY, "response", "correct", "reward_total"]
    a = RolloutStore(run_dir).read().select(cols).sort(KEY)
    b = RolloutStore(tmp_path / "clean").read().select(cols).sort(KEY)
    assert a.equals(b)


def test_changed_settings_are_refused(tmp_path):
    records = questions(3)
    _run(tmp_path, "run", PatternEngine(mixed_pattern), records)
    with pytest.raises(ValueError, match=r"scored differently.*temperature"):
        _run(
            tmp_path,
            "run",
            PatternEngine(mixed_pattern),
            records,
            sampling=SamplingParams(n=8, temperature=0.7),
        )
    # another model in the same run directory is fine (re-bucketing after stage 1)
    _run(tmp_path, "run", PatternEngine(lambda i, j: True, model_id="stage1"), records)
    assert list(read_run(tmp_path / "run")["scorings"]) == ["pattern-model", "stage1"]


def test_scoring_errors_are_stored_not_hidden(tmp_path):
    records = questions(4)

    class Flaky(PatternEngine):
        def generate(self, requests, sampling):
            out = super().generate(requests, sampling)
            return [
                [s if s.sample_index != 0 else s.__class__("unscorable", 1, "stop", 0) for s in ss]
                for ss in out
            ]

    report, stats = _run(tmp_path, "run", Flaky(mixed_pattern), records)
    assert report.score_errors == 4
    frame = RolloutStore(tmp_path / "run").read()
    bad = frame.filter(pl.col("score_error").is_not_null())
    assert bad.height == 4
    assert bad["correct"].null_count() == 4
    # the easy question has 7 scored, all right: not enough for the PeBR rule
    assert stats.filter(pl.col("uid") == records[0]["uid"])["bucket"].item() == UNDECIDED


def _pebr_rollout_file(path: Path, records, pattern, n: int = 8) -> None:
    lines = []
    for i, rec in enumerate(records):
        qid = json.loads(rec["meta"])["pebr"]["qid"]
        for j in range(n):
            ok = pattern(i, j)
            lines.append(
                json.dumps(
                    {
                        "response": f"### The final answer is: {i if ok else 'no'}",
                        "ground_truth": str(i),
                        "qid": qid,
                        "score": {"accuracy": 1.0 if ok else 0.0},
                    }
                )
            )
    lines.append('{"response": "truncated')
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("trust", [True, False])
def test_replayed_file_adaptive_equals_fixed(tmp_path, trust):
    records = questions(24)
    path = tmp_path / "rollout_results.jsonl"
    _pebr_rollout_file(path, records, mixed_pattern)
    engine = ReplayEngine(path)
    assert engine.load.malformed
    assert engine.load.samples == 24 * 8
    fixed, fixed_stats = _run(tmp_path, "fixed", engine, records, trust_replayed_scores=trust)
    adaptive, adaptive_stats = _run(
        tmp_path, "adaptive", engine, records, adaptive=True, trust_replayed_scores=trust
    )
    assert _buckets(fixed_stats) == _buckets(adaptive_stats)
    assert set(_buckets(fixed_stats).values()) == {"easy", "medium", "hard"}
    assert adaptive.rollouts_stored < fixed.rollouts_stored == 192
    details = json.loads(RolloutStore(tmp_path / "fixed").read()["components"][0])["details"]
    assert ("replayed" in details) is trust


def test_replay_shortfall_leaves_questions_undecided(tmp_path):
    records = questions(4)
    path = tmp_path / "r.jsonl"
    _pebr_rollout_file(path, records[:3], lambda i, j: True, n=5)  # 5 of 8 samples, 3 of 4 questions
    report, _stats = _run(tmp_path, "run", ReplayEngine(path), records)
    assert report.unavailable == 3 * 3 + 8
    assert report.buckets[UNDECIDED] == 4
    assert any("not available" in note for note in report.notes)


def test_transitions_between_models(tmp_path):
    records = questions(8)
    _run(tmp_path, "run", PatternEngine(mixed_pattern, model_id="warmup"), records)
    _run(tmp_path, "run", PatternEngine(lambda i, j: i % 4 != 1 or j == 0, model_id="stage1"), records)
    stats = question_stats(tmp_path / "run")
    moved = {
        (r["from_bucket"], r["to_bucket"]): r["questions"]
        for r in transitions(stats, "warmup", "stage1").to_dicts()
    }
    # stage 1 solves the medium questions and sometimes the hard ones
    assert moved == {("easy", "easy"): 2, ("hard", "medium"): 2, ("medium", "easy"): 4}
    with pytest.raises(ValueError, match="no buckets for model 'nope'"):
        transitions(stats, "warmup", "nope")
