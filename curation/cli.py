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


@curate_app.command("filter")
def filter_command(
    input: Path = typer.Option(
        ..., "--input", "-i", help="Raw data: JSON list, JSONL, Parquet or a saved dataset."
    ),
    image_root: Path = typer.Option(
        ..., "--image-root", help="Directory the records' image paths start from."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Run directory for kept/dropped files and the report."),
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML options (curation.yaml)."),
    verify_images: bool | None = typer.Option(
        None, "--verify-images/--no-verify-images", help="Also decode every image fully (slow)."
    ),
    skip_bad_lines: bool | None = typer.Option(
        None, "--skip-bad-lines/--no-skip-bad-lines", help="Drop unparseable records instead of stopping."
    ),
    min_side: int | None = typer.Option(None, help="Drop images under this many pixels on a side."),
    max_pixels: int | None = typer.Option(None, help="Drop images with more pixels than this."),
    reflective: list[str] | None = typer.Option(
        None, "--reflective", help="A reflective phrase to drop (repeat; replaces the defaults)."
    ),
    dedup: bool | None = typer.Option(None, "--dedup/--no-dedup", help="Drop duplicate records."),
    layout: str | None = typer.Option(None, help="auto, sharegpt or pebr."),
    workers: int | None = typer.Option(None, help="Worker processes (0: none; default: CPU count)."),
    cache: bool | None = typer.Option(None, "--cache/--no-cache", help="Use the image metadata cache."),
    cache_path: Path | None = typer.Option(None, help="Where the image metadata cache lives."),
    dataset_name: str | None = typer.Option(None, help="Name of the dataset_info.json entry."),
) -> None:
    """Filter raw SFT/RL data: drop reflective, malformed, duplicate records and bad images.

    Writes kept.json (+ dataset_info.json), kept.parquet, dropped.parquet and report.json
    into OUT; every input record is either kept or dropped with a reason.
    """
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from curation.filter_config import FilterConfig, load_filter_config
    from curation.filter_pipeline import filter_dataset

    cfg = load_filter_config(config) if config else FilterConfig()
    overrides = {
        "verify_images": verify_images,
        "skip_bad_lines": skip_bad_lines,
        "min_side": min_side,
        "max_pixels": max_pixels,
        "reflective_patterns": tuple(reflective) if reflective else None,
        "drop_duplicates": dedup,
        "layout": layout,
        "workers": workers,
        "cache": cache,
        "cache_path": str(cache_path) if cache_path else None,
        "dataset_name": dataset_name,
    }
    cfg = cfg.replace(**{k: v for k, v in overrides.items() if v is not None})

    console = Console(stderr=True)
    with Progress(
        TextColumn("[bold]checking records and images"),
        BarColumn(),
        TextColumn("{task.fields[records]:,} records"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task("filter", total=1.0, records=0)

        def on_progress(records: int, fraction: float) -> None:
            bar.update(task, completed=fraction, records=records)

        report = filter_dataset(input, image_root, out, cfg, progress=on_progress)

    table = Table(title=f"pebr curate filter: {input}", show_footer=False)
    table.add_column("", style="bold")
    table.add_column("records", justify="right")
    table.add_row("input", f"{report.records:,}")
    for reason, count in report.dropped.items():
        if count:
            table.add_row(f"  dropped: {reason}", f"{count:,}", style="red")
    table.add_row("kept", f"{report.kept:,}", style="green")
    Console().print(table)
    console.print(
        f"[dim]{report.images.get('opened', 0):,} images read, "
        f"{report.images.get('cache_hits', 0):,} from the cache; {report.seconds:.1f}s; "
        f"outputs in {out}[/]"
    )
