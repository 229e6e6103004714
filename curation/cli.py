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


def _card_options(license_: str, pretty_name: str | None, repo_id: str | None = None):
    from data_cards.render import CardOptions

    return CardOptions(license=license_, pretty_name=pretty_name, repo_id=repo_id)


def _print_splits(title: str, report) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    table.add_column("split")
    table.add_column("rows", justify="right")
    table.add_column("files")
    for s in report.splits:
        table.add_row(s.name, str(s.rows), "\n".join(s.files))
    for name, why in report.skipped.items():
        table.add_row(f"[dim]{name}[/]", "-", f"[dim]left out: {why}[/]")
    Console().print(table)


@curate_app.command("export")
def export_cmd(
    splits: Path = typer.Option(..., "--splits", help="Splits directory written by `pebr curate split`."),
    out: Path = typer.Option(
        ..., "--out", help="Output directory (new, empty, or an earlier export to replace)."
    ),
    fmt: str = typer.Option("hf", "--format", help="hf (Hub layout, Parquet), llamafactory or easyr1."),
    only: list[str] = typer.Option(
        None, "--only", help="Export only this split (repeat): perception, reasoning, hard, test."
    ),
    max_shard_size: str = typer.Option("500MB", "--max-shard-size", help="Largest Parquet shard (hf)."),
    copy_images: bool = typer.Option(
        False, "--copy-images", help="Copy images instead of hard-linking them (llamafactory, easyr1)."
    ),
    license_: str = typer.Option("other", "--license", help="License id for the dataset card."),
    pretty_name: str | None = typer.Option(None, "--pretty-name", help="Title of the dataset card."),
) -> None:
    """Export the splits as a Hugging Face dataset (Hub layout), LLaMA-Factory or EasyR1 JSON, with a card."""
    from rich.console import Console

    from curation.export import FORMATS, export
    from curation.splits_dir import ALL_SPLITS

    if fmt not in FORMATS:
        raise ValueError(f"--format must be one of {list(FORMATS)}, got {fmt!r}")
    report = export(
        splits,
        out,
        fmt=fmt,
        splits=tuple(only) if only else ALL_SPLITS,
        max_shard_size=int(max_shard_size) if max_shard_size.isdigit() else max_shard_size,
        link_images=not copy_images,
        card_options=_card_options(license_, pretty_name),
    )
    _print_splits(f"{fmt} export: {report.location}", report)
    Console().print(f"card: {Path(report.location) / (report.card or '')}")


@curate_app.command("push")
def push_cmd(
    splits: Path = typer.Option(..., "--splits", help="Splits directory written by `pebr curate split`."),
    repo_id: str = typer.Option(..., "--repo-id", help="Dataset repository, ORG/NAME."),
    private: bool = typer.Option(False, "--private", help="Create the repository private (a new one only)."),
    revision: str | None = typer.Option(None, "--revision", help="Branch to push to (created from main)."),
    only: list[str] = typer.Option(None, "--only", help="Push only this split (repeat)."),
    max_shard_size: str = typer.Option("500MB", "--max-shard-size", help="Largest Parquet shard."),
    license_: str = typer.Option("other", "--license", help="License id for the dataset card."),
    pretty_name: str | None = typer.Option(None, "--pretty-name", help="Title of the dataset card."),
) -> None:
    """Push the splits to the Hugging Face Hub with push_to_hub, then the dataset card.

    The token comes from HF_TOKEN or `hf auth login`; HF_ENDPOINT picks another Hub.
    """
    import logging

    from rich.console import Console

    from curation.hub import push_splits

    if not logging.getLogger().isEnabledFor(logging.DEBUG):
        # one INFO line per HTTP request drowns the push's own messages; --verbose shows them
        for name in ("httpx", "httpx2"):
            logging.getLogger(name).setLevel(logging.WARNING)
    from curation.splits_dir import ALL_SPLITS

    report = push_splits(
        splits,
        repo_id,
        private=private,
        revision=revision,
        splits=tuple(only) if only else ALL_SPLITS,
        max_shard_size=int(max_shard_size) if max_shard_size.isdigit() else max_shard_size,
        card_options=_card_options(license_, pretty_name, repo_id),
    )
    _print_splits(f"pushed {report.url}@{report.revision}", report.export)
    Console().print(f"data commit {report.data_commit}, card commit {report.card_commit}")
