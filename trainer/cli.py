"""The ``pebr`` command line: one Typer app assembling every package's command group.

The root lives in the trainer package because the trainer sits on top of the others
(it uses curation and rewards). Group modules import heavy libraries inside commands only,
so ``pebr --help`` does not import torch.

Errors a user can fix (bad input, bad config, missing file) are raised as ``ValueError``,
``FileNotFoundError`` or ``FileExistsError`` by the library and printed here as one red line
with exit code 2; anything else is a bug and shows its traceback.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import typer

from curation.cli import curate_app, data_app, review_app
from explorer.cli import app as explore_app
from rewards.cli import app as rewards_app
from trainer.train_cli import register as register_training_commands

app = typer.Typer(
    name="pebr",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    help="Curate perception/reasoning splits, verify rewards and train VLMs with the PeBR-R1 recipe.",
)
model_app = typer.Typer(no_args_is_help=True, help="Build and inspect models (tiny local Qwen2.5-VL models).")
train_app = typer.Typer(
    no_args_is_help=True, help="Train: SFT warm-up, stage 1 (perception) and stage 2 (reasoning) GRPO."
)

#: Deprecation notices that dependencies raise about their own defaults on every training run
#: (TRL's configs still pass ``gradient_checkpointing``; TRL pads with ``max_length`` set).
#: They say nothing a pebr user can act on, so the CLI does not print them.
DEPENDENCY_NOISE = (
    r"`gradient_checkpointing` is deprecated",
    r"`is_gradient_checkpointing` is deprecated",
    r"`max_length` is ignored when `padding`=`True`",
)

USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError, ImportError)


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log debug messages."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Log warnings and errors only."),
) -> None:
    """pebr: Perception Before Reasoning, as a platform."""
    import warnings

    from rich.logging import RichHandler

    for pattern in DEPENDENCY_NOISE:
        warnings.filterwarnings("ignore", message=pattern)
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(
        level=level,
        format="%(message)s",
        handlers=[RichHandler(show_path=False, rich_tracebacks=False)],
        force=True,
    )


@model_app.callback()
def _model() -> None:
    """Build and inspect models (tiny local Qwen2.5-VL-architecture models)."""


@train_app.callback()
def _train() -> None:
    """Train: SFT warm-up, stage 1 (perception) and stage 2 (reasoning) GRPO, or the whole pipeline."""


@model_app.command("tiny")
def model_tiny(
    out: Path = typer.Option(..., help="Directory to write the model, tokenizer and processor to."),
    preset: str = typer.Option("nano", help="Size: nano (<1M parameters, tests) or small (~5M, CPU demo)."),
    data: Path | None = typer.Option(
        None,
        help="Data directory whose sft.json / rl.json texts train the tokenizer (built-in corpus without).",
    ),
    seed: int = typer.Option(0, help="Seed of the random weights."),
) -> None:
    """Build a tiny Qwen2.5-VL-architecture model with random weights (skipped when up to date)."""
    from trainer.tiny import build_tiny_vlm

    summary = build_tiny_vlm(out, preset=preset, data_dir=data, seed=seed)
    _print_table(
        f"tiny model {'(already built)' if summary['reused'] else 'built'}",
        {
            "path": summary["path"],
            "preset": summary["preset"],
            "seed": summary["seed"],
            "parameters": f"{summary['parameters']['total']:,}",
            "vision parameters": f"{summary['parameters']['vision']:,}",
            "tokenizer vocabulary": summary["vocab_size"],
            "embedding rows": summary["embedding_rows"],
            "image pixels": f"{summary['min_pixels']:,} .. {summary['max_pixels']:,}",
            "build seconds": summary["build_seconds"],
        },
    )


@model_app.command("info")
def model_info(
    path: str = typer.Argument(..., help="A model directory (tiny pebr model or Qwen2/2.5-VL checkpoint)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Show a model's architecture, parameter counts, vocabulary, image pixel bounds and processor."""
    from trainer.vlm import describe_model

    info = describe_model(path)
    if as_json:
        import json

        typer.echo(json.dumps(info, indent=2))
        return
    params = info.pop("parameters")
    rows = {
        **{k: v for k, v in info.items() if k not in ("min_pixels", "max_pixels")},
        "parameters": f"{params['total']:,}",
        "vision parameters": f"{params['vision']:,}",
        "language parameters": f"{params['language']:,}",
        "image pixels": f"{info['min_pixels']:,} .. {info['max_pixels']:,}" if info["max_pixels"] else "?",
    }
    _print_table("model", rows)


def _print_table(title: str, rows: dict[str, object]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, show_header=False)
    table.add_column("key", style="bold")
    table.add_column("value")
    for key, value in rows.items():
        table.add_row(key.replace("_", " "), str(value))
    Console().print(table)


@app.command()
def demo(
    out: Path = typer.Option(Path("runs/demo"), help="Directory for everything the demo produces."),
    seed: int = typer.Option(0, help="Seed for the synthetic data and the model."),
) -> None:
    """Run the main job end to end on the embedded synthetic data."""
    from rich.console import Console

    from trainer.demo import run_demo, summary_table

    summary = run_demo(out, seed=seed)
    Console().print(summary_table(summary))


app.add_typer(data_app, name="data")
app.add_typer(model_app, name="model")
app.add_typer(curate_app, name="curate")
app.add_typer(rewards_app, name="rewards")
app.add_typer(train_app, name="train")
register_training_commands(train_app, app)  # pebr train sft/stage1/stage2/pipeline/options, pebr eval
app.add_typer(explore_app, name="explore")
app.add_typer(review_app, name="review")


def run(argv: list[str] | None = None) -> int:
    """Run the CLI with ``argv`` and return its exit code (used by ``main`` and tests)."""
    from rich.console import Console

    try:
        app(args=argv, prog_name="pebr")
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except USER_ERRORS as exc:
        if logging.getLogger().isEnabledFor(logging.DEBUG):
            raise
        Console(stderr=True).print(f"[bold red]error:[/] {exc}", highlight=False)
        return 2
    return 0


def main() -> None:
    sys.exit(run())


if __name__ == "__main__":
    main()
