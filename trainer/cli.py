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
eval_app = typer.Typer(
    no_args_is_help=True, help="Evaluate a model on a held-out split with verifiable rewards."
)

USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError, ImportError)


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log debug messages."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Log warnings and errors only."),
) -> None:
    """pebr: Perception Before Reasoning, as a platform."""
    from rich.logging import RichHandler

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


@eval_app.callback()
def _eval() -> None:
    """Evaluate a model on a held-out split with the verifiable rewards."""


@app.command()
def demo(
    out: Path = typer.Option(Path("runs/demo"), help="Directory for everything the demo produces."),
    seed: int = typer.Option(0, help="Seed for the synthetic data and the model."),
) -> None:
    """Run the main job end to end on the embedded synthetic data."""
    from trainer.demo import run_demo

    run_demo(out, seed=seed)


app.add_typer(data_app, name="data")
app.add_typer(model_app, name="model")
app.add_typer(curate_app, name="curate")
app.add_typer(rewards_app, name="rewards")
app.add_typer(train_app, name="train")
app.add_typer(eval_app, name="eval")
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
