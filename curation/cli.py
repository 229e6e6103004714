"""``pebr data``, ``pebr curate`` and ``pebr review``: the curation command line.

Commands import their heavy dependencies inside the function body, so ``--help`` is fast.
"""

from __future__ import annotations

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
