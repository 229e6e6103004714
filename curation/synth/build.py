"""Build the whole dataset: plan the splits, generate records in parallel, write the files.

Re-running with the same parameters into a complete output directory returns the saved
report without work. Different parameters into a directory that holds only files this
generator writes regenerate it cleanly (the old files are removed first); a directory holding
anything else is refused with ``FileExistsError``, so no user file is ever deleted.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from curation.synth.config import GENERATOR_VERSION, SynthConfig
from curation.synth.defects import plan_defects
from curation.synth.records import GENERATOR, Spec, build_chunk, build_item, stream

log = logging.getLogger(__name__)

REPORT = "synth_report.json"
FILES = {
    "sft": "sft.json",
    "sft_manifest": "sft_manifest.jsonl",
    "rl_json": "rl.json",
    "rl_parquet": "rl.parquet",
    "test_parquet": "test.parquet",
    "images": "images",
}
OWNED = {*FILES.values(), REPORT, REPORT + ".tmp"}
#: Below this many records one process is faster than starting workers.
PARALLEL_MIN_RECORDS = 1500
MAX_AUTO_WORKERS = 8
#: Re-draws allowed for one record whose scene collides with a forbidden one.
MAX_REDRAWS = 50
JSON_INDENT = 2


def task_plan(n: int, cfg: SynthConfig, seed: int, split: str) -> list[str]:
    """Exact task counts by largest remainder of ``cfg.task_weights``, in a shuffled order."""
    weights = [(t, w) for t, w in cfg.task_weights if w > 0]
    total = sum(w for _, w in weights)
    quotas = [n * w / total for _, w in weights]
    counts = [math.floor(q) for q in quotas]
    by_remainder = sorted(range(len(weights)), key=lambda i: (-(quotas[i] - counts[i]), i))
    for i in by_remainder[: n - sum(counts)]:
        counts[i] += 1
    tasks = [t for (t, _), c in zip(weights, counts, strict=True) for _ in range(c)]
    stream(seed, "tasks", split).shuffle(tasks)
    return tasks


def generate_dataset(
    out_dir: str | os.PathLike[str],
    *,
    sft: int,
    rl: int,
    test: int,
    seed: int = 0,
    config: SynthConfig | None = None,
    workers: int | None = None,
) -> dict[str, Any]:
    """Generate the synthetic Mulberry-shaped dataset into ``out_dir``; return its summary.

    Writes ``sft.json`` + ``sft_manifest.jsonl`` (SFT set with defects), ``rl.json`` +
    ``rl.parquet`` (RL question pool), ``test.parquet`` (held-out split), ``images/`` and
    ``synth_report.json`` (the returned summary). Outputs are byte-identical for the same
    parameters whatever ``workers`` is. ``workers=None`` builds in this process; more workers
    are spawned processes (see :func:`auto_workers` for the guard a calling script needs).

    Example::

        >>> summary = generate_dataset("data/synth", sft=200, rl=100, test=50, seed=0)
        >>> summary["defects"]["reflective"]
        6
    """
    cfg = config or SynthConfig()
    for name, value in (("sft", sft), ("rl", rl), ("test", test), ("seed", seed)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    out = Path(out_dir)
    params = {
        "sft": sft,
        "rl": rl,
        "test": test,
        "seed": seed,
        "version": GENERATOR_VERSION,
        "config": cfg.to_json(),
    }
    saved = _saved_summary(out, params)
    if saved is not None:
        log.info("%s already holds this dataset (same parameters); reusing it", out)
        return saved
    _clear(out)
    started = time.perf_counter()

    sft_tasks = task_plan(sft, cfg, seed, "sft")
    plan = plan_defects(sft, sft_tasks, stream(seed, "defects"), cfg)
    specs = [Spec("sft", i, sft_tasks[i], plan.kinds[i]) for i in range(sft) if plan.kinds[i] != "duplicate"]
    specs += [Spec("rl", i, t) for i, t in enumerate(task_plan(rl, cfg, seed, "rl"))]
    specs += [Spec("test", i, t) for i, t in enumerate(task_plan(test, cfg, seed, "test"))]
    n_workers = workers or 1
    log.info("generating %d SFT, %d RL and %d test records with %d worker(s)", sft, rl, test, n_workers)
    items = _run(seed, specs, cfg, out, n_workers)
    by_split: dict[str, list[dict[str, Any]]] = {"sft": [], "rl": [], "test": []}
    for item in items:
        by_split[item["split"]].append(item)

    # RL: no two records with the same uid; test: nothing shared with training (scene or image)
    redraws = _redraw(seed, by_split["rl"], cfg, out, lambda it: it["record"]["uid"], set())
    train_keys = {
        k for it in by_split["sft"] + by_split["rl"] for k in (it["scene_hash"], it["image_digest"])
    }
    redraws += _redraw(
        seed, by_split["test"], cfg, out, lambda it: it["scene_hash"], train_keys, digests=True
    )
    check_disjoint(by_split["sft"] + by_split["rl"], by_split["test"])

    sft_records, manifest = _assemble_sft(sft, by_split["sft"], plan.duplicate_of)
    _write_outputs(out, sft_records, manifest, by_split["rl"], by_split["test"])
    summary = {
        "generator": GENERATOR,
        "version": GENERATOR_VERSION,
        "params": params,
        "out_dir": str(out.resolve()),
        "files": dict(FILES),
        "counts": {"sft": sft, "rl": rl, "test": test, "image_files": _count_images(manifest, by_split)},
        "tasks": {
            "sft": _counter(m["task"] for m in manifest),
            "rl": _counter(it["task"] for it in by_split["rl"]),
            "test": _counter(it["task"] for it in by_split["test"]),
        },
        "difficulty": {s: _counter(str(it["difficulty"]) for it in by_split[s]) for s in ("rl", "test")},
        "defects": _counter(m["defect"] for m in manifest),
        "redraws": redraws,
        "workers": n_workers,
        "seconds": round(time.perf_counter() - started, 3),
    }
    _write_text(out / (REPORT + ".tmp"), json.dumps(summary, indent=JSON_INDENT))
    os.replace(out / (REPORT + ".tmp"), out / REPORT)  # the report appears last: it marks completion
    log.info("wrote %s in %.1f s", out, summary["seconds"])
    return summary


def check_disjoint(train: list[dict[str, Any]], test: list[dict[str, Any]]) -> None:
    """Raise if a test item shares a scene hash or an image digest with a training item."""
    scenes = {it["scene_hash"] for it in train}
    digests = {it["image_digest"] for it in train}
    for it in test:
        if it["scene_hash"] in scenes or it["image_digest"] in digests:
            raise RuntimeError(f"test record {it['index']} shares its scene or image with a training record")


# ------------------------------------------------------------------------------ internals


def auto_workers(n_records: int) -> int:
    """One worker per core (at most ``MAX_AUTO_WORKERS``) for large sets, else one.

    Worker processes are spawned, so the calling script must guard its entry point with
    ``if __name__ == "__main__":``; the ``pebr`` command line does.
    """
    if n_records < PARALLEL_MIN_RECORDS:
        return 1
    return max(1, min(os.cpu_count() or 1, MAX_AUTO_WORKERS))


def _run(seed: int, specs: list[Spec], cfg: SynthConfig, out: Path, n_workers: int) -> list[dict[str, Any]]:
    if n_workers == 1 or len(specs) < 2:
        return build_chunk(seed, specs, cfg, str(out))
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    size = max(1, math.ceil(len(specs) / (n_workers * 8)))
    chunks = [specs[i : i + size] for i in range(0, len(specs), size)]
    # spawn: safe even when the caller holds threads (fork would copy their locks)
    with ProcessPoolExecutor(n_workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        results = pool.map(
            build_chunk, [seed] * len(chunks), chunks, [cfg] * len(chunks), [str(out)] * len(chunks)
        )
        return [item for chunk in results for item in chunk]


def _redraw(seed, items, cfg, out, key, forbidden: set[str], *, digests: bool = False) -> int:
    """Re-draw (next attempt of the same index) items whose key is forbidden or already taken."""
    seen = set(forbidden)
    redraws = 0
    for pos, item in enumerate(items):
        attempt = 0
        while key(item) in seen or (digests and item["image_digest"] in seen):
            attempt += 1
            if attempt > MAX_REDRAWS:
                raise RuntimeError(
                    f"{item['split']} record {item['index']}: still colliding after {MAX_REDRAWS} re-draws"
                )
            spec = Spec(item["split"], item["index"], item["task"], attempt=attempt)
            item = build_item(seed, spec, cfg, str(out))
            redraws += 1
        items[pos] = item
        seen.add(key(item))
    return redraws


def _assemble_sft(
    n: int, items: list[dict[str, Any]], duplicate_of: dict[int, int]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    by_index = {it["index"]: it for it in items}
    records, manifest = [], []
    for i in range(n):
        if i in duplicate_of:
            src = by_index[duplicate_of[i]]
            records.append(src["sharegpt"])
            manifest.append(
                {**src["manifest"], "index": i, "defect": "duplicate", "duplicate_of": duplicate_of[i]}
            )
        else:
            records.append(by_index[i]["sharegpt"])
            manifest.append(by_index[i]["manifest"])
    return records, manifest


def _write_outputs(out: Path, sft_records, manifest, rl_items, test_items) -> None:
    from curation.convert import to_pebr
    from curation.schema import write_parquet

    _write_text(out / FILES["sft"], json.dumps(sft_records, ensure_ascii=False, indent=JSON_INDENT))
    _write_text(
        out / FILES["sft_manifest"], "".join(json.dumps(m, ensure_ascii=False) + "\n" for m in manifest)
    )
    rl_records = [it["record"] for it in rl_items]
    write_parquet(rl_records, str(out / FILES["rl_parquet"]))
    rl_json = [to_pebr(r) for r in rl_records]
    _write_text(out / FILES["rl_json"], json.dumps(rl_json, ensure_ascii=False, indent=JSON_INDENT))
    write_parquet([it["record"] for it in test_items], str(out / FILES["test_parquet"]))
    (out / FILES["images"]).mkdir(exist_ok=True)


def _write_text(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")


def _count_images(manifest, by_split) -> int:
    sft_files = sum(1 for m in manifest if m["defect"] not in ("missing_image", "duplicate"))
    return sft_files + len(by_split["rl"]) + len(by_split["test"])


def _counter(values: Iterable[str]) -> dict[str, int]:
    return dict(sorted(Counter(values).items()))


def _saved_summary(out: Path, params: dict[str, Any]) -> dict[str, Any] | None:
    report = out / REPORT
    if not report.is_file():
        return None
    try:
        saved = json.loads(report.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        log.warning("%s is not valid JSON; regenerating", report)
        return None
    if saved.get("params") != params:
        log.info("%s was generated with other parameters; regenerating", out)
        return None
    missing = [name for name in FILES.values() if not (out / name).exists()]
    if missing:
        log.warning("%s lacks %s; regenerating", out, missing)
        return None
    saved["out_dir"] = str(out.resolve())
    return saved


def _clear(out: Path) -> None:
    """Make ``out`` an empty directory, deleting only files this generator writes."""
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{out} exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    entries = sorted(p.name for p in out.iterdir())
    foreign = [name for name in entries if name not in OWNED]
    if foreign:
        raise FileExistsError(
            f"{out} holds files that `pebr data synth` did not write ({', '.join(foreign[:5])}"
            f"{', ...' if len(foreign) > 5 else ''}); use an empty or new directory"
        )
    for name in entries:
        path = out / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
