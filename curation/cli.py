"""``pebr data``, ``pebr curate`` and ``pebr review``: the curation command line.

Commands import their heavy dependencies inside the function body, so ``--help`` is fast.
"""

from __future__ import annotations

from pathlib import Path

import typer

data_app = typer.Typer(no_args_is_help=True, help="Generate and inspect datasets (synthetic default data).")
curate_app = typer.Typer(
    no_args_is_help=True, help="Filter raw data, score difficulty with rollouts, build splits, export."
)
review_app = typer.Typer(no_args_is_help=True, help="Label Studio review of hard cases.")


@data_app.callback()
def _data() -> None:
    """Generate and inspect datasets (the embedded synthetic default data)."""


@curate_app.callback()
def _curate() -> None:
    """Filter raw data, score difficulty with rollouts, build perception/reasoning splits, export."""


@review_app.callback()
def _review() -> None:
    """Send hard cases to Label Studio for review and bring fixed gold answers back."""


@data_app.command("synth")
def synth(
    out: Path = typer.Option(
        ..., "--out", help="Output directory (created; reused if it holds the same dataset)."
    ),
    sft: int = typer.Option(2000, "--sft", help="SFT records (sft.json, Mulberry layout, with defects)."),
    rl: int = typer.Option(1000, "--rl", help="RL questions (rl.json in PeBR's GRPO layout and rl.parquet)."),
    test: int = typer.Option(200, "--test", help="Held-out test questions (test.parquet)."),
    seed: int = typer.Option(0, "--seed", help="Seed: the same seed gives byte-identical files."),
    workers: int | None = typer.Option(
        None, "--workers", help="Worker processes (default: one per core for large sets, else one)."
    ),
) -> None:
    """Generate the synthetic Mulberry-shaped dataset (SFT set, RL pool, test split)."""
    from curation.synth import generate_dataset
    from curation.synth.build import auto_workers

    n_workers = workers if workers is not None else auto_workers(sft + rl + test)
    summary = generate_dataset(out, sft=sft, rl=rl, test=test, seed=seed, workers=n_workers)
    _print_summary(summary)


@data_app.command("show")
def show(
    directory: Path = typer.Argument(..., help="A directory written by `pebr data synth`."),
    examples: int = typer.Option(0, "--examples", "-n", help="Also print this many RL questions."),
) -> None:
    """Show the counts of a synthetic dataset (and optionally a few RL questions)."""
    import json

    report = directory / "synth_report.json"
    if not report.is_file():
        raise FileNotFoundError(f"{report} not found; is {directory} a `pebr data synth` output?")
    _print_summary(json.loads(report.read_text(encoding="utf-8")))
    if examples > 0:
        from rich.console import Console
        from rich.table import Table
        from rich.text import Text

        records = json.loads((directory / "rl.json").read_text(encoding="utf-8"))[:examples]
        table = Table(title=f"first {len(records)} RL questions", show_lines=True)
        for col in ("problem", "answer", "images", "key_words"):
            table.add_column(col, overflow="fold")
        for r in records:
            # Text, not markup: answers such as "[1, 2, 3, 4]" must print as they are
            cells = (r["problem"], r["answer"], ", ".join(r["images"]), ", ".join(r["key_words"]))
            table.add_row(*(Text(c) for c in cells))
        Console().print(table)


def _print_summary(summary: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    splits = ("sft", "rl", "test")
    table = Table(title=f"synthetic dataset in {summary['out_dir']}")
    table.add_column("")
    for s in splits:
        table.add_column(s, justify="right")
    table.add_row("records", *(str(summary["counts"][s]) for s in splits), end_section=True)
    tasks = sorted({t for s in splits for t in summary["tasks"][s]})
    for t in tasks:
        table.add_row(t, *(str(summary["tasks"][s].get(t, 0)) for s in splits))
    defects = Table(title="SFT defects")
    defects.add_column("defect")
    defects.add_column("records", justify="right")
    for name, n in summary["defects"].items():
        defects.add_row(name, str(n))
    console = Console()
    console.print(table)
    console.print(defects)
    console.print(
        f"{summary['counts']['image_files']} image files, seed {summary['params']['seed']}, "
        f"{summary['seconds']} s with {summary['workers']} worker(s)"
    )
