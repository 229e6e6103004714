"""``pebr data``, ``pebr curate`` and ``pebr review``: the curation command line.

Commands import their heavy dependencies inside the function body, so ``--help`` is fast.
"""

from __future__ import annotations

from pathlib import Path

import typer

from curation.engines import DEFAULT_MAX_NEW_TOKENS, DEFAULT_N, DEFAULT_TEMPERATURE, DEFAULT_TOP_P

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


def _command_line(ctx: typer.Context) -> str:
    """The command as a shell line with every option's value (recorded in run.json)."""
    import shlex

    parts = ctx.command_path.split()
    parts[0] = "pebr"
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if value is None or not param.opts:
            continue
        flag = param.opts[0]
        if isinstance(value, bool):
            if getattr(param, "secondary_opts", None):
                parts.append(flag if value else param.secondary_opts[0])
            elif value:
                parts.append(flag)
            continue
        parts += [flag, str(value)]
    return shlex.join(parts)


@curate_app.command("score")
def score_cmd(
    ctx: typer.Context,
    data: Path = typer.Option(..., "--data", help="RL questions: canonical .parquet, or PeBR GRPO .json."),
    model: Path = typer.Option(
        ..., "--model", help="Model directory (transformers, vllm) or rollout file to replay (replay)."
    ),
    out: Path = typer.Option(..., "--out", help="Run directory: run.json and rollouts/ shards."),
    backend: str = typer.Option("transformers", "--backend", help="transformers | vllm | replay."),
    n: int = typer.Option(DEFAULT_N, "--n", help="Rollouts per question (PeBR: 8)."),
    temperature: float = typer.Option(
        DEFAULT_TEMPERATURE, "--temperature", help="Sampling temperature (PeBR: 1.2)."
    ),
    top_p: float = typer.Option(DEFAULT_TOP_P, "--top-p", help="Nucleus sampling (PeBR: 0.99)."),
    max_new_tokens: int = typer.Option(
        DEFAULT_MAX_NEW_TOKENS, "--max-new-tokens", help="Response token budget."
    ),
    seed: int = typer.Option(0, "--seed", help="Base seed of the sampling."),
    preset: str = typer.Option("pebr_sample", "--preset", help="Reward preset that scores each rollout."),
    adaptive: bool = typer.Option(
        False,
        "--adaptive/--fixed",
        help="Stop a question as soon as the bucket rule decides it (PeBR's rule: one correct and one "
        "incorrect answer); its bucket is the one n samples give.",
    ),
    rule: str = typer.Option(
        "pebr", "--rule", help="--adaptive: the bucket rule it stops by (split with the same rule)."
    ),
    easy_min: float = typer.Option(
        1.0, "--easy-min", help="--rule thresholds: pass rate at or above which easy."
    ),
    hard_max: float = typer.Option(
        0.0, "--hard-max", help="--rule thresholds: pass rate at or below which hard."
    ),
    adaptive_rounds: str = typer.Option(
        "2,1", "--adaptive-rounds", help="Samples per adaptive round; the last size repeats up to n."
    ),
    batch_size: int = typer.Option(8, "--batch-size", help="Questions per engine call (and per shard)."),
    test: Path | None = typer.Option(
        None,
        "--test",
        help="Held-out split carried along with the splits (default: test.parquet next to --data).",
    ),
    image_root: Path | None = typer.Option(
        None, "--image-root", help="Image root (default: the data's folder)."
    ),
    device: str | None = typer.Option(None, "--device", help="transformers: cpu, cuda, cuda:1, ..."),
    model_id: str | None = typer.Option(
        None, "--model-id", help="Override the model id (default: a fingerprint)."
    ),
    replay_scores: bool = typer.Option(
        False, "--replay-scores", help="replay: trust the file's score.accuracy instead of rescoring."
    ),
    id_column: str = typer.Option("qid", "--id-column", help="replay: the question id field."),
    response_column: str = typer.Option("response", "--response-column", help="replay: the response field."),
    index_column: str | None = typer.Option(None, "--index-column", help="replay: a sample index field."),
) -> None:
    """Sample each question n times, score every rollout, store them all (resumable)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from curation.difficulty import AdaptiveConfig, BucketRule, score_dataset
    from curation.engines import ReplayColumns, SamplingParams, make_engine

    try:
        rounds = tuple(int(x) for x in adaptive_rounds.split(",") if x.strip())
    except ValueError as exc:
        raise ValueError(
            f"--adaptive-rounds must be comma-separated integers, got {adaptive_rounds!r}"
        ) from exc
    sampling = SamplingParams(
        n=n, temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens, seed=seed
    )
    engine = make_engine(
        backend,
        model,
        batch_size=batch_size,
        device=device,
        model_id=model_id,
        replay_columns=ReplayColumns(id=id_column, response=response_column, sample_index=index_column),
    )
    console = Console(stderr=True)
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:.1f} rollouts/s"),
        TimeElapsedColumn(),
        console=console,
    ) as bar:
        task = bar.add_task(f"round 1 ({engine.model_id})", total=None, rate=0.0)

        def on_progress(p) -> None:
            bar.update(
                task,
                completed=p.done,
                total=p.total,
                rate=p.rollouts_per_second,
                description=f"round {p.round} ({engine.model_id})",
            )

        report = score_dataset(
            data,
            engine,
            out,
            sampling=sampling,
            preset=preset,
            adaptive=AdaptiveConfig(
                rounds, BucketRule(rule, n, easy_min, hard_max) if rule != "pebr" else None
            )
            if adaptive
            else None,
            batch_size=batch_size,
            image_root=str(image_root) if image_root else None,
            progress=on_progress,
            trust_replayed_scores=replay_scores,
            test_path=test,
            command=_command_line(ctx),
        )
    out_console = Console()
    out_console.print(
        f"{report.model_id}: {report.questions} questions, {report.rollouts_new} new rollouts "
        f"({report.rollouts_per_second:.2f}/s), {report.rollouts_stored} stored"
    )
    if report.adaptive:
        out_console.print(
            f"adaptive: {report.rollouts_stored} rollouts instead of {report.fixed_equivalent} "
            f"({report.saved_fraction:.1%} saved)"
        )
    out_console.print("buckets: " + ", ".join(f"{b} {k}" for b, k in report.buckets.items()))
    for note in report.notes:
        out_console.print(f"[yellow]{note}[/]")
    out_console.print(f"run directory: {report.run_dir}")


@curate_app.command("split")
def split_cmd(
    ctx: typer.Context,
    out: Path = typer.Option(..., "--out", help="Directory for the splits (or PeBR's three JSON files)."),
    run: Path | None = typer.Option(None, "--run", help="A run directory of `pebr curate score`."),
    rollouts: Path | None = typer.Option(
        None, "--rollouts", help="--format pebr: PeBR rollout_results.jsonl."
    ),
    dataset: Path | None = typer.Option(None, "--dataset", help="--format pebr: pebr_grpo_dataset.json."),
    fmt: str = typer.Option(
        "pebr", "--format", help="With --rollouts: pebr (easycase/mediumcase/hardcase.json)."
    ),
    rule: str = typer.Option(
        "pebr", "--rule", help="pebr (all/none/some correct) or thresholds (pass rate)."
    ),
    easy_min: float = typer.Option(1.0, "--easy-min", help="thresholds: pass rate at or above which easy."),
    hard_max: float = typer.Option(0.0, "--hard-max", help="thresholds: pass rate at or below which hard."),
    n: int | None = typer.Option(None, "--n", help="Rollouts per question (default: the run's n; PeBR: 8)."),
    model_id: str | None = typer.Option(
        None, "--model-id", help="Whose buckets (default: the latest scored)."
    ),
    previous_model_id: str | None = typer.Option(
        None,
        "--previous-model-id",
        help="Report transitions from this model (default: the one scored before).",
    ),
    irregular: str = typer.Option(
        "reference", "--irregular", help="--format pebr: qids with != n rollouts: reference | exclude | rate."
    ),
    filter_report: Path | None = typer.Option(
        None, "--filter-report", help="report.json of `pebr curate filter` (shown as the card's funnel)."
    ),
) -> None:
    """Perception (easy) / reasoning (medium) / hard splits from a run, or PeBR's JSON files."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if rollouts is not None or dataset is not None:
        if run is not None:
            raise ValueError("give either --run, or --rollouts with --dataset, not both")
        if rollouts is None or dataset is None:
            raise ValueError("--format pebr needs both --rollouts and --dataset")
        if fmt != "pebr":
            raise ValueError(f"--format must be 'pebr' with --rollouts, got {fmt!r}")
        from curation.pebr_compat import REPORT_NAME, PebrCompatConfig, split_pebr

        report = split_pebr(rollouts, dataset, out, PebrCompatConfig(n=n or 8, irregular=irregular))
        for line in report.summary_lines():
            console.print(line, highlight=False)
        console.print(
            f"wrote {', '.join(Path(p).name for p in report.outputs.values())} and {REPORT_NAME} to {out}"
        )
        return
    if run is None:
        raise ValueError("give --run RUN_DIR (or --rollouts and --dataset for PeBR's format)")
    from curation.difficulty import BucketRule, read_run
    from curation.splits import REPORT_FILE, build_splits

    run_info = read_run(run)
    chosen = model_id or run_info.get("latest_model_id")
    default_n = int(run_info.get("scorings", {}).get(chosen, {}).get("n", 8))
    bucket_rule = BucketRule(kind=rule, n=n or default_n, easy_min=easy_min, hard_max=hard_max)
    report = build_splits(
        run,
        out,
        bucket_rule,
        model_id,
        previous_model_id=previous_model_id,
        command=_command_line(ctx),
        filter_report=filter_report,
    )
    table = Table(title=f"buckets of {report.model_id}")
    table.add_column("bucket")
    table.add_column("questions", justify="right")
    for b, k in report.counts.items():
        table.add_row(b, str(k))
    console.print(table)
    if report.transitions:
        moved = Table(title=f"transitions from {report.previous_model_id}")
        for col in ("from", "to", "questions"):
            moved.add_column(col)
        for t in report.transitions:
            moved.add_row(t["from_bucket"], t["to_bucket"], str(t["questions"]))
        console.print(moved)
    console.print(
        f"wrote {', '.join(Path(p).name for p in report.outputs.values())} and {REPORT_FILE} to {out}"
    )


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
    bar = Progress(
        TextColumn("[bold]checking records and images"),
        BarColumn(),
        TextColumn("{task.fields[records]:,} records"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )
    task = bar.add_task("filter", total=1.0, records=0)

    def on_progress(records: int, fraction: float) -> None:
        # started at the first result, once the worker processes exist: the bar's refresh
        # thread would otherwise make the filter start its workers with spawn, not fork
        if not bar.live.is_started:
            bar.start()
        bar.update(task, completed=fraction, records=records)

    try:
        report = filter_dataset(input, image_root, out, cfg, progress=on_progress)
    finally:
        bar.stop()

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
