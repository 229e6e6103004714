"""``pebr rewards``: score rollouts with a reward preset and audit presets for reward hacking."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

app = typer.Typer(no_args_is_help=True, help="Score rollouts with reward presets; audit presets for hacks.")

_SET_HELP = "Override a preset key, e.g. --set alignment.backend=caption (value parsed as YAML); repeatable."


@app.callback()
def _rewards() -> None:
    """Score rollouts with reward presets and audit presets for reward hacking."""


def _overrides(items: list[str]) -> dict[str, Any]:
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        out[key.strip()] = yaml.safe_load(value)
    return out


def _preset(name: str, sets: list[str], presets_file: Path | None):
    from rewards.presets import get_preset

    return get_preset(name, _overrides(sets) or None, path=presets_file)


@app.command("list")
def list_cmd(presets_file: Path = typer.Option(None, "--presets", help="Extra presets YAML file.")) -> None:
    """List the reward presets with their weights."""
    from rich.console import Console
    from rich.table import Table

    from rewards.presets import load_preset_configs

    table = Table("preset", "components (weight)", "description")
    for name, cfg in sorted(load_preset_configs(presets_file).items()):
        comps = ", ".join(f"{c} ({p.get('weight')})" for c, p in (cfg.get("components") or {}).items())
        table.add_row(name, comps, str(cfg.get("description") or ""))
    Console().print(table)


@app.command()
def score(
    preset: str = typer.Option(..., "--preset", "-p", help="Reward preset name (see `pebr rewards list`)."),
    input_path: Path = typer.Option(
        ..., "--input", "-i", help="Rollouts: .parquet or .jsonl (id + response)."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Output .parquet or .jsonl with reward columns."),
    data: Path = typer.Option(None, "--data", help="Records file to join by uid/qid (else columns inline)."),
    image_root: Path = typer.Option(None, "--image-root", help="Root of relative image paths."),
    workers: int = typer.Option(1, "--workers", "-w", min=1, help="Processes scoring in parallel."),
    sets: list[str] = typer.Option([], "--set", help=_SET_HELP),
    presets_file: Path = typer.Option(None, "--presets", help="Extra presets YAML file."),
) -> None:
    """(Re)score rollouts with a preset: per-component columns, total and correct."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from rewards.rescore import load_records, read_rows, score_rows, write_rows

    console = Console(stderr=True)
    chosen = _preset(preset, sets, presets_file)
    rows = read_rows(input_path)
    records = load_records(data) if data is not None else None
    with Progress(
        TextColumn("[bold]scoring[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as bar:
        task = bar.add_task("score", total=len(rows))
        out_rows, errors = score_rows(
            chosen,
            rows,
            records,
            image_root=str(image_root) if image_root else None,
            workers=workers,
            progress=lambda n: bar.advance(task, n),
        )
    write_rows(out_rows, out)
    scored = [r for r in out_rows if r["error"] is None]
    mean = sum(r["reward_total"] for r in scored) / len(scored) if scored else float("nan")
    graded = [r["correct"] for r in scored if r["correct"] is not None]
    acc = f", accuracy {sum(graded) / len(graded):.3f}" if graded else ""
    console.print(
        f"scored {len(scored)}/{len(out_rows)} rows with {preset}: mean reward {mean:.4f}{acc} -> {out}"
    )
    if errors:
        for msg in errors[:10]:
            console.print(f"[red]bad row[/] {msg}", highlight=False)
        if len(errors) > 10:
            console.print(f"[red]... and {len(errors) - 10} more (see the 'error' column of {out})[/]")
        raise typer.Exit(1)


@app.command()
def audit(
    preset: str = typer.Option(..., "--preset", "-p", help="Reward preset name."),
    data: Path = typer.Option(
        None, "--data", help="Sample records (.parquet/.jsonl); default: built-in set."
    ),
    limit: int = typer.Option(64, help="Use at most this many records from --data."),
    max_hack_reward: float = typer.Option(0.2, help="Fail when a hack's mean reward exceeds this."),
    hack_threshold: list[str] = typer.Option([], "--hack-threshold", help="Per-hack ceiling NAME=VALUE."),
    only: list[str] = typer.Option([], "--hack", help="Run only these hacks (repeatable)."),
    image_root: Path = typer.Option(None, "--image-root", help="Root of relative image paths."),
    out: Path = typer.Option(None, "--out", "-o", help="Write the JSON report here."),
    sets: list[str] = typer.Option([], "--set", help=_SET_HELP),
    presets_file: Path = typer.Option(None, "--presets", help="Extra presets YAML file."),
) -> None:
    """Run degenerate responses against a preset; exit 1 when a hack earns too much."""
    from rich.console import Console
    from rich.table import Table

    from rewards.audit import audit as run_audit
    from rewards.rescore import read_rows

    chosen = _preset(preset, sets, presets_file)
    records = None
    if data is not None:
        records = []
        for row in read_rows(data)[:limit]:
            if row.data is None:
                raise ValueError(f"{data}: {row.where}: {row.error}")
            records.append(row.data)
    thresholds = {}
    for item in hack_threshold:
        name, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--hack-threshold expects NAME=VALUE, got {item!r}")
        thresholds[name] = float(value)
    report = run_audit(
        chosen,
        records,
        max_hack_reward=max_hack_reward,
        thresholds=thresholds,
        hacks=only or None,
        image_root=str(image_root) if image_root else None,
    )
    comps = list(chosen.weights)
    table = Table(title=f"reward-hack audit of {preset} on {report.n_records} records")
    table.add_column("probe", no_wrap=True)
    for col in ("mean", "max", "worst task", "correct", "n/a", *comps):
        table.add_column(col, justify="right")
    table.add_column("verdict", no_wrap=True)

    def fmt(v: float | None) -> str:
        return "-" if v is None else f"{v:.3f}"

    for p in [*report.probes, report.control]:
        verdict = (
            "[dim]control[/]" if p is report.control else "[red]FAIL[/]" if p.flagged else "[green]ok[/]"
        )
        cells = (fmt(p.component_means.get(c)) for c in comps)
        worst = max(p.task_means.items(), key=lambda kv: kv[1], default=None)
        worst_cell = f"{worst[0]} {worst[1]:.2f}" if worst else "-"
        counts = (f"{p.n_correct}/{p.n}", str(p.n_not_applicable))
        table.add_row(p.name, fmt(p.mean), fmt(p.max), worst_cell, *counts, *cells, verdict)
    console = Console()
    console.print(table)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report.to_dict(), indent=2, default=str), encoding="utf-8")
        console.print(f"report -> {out}")
    if report.failed:
        for p in report.probes:
            if p.flagged:
                console.print(f"[red]FAIL[/] {p.name}: {p.reason}", highlight=False)
                for err in p.errors[:3]:
                    console.print(f"  {err}", highlight=False)
        console.print(f"[red]hacks that earn reward:[/] {', '.join(report.failed)}", highlight=False)
        raise typer.Exit(1)


@app.command()
def grade(
    response: str = typer.Argument(..., help="The model's response."),
    gold: str = typer.Argument(..., help="The gold answer."),
    choices: list[str] = typer.Option(
        [], "--choice", help="An option of a multiple-choice question (repeatable)."
    ),
) -> None:
    """Grade one response against a gold answer and print what was extracted and how."""
    from rich.console import Console

    from rewards.accuracy import accuracy
    from rewards.math import grade as grade_fn

    if choices:  # option letters A.. for the given options; the gold may be a letter or an option
        result = accuracy(response, {"task": "multiple_choice", "answer": gold, "choices": choices})
    else:
        result = grade_fn(response, gold)
    Console().print(result)
    raise typer.Exit(0 if result.correct else 1)
