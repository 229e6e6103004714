"""The whole recipe in one run directory: SFT, difficulty, splits, stage 1, (re-bucket), stage 2.

::

    RUN_DIR/
      base_model/    the tiny model, when model.path is "tiny:nano" or "tiny:small"
      sft/           SFT stage (trainer.sft)            <- model.path, sft.data.train
      difficulty/    rollouts of the RL pool by the SFT model (curation.difficulty)
      splits/        perception / reasoning / hard splits (curation.splits)
      stage1/        GRPO on splits/perception.parquet  <- sft/
      rebucket/      optional: the reasoning pool re-scored by stage1/, re-split
      stage2/        GRPO on the reasoning split         <- stage1/
      pipeline.json  the resolved config and each step's outcome

Each step reads the previous step's directory. Training stages are skipped when done and
resumed from their last checkpoint when killed (:func:`trainer.stages.run_stage`); the
scoring steps are skipped when their output exists. ``splits.from_dir`` uses ready splits
instead of scoring.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

from trainer.config import DifficultyConfig, PipelineConfig, replace
from trainer.config_io import to_dict

log = logging.getLogger(__name__)

TINY_PREFIX = "tiny:"
PIPELINE_FILE = "pipeline.json"
STEPS = ("sft", "difficulty", "splits", "stage1", "rebucket", "stage2")
PERCEPTION_SPLIT = "perception.parquet"
REASONING_SPLIT = "reasoning.parquet"


def _state() -> Any:
    import torch

    from trainer.stages import partial_state

    return partial_state(cpu=not torch.cuda.is_available())


def resolve_base_model(config: PipelineConfig, out: Path) -> str:
    """``model.path``, or the directory of the tiny model a ``tiny:<preset>`` path names (built
    once, on the main process; its tokenizer corpus is the synthetic data next to the SFT data
    or the RL pool, the directory holding sft.json / rl.json, when there is one)."""
    path = config.model.path
    if not path:
        raise ValueError("model.path is required: a model directory, a Hub id, or tiny:nano / tiny:small")
    if not path.startswith(TINY_PREFIX):
        return path
    from trainer.tiny import build_tiny_vlm

    preset = path[len(TINY_PREFIX) :]
    target = out / "base_model"
    data_dir = _tokenizer_corpus_dir(config)
    state = _state()
    if state.is_main_process:
        build_tiny_vlm(target, preset=preset, data_dir=data_dir, seed=config.sft.seed)
    state.wait_for_everyone()
    return str(target)


def _tokenizer_corpus_dir(config: PipelineConfig) -> Path | None:
    """The synthetic data directory (holding sft.json / rl.json) behind the SFT data or the RL
    pool: their own directory, the input of the ``pebr curate filter`` run that wrote them
    (its report.json), or the pool's image root."""
    dirs: list[Path] = []
    for p in (config.sft.data.train, config.difficulty.pool):
        if not p:
            continue
        parent = Path(p).parent
        dirs.append(parent)
        report = parent / "report.json"
        if report.is_file():
            try:
                source = json.loads(report.read_text(encoding="utf-8")).get("input")
            except (OSError, ValueError, AttributeError):
                source = None
            if isinstance(source, str):
                dirs.append(Path(source).parent)
    if config.difficulty.image_root:
        dirs.append(Path(config.difficulty.image_root))
    found = next((d for d in dirs if any((d / n).is_file() for n in ("sft.json", "rl.json"))), None)
    if found is None:
        log.info(
            "no synthetic data next to the SFT data or the pool: the tiny tokenizer trains on its built-in corpus"
        )
    else:
        log.info("tiny tokenizer corpus: %s", found)
    return found


def _write_summary(out: Path, config: PipelineConfig, steps: dict[str, Any]) -> None:
    if _state().is_main_process:
        data = {"config": to_dict(config), "steps": steps, "updated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        (out / PIPELINE_FILE).write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")


def run_pipeline(config: PipelineConfig, out: str | Path, *, force: tuple[str, ...] = ()) -> dict[str, Any]:
    """Run every step of the recipe under ``out`` (see the module docstring).

    ``force`` names steps to start over (``sft``, ``stage1``, ``stage2``...).
    Returns ``{step: outcome}``.
    """
    from trainer.grpo import run_grpo
    from trainer.sft import run_sft

    unknown = set(force) - set(STEPS)
    if unknown:
        raise ValueError(f"unknown pipeline step(s) {sorted(unknown)}; steps: {list(STEPS)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    steps: dict[str, Any] = {}
    base = resolve_base_model(config, out)
    model = replace(config.model, path=base)

    if config.skip_sft:
        sft_dir = base
        steps["sft"] = {"status": "skipped", "reason": "skip_sft", "model": base}
    else:
        sft_cfg = replace(config.sft, output_dir=str(out / "sft"), model=model)
        steps["sft"] = _stage_outcome(run_sft(sft_cfg, force="sft" in force))
        sft_dir = sft_cfg.output_dir
    _write_summary(out, config, steps)

    if config.splits.from_dir:
        splits_dir = Path(config.splits.from_dir)
        steps["difficulty"] = steps["splits"] = {
            "status": "skipped",
            "reason": f"splits.from_dir={splits_dir}",
        }
    else:
        splits_dir = score_and_split(config, sft_dir, out, steps, force)
    for name in (PERCEPTION_SPLIT, REASONING_SPLIT):
        if not (splits_dir / name).is_file():
            raise FileNotFoundError(f"split {splits_dir / name} does not exist")
    _write_summary(out, config, steps)

    s1 = replace(
        config.stage1,
        output_dir=str(out / "stage1"),
        model=replace(model, path=sft_dir),
        data={"train": str(splits_dir / PERCEPTION_SPLIT)},
    )
    stage1_dir = s1.output_dir
    if _rows(splits_dir / PERCEPTION_SPLIT):
        steps["stage1"] = _stage_outcome(run_grpo(s1, stage="stage1", force="stage1" in force))
    else:
        # a weak warm-up model solves nothing 8/8: there is no easy bucket to train on
        log.warning("stage1: the perception split is empty; stage 2 starts from the SFT model")
        steps["stage1"] = {"status": "skipped", "reason": "the perception (easy) split is empty"}
        stage1_dir = sft_dir
    _write_summary(out, config, steps)

    reasoning = splits_dir / REASONING_SPLIT
    if config.rebucket.enabled and stage1_dir != sft_dir:
        reasoning = rebucket(config, stage1_dir, splits_dir, out, steps, force)
        _write_summary(out, config, steps)
    else:
        why = "rebucket.enabled is false" if not config.rebucket.enabled else "stage 1 did not run"
        steps["rebucket"] = {"status": "skipped", "reason": why}

    s2 = replace(
        config.stage2,
        output_dir=str(out / "stage2"),
        model=replace(model, path=stage1_dir),
        data={"train": str(reasoning)},
    )
    if _rows(reasoning):
        steps["stage2"] = _stage_outcome(run_grpo(s2, stage="stage2", force="stage2" in force))
    else:
        log.warning("stage2: the reasoning split is empty; nothing to train")
        steps["stage2"] = {"status": "skipped", "reason": "the reasoning (medium) split is empty"}
    _write_summary(out, config, steps)
    return steps


def _rows(split: Path) -> int:
    import pyarrow.parquet as pq

    return pq.ParquetFile(split).metadata.num_rows


def _stage_outcome(info: dict[str, Any]) -> dict[str, Any]:
    return {
        "status": "skipped (done before)" if info.get("skipped") else info.get("status"),
        "global_step": (info.get("summary") or {}).get("global_step"),
        "train_seconds": info.get("train_seconds"),
        "resumed_from": info.get("resumed_from"),
    }


def _engine(config: DifficultyConfig, model_dir: str) -> Any:
    import torch

    from curation.engines import make_engine

    options = dict(config.options)
    if config.backend == "replay":
        # rollouts produced elsewhere (a PeBR rollout_results.jsonl, ...): no model is loaded
        from curation.engines import ReplayColumns

        path = options.pop("path", None)
        if not path:
            raise ValueError("difficulty.backend 'replay' needs difficulty.options.path (the rollout file)")
        columns = ReplayColumns(**options.pop("columns", {}))
        return make_engine("replay", path, replay_columns=columns, **options)
    device = "cuda" if torch.cuda.is_available() else None
    return make_engine(config.backend, model_dir, batch_size=config.batch_size, device=device, **options)


def _score(
    config: DifficultyConfig,
    data: str,
    image_root: str | None,
    model_dir: str,
    run_dir: Path,
    rule: dict[str, Any] | None = None,
) -> dict:
    """Score ``data`` with ``model_dir`` into ``run_dir`` (main process only; resumable: stored
    rollouts are skipped, so a rerun of a finished scoring only reads)."""
    from curation.difficulty import AdaptiveConfig, BucketRule, score_dataset
    from curation.engines import SamplingParams

    sampling = SamplingParams(
        n=config.n,
        temperature=config.temperature,
        top_p=config.top_p,
        max_new_tokens=config.max_new_tokens,
        seed=config.seed,
    )
    report = score_dataset(
        data,
        _engine(config, model_dir),
        run_dir,
        sampling=sampling,
        preset=config.preset,
        # adaptive sampling stops each question once the splits' bucket rule decides it
        adaptive=AdaptiveConfig(rule=BucketRule(**{**rule, "n": config.n}) if rule else None)
        if config.adaptive
        else None,
        batch_size=config.batch_size,
        image_root=image_root,
        command="pebr train pipeline",
        test_path=_held_out(config),
    )
    return report.to_dict()


def _held_out(config: DifficultyConfig) -> str | None:
    """The held-out split recorded with the splits: ``difficulty.test``, else ``test.parquet``
    next to the pool (the pool itself may be scored through a ``max_questions`` slice)."""
    if config.test:
        return config.test
    sibling = Path(config.pool).with_name("test.parquet") if config.pool else None
    return str(sibling) if sibling is not None and sibling.is_file() else None


def _head(source: str, n: int, target: Path) -> None:
    """The first ``n`` records of ``source`` as ``target`` (rewritten only when they change)."""
    from curation.schema import read_parquet, write_parquet

    table = read_parquet(source).slice(0, n)
    if target.is_file() and read_parquet(str(target)).equals(table):
        return  # keep the file the run was scored on
    target.parent.mkdir(parents=True, exist_ok=True)
    write_parquet(table, str(target))


def _split(
    run_dir: Path,
    out_dir: Path,
    rule: dict[str, Any],
    model_id: str | None = None,
    filter_report: str | None = None,
    n: int | None = None,
) -> dict:
    """Build the splits; a ``rule`` that does not name ``n`` gets the scoring's ``n``."""
    from curation.difficulty import BucketRule
    from curation.splits import build_splits

    bucket_rule = BucketRule(**{**({"n": n} if n else {}), **rule}) if rule else None
    return build_splits(
        run_dir, out_dir, bucket_rule, model_id, command="pebr train pipeline", filter_report=filter_report
    ).to_dict()


def _main_only(fn: Any) -> Any:
    """Run ``fn()`` on the main process while the others wait; return its result everywhere
    (read back from disk by the caller)."""
    state = _state()
    result = fn() if state.is_main_process else None
    state.wait_for_everyone()
    return result


def score_and_split(
    config: PipelineConfig, model_dir: str, out: Path, steps: dict[str, Any], force: tuple[str, ...]
) -> Path:
    """Difficulty-score the RL pool with ``model_dir`` (curation.difficulty) and build the
    splits (curation.splits) into ``out/difficulty`` and ``out/splits``."""
    from trainer.data import resolve_image_root

    cfg = config.difficulty
    if not cfg.pool:
        raise ValueError(
            "difficulty.pool is required (the RL questions), or give ready splits: splits.from_dir"
        )
    run_dir, splits_dir = out / "difficulty", out / "splits"
    if "difficulty" in force and _state().is_main_process:
        shutil.rmtree(run_dir, ignore_errors=True)
    root = resolve_image_root(cfg.pool, cfg.image_root)
    pool = cfg.pool
    if cfg.max_questions is not None:
        pool = str(run_dir / "pool.parquet")
        _main_only(lambda: _head(cfg.pool, cfg.max_questions, Path(pool)))
    scored = _main_only(lambda: _score(cfg, pool, root, model_dir, run_dir, config.splits.rule))
    split = _main_only(
        lambda: _split(
            run_dir,
            splits_dir,
            config.splits.rule,
            filter_report=config.splits.filter_report,
            n=config.difficulty.n,
        )
    )
    if scored is not None:
        steps["difficulty"] = {
            "status": "done",
            "model_id": scored["model_id"],
            # PeBR's all-or-none buckets of the scores; "splits" holds the configured rule's
            "buckets_all_or_none": scored["buckets"],
            "rollouts_new": scored["rollouts_new"],
            "seconds": scored["seconds"],
        }
        steps["splits"] = {"status": "done", "counts": split["counts"], "dir": str(splits_dir)}
    return splits_dir


def rebucket(
    config: PipelineConfig,
    model_dir: str,
    splits_dir: Path,
    out: Path,
    steps: dict[str, Any],
    force: tuple[str, ...],
) -> Path:
    """Re-score with the stage-1 model and rebuild the stage-2 split; returns its path.

    ``scope="reasoning"`` scores the reasoning split's questions into ``out/rebucket/run``;
    ``scope="pool"`` scores the whole pool into the difficulty run (keyed by model, so the SFT
    model's rollouts stay and the report shows how questions moved).
    """
    from trainer.data import resolve_image_root

    cfg = config.difficulty
    target = out / "rebucket"
    if "rebucket" in force and _state().is_main_process:
        shutil.rmtree(target, ignore_errors=True)
    if config.rebucket.scope == "reasoning":
        data = str(splits_dir / REASONING_SPLIT)
        run_dir = target / "run"
    else:
        if not cfg.pool:
            raise ValueError("rebucket.scope 'pool' needs difficulty.pool")
        data, run_dir = cfg.pool, out / "difficulty"
    root = resolve_image_root(data, None if config.rebucket.scope == "reasoning" else cfg.image_root)
    scored = _main_only(lambda: _score(cfg, data, root, model_dir, run_dir))
    split = _main_only(
        lambda: _split(
            run_dir,
            target / "splits",
            config.splits.rule,
            scored["model_id"] if scored else None,
            filter_report=config.splits.filter_report,
            n=config.difficulty.n,
        )
    )
    if scored is not None:
        steps["rebucket"] = {
            "status": "done",
            "scope": config.rebucket.scope,
            "model_id": scored["model_id"],
            "counts": split["counts"],
            "transitions": split.get("transitions"),
        }
    return target / "splits" / REASONING_SPLIT
