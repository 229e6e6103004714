"""``pebr explore``: the Streamlit explorer of rollouts, reward components and buckets."""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True, help="Inspect rollouts, reward components and buckets in a browser.")


@app.callback()
def _explore() -> None:
    """Inspect rollouts, reward components and buckets in a Streamlit app."""
