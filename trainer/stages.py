"""The life cycle of one training stage in its own directory: skip, resume, record.

A stage directory holds

- the final model and processor (``save_pretrained``; loadable with
  :func:`trainer.vlm.load_vlm`), written when training ends;
- ``checkpoint-<step>`` directories (TRL/transformers checkpoints, for resuming);
- ``metrics.jsonl``: the trainer's log history, one JSON object per logging step (appended
  live; rewritten from the trainer's history when the stage ends);
- ``stage.json``: the stage kind, its config and config hash, ``status`` (``running`` or
  ``done``), timings, attempts and a summary.

:func:`run_stage` skips a stage whose ``stage.json`` says ``done`` with the same config,
resumes a stage left ``running`` (killed) from its last complete checkpoint, and refuses to
mix configs: a directory holding another config is an error unless ``force`` starts over.
Under ``accelerate launch`` every process takes the same decision; only the main process
writes files.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainer.config import resolved_use_cpu
from trainer.config_io import config_hash, to_dict

log = logging.getLogger(__name__)

STAGE_FILE = "stage.json"
METRICS_FILE = "metrics.jsonl"
#: Written last into a checkpoint by transformers: a checkpoint without it is incomplete.
CHECKPOINT_COMPLETE_MARKER = "trainer_state.json"
_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")


@dataclass(frozen=True)
class StageContext:
    """What a stage body gets: its directory and the checkpoint to resume from (or None)."""

    kind: str
    output_dir: Path
    resume_from: str | None
    is_main_process: bool


def read_stage(output_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The ``stage.json`` of a directory, or None."""
    path = Path(output_dir) / STAGE_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON ({exc}); remove it or rerun with --force") from exc


def is_done(output_dir: str | os.PathLike[str]) -> bool:
    """Whether the stage in ``output_dir`` finished."""
    info = read_stage(output_dir)
    return bool(info) and info.get("status") == "done"


def checkpoints(output_dir: str | os.PathLike[str]) -> list[tuple[int, Path, bool]]:
    """``(step, path, complete)`` of every ``checkpoint-<step>`` directory, by step."""
    folder = Path(output_dir)
    if not folder.is_dir():
        return []
    found = []
    for child in folder.iterdir():
        match = _CHECKPOINT_RE.match(child.name)
        if match and child.is_dir():
            found.append((int(match.group(1)), child, (child / CHECKPOINT_COMPLETE_MARKER).is_file()))
    return sorted(found)


def last_complete_checkpoint(output_dir: str | os.PathLike[str]) -> str | None:
    """The newest checkpoint that was written completely (a kill can interrupt a save)."""
    complete = [path for _, path, ok in checkpoints(output_dir) if ok]
    return str(complete[-1]) if complete else None


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def read_metrics(output_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The rows of a stage's ``metrics.jsonl``."""
    path = Path(output_dir) / METRICS_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def write_metrics(output_dir: str | os.PathLike[str], rows: Iterable[Mapping[str, Any]]) -> None:
    """Replace ``metrics.jsonl`` with ``rows`` (atomically)."""
    path = Path(output_dir) / METRICS_FILE
    tmp = path.with_suffix(".jsonl.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, default=float) + "\n")
    os.replace(tmp, path)


def metrics_callback(output_dir: str | os.PathLike[str]) -> Any:
    """A ``TrainerCallback`` appending every log to ``metrics.jsonl`` as it happens."""
    from transformers import TrainerCallback

    path = Path(output_dir) / METRICS_FILE

    class MetricsJsonl(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if state.is_world_process_zero and logs:
                row = {"step": state.global_step, "epoch": state.epoch, **logs}
                with open(path, "a", encoding="utf-8") as fh:
                    fh.write(json.dumps(row, default=float) + "\n")

    return MetricsJsonl()


def _checkpoint_step(checkpoint: str) -> int:
    match = _CHECKPOINT_RE.match(Path(checkpoint).name)
    return int(match.group(1)) if match else 0


def partial_state(cpu: bool) -> Any:
    """accelerate's process state, set up as the trainer will set it up (``cpu``: gloo
    processes; transformers re-creates the same state when the trainer starts)."""
    from accelerate import PartialState

    return PartialState(cpu=cpu)


def run_stage(
    kind: str,
    config: Any,
    body: Callable[[StageContext, Any], Mapping[str, Any]],
    *,
    prepare: Callable[[], Any] | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Run ``body`` as the stage ``kind`` in ``config.output_dir``, unless it is already done.

    ``prepare()`` (optional) runs first, when the stage is not skipped and before anything is
    written: bad input fails there and leaves no half-started stage. ``body(ctx, prepared)``
    trains (resuming from ``ctx.resume_from`` when set), saves the final model into
    ``ctx.output_dir`` and returns a summary mapping, with the trainer's log history under
    ``"log_history"`` (written to ``metrics.jsonl``). Returns the final ``stage.json``.
    """
    if not config.output_dir:
        raise ValueError(
            "output_dir is required: set it in the recipe, with --out DIR or --set output_dir=DIR"
        )
    out = Path(config.output_dir)
    digest = config_hash(config)
    state = partial_state(resolved_use_cpu(config))
    info = read_stage(out)
    if info is not None and info.get("kind") != kind and not force:
        raise ValueError(
            f"{out} holds a {info.get('kind')!r} stage, not {kind!r}; use another output directory"
        )
    if info is not None and info.get("config_hash") != digest and not force:
        raise ValueError(
            f"{out} holds a {info.get('status')} {kind} stage with a different config "
            f"(hash {info.get('config_hash')}, now {digest}); rerun with --force to start it over, "
            "or use another output directory"
        )
    if info is not None and info.get("status") == "done" and not force:
        log.info("%s: already done in %s, skipped", kind, out)
        return {**info, "skipped": True}
    if info is None and out.is_dir() and any(out.iterdir()):
        raise FileExistsError(f"{out} exists, is not empty and is not a pebr stage directory")
    prepared = prepare() if prepare is not None else None
    state.wait_for_everyone()  # every process has read the old state before the main one writes

    resume = None if force else last_complete_checkpoint(out)
    if state.is_main_process:
        if force and out.exists():
            log.warning("%s: --force, removing %s", kind, out)
            shutil.rmtree(out)
        out.mkdir(parents=True, exist_ok=True)
        for _step, path, complete in checkpoints(out):
            if not complete:
                log.warning("%s: removing incomplete checkpoint %s (interrupted while saving)", kind, path)
                shutil.rmtree(path)
        if resume is None:
            (out / METRICS_FILE).unlink(missing_ok=True)
        else:
            upto = _checkpoint_step(resume)
            write_metrics(out, [r for r in read_metrics(out) if r.get("step", 0) <= upto])
            log.info("%s: resuming from %s", kind, resume)
        previous = info if (info is not None and not force) else {}
        record = {
            "kind": kind,
            "status": "running",
            "config_hash": digest,
            "config": to_dict(config),
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "attempts": int(previous.get("attempts", 0)) + 1,
            "resumed_from": resume,
            "train_seconds": float(previous.get("train_seconds", 0.0)),
            "num_processes": state.num_processes,
        }
        _write_json(out / STAGE_FILE, record)
    state.wait_for_everyone()

    t0 = time.perf_counter()
    summary = dict(body(StageContext(kind, out, resume, state.is_main_process), prepared))
    seconds = time.perf_counter() - t0
    history = summary.pop("log_history", None)
    state.wait_for_everyone()
    record = read_stage(out) or {}
    if state.is_main_process:
        if history is not None:
            write_metrics(out, [{"step": r.get("step"), "epoch": r.get("epoch"), **r} for r in history])
        record.update(
            status="done",
            finished_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            seconds_this_attempt=round(seconds, 3),
            train_seconds=round(float(record.get("train_seconds", 0.0)) + seconds, 3),
            summary=summary,
        )
        _write_json(out / STAGE_FILE, record)
    state.wait_for_everyone()
    return read_stage(out) or record


def require(config: Any, keys: Iterable[str]) -> None:
    """Raise a ``ValueError`` for the first dotted ``key`` of ``config`` that is empty."""
    for key in keys:
        value: Any = config
        for part in key.split("."):
            value = getattr(value, part)
        if value in ("", None):
            raise ValueError(f"{key} is required: set it in the recipe or with --set {key}=...")
