"""The whole recipe in one run directory: SFT, difficulty, splits, stage 1, (re-bucket), stage 2.

::

    RUN_DIR/
      base_model/    the tiny model, when model.path is "tiny:nano" or "tiny:small"
      sft/           SFT stage (trainer.sft)            <- model.path, sft.data.train
      difficulty/    rollouts of the RL pool by the SFT model (curation.difficulty)
      splits/        perception / reasoning / hard splits (curation.splits)
      stage1/        GRPO on splits/perception.parquet  <- sft/
      rebucket/      optional: the reasoning pool re-scored by stage1/, re-split
      stage2/        GRPO on the reasoning split         <- stage1/
      pipeline.json  the resolved config and each step's outcome

Each step reads the previous step's directory. Training stages are skipped when done and
resumed from their last checkpoint when killed (:func:`trainer.stages.run_stage`); the
scoring steps are skipped when their output exists. ``splits.from_dir`` uses ready splits
instead of scoring.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from trainer.config import PipelineConfig, replace
from trainer.config_io import to_dict

log = logging.getLogger(__name__)

TINY_PREFIX = "tiny:"
PIPELINE_FILE = "pipeline.json"
STEPS = ("sft", "difficulty", "splits", "stage1", "rebucket", "stage2")
PERCEPTION_SPLIT = "perception.parquet"
REASONING_SPLIT = "reasoning.parquet"


def _state() -> Any:
    import torch

    from trainer.stages import partial_state

    return partial_state(cpu=not torch.cuda.is_available())


def resolve_base_model(config: PipelineConfig, out: Path) -> str:
    """``model.path``, or the directory of the tiny model a ``tiny:<preset>`` path names (built
    once, on the main process, with the SFT data's directory as tokenizer corpus when it holds
    sft.json / rl.json)."""
    path = config.model.path
    if not path:
        raise ValueError("model.path is required: a model directory, a Hub id, or tiny:nano / tiny:small")
    if not path.startswith(TINY_PREFIX):
        return path
    from trainer.tiny import build_tiny_vlm

    preset = path[len(TINY_PREFIX) :]
    target = out / "base_model"
    data_dir = Path(config.sft.data.train).parent if config.sft.data.train else None
    if data_dir is not None and not any((data_dir / n).is_file() for n in ("sft.json", "rl.json")):
        data_dir = None
    state = _state()
    if state.is_main_process:
        build_tiny_vlm(target, preset=preset, data_dir=data_dir, seed=config.sft.seed)
    state.wait_for_everyone()
    return str(target)


def _write_summary(out: Path, config: PipelineConfig, steps: dict[str, Any]) -> None:
    if _state().is_main_process:
        data = {"config": to_dict(config), "steps": steps, "updated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        (out / PIPELINE_FILE).write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")


def run_pipeline(config: PipelineConfig, out: str | Path, *, force: tuple[str, ...] = ()) -> dict[str, Any]:
    """Run every step of the recipe under ``out`` (see the module docstring).

    ``force`` names steps to start over (``sft``, ``stage1``, ``stage2``...).
    Returns ``{step: outcome}``.
    """
    from trainer.grpo import run_grpo
    from trainer.sft import run_sft

    unknown = set(force) - set(STEPS)
    if unknown:
        raise ValueError(f"unknown pipeline step(s) {sorted(unknown)}; steps: {list(STEPS)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    steps: dict[str, Any] = {}
    base = resolve_base_model(config, out)
    model = replace(config.model, path=base)

    if config.skip_sft:
        sft_dir = base
        steps["sft"] = {"status": "skipped", "reason": "skip_sft", "model": base}
    else:
        sft_cfg = replace(config.sft, output_dir=str(out / "sft"), model=model)
        steps["sft"] = _stage_outcome(run_sft(sft_cfg, force="sft" in force))
        sft_dir = sft_cfg.output_dir
    _write_summary(out, config, steps)

    if config.splits.from_dir:
        splits_dir = Path(config.splits.from_dir)
        steps["difficulty"] = steps["splits"] = {
            "status": "skipped",
            "reason": f"splits.from_dir={splits_dir}",
        }
    else:
        splits_dir = score_and_split(config, sft_dir, out, steps, force)
    for name in (PERCEPTION_SPLIT, REASONING_SPLIT):
        if not (splits_dir / name).is_file():
            raise FileNotFoundError(f"split {splits_dir / name} does not exist")
    _write_summary(out, config, steps)

    s1 = replace(
        config.stage1,
        output_dir=str(out / "stage1"),
        model=replace(model, path=sft_dir),
        data={"train": str(splits_dir / PERCEPTION_SPLIT)},
    )
    steps["stage1"] = _stage_outcome(run_grpo(s1, stage="stage1", force="stage1" in force))
    _write_summary(out, config, steps)

    reasoning = splits_dir / REASONING_SPLIT
    if config.rebucket.enabled:
        reasoning = rebucket(config, s1.output_dir, splits_dir, out, steps, force)
        _write_summary(out, config, steps)
    else:
        steps["rebucket"] = {"status": "skipped", "reason": "rebucket.enabled is false"}

    s2 = replace(
        config.stage2,
        output_dir=str(out / "stage2"),
        model=replace(model, path=s1.output_dir),
        data={"train": str(reasoning)},
    )
    steps["stage2"] = _stage_outcome(run_grpo(s2, stage="stage2", force="stage2" in force))
    _write_summary(out, config, steps)
    return steps


def _stage_outcome(info: dict[str, Any]) -> dict[str, Any]:
    return {
        "status": "skipped (done before)" if info.get("skipped") else info.get("status"),
        "global_step": (info.get("summary") or {}).get("global_step"),
        "train_seconds": info.get("train_seconds"),
        "resumed_from": info.get("resumed_from"),
    }


def _require_curation(module: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        raise ImportError(
            f"the pipeline's scoring steps need {module}, which this installation lacks; "
            "give ready splits with --set splits.from_dir=DIR"
        ) from exc


def score_and_split(
    config: PipelineConfig, model_dir: str, out: Path, steps: dict[str, Any], force: tuple[str, ...]
) -> Path:
    """Difficulty-score the RL pool with ``model_dir`` and build the splits (curation package)."""
    difficulty = _require_curation("curation.difficulty")
    splits = _require_curation("curation.splits")
    raise NotImplementedError(
        f"difficulty scoring and splits are not wired yet ({difficulty.__name__}, {splits.__name__}); "
        "give ready splits with --set splits.from_dir=DIR"
    )


def rebucket(
    config: PipelineConfig,
    model_dir: str,
    splits_dir: Path,
    out: Path,
    steps: dict[str, Any],
    force: tuple[str, ...],
) -> Path:
    """Re-score the reasoning pool with the stage-1 model and rebuild the stage-2 split."""
    _require_curation("curation.difficulty")
    raise NotImplementedError(
        "re-bucketing is not wired yet: it needs curation.difficulty and curation.splits"
    )
