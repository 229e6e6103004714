"""The SFT warm-up: TRL's ``SFTTrainer`` on the filtered SFT data, assistant-only loss.

Example::

    from trainer.config import SFTStageConfig, ModelConfig, DataConfig
    from trainer.sft import run_sft

    run_sft(SFTStageConfig(output_dir="runs/sft", model=ModelConfig(path="runs/demo/model"),
                           data=DataConfig(train="runs/filter/kept.parquet")))
"""

from __future__ import annotations

import logging
from typing import Any

from trainer.config import SFTStageConfig, training_arguments
from trainer.stages import StageContext, metrics_callback, require, run_stage

log = logging.getLogger(__name__)


def sft_trl_config(config: SFTStageConfig, output_dir: str) -> Any:
    """TRL's ``SFTConfig`` for a pebr SFT stage (the ``trl:`` passthrough applied last)."""
    from trl import SFTConfig

    return SFTConfig(
        **training_arguments(config, output_dir),
        max_length=config.max_length,
        assistant_only_loss=config.assistant_only_loss,
        **config.trl,
    )


def run_sft(config: SFTStageConfig, *, force: bool = False) -> dict[str, Any]:
    """Run (or skip, or resume) the SFT stage; returns its ``stage.json``."""
    require(config, ["output_dir", "model.path", "data.train"])
    from trainer.data import sft_dataset

    return run_stage(
        "sft",
        config,
        lambda ctx, dataset: _train(config, ctx, dataset),
        prepare=lambda: sft_dataset(config.data),
        force=force,
    )


def _train(config: SFTStageConfig, ctx: StageContext, dataset: Any) -> dict[str, Any]:
    from trl import SFTTrainer

    from trainer.modeling import freeze_vision, load_for_training

    model, processor = load_for_training(config.model)
    params = freeze_vision(model, vision_tower=config.freeze_vision_tower, projector=config.freeze_projector)
    trainer = SFTTrainer(
        model=model,
        args=sft_trl_config(config, str(ctx.output_dir)),
        train_dataset=dataset,
        processing_class=processor,
        callbacks=[metrics_callback(ctx.output_dir)],
    )
    result = trainer.train(resume_from_checkpoint=ctx.resume_from)
    trainer.save_model(str(ctx.output_dir))  # the model and the processor (processing_class)
    return {
        "global_step": trainer.state.global_step,
        "train_metrics": dict(result.metrics),
        "parameters": params,
        "samples": len(dataset),
        "log_history": list(trainer.state.log_history),
    }
