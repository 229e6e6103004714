"""The GRPO stages: TRL's ``GRPOTrainer`` on a split with a reward preset.

Stage 1 trains on the perception split with ``pebr_stage1`` (0.4 alignment + 0.4 keywords +
0.1 format + 0.1 length; accuracy logged at weight 0); stage 2 on the reasoning split with
``pebr_stage2`` (0.9 accuracy + 0.1 format). Each component is one TRL reward function, so
TRL logs ``rewards/<preset>/<component>/mean`` and ``/std`` at every logging step.

Example::

    from trainer.config import GRPOStageConfig
    from trainer.config_io import load_config
    from trainer.grpo import run_grpo

    cfg = load_config(GRPOStageConfig, "trainer/recipes/stage1.yaml",
                      ["output_dir=runs/stage1", "model.path=runs/sft",
                       "data.train=runs/splits/perception.parquet"], stage="stage1")
    run_grpo(cfg, stage="stage1")
"""

from __future__ import annotations

import importlib.util
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rewards.trl import PresetReward
from trainer.config import GRPOStageConfig, training_arguments
from trainer.data import DROPPED_FILE
from trainer.stages import StageContext, metrics_callback, require, run_stage

log = logging.getLogger(__name__)

VLLM_INSTALL = "pip install 'pebr[vllm]'"
AUDIT_FILE = "reward_audit.json"


def check_vllm(config: GRPOStageConfig) -> None:
    """A clear ``ImportError`` when ``use_vllm`` is asked for and vLLM is not installed."""
    if config.use_vllm and importlib.util.find_spec("vllm") is None:
        raise ImportError(
            f"use_vllm needs vLLM, which is not installed; on a CUDA machine run: {VLLM_INSTALL} "
            f"(vllm_mode={config.vllm_mode!r})"
        )


def build_reward_functions(
    config: GRPOStageConfig, image_root: str | None
) -> tuple[list[Callable[..., Any]], list[float], int | None]:
    """The preset's TRL reward functions, their weights and the index of the outcome function.

    The outcome (for zero-advantage filtering) is the preset's correctness: the zero-weight
    ``<preset>/accuracy`` function when accuracy is only logged (stage 1), or an added
    zero-weight ``<preset>/correct`` function when accuracy is a weighted, possibly graded,
    component (stage 2). ``zero_adv.outcome_reward`` may name another function instead.
    """
    from rewards.presets import get_preset
    from rewards.trl import reward_functions

    preset = get_preset(config.reward_preset, config.reward_overrides or None)
    funcs, weights = reward_functions(preset, image_root=image_root, mode=config.reward_mode)
    names = [f.__name__ for f in funcs]
    zero_adv = config.zero_adv
    outcome_index = None
    if zero_adv.enabled and zero_adv.criterion == "outcome":
        if zero_adv.outcome_reward == "auto":
            if "accuracy" in preset.weights:
                funcs.append(CorrectReward(preset, image_root))
                weights.append(0.0)
                outcome_index = len(funcs) - 1
            else:
                outcome_index = names.index(f"{preset.name}/accuracy")
        else:
            wanted = zero_adv.outcome_reward
            matches = [i for i, n in enumerate(names) if n == wanted or n.endswith("/" + wanted)]
            if len(matches) != 1:
                raise ValueError(
                    f"zero_adv.outcome_reward {wanted!r} matches {len(matches)} reward functions; "
                    f"available: {names}"
                )
            outcome_index = matches[0]
    return funcs, weights, outcome_index


class CorrectReward(PresetReward):
    """The preset's correctness (1.0 / 0.0, None without a gold answer) as a zero-weight TRL
    reward ``<preset>/correct``; it shares the preset's scoring of the batch."""

    def __init__(self, preset: Any, image_root: str | None = None):
        super().__init__(preset, "correct", image_root)

    def __call__(self, prompts=None, completions=None, completion_ids=None, **kwargs):
        if completions is None:
            raise ValueError(f"{self.__name__}: TRL passes 'completions'; got none")
        results = self.results(completions, completion_ids, **kwargs)
        return [None if r.correct is None else float(r.correct) for r in results]


def grpo_trl_config(config: GRPOStageConfig, output_dir: str, reward_weights: list[float]) -> Any:
    """TRL's ``GRPOConfig`` for a pebr GRPO stage (the ``trl:`` passthrough applied last)."""
    from trl import GRPOConfig

    extra: dict[str, Any] = {}
    if config.steps_per_generation is not None:
        extra["steps_per_generation"] = config.steps_per_generation
    if config.use_vllm:
        extra.update(use_vllm=True, vllm_mode=config.vllm_mode)
    return GRPOConfig(
        **training_arguments(config, output_dir),
        beta=config.beta,
        num_generations=config.num_generations,
        temperature=config.temperature,
        top_p=config.top_p,
        max_completion_length=config.max_completion_length,
        num_iterations=config.num_iterations,
        reward_weights=reward_weights,
        **extra,
        **config.trl,
    )


def run_grpo(config: GRPOStageConfig, *, stage: str = "stage1", force: bool = False) -> dict[str, Any]:
    """Run (or skip, or resume) a GRPO stage; returns its ``stage.json``."""
    require(config, ["output_dir", "model.path", "data.train"])
    check_vllm(config)
    return run_stage(
        stage,
        config,
        lambda ctx, data: _train(config, ctx, data),
        prepare=lambda: prepare_data(config),
        force=force,
    )


def prepare_data(config: GRPOStageConfig) -> Any:
    """The stage's :class:`~trainer.data.GRPOData` (prompt lengths measured with the model's
    processor at the configured pixel bounds)."""
    from trainer.data import grpo_dataset
    from trainer.modeling import load_processor_for

    return grpo_dataset(config.data, load_processor_for(config.model), config.max_prompt_length)


def build_trainer(
    config: GRPOStageConfig, output_dir: str, data: Any = None, callbacks: list[Any] | None = None
) -> Any:
    """A ready :class:`~trainer.grpo_trainer.PebrGRPOTrainer` for ``config`` (used by the stage
    and by the benchmark); ``data`` is :func:`prepare_data`'s result (computed when None)."""
    from trainer.grpo_trainer import PebrGRPOTrainer
    from trainer.modeling import freeze_vision, load_for_training

    data = data if data is not None else prepare_data(config)
    model, processor = load_for_training(config.model)
    # TRL left-pads prompts itself; the processor's own padding (image token types) must agree
    tokenizer = getattr(processor, "tokenizer", processor)
    tokenizer.padding_side = "left"
    freeze_vision(model, vision_tower=config.freeze_vision_tower, projector=config.freeze_projector)
    funcs, weights, outcome_index = build_reward_functions(config, data.image_root)
    return PebrGRPOTrainer(
        model=model,
        reward_funcs=funcs,
        args=grpo_trl_config(config, output_dir, weights),
        train_dataset=data.dataset,
        processing_class=processor,
        callbacks=callbacks or [],
        zero_adv=config.zero_adv,
        outcome_index=outcome_index,
    )


def audit_reward(config: GRPOStageConfig, output_dir: Path, *, main: bool = True) -> dict[str, Any] | None:
    """Run the reward-hacking probes of :mod:`rewards.audit` against the stage's preset on the
    first ``reward_audit.samples`` records of its split; write ``reward_audit.json``.

    Flagged probes are logged (``mode: warn``) or stop the stage with a ``ValueError``
    (``mode: fail``). Every process runs the (cheap, deterministic) audit, so that under
    ``accelerate launch`` all of them stop together; only the ``main`` one writes and logs.
    Returns the report, or None when ``mode: off``.
    """
    from rewards.audit import audit
    from rewards.presets import get_preset
    from trainer.data import grpo_records

    options = config.reward_audit
    if options.mode == "off":
        return None
    records, root = grpo_records(config.data)
    preset = get_preset(config.reward_preset, config.reward_overrides or None)
    report = audit(
        preset, records[: options.samples], max_hack_reward=options.max_hack_reward, image_root=root
    ).to_dict()
    if main:
        (output_dir / AUDIT_FILE).write_text(
            json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8"
        )
    flagged = [p for p in report["probes"] if p["flagged"]]
    if flagged:
        what = "; ".join(f"{p['name']}: {p['reason']}" for p in flagged)
        message = (
            f"reward audit of {preset.name} on {len(records[: options.samples])} records of "
            f"{config.data.train}: {what} (details in {output_dir / AUDIT_FILE})"
        )
        if options.mode == "fail":
            raise ValueError(message + "; set reward_audit.mode=warn to train anyway")
        if main:
            log.warning(message)
    elif main:
        log.info("reward audit of %s: no probe earns more than %g", preset.name, options.max_hack_reward)
    return report


def _train(config: GRPOStageConfig, ctx: StageContext, data: Any) -> dict[str, Any]:
    from trainer.data import write_dropped
    from trainer.modeling import parameter_counts

    if ctx.is_main_process:
        write_dropped(ctx.output_dir / DROPPED_FILE, data.dropped)
    audit_reward(config, ctx.output_dir, main=ctx.is_main_process)
    trainer = build_trainer(config, str(ctx.output_dir), data, [metrics_callback(ctx.output_dir)])
    result = trainer.train(resume_from_checkpoint=ctx.resume_from)
    trainer.save_model(str(ctx.output_dir))  # the model and the processor (processing_class)
    return {
        "global_step": trainer.state.global_step,
        "train_metrics": dict(result.metrics),
        "parameters": parameter_counts(trainer.model),
        "prompts": len(trainer.train_dataset),
        "dropped_prompts": len(data.dropped),
        "reward_functions": list(trainer.reward_func_names),
        "reward_weights": [float(w) for w in trainer.reward_weights],
        "zero_adv": dict(trainer.zero_adv_totals),
        "log_history": list(trainer.state.log_history),
    }
