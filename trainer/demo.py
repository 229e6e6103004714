"""The main job on the embedded default data: what ``make demo`` / ``pebr demo`` runs.

Every step writes into its own directory under ``out`` and is skipped when its output is
already complete, so a second run takes seconds::

    out/
      data/        synthetic Mulberry-shaped data (pebr data synth)
      filter/      the SFT set filtered: kept.json / kept.parquet / dropped.parquet (pebr curate filter)
      pool/        the RL pool through the same filter (a canonical Parquet in, the funnel out)
      train/       pebr train pipeline --config trainer/recipes/demo.yaml: base_model, sft,
                   difficulty, splits, stage1, stage2
      eval/        pebr eval of the SFT model and of the final model on the held-out test split
      hf/          the splits as a Hugging Face dataset with its card (pebr curate export)
      summary.json what each step produced

The same steps, run by hand, are the commands in README.md.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: Sizes of the demo: small enough for a 2-core CPU, large enough to show every stage.
DEMO_SFT = 2000
DEMO_RL = 1000
DEMO_TEST = 200
#: Held-out questions each evaluated model answers, and their answer budget.
DEMO_EVAL_QUESTIONS = 100
DEMO_EVAL_MAX_NEW_TOKENS = 384
DEMO_RECIPE = Path(__file__).parent / "recipes" / "demo.yaml"


def _step(name: str) -> None:
    log.info("[bold]%s[/]", name, extra={"markup": True})


def run_demo(
    out: Path,
    *,
    seed: int = 0,
    recipe: Path = DEMO_RECIPE,
    sizes: tuple[int, int, int] = (DEMO_SFT, DEMO_RL, DEMO_TEST),
    eval_questions: int = DEMO_EVAL_QUESTIONS,
    eval_max_new_tokens: int = DEMO_EVAL_MAX_NEW_TOKENS,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Synthetic data -> filter -> SFT -> difficulty -> splits -> stage 1 -> stage 2 -> eval ->
    Hugging Face export with a data card. Returns (and writes) a summary.

    ``recipe``, ``sizes`` (SFT, RL, test records), the evaluation budget and config
    ``overrides`` exist for tests (the smoke recipe); ``pebr demo`` uses the defaults."""
    from curation.filter_config import FilterConfig
    from curation.filter_pipeline import filter_dataset
    from curation.synth import generate_dataset
    from trainer.config import PipelineConfig
    from trainer.config_io import deep_merge, load_config
    from trainer.pipeline import run_pipeline

    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"out": str(out), "seed": seed}

    data = out / "data"
    _step(f"1/6 synthetic data -> {data}")
    n_sft, n_rl, n_test = sizes
    synth = generate_dataset(data, sft=n_sft, rl=n_rl, test=n_test, seed=seed)
    summary["data"] = {k: synth[k] for k in ("counts", "defects") if k in synth}

    _step(f"2/6 filter the SFT set and the RL pool -> {out / 'filter'}, {out / 'pool'}")
    # verify_images: training decodes every image, so a truncated file that Pillow can open
    # (the reference filter keeps those) must be dropped here, not crash an SFT step
    sft_filter = filter_dataset(data / "sft.json", data, out / "filter", FilterConfig(verify_images=True))
    # the RL pool is pebr's canonical Parquet: the same stages, and its report is the funnel
    # the data card shows for the exported splits
    pool_filter = filter_dataset(data / "rl.parquet", data, out / "pool", FilterConfig(verify_images=True))
    summary["filter"] = {
        name: {"records": r.records, "kept": r.kept, "dropped": {k: v for k, v in r.dropped.items() if v}}
        for name, r in (("sft", sft_filter), ("rl_pool", pool_filter))
    }

    train = out / "train"
    _step(f"3/6 SFT, difficulty, splits, stage 1, stage 2 ({Path(recipe).name}) -> {train}")
    paths: dict[str, Any] = {
        "sft": {"seed": seed, "data": {"train": str(out / "filter" / "kept.parquet")}},
        "difficulty": {
            "pool": str(out / "pool" / "kept.parquet"),
            "image_root": str(data),
            "test": str(data / "test.parquet"),
        },
        "splits": {"filter_report": str(out / "pool" / "report.json")},
    }
    config = load_config(
        PipelineConfig, recipe, overrides=deep_merge(paths, overrides or {}), source="pebr demo"
    )
    summary["pipeline"] = run_pipeline(config, train)

    _step(f"4/6 evaluate the SFT and the final model on the held-out test split -> {out / 'eval'}")
    summary["eval"] = _evaluate(
        train,
        data / "test.parquet",
        out / "eval",
        seed=seed,
        questions=eval_questions,
        max_new_tokens=eval_max_new_tokens,
    )

    _step(f"5/6 export the splits as a Hugging Face dataset -> {out / 'hf'}")
    from curation.export import export_hf

    export = export_hf(train / "splits", out / "hf")
    summary["export"] = {
        "location": export.location,
        "splits": {s.name: s.rows for s in export.splits},
        "skipped": export.skipped,
    }

    _step(f"6/6 summary -> {out / 'summary.json'}")
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
    return summary


def _final_model(train: Path) -> Path:
    """The last trained stage's model directory (stage 2, else stage 1, else SFT)."""
    for stage in ("stage2", "stage1", "sft"):
        if (train / stage / "config.json").is_file():
            return train / stage
    raise FileNotFoundError(f"no trained model under {train}")


def _evaluate(
    train: Path, test: Path, out: Path, *, seed: int, questions: int, max_new_tokens: int
) -> dict[str, Any]:
    from trainer.evaluate import EvalConfig, evaluate

    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    for name, model in (("sft", train / "sft"), ("final", _final_model(train))):
        report_path = out / f"{name}.json"
        if report_path.is_file() and json.loads(report_path.read_text()).get("model") == str(model):
            report = json.loads(report_path.read_text())
        else:
            config = EvalConfig(
                model=str(model),
                data=str(test),
                preset="pebr_stage2",
                max_samples=questions,
                max_new_tokens=max_new_tokens,
                seed=seed,
            )
            report = evaluate(config, report_path)
        results[name] = {
            "model": str(model),
            "accuracy": report.get("accuracy"),
            "components": report.get("components"),
            "report": str(report_path),
        }
    return results


def summary_table(summary: dict[str, Any]) -> Any:
    """A rich table of what the demo produced, for the end of ``pebr demo``."""
    from rich.table import Table

    table = Table(title=f"pebr demo: {summary['out']}", show_header=True)
    table.add_column("step")
    table.add_column("result")

    def drops(d: dict[str, int]) -> str:
        return ", ".join(f"{k} {v}" for k, v in d.items() if v) or "none"

    counts = summary.get("data", {}).get("counts", {})
    table.add_row("synthetic data", ", ".join(f"{k} {v}" for k, v in counts.items()))
    for name, rep in summary.get("filter", {}).items():
        table.add_row(
            f"filter ({name})", f"kept {rep['kept']} of {rep['records']}; dropped: {drops(rep['dropped'])}"
        )
    steps = summary.get("pipeline", {})
    for name in ("sft", "difficulty", "splits", "stage1", "rebucket", "stage2"):
        step = steps.get(name)
        if not step:
            continue
        parts = [str(step.get("status"))]
        if "global_step" in step:
            parts.append(f"{step['global_step']} steps")
        if "rollouts_new" in step:
            parts.append(f"{step['rollouts_new']} rollouts")
        if "counts" in step:
            parts.append(", ".join(f"{k} {v}" for k, v in step["counts"].items()))
        if step.get("reason"):
            parts.append(str(step["reason"]))
        for key in ("train_seconds", "seconds"):
            if step.get(key) is not None:
                parts.append(f"{float(step[key]):.0f} s")
        table.add_row(name, "; ".join(parts))

    def num(x: Any) -> str:
        return f"{x:.3f}" if isinstance(x, float) else str(x)

    for name, rep in summary.get("eval", {}).items():
        comps = rep.get("components") or {}
        table.add_row(
            f"eval ({name})",
            f"accuracy {num(rep.get('accuracy'))}, format {num(comps.get('format'))} ({rep['report']})",
        )
    export = summary.get("export")
    if export:
        table.add_row(
            "export", f"{export['location']}: " + ", ".join(f"{k} {v}" for k, v in export["splits"].items())
        )
    return table
