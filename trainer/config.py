"""Configuration of the training stages: dataclasses with help text, YAML recipes, ``--set``.

Every option is a field of a frozen dataclass with ``metadata={"help": ...}``; PeBR's values
are the defaults. A stage's config is built from three layers, each overriding the one below:

1. the dataclass defaults (with per-stage defaults for the two GRPO stages, see
   :data:`GRPO_STAGE_DEFAULTS`),
2. a YAML recipe (``--config trainer/recipes/...``),
3. ``--set a.b=value`` overrides; the value is parsed as YAML and checked against the
   field's type (``--set learning_rate=2e-6``, ``--set data.max_samples=null``,
   ``--set trl='{logging_first_step: true}'``).

Unknown keys are errors naming the key and the allowed ones; wrong types are errors naming
the key and the expected type. TRL options that pebr does not name go in the ``trl:``
passthrough dict, checked against TRL's own config class.

Loading lives in :mod:`trainer.config_io` (``load_config``, ``apply_sets``, ``help_table``).
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

# --------------------------------------------------------------------------------- sections


@dataclass(frozen=True)
class ModelConfig:
    """Which model a stage starts from and how its images are sized."""

    path: str = field(
        default="",
        metadata={"help": "Model directory (a tiny pebr model, a previous stage's output) or a Hub id."},
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = field(
        default="auto", metadata={"help": "Weights dtype to load; 'auto' keeps the checkpoint's."}
    )
    min_pixels: int | None = field(
        default=None,
        metadata={
            "help": "Smallest image area in pixels after resizing (PeBR: 576); None keeps the processor's."
        },
    )
    max_pixels: int | None = field(
        default=None,
        metadata={
            "help": "Largest image area in pixels after resizing (PeBR: 802816); None keeps the processor's."
        },
    )
    attn_implementation: str | None = field(
        default=None,
        metadata={"help": "Attention kernel: eager, sdpa, flash_attention_2; None lets transformers pick."},
    )

    def __post_init__(self) -> None:
        for name in ("min_pixels", "max_pixels"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"model.{name} must be a positive number of pixels, got {value}")
        if self.min_pixels and self.max_pixels and self.min_pixels > self.max_pixels:
            raise ValueError(
                f"model.min_pixels ({self.min_pixels}) must not exceed model.max_pixels ({self.max_pixels})"
            )


@dataclass(frozen=True)
class DataConfig:
    """The training data of a stage."""

    train: str = field(
        default="",
        metadata={
            "help": "Training data: a canonical Parquet file (the filter's kept.parquet, a split such as "
            "perception.parquet) or, for SFT, a Mulberry/LLaMA-Factory sharegpt JSON file."
        },
    )
    image_root: str | None = field(
        default=None,
        metadata={
            "help": "Directory image paths are relative to. None: the image_root of a report next to the "
            "data (splits_report.json, ...), else the data file's directory."
        },
    )
    max_samples: int | None = field(
        default=None, metadata={"help": "Use only the first N records (None: all of them)."}
    )
    system_prompt: str | None = field(
        default=None,
        metadata={"help": "System prompt of every conversation; None keeps the chat template's default."},
    )

    def __post_init__(self) -> None:
        if self.max_samples is not None and self.max_samples < 1:
            raise ValueError(f"data.max_samples must be >= 1 or null, got {self.max_samples}")


@dataclass(frozen=True)
class RewardAuditConfig:
    """Reward-hacking probes (``pebr rewards audit``) run against the stage's preset on records of
    its own split before training: a reward that pays for an empty answer, keyword stuffing or a
    whole-image box would otherwise be optimised silently."""

    mode: Literal["warn", "fail", "off"] = field(
        default="warn",
        metadata={
            "help": "warn: log the probes that earn reward; fail: refuse to train; off: skip the audit."
        },
    )
    samples: int = field(default=32, metadata={"help": "Records of the split the probes run on."})
    max_hack_reward: float = field(
        default=0.2, metadata={"help": "A probe whose mean reward exceeds this is flagged."}
    )

    def __post_init__(self) -> None:
        if self.samples < 1:
            raise ValueError(f"reward_audit.samples must be >= 1, got {self.samples}")


@dataclass(frozen=True)
class ZeroAdvConfig:
    """Online filtering of groups that carry no learning signal (beyond TRL, which only counts them).

    After a generation batch is scored, groups whose outcome is the same for every completion
    are dropped and replaced by groups of prompts drawn afresh from the split, at most
    ``max_refill_groups`` extra prompts per generation batch in at most ``max_refill_rounds``
    rounds. What cannot be refilled within that budget is trained on as TRL would (zero
    advantage: only the KL term), and counted.
    """

    enabled: bool = field(default=False, metadata={"help": "Drop and refill zero-advantage groups."})
    criterion: Literal["outcome", "reward"] = field(
        default="outcome",
        metadata={
            "help": "'outcome': drop groups whose completions are all correct or all wrong (the accuracy "
            "check, not the shaped reward); 'reward': drop groups whose weighted total reward is constant."
        },
    )
    outcome_reward: str = field(
        default="auto",
        metadata={
            "help": "Reward function whose value is the outcome (name or suffix, e.g. 'accuracy'); 'auto' "
            "uses the preset's correctness (1.0 correct, 0.0 wrong)."
        },
    )
    correct_threshold: float = field(
        default=0.5, metadata={"help": "An outcome value at or above this counts as correct."}
    )
    max_refill_groups: int = field(
        default=64,
        metadata={"help": "Most extra prompts (groups) drawn to refill one generation batch."},
    )
    max_refill_rounds: int = field(
        default=4, metadata={"help": "Most refill generation rounds for one generation batch."}
    )

    def __post_init__(self) -> None:
        if self.max_refill_groups < 0:
            raise ValueError(f"zero_adv.max_refill_groups must be >= 0, got {self.max_refill_groups}")
        if self.max_refill_rounds < 0:
            raise ValueError(f"zero_adv.max_refill_rounds must be >= 0, got {self.max_refill_rounds}")
        if not self.outcome_reward:
            raise ValueError("zero_adv.outcome_reward must name a reward function or be 'auto'")


# ----------------------------------------------------------------------------------- stages


@dataclass(frozen=True)
class StageConfig:
    """Options shared by the SFT and GRPO stages (mapped onto TRL's config classes)."""

    output_dir: str = field(
        default="",
        metadata={
            "help": "Directory of this stage: final model, checkpoint-* dirs, metrics.jsonl, stage.json."
        },
    )
    model: ModelConfig = field(default_factory=ModelConfig, metadata={"help": "The model to start from."})
    data: DataConfig = field(default_factory=DataConfig, metadata={"help": "The training data."})
    learning_rate: float = field(default=1e-5, metadata={"help": "Peak learning rate."})
    num_train_epochs: float = field(default=1.0, metadata={"help": "Epochs over the training data."})
    max_steps: int = field(
        default=-1, metadata={"help": "Stop after this many optimizer steps (-1: run the epochs)."}
    )
    lr_scheduler_type: str = field(
        default="cosine",
        metadata={"help": "Learning-rate schedule (transformers' names: cosine, constant, ...)."},
    )
    warmup_ratio: float = field(
        default=0.0, metadata={"help": "Fraction of the steps with a linear warm-up, in [0, 1)."}
    )
    per_device_train_batch_size: int = field(default=1, metadata={"help": "Samples per device per step."})
    gradient_accumulation_steps: int = field(
        default=1, metadata={"help": "Steps whose gradients add up before an optimizer step."}
    )
    freeze_vision_tower: bool = field(default=False, metadata={"help": "Freeze the vision encoder."})
    freeze_projector: bool = field(
        default=False, metadata={"help": "Freeze the projector (Qwen2.5-VL's patch merger)."}
    )
    gradient_checkpointing: bool = field(
        default=False, metadata={"help": "Recompute activations in the backward pass to save memory."}
    )
    bf16: bool = field(default=False, metadata={"help": "bfloat16 mixed precision (GPUs)."})
    use_cpu: bool | None = field(
        default=None, metadata={"help": "Train on the CPU; None: on the CPU when no GPU is visible."}
    )
    save_steps: int = field(default=500, metadata={"help": "Write a checkpoint every N optimizer steps."})
    save_total_limit: int | None = field(
        default=2, metadata={"help": "Keep at most N checkpoints (None: all of them)."}
    )
    logging_steps: int = field(default=10, metadata={"help": "Log metrics every N optimizer steps."})
    seed: int = field(default=0, metadata={"help": "Seed of the run (data order, sampling, init)."})
    report_to: list[str] = field(
        default_factory=list,
        metadata={"help": "Trackers to report to (wandb, tensorboard, ...); [] for none."},
    )
    trl: dict[str, Any] = field(
        default_factory=dict,
        metadata={"help": "Any other option of TRL's config class, passed through as is (checked by name)."},
    )

    #: TRL's config class this stage maps onto (set by subclasses).
    _trl_class: typing.ClassVar[str] = ""

    def __post_init__(self) -> None:
        checks = [
            ("learning_rate", self.learning_rate > 0, "must be > 0"),
            ("num_train_epochs", self.num_train_epochs > 0, "must be > 0"),
            ("max_steps", self.max_steps == -1 or self.max_steps > 0, "must be -1 or > 0"),
            ("warmup_ratio", 0 <= self.warmup_ratio < 1, "must be in [0, 1)"),
            ("per_device_train_batch_size", self.per_device_train_batch_size >= 1, "must be >= 1"),
            ("gradient_accumulation_steps", self.gradient_accumulation_steps >= 1, "must be >= 1"),
            ("save_steps", self.save_steps >= 1, "must be >= 1"),
            ("save_total_limit", self.save_total_limit is None or self.save_total_limit >= 1, "must be >= 1"),
            ("logging_steps", self.logging_steps >= 1, "must be >= 1"),
        ]
        for name, ok, why in checks:
            if not ok:
                raise ValueError(f"{name} {why}, got {getattr(self, name)!r}")
        if self.trl:
            self._check_trl_passthrough()

    def _check_trl_passthrough(self) -> None:
        # Imported only when the passthrough is used: building a config stays cheap otherwise.
        import trl

        trl_cls = getattr(trl, self._trl_class)
        allowed = {f.name for f in dataclasses.fields(trl_cls)}
        for key in self.trl:
            if key not in allowed:
                raise ValueError(
                    f"trl.{key} is not an option of TRL's {self._trl_class}; "
                    f"see `python -c 'import trl; help(trl.{self._trl_class})'`"
                )
            if key in TRL_MANAGED or key in {f.name for f in dataclasses.fields(self)}:
                raise ValueError(
                    f"trl.{key} is set by pebr; use the pebr option "
                    f"{TRL_MANAGED.get(key, key)!r} instead of the trl passthrough"
                )


#: TRL options that pebr sets itself (passthrough keys that would fight them are errors).
TRL_MANAGED: dict[str, str] = {
    "output_dir": "output_dir",
    "warmup_steps": "warmup_ratio",
    "reward_weights": "reward_preset",
    "save_strategy": "save_steps",
    "logging_strategy": "logging_steps",
    "max_length": "max_length",
}


@dataclass(frozen=True)
class SFTStageConfig(StageConfig):
    """The SFT warm-up (TRL ``SFTTrainer``): PeBR's defaults (lr 1e-5, 2 epochs, cosine,
    warm-up 0.1, cutoff 4096 tokens, vision tower and projector frozen)."""

    learning_rate: float = field(default=1e-5, metadata={"help": "Peak learning rate (PeBR: 1e-5)."})
    num_train_epochs: float = field(default=2.0, metadata={"help": "Epochs (PeBR: 2)."})
    lr_scheduler_type: str = field(default="cosine", metadata={"help": "Schedule (PeBR: cosine)."})
    warmup_ratio: float = field(default=0.1, metadata={"help": "Warm-up fraction (PeBR: 0.1)."})
    freeze_vision_tower: bool = field(
        default=True, metadata={"help": "Freeze the vision encoder (PeBR: yes)."}
    )
    freeze_projector: bool = field(
        default=True, metadata={"help": "Freeze the projector / patch merger (PeBR: yes)."}
    )
    max_length: int = field(
        default=4096,
        metadata={"help": "Cutoff of a tokenised conversation, image tokens included (PeBR: 4096)."},
    )
    assistant_only_loss: bool = field(
        default=True, metadata={"help": "Train on the assistant turns only (needs generation markers)."}
    )

    _trl_class: typing.ClassVar[str] = "SFTConfig"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_length < 1:
            raise ValueError(f"max_length must be a positive number of tokens, got {self.max_length}")


@dataclass(frozen=True)
class GRPOStageConfig(StageConfig):
    """A GRPO stage (TRL ``GRPOTrainer``): PeBR's defaults (lr 1e-6, KL 0.01, 8 generations,
    temperature 1.2, top_p 0.99, prompt and completion up to 2048 tokens)."""

    reward_preset: str = field(
        default="pebr_stage1",
        metadata={
            "help": "Reward preset of rewards/presets.yaml (stage 1: pebr_stage1, stage 2: pebr_stage2)."
        },
    )
    reward_overrides: dict[str, Any] = field(
        default_factory=dict,
        metadata={
            "help": "Overrides of the preset, 'component.param: value' (e.g. alignment.backend: caption)."
        },
    )
    reward_mode: Literal["components", "total"] = field(
        default="components",
        metadata={
            "help": "'components': one weighted TRL reward per component; 'total': the preset's "
            "renormalised total as the only weighted reward, components logged at weight 0."
        },
    )
    learning_rate: float = field(default=1e-6, metadata={"help": "Learning rate (PeBR: 1e-6)."})
    lr_scheduler_type: str = field(default="constant", metadata={"help": "Schedule (EasyR1: constant)."})
    per_device_train_batch_size: int = field(
        default=8,
        metadata={"help": "Completions per device per step (a multiple of num_generations overall)."},
    )
    beta: float = field(
        default=0.01, metadata={"help": "KL coefficient (PeBR: 0.01; TRL's k3 'low-variance' estimator)."}
    )
    num_generations: int = field(default=8, metadata={"help": "Completions per prompt, the group (PeBR: 8)."})
    temperature: float = field(default=1.2, metadata={"help": "Sampling temperature (PeBR: 1.2)."})
    top_p: float = field(default=0.99, metadata={"help": "Nucleus sampling mass (PeBR: 0.99)."})
    max_prompt_length: int = field(
        default=2048,
        metadata={
            "help": "Prompts longer than this (image tokens included) are dropped before training and "
            "listed in dropped_prompts.jsonl (PeBR: 2048)."
        },
    )
    max_completion_length: int = field(
        default=2048, metadata={"help": "Most tokens of a completion (PeBR: 2048)."}
    )
    steps_per_generation: int | None = field(
        default=None,
        metadata={
            "help": "Optimizer micro-steps per generation batch (TRL; None: gradient_accumulation_steps)."
        },
    )
    num_iterations: int = field(default=1, metadata={"help": "Updates per generation batch (TRL's mu)."})
    use_vllm: bool = field(
        default=False, metadata={"help": "Generate with vLLM (GPUs; pip install 'pebr[vllm]')."}
    )
    vllm_mode: Literal["colocate", "server"] = field(
        default="colocate",
        metadata={
            "help": "vLLM in the training processes ('colocate') or a `trl vllm-serve` server ('server')."
        },
    )
    zero_adv: ZeroAdvConfig = field(
        default_factory=ZeroAdvConfig, metadata={"help": "Online filtering of zero-advantage groups."}
    )
    reward_audit: RewardAuditConfig = field(
        default_factory=RewardAuditConfig,
        metadata={"help": "Reward-hacking probes run against the preset before training."},
    )

    _trl_class: typing.ClassVar[str] = "GRPOConfig"

    def __post_init__(self) -> None:
        super().__post_init__()
        checks = [
            ("beta", self.beta >= 0, "must be >= 0"),
            ("num_generations", self.num_generations >= 2, "must be >= 2 (a group needs two completions)"),
            ("temperature", self.temperature > 0, "must be > 0"),
            ("top_p", 0 < self.top_p <= 1, "must be in (0, 1]"),
            ("max_prompt_length", self.max_prompt_length >= 1, "must be >= 1"),
            ("max_completion_length", self.max_completion_length >= 1, "must be >= 1"),
            ("num_iterations", self.num_iterations >= 1, "must be >= 1"),
            ("steps_per_generation", (self.steps_per_generation or 1) >= 1, "must be >= 1 or null"),
        ]
        for name, ok, why in checks:
            if not ok:
                raise ValueError(f"{name} {why}, got {getattr(self, name)!r}")
        if not self.reward_preset:
            raise ValueError("reward_preset must name a preset (pebr_stage1, pebr_stage2, ...)")


#: Defaults that differ between the two GRPO stages (applied under the recipe).
GRPO_STAGE_DEFAULTS: dict[str, dict[str, Any]] = {
    "stage1": {"reward_preset": "pebr_stage1", "num_train_epochs": 1.0},
    "stage2": {"reward_preset": "pebr_stage2", "num_train_epochs": 2.0},
}


# --------------------------------------------------------------------------------- pipeline


@dataclass(frozen=True)
class DifficultyConfig:
    """Difficulty scoring of the RL pool with the SFT model (PeBR: 8 rollouts, temperature 1.2)."""

    pool: str = field(
        default="",
        metadata={"help": "The RL pool: a canonical Parquet file (e.g. the synthetic rl.parquet)."},
    )
    image_root: str | None = field(
        default=None,
        metadata={"help": "Image root of the pool (None: a report's, else the file's directory)."},
    )
    test: str | None = field(
        default=None,
        metadata={
            "help": "Held-out split (canonical Parquet) carried along with the splits and their "
            "export; default: test.parquet next to the pool, when there is one."
        },
    )
    preset: str = field(default="pebr_sample", metadata={"help": "Reward preset judging each rollout."})
    n: int = field(default=8, metadata={"help": "Rollouts per question (PeBR: 8)."})
    temperature: float = field(default=1.2, metadata={"help": "Sampling temperature (PeBR: 1.2)."})
    top_p: float = field(default=0.99, metadata={"help": "Nucleus sampling mass (PeBR: 0.99)."})
    max_new_tokens: int = field(default=2048, metadata={"help": "Most tokens of a rollout."})
    seed: int = field(default=0, metadata={"help": "Sampling seed."})
    max_questions: int | None = field(
        default=None,
        metadata={
            "help": "Score only the first N questions of the pool (written to difficulty/pool.parquet)."
        },
    )
    backend: Literal["transformers", "vllm", "replay"] = field(
        default="transformers",
        metadata={"help": "Rollout engine of curation.engines ('replay' reads options.path, no model)."},
    )
    batch_size: int = field(default=8, metadata={"help": "Questions per engine call."})
    adaptive: bool = field(
        default=False,
        metadata={
            "help": "Stop sampling a question as soon as splits.rule decides its bucket (PeBR's rule: "
            "one correct and one wrong answer); the buckets are those of n samples."
        },
    )
    options: dict[str, Any] = field(
        default_factory=dict,
        metadata={"help": "Further keyword arguments of curation.engines.make_engine (vLLM settings, ...)."},
    )

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"difficulty.n must be >= 1, got {self.n}")
        if self.batch_size < 1:
            raise ValueError(f"difficulty.batch_size must be >= 1, got {self.batch_size}")
        if self.max_questions is not None and self.max_questions < 1:
            raise ValueError(f"difficulty.max_questions must be >= 1 or null, got {self.max_questions}")
        if self.temperature < 0 or not 0 < self.top_p <= 1:
            raise ValueError("difficulty.temperature must be >= 0 and difficulty.top_p in (0, 1]")


@dataclass(frozen=True)
class SplitsConfig:
    """How the scored pool becomes the stage splits (PeBR: easy 8/8 -> stage 1, medium -> stage 2)."""

    from_dir: str | None = field(
        default=None,
        metadata={
            "help": "Use these ready splits (perception.parquet, reasoning.parquet) instead of scoring "
            "the pool: the difficulty and splits steps are skipped."
        },
    )
    rule: dict[str, Any] = field(
        default_factory=dict,
        metadata={
            "help": "Bucketing rule of curation.splits.build_splits ({} keeps PeBR's easy/medium/hard)."
        },
    )
    filter_report: str | None = field(
        default=None,
        metadata={
            "help": "report.json of the `pebr curate filter` run that produced the RL pool; recorded "
            "in the splits report so the dataset card shows the filter funnel."
        },
    )


@dataclass(frozen=True)
class RebucketConfig:
    """Re-scoring the reasoning pool with the stage-1 model before stage 2 (beyond PeBR)."""

    enabled: bool = field(
        default=False, metadata={"help": "Re-score and rebuild the stage-2 split after stage 1."}
    )
    scope: Literal["reasoning", "pool"] = field(
        default="reasoning",
        metadata={
            "help": "'reasoning': re-score the reasoning split only (stage 2 keeps what is still medium); "
            "'pool': re-score the whole RL pool (questions stage 1 made solvable can join stage 2)."
        },
    )


@dataclass(frozen=True)
class PipelineConfig:
    """SFT, difficulty scoring, splits, stage 1 and stage 2 in sequence under one run directory.

    The pipeline wires the stages: it sets every stage's ``output_dir`` (``RUN_DIR/<stage>``),
    the SFT model (``model``), the GRPO stages' model (the previous stage's directory) and
    data (the splits). Setting those in a recipe is an error.
    """

    model: ModelConfig = field(
        default_factory=ModelConfig, metadata={"help": "The base model of the SFT stage."}
    )
    sft: SFTStageConfig = field(default_factory=SFTStageConfig, metadata={"help": "The SFT warm-up."})
    difficulty: DifficultyConfig = field(
        default_factory=DifficultyConfig, metadata={"help": "Difficulty scoring of the RL pool."}
    )
    splits: SplitsConfig = field(default_factory=SplitsConfig, metadata={"help": "Buckets to splits."})
    stage1: GRPOStageConfig = field(
        default_factory=lambda: GRPOStageConfig(**GRPO_STAGE_DEFAULTS["stage1"]),
        metadata={"help": "Stage 1: perception GRPO on the easy bucket."},
    )
    rebucket: RebucketConfig = field(
        default_factory=RebucketConfig, metadata={"help": "Re-bucketing between the stages."}
    )
    stage2: GRPOStageConfig = field(
        default_factory=lambda: GRPOStageConfig(**GRPO_STAGE_DEFAULTS["stage2"]),
        metadata={"help": "Stage 2: reasoning GRPO on the medium bucket."},
    )
    skip_sft: bool = field(
        default=False, metadata={"help": "Start from `model` as it is (already warmed up): no SFT stage."}
    )

    def __post_init__(self) -> None:
        wired = [
            ("sft.output_dir", self.sft.output_dir),
            ("stage1.output_dir", self.stage1.output_dir),
            ("stage1.data.train", self.stage1.data.train),
            ("stage2.output_dir", self.stage2.output_dir),
            ("stage2.data.train", self.stage2.data.train),
        ]
        for key, value in wired:
            if value:
                raise ValueError(
                    f"{key} is set by the pipeline (stages read the previous stage's directory); "
                    "remove it from the recipe"
                )
        for name in ("sft", "stage1", "stage2"):
            if getattr(self, name).model != ModelConfig():
                raise ValueError(
                    f"{name}.model: set model options once, at the top level of a pipeline recipe "
                    "(every stage uses them; each stage starts from the previous stage's directory)"
                )


CONFIG_CLASSES: dict[str, type] = {
    "sft": SFTStageConfig,
    "stage1": GRPOStageConfig,
    "stage2": GRPOStageConfig,
    "pipeline": PipelineConfig,
}


def resolved_use_cpu(config: StageConfig) -> bool:
    """``use_cpu`` with ``None`` resolved: the CPU when no CUDA device is visible."""
    if config.use_cpu is not None:
        return config.use_cpu
    import torch

    return not torch.cuda.is_available()


def training_arguments(config: StageConfig, output_dir: str) -> dict[str, Any]:
    """The ``transformers.TrainingArguments`` every stage sets the same way (TRL's SFT and GRPO
    configs add their own options on top)."""
    return {
        "output_dir": output_dir,
        "learning_rate": config.learning_rate,
        "num_train_epochs": config.num_train_epochs,
        "max_steps": config.max_steps,
        "lr_scheduler_type": config.lr_scheduler_type,
        "warmup_steps": config.warmup_ratio,  # transformers 5 reads a float < 1 as a ratio
        "per_device_train_batch_size": config.per_device_train_batch_size,
        "gradient_accumulation_steps": config.gradient_accumulation_steps,
        "gradient_checkpointing": config.gradient_checkpointing,
        "bf16": config.bf16,
        "use_cpu": resolved_use_cpu(config),
        "save_strategy": "steps",
        "save_steps": config.save_steps,
        "save_total_limit": config.save_total_limit,
        "logging_strategy": "steps",
        "logging_steps": config.logging_steps,
        "seed": config.seed,
        "report_to": list(config.report_to),
    }


def replace(config: Any, **changes: Any) -> Any:
    """``dataclasses.replace`` that also takes nested changes as ``section={...}`` mappings."""
    updates = {}
    for key, value in changes.items():
        current = getattr(config, key)
        if dataclasses.is_dataclass(current) and isinstance(value, Mapping):
            value = dataclasses.replace(current, **value)
        updates[key] = value
    return dataclasses.replace(config, **updates)
