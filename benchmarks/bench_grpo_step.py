"""GRPO step time of pebr's trainer with the PeBR reward presets vs plain TRL, and the share of
a step spent computing rewards, at the demo configuration (small tiny model, synthetic data).

Baseline: TRL's own ``GRPOTrainer`` with a trivial reward (completion length), the same model,
data and ``GRPOConfig``, measured in the same run. The trainers alternate in rounds of a few
steps (each round a fresh ``train()`` call; its first step is a warm-up and not counted), so
machine noise hits every variant alike. Reported: median step time per variant, its ratio to
the baseline, and the reward share (time in the reward callables / step time, medians).
Targets: reward share < 5 %, step time within 10 % of the baseline.

Run from the repository root::

    OMP_NUM_THREADS=1 python benchmarks/bench_grpo_step.py [--rounds 3 --steps 4] [--json out.json]
    # with the demo's SFT model, whose answers have PeBR's sections (a random model's do not,
    # and the rewards then return early, understating their cost):
    OMP_NUM_THREADS=1 python benchmarks/bench_grpo_step.py --model runs/demo/train/sft
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

#: The demo recipe's GRPO stage settings (trainer/recipes/demo.yaml).
DEMO_RECIPE = Path(__file__).resolve().parents[1] / "trainer" / "recipes" / "demo.yaml"


class Timed:
    """A reward callable that adds up the time spent in it (keeps the wrapped ``__name__``)."""

    def __init__(self, func: Any, clock: dict[str, float]):
        self.func = func
        self.clock = clock
        self.__name__ = getattr(func, "__name__", type(func).__name__)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return self.func(*args, **kwargs)
        finally:
            self.clock["rewards"] += time.perf_counter() - start


def trivial_length_reward(completions: list[Any], **kwargs: Any) -> list[float]:
    """The baseline's reward: a cheap function of the completion (no parsing, no model)."""
    return [min(len(str(c)) / 100.0, 1.0) for c in completions]


def _step_timer(clock: dict[str, float], rows: list[dict[str, float]]) -> Any:
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            clock["rewards"] = 0.0
            clock["start"] = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            rows.append({"step": state.global_step, "seconds": time.perf_counter() - clock["start"], **clock})

    return StepTimer()


def build_variants(workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """``{name: trainer}``: plain TRL + trivial reward, pebr + pebr_stage1, pebr + pebr_stage2."""
    from trl import GRPOTrainer

    from curation.synth import generate_dataset
    from trainer.config import GRPOStageConfig
    from trainer.grpo import build_reward_functions, grpo_trl_config, prepare_data
    from trainer.grpo_trainer import PebrGRPOTrainer
    from trainer.modeling import load_for_training
    from trainer.tiny import build_tiny_vlm

    data_dir = workdir / "data"
    generate_dataset(data_dir, sft=0, rl=args.prompts, test=0, seed=0)
    if args.model is not None:
        # a trained checkpoint (e.g. the demo's SFT model) writes sectioned answers, so the
        # rewards parse and score real text instead of returning early on noise
        model_dir = args.model.resolve()
    else:
        model_dir = workdir / "model"
        build_tiny_vlm(model_dir, preset=args.preset, data_dir=data_dir, seed=0)

    variants: dict[str, Any] = {}
    names = [("trl+trivial", "stage1"), ("pebr+stage1", "stage1"), ("pebr+stage2", "stage2")]
    if args.zero_adv:
        names.append(("pebr+stage2+zero_adv", "stage2"))
    for name, stage in names:
        from trainer.train_cli import _stage_config

        cfg = _stage_config(
            stage,
            DEMO_RECIPE,
            [
                f"output_dir={workdir / name}",
                f"model.path={model_dir}",
                f"data.train={data_dir / 'rl.parquet'}",
                f"max_steps={args.steps}",
                "save_steps=100000",
                "logging_steps=100000",
                # the filter regenerates dropped groups: a different amount of work, reported apart
                f"zero_adv.enabled={'true' if name.endswith('zero_adv') else 'false'}",
            ],
            [],
        )
        assert isinstance(cfg, GRPOStageConfig)
        data = prepare_data(cfg)
        clock = {"rewards": 0.0, "start": 0.0}
        rows: list[dict[str, float]] = []
        model, processor = load_for_training(cfg.model)
        processor.tokenizer.padding_side = "left"  # as TRL requires (and pebr's stages set)
        if name == "trl+trivial":
            funcs, weights = [trivial_length_reward], [1.0]
            trainer_cls, extra = GRPOTrainer, {}
        else:
            funcs, weights, outcome = build_reward_functions(cfg, data.image_root)
            trainer_cls, extra = PebrGRPOTrainer, {"zero_adv": cfg.zero_adv, "outcome_index": outcome}
        trainer = trainer_cls(
            model=model,
            reward_funcs=[Timed(f, clock) for f in funcs],
            args=grpo_trl_config(cfg, str(workdir / name), weights),
            train_dataset=data.dataset,
            processing_class=processor,
            callbacks=[_step_timer(clock, rows)],
            **extra,
        )
        trainer.args.save_strategy = "no"
        from transformers.trainer_callback import PrinterCallback, ProgressCallback

        for quiet in (ProgressCallback, PrinterCallback):
            trainer.remove_callback(quiet)
        variants[name] = (trainer, rows)
    return variants


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="Rounds; each runs every variant once.")
    parser.add_argument("--steps", type=int, default=4, help="Steps per variant per round (first: warm-up).")
    parser.add_argument("--prompts", type=int, default=64, help="Synthetic RL prompts.")
    parser.add_argument("--preset", default="small", choices=["nano", "small"], help="Tiny model size.")
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "1")))
    parser.add_argument(
        "--model",
        type=Path,
        default=None,
        help="A checkpoint to train instead of a random tiny model (e.g. runs/demo/train/sft).",
    )
    parser.add_argument("--json", type=Path, default=None, help="Also write the results here.")
    parser.add_argument(
        "--zero-adv",
        action="store_true",
        help="Also time stage 2 with the zero-advantage filter (informational).",
    )
    args = parser.parse_args()

    import logging

    import torch

    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        variants = build_variants(Path(tmp), args)
        order = list(variants)
        for round_index in range(args.rounds):
            # rotate the order every round so no variant always runs first (or after the same one)
            shift = round_index % len(order)
            for name in order[shift:] + order[:shift]:
                trainer, rows = variants[name]
                start = len(rows)
                trainer.train()
                del rows[start]  # the first step of a train() call is a warm-up
        results: dict[str, Any] = {}
        for name, (_, rows) in variants.items():
            step = statistics.median(r["seconds"] for r in rows)
            share = statistics.median(r["rewards"] / r["seconds"] for r in rows)
            results[name] = {
                "steps": len(rows),
                "step_s": [round(r["seconds"], 3) for r in rows],
                "median_step_s": round(step, 4),
                "min_step_s": round(min(r["seconds"] for r in rows), 4),
                "median_reward_s": round(statistics.median(r["rewards"] for r in rows), 5),
                "reward_share": round(share, 4),
            }
    base = results["trl+trivial"]
    for res in results.values():
        res["ratio_vs_trl"] = round(res["median_step_s"] / base["median_step_s"], 3)
        # the fastest step is the least disturbed by other work on a shared machine
        res["ratio_min_vs_trl"] = round(res["min_step_s"] / base["min_step_s"], 3)
    report = {
        "config": {
            **vars(args),
            "json": str(args.json) if args.json else None,
            "model": str(args.model) if args.model else None,
            "recipe": str(DEMO_RECIPE),
        },
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads()},
        "results": results,
        "targets": {"reward_share_below": 0.05, "ratio_within": 1.10},
        "met": {
            name: {"reward_share": res["reward_share"] < 0.05, "ratio": res["ratio_vs_trl"] <= 1.10}
            for name, res in results.items()
            if name in ("pebr+stage1", "pebr+stage2")
        },
    }
    print(
        f"{'variant':22} {'steps':>5} {'median step s':>14} {'ratio':>6} {'min step s':>11} {'ratio':>6} "
        f"{'reward share':>13}"
    )
    for name, res in results.items():
        print(
            f"{name:22} {res['steps']:5d} {res['median_step_s']:14.4f} {res['ratio_vs_trl']:6.3f} "
            f"{res['min_step_s']:11.4f} {res['ratio_min_vs_trl']:6.3f} {100 * res['reward_share']:12.2f}%"
        )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
