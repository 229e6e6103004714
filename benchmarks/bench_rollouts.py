"""Rollout throughput and adaptive-sampling savings.

1. Rollouts per second of the transformers backend with the ``small`` tiny model on CPU
   (``OMP_NUM_THREADS`` set explicitly, ``--threads``), on the synthetic RL pool.
2. Adaptive vs fixed ``n = 8`` rollout counts on the synthetic RL pool with that model. A
   random tiny model answers nearly everything wrong, so nearly every question is hard and
   needs all 8 samples: expect little saving there.
3. The same comparison on a replayed PeBR-shaped rollout file with a realistic mix (the
   shared ``gen_grpo.py``: about 30% easy, 45% medium, 25% hard), with the replayed
   accuracies. Buckets must be identical; the saving is compared with the best any
   exact-bucket scheme can do (stop every medium question at its first disagreeing sample).

Usage::

    python benchmarks/bench_rollouts.py [--questions 32] [--replay-questions 20000] [--json out.json]
    # parts 1-2 with a trained warm-up model on the demo's pool instead of a random model:
    python benchmarks/bench_rollouts.py --model runs/demo/train/sft --data runs/demo/data \
        --questions 48 --max-new-tokens 384 --temperature 1.0 --top-p 0.95
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def same_draws(run_dir: Path, model_id: str, rule) -> dict:
    """What adaptive sampling would generate given the fixed run's own draws, under ``rule``.

    Two sampling runs on a CPU do not draw the same answers (the seed of a ``generate`` call
    covers its whole batch, and adaptive rounds batch differently), so their buckets can
    differ by chance. Replaying the fixed run's answers in sample order through the adaptive
    stopping rule gives the exact count for the same draws, and checks that every question
    stops in its fixed-n bucket.
    """
    from curation.difficulty import UNDECIDED, AdaptiveConfig, bucket_for
    from curation.rollouts import RolloutStore

    frame = RolloutStore(run_dir).read(model_id, columns=["correct"]).sort("uid", "sample_index")
    needed = total = mismatches = 0
    for _, group in frame.group_by("uid", maintain_order=True):
        seq = [bool(x) for x in group["correct"].to_list()]
        total += len(seq)
        final = bucket_for(len(seq), sum(seq), rule)
        stop = len(seq)
        for b in AdaptiveConfig().boundaries(len(seq)):
            bucket = bucket_for(b, sum(seq[:b]), rule)
            if bucket != UNDECIDED:
                stop = b
                mismatches += bucket != final
                break
        needed += stop
    return {
        "fixed_rollouts": total,
        "adaptive_rollouts": needed,
        "saved_fraction": round(1 - needed / total, 4) if total else 0.0,
        "identical_buckets": mismatches == 0,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--questions", type=int, default=32, help="synthetic RL questions for the tiny model")
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS / torch threads")
    ap.add_argument(
        "--model", type=Path, default=None, help="a checkpoint (default: a random small tiny model)"
    )
    ap.add_argument("--data", type=Path, default=None, help="a synthetic data folder with rl.parquet")
    ap.add_argument("--temperature", type=float, default=1.2)
    ap.add_argument("--top-p", type=float, default=0.99)
    ap.add_argument(
        "--thresholds",
        default=None,
        help="EASY_MIN,HARD_MAX: also sample adaptively under this threshold rule (the demo's: 0.25,0) "
        "and compare with the fixed run's buckets under it",
    )
    ap.add_argument("--replay-questions", type=int, default=20_000)
    ap.add_argument("--work", type=Path, default=None, help="working folder (default: a temporary one)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)

    import torch

    torch.set_num_threads(args.threads)
    from benchmarks._common import run_generator
    from curation.difficulty import AdaptiveConfig, BucketRule, question_stats, score_dataset
    from curation.engines import ReplayEngine, SamplingParams, TransformersEngine
    from curation.synth import generate_dataset
    from trainer.tiny import build_tiny_vlm

    work = args.work or Path(tempfile.mkdtemp(prefix="bench_rollouts_"))
    result: dict = {"threads": args.threads, "cpus": os.cpu_count()}

    # 1 + 2: the small tiny model on the synthetic pool
    data = args.data
    if data is None:
        data = work / "synth"
        generate_dataset(data, sft=8, rl=args.questions, test=8, seed=0)
    import pyarrow.parquet as pq

    pool = work / "rl_slice.parquet"  # the first --questions questions of the pool
    pq.write_table(pq.read_table(data / "rl.parquet").slice(0, args.questions), pool)
    model = args.model
    if model is None:
        model = work / "small"
        build_tiny_vlm(model, preset="small", seed=0)
    sampling = SamplingParams(
        n=8, max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p
    )
    counts = {}
    threshold_rule = None
    if args.thresholds:
        easy_min, hard_max = (float(x) for x in args.thresholds.split(","))
        threshold_rule = BucketRule("thresholds", 8, easy_min=easy_min, hard_max=hard_max)
    adaptive_of = {
        "fixed": None,
        "adaptive": AdaptiveConfig(),
        "adaptive_thresholds": AdaptiveConfig(rule=threshold_rule),
    }
    modes = ("fixed", "adaptive", "adaptive_thresholds") if threshold_rule else ("fixed", "adaptive")
    for mode in modes:
        engine = TransformersEngine(model, batch_size=args.batch_size)
        t0 = time.perf_counter()
        report = score_dataset(
            pool,
            engine,
            work / f"tiny_{mode}",
            sampling=sampling,
            adaptive=adaptive_of[mode],
            batch_size=args.batch_size,
            image_root=str(data),
        )
        counts[mode] = report
        print(
            f"tiny small model, {mode}: {report.rollouts_new} rollouts in {time.perf_counter() - t0:.1f} s "
            f"({report.rollouts_per_second:.1f} rollouts/s incl. scoring), buckets {report.buckets}",
            flush=True,
        )
    result["tiny"] = {
        "model": str(args.model or "random small tiny model"),
        "temperature": args.temperature,
        "top_p": args.top_p,
        "questions": args.questions,
        "max_new_tokens": args.max_new_tokens,
        "batch_size": args.batch_size,
        "rollouts_per_second": counts["fixed"].rollouts_per_second,
        "fixed_rollouts": counts["fixed"].rollouts_stored,
        "adaptive_rollouts": counts["adaptive"].rollouts_stored,
        "saved_fraction": round(1 - counts["adaptive"].rollouts_stored / counts["fixed"].rollouts_stored, 4),
        "adaptive_seconds": counts["adaptive"].seconds,
        "fixed_seconds": counts["fixed"].seconds,
        "buckets_fixed": counts["fixed"].buckets,
        "buckets_adaptive": counts["adaptive"].buckets,
    }
    model_id = TransformersEngine(model, batch_size=args.batch_size).model_id
    result["tiny"]["same_draws"] = same_draws(work / "tiny_fixed", model_id, BucketRule(n=8))
    if threshold_rule is not None:

        def by_uid(run: str) -> dict[str, str]:
            stats = question_stats(work / run, model_id, threshold_rule)
            return dict(zip(stats["uid"], stats["bucket"], strict=True))

        fixed_buckets, adaptive_buckets = by_uid("tiny_fixed"), by_uid("tiny_adaptive_thresholds")
        mix = {b: list(fixed_buckets.values()).count(b) for b in ("easy", "medium", "hard", "undecided")}
        result["tiny"]["thresholds"] = {
            "easy_min": threshold_rule.easy_min,
            "hard_max": threshold_rule.hard_max,
            "buckets_fixed": mix,
            "adaptive_rollouts": counts["adaptive_thresholds"].rollouts_stored,
            "saved_fraction": round(
                1 - counts["adaptive_thresholds"].rollouts_stored / counts["fixed"].rollouts_stored, 4
            ),
            "adaptive_seconds": counts["adaptive_thresholds"].seconds,
            "buckets_adaptive": counts["adaptive_thresholds"].buckets,
            # independent draws: differences here are sampling noise, not the stopping rule
            "same_buckets_as_fixed_run": fixed_buckets == adaptive_buckets,
            "same_draws": same_draws(work / "tiny_fixed", model_id, threshold_rule),
        }

    # 3: a replayed file with a realistic mix
    replay_dir = work / f"grpo_{args.replay_questions}"
    run_generator("gen_grpo.py", ["--questions", str(args.replay_questions), "--out", str(replay_dir)])
    dataset = replay_dir / "dataset" / "grpo" / "pebr_grpo_dataset.json"
    engine = ReplayEngine(replay_dir / "_rollout_outputs" / "rollout_results.jsonl")
    reports, buckets = {}, {}
    for mode in ("fixed", "adaptive"):
        t0 = time.perf_counter()
        reports[mode] = score_dataset(
            dataset,
            engine,
            work / f"replay_{mode}",
            adaptive=AdaptiveConfig() if mode == "adaptive" else None,
            trust_replayed_scores=True,
            batch_size=512,
        )
        stats = question_stats(work / f"replay_{mode}", engine.model_id)
        buckets[mode] = dict(zip(stats["uid"], stats["bucket"], strict=True))
        print(
            f"replay, {mode}: {reports[mode].rollouts_stored} rollouts, {time.perf_counter() - t0:.1f} s",
            flush=True,
        )
    same = buckets["fixed"] == buckets["adaptive"]
    # the least any exact scheme needs: all n for easy/hard, up to the first disagreement for medium
    fixed_rows = question_stats(work / "replay_fixed", engine.model_id)
    from curation.rollouts import RolloutStore

    frame = (
        RolloutStore(work / "replay_fixed")
        .read(engine.model_id, columns=["correct"])
        .sort("uid", "sample_index")
    )
    best = 0
    for _, group in frame.group_by("uid", maintain_order=True):
        seq = group["correct"].to_list()
        first = next((k for k in range(1, len(seq)) if seq[k] != seq[0]), None)
        best += len(seq) if first is None else first + 1
    fixed_n = reports["fixed"].rollouts_stored
    result["replay"] = {
        "questions": args.replay_questions,
        "bucket_mix": {
            b: int((fixed_rows["bucket"] == b).sum()) for b in ("easy", "medium", "hard", "undecided")
        },
        "fixed_rollouts": fixed_n,
        "adaptive_rollouts": reports["adaptive"].rollouts_stored,
        "saved_fraction": round(1 - reports["adaptive"].rollouts_stored / fixed_n, 4),
        "best_possible_saved_fraction": round(1 - best / fixed_n, 4),
        "identical_buckets": same,
        "adaptive_rounds": list(AdaptiveConfig().rounds),
    }
    print(
        f"tiny small model on CPU ({args.threads} thread(s)): {result['tiny']['rollouts_per_second']:.1f} rollouts/s; "
        f"adaptive saved {result['tiny']['saved_fraction']:.1%} on the synthetic pool "
        f"(buckets {result['tiny']['buckets_fixed']}); on the fixed run's own draws "
        f"{result['tiny']['same_draws']['saved_fraction']:.1%}, identical buckets: "
        f"{result['tiny']['same_draws']['identical_buckets']}"
    )
    print(
        f"replayed gen_grpo mix {result['replay']['bucket_mix']}: adaptive {result['replay']['adaptive_rollouts']} vs "
        f"fixed {fixed_n} rollouts = {result['replay']['saved_fraction']:.1%} saved "
        f"(best possible with exact buckets {result['replay']['best_possible_saved_fraction']:.1%}); "
        f"identical buckets: {same}"
    )
    th = result["tiny"].get("thresholds")
    if th is not None:
        print(
            f"threshold rule (easy >= {th['easy_min']}, hard <= {th['hard_max']}) on the synthetic pool, buckets "
            f"{th['buckets_fixed']}: adaptive {th['adaptive_rollouts']} vs fixed {result['tiny']['fixed_rollouts']} "
            f"rollouts = {th['saved_fraction']:.1%} saved; on the fixed run's own draws "
            f"{th['same_draws']['saved_fraction']:.1%}, identical buckets: {th['same_draws']['identical_buckets']}"
        )
        same = same and th["same_draws"]["identical_buckets"]
    same = same and result["tiny"]["same_draws"]["identical_buckets"]
    if not same:
        raise SystemExit("adaptive buckets differ from fixed ones")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
