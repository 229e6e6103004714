"""``pebr train ...`` and ``pebr eval``: thin Typer commands over :mod:`trainer.sft`,
:mod:`trainer.grpo`, :mod:`trainer.pipeline` and :mod:`trainer.evaluate`.

Heavy libraries are imported inside the commands, so ``pebr --help`` stays light.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

#: Top-level keys that mark a pipeline recipe (a stage command then reads its own section).
PIPELINE_KEYS = ("sft", "stage1", "stage2", "difficulty", "splits", "rebucket", "skip_sft")

CONFIG_OPT = typer.Option(None, "--config", "-c", help="YAML recipe (a stage recipe or a pipeline recipe).")
SET_OPT = typer.Option(
    None, "--set", "-s", help="Override an option: key.path=value (value parsed as YAML); repeatable."
)
PRINT_OPT = typer.Option(False, "--print-config", help="Print the resolved config as YAML and exit.")


def _stage_config(kind: str, config: Path | None, sets: list[str] | None, extra: list[str]) -> Any:
    """A stage's config from a stage recipe, or from its section of a pipeline recipe (whose
    top-level ``model`` options apply, except the path for the GRPO stages)."""
    from trainer.config import CONFIG_CLASSES
    from trainer.config_io import load_config, read_yaml

    cls = CONFIG_CLASSES[kind]
    sets = [*(sets or []), *extra]
    if config is None:
        return load_config(cls, None, sets, stage=kind)
    data = read_yaml(config)
    if not any(key in data for key in PIPELINE_KEYS):
        return load_config(cls, config, sets, stage=kind)
    section = dict(data.get(kind) or {})
    model = {k: v for k, v in (data.get("model") or {}).items() if kind == "sft" or k != "path"}
    if model:
        section["model"] = {**model, **(section.get("model") or {})}
    return load_config(cls, None, sets, stage=kind, overrides=section, source=f"{config} [{kind}]")


def _print_config(cfg: Any) -> None:
    import yaml

    from trainer.config_io import to_dict

    typer.echo(yaml.safe_dump(to_dict(cfg), sort_keys=False))


def _is_main_process() -> bool:
    # Under `accelerate launch` every process runs the command; one table is enough.
    import os

    return os.environ.get("RANK", "0") == "0"


def _report(info: dict[str, Any], title: str) -> None:
    from trainer.cli import _print_table

    if not _is_main_process():
        return

    summary = info.get("summary") or {}
    last = {}
    for row in reversed(summary.get("log_history") or []):
        if "loss" in row:
            last = row
            break
    rows: dict[str, Any] = {
        "directory": (info.get("config") or {}).get("output_dir"),
        "status": "skipped (already done)" if info.get("skipped") else info.get("status"),
        "steps": summary.get("global_step"),
        "resumed from": info.get("resumed_from") or "-",
        "train seconds": info.get("train_seconds"),
    }
    rows.update({k: v for k, v in last.items() if k.startswith("rewards/") and k.endswith("/mean")})
    if summary.get("zero_adv"):
        rows["zero-adv filter"] = summary["zero_adv"]
    _print_table(title, rows)


def sft(
    config: Path | None = CONFIG_OPT,
    sets: list[str] | None = SET_OPT,
    out: Path | None = typer.Option(None, "--out", help="Stage directory (overrides output_dir)."),
    force: bool = typer.Option(False, "--force", help="Start over: remove the stage directory first."),
    print_config: bool = PRINT_OPT,
) -> None:
    """SFT warm-up with TRL's SFTTrainer (assistant-only loss, vision tower and projector frozen)."""
    from trainer.sft import run_sft

    cfg = _stage_config("sft", config, sets, [f"output_dir={out}"] if out else [])
    if print_config:
        _print_config(cfg)
        return
    _report(run_sft(cfg, force=force), "sft")


def _grpo(
    stage: str,
    config: Path | None,
    sets: list[str] | None,
    out: Path | None,
    force: bool,
    use_vllm: bool,
    vllm_mode: str | None,
    print_config: bool,
) -> None:
    from trainer.grpo import run_grpo

    extra = [f"output_dir={out}"] if out else []
    if use_vllm:
        extra.append("use_vllm=true")
    if vllm_mode:
        extra.append(f"vllm_mode={vllm_mode}")
    cfg = _stage_config(stage, config, sets, extra)
    if print_config:
        _print_config(cfg)
        return
    _report(run_grpo(cfg, stage=stage, force=force), stage)


OUT_OPT = typer.Option(None, "--out", help="Stage directory (overrides output_dir).")
FORCE_OPT = typer.Option(False, "--force", help="Start over: remove the stage directory first.")
VLLM_OPT = typer.Option(False, "--use-vllm", help="Generate with vLLM (GPUs; pip install 'pebr[vllm]').")
VLLM_MODE_OPT = typer.Option(None, "--vllm-mode", help="colocate (in the training processes) or server.")


def stage1(
    config: Path | None = CONFIG_OPT,
    sets: list[str] | None = SET_OPT,
    out: Path | None = OUT_OPT,
    force: bool = FORCE_OPT,
    use_vllm: bool = VLLM_OPT,
    vllm_mode: str | None = VLLM_MODE_OPT,
    print_config: bool = PRINT_OPT,
) -> None:
    """Stage 1: perception GRPO (pebr_stage1 rewards) on the perception split."""
    _grpo("stage1", config, sets, out, force, use_vllm, vllm_mode, print_config)


def stage2(
    config: Path | None = CONFIG_OPT,
    sets: list[str] | None = SET_OPT,
    out: Path | None = OUT_OPT,
    force: bool = FORCE_OPT,
    use_vllm: bool = VLLM_OPT,
    vllm_mode: str | None = VLLM_MODE_OPT,
    print_config: bool = PRINT_OPT,
) -> None:
    """Stage 2: reasoning GRPO (pebr_stage2 rewards) on the reasoning split."""
    _grpo("stage2", config, sets, out, force, use_vllm, vllm_mode, print_config)


def pipeline(
    config: Path = typer.Option(
        ..., "--config", "-c", help="Pipeline recipe (trainer/recipes/pebr.yaml, ...)."
    ),
    out: Path = typer.Option(..., "--out", help="Run directory: one subdirectory per step."),
    sets: list[str] | None = SET_OPT,
    force: list[str] | None = typer.Option(None, "--force", help="Start this step over (repeatable)."),
    use_vllm: bool = VLLM_OPT,
    print_config: bool = PRINT_OPT,
) -> None:
    """SFT, difficulty scoring, splits, stage 1 and stage 2 in sequence (finished steps skipped)."""
    from trainer.config import PipelineConfig
    from trainer.config_io import load_config
    from trainer.pipeline import run_pipeline

    extra = ["stage1.use_vllm=true", "stage2.use_vllm=true"] if use_vllm else []
    cfg = load_config(PipelineConfig, config, [*(sets or []), *extra])
    if print_config:
        _print_config(cfg)
        return
    steps = run_pipeline(cfg, out, force=tuple(force or ()))
    from trainer.cli import _print_table

    if _is_main_process():
        _print_table(f"pipeline {out}", {name: outcome.get("status") for name, outcome in steps.items()})


def options(kind: str = typer.Argument(..., help="sft, stage1, stage2 or pipeline.")) -> None:
    """List every option of a stage (or the pipeline) with its default and help."""
    from rich.console import Console
    from rich.table import Table

    from trainer.config import CONFIG_CLASSES
    from trainer.config_io import help_table

    if kind not in CONFIG_CLASSES:
        raise ValueError(f"unknown stage {kind!r}; choose one of {sorted(CONFIG_CLASSES)}")
    table = Table(title=f"{kind} options")
    for col in ("key", "type", "default", "help"):
        table.add_column(col)
    for row in help_table(CONFIG_CLASSES[kind]):
        table.add_row(*row)
    Console().print(table)


def eval_command(
    model: str = typer.Option(..., "--model", help="Model directory (a stage output) or Hub id."),
    data: Path = typer.Option(..., "--data", help="Held-out split (canonical Parquet)."),
    preset: str = typer.Option("pebr_stage2", "--preset", help="Reward preset scoring each answer."),
    n: int = typer.Option(1, "--n", help="Answers per question; n > 1 reports pass@k."),
    out: Path | None = typer.Option(None, "--out", help="Report JSON (answers go to <stem>.samples.jsonl)."),
    image_root: Path | None = typer.Option(None, "--image-root", help="Image root (default: from the data)."),
    max_samples: int | None = typer.Option(None, "--max-samples", help="Evaluate the first N questions."),
    temperature: float | None = typer.Option(None, help="Sampling temperature (default: greedy for n=1)."),
    top_p: float = typer.Option(1.0, help="Nucleus sampling mass."),
    max_new_tokens: int = typer.Option(2048, help="Most tokens of an answer."),
    batch_size: int = typer.Option(8, help="Questions per generation batch."),
    seed: int = typer.Option(0, help="Sampling seed."),
    backend: str = typer.Option("transformers", help="Generation engine: transformers or vllm (GPUs)."),
) -> None:
    """Evaluate a model on a held-out split: accuracy, every reward component, per task, pass@k."""
    from rich.console import Console
    from rich.table import Table

    from trainer.evaluate import EvalConfig, evaluate

    cfg = EvalConfig(
        model=model,
        data=str(data),
        preset=preset,
        n=n,
        image_root=str(image_root) if image_root else None,
        max_samples=max_samples,
        temperature=temperature,
        top_p=top_p,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        seed=seed,
        backend=backend,
    )
    report = evaluate(cfg, out)
    table = Table(title=f"eval {model} on {data} ({report['preset']}, n={n})")
    names = list(report["components"])
    ks = list(report.get("pass_at_k", {}))
    # "accuracy" is the share of correct answers; reward components get a prefix (one of them
    # may be called accuracy too, a graded score)
    for col in ["task", "questions", "accuracy", *[f"reward:{c}" for c in names], *[f"pass@{k}" for k in ks]]:
        table.add_column(col)

    def fmt(x: float | None) -> str:
        return "-" if x is None else f"{x:.3f}"

    rows = [("all", report), *report["per_task"].items()]
    for task, part in rows:
        table.add_row(
            task,
            str(part["questions"]),
            fmt(part["accuracy"]),
            *[fmt(part["components"].get(c)) for c in names],
            *[fmt(part.get("pass_at_k", {}).get(k)) for k in ks],
        )
    Console().print(table)
    if out is not None:
        typer.echo(f"report: {out}")


def register(train_app: typer.Typer, app: typer.Typer) -> None:
    """Add the training commands to ``train_app`` and ``eval`` to the root ``app``."""
    train_app.command("sft")(sft)
    train_app.command("stage1")(stage1)
    train_app.command("stage2")(stage2)
    train_app.command("pipeline")(pipeline)
    train_app.command("options")(options)
    app.command("eval")(eval_command)
