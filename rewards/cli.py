"""``pebr rewards``: score rollouts with a reward preset and audit presets for reward hacking."""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True, help="Score rollouts with reward presets; audit presets for hacks.")


@app.callback()
def _rewards() -> None:
    """Score rollouts with reward presets and audit presets for reward hacking."""
