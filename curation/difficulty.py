"""Dataset-level difficulty: sample every question ``n`` times, score, bucket.

PeBR-R1 answers each RL question 8 times with the warm-up model and buckets it: easy when
all 8 are correct, hard when none is, medium otherwise. Here that is a resumable, auditable
artifact:

- :func:`score_dataset` samples with a :class:`~curation.engines.RolloutEngine`, scores each
  response with a reward preset and stores every rollout in full
  (:class:`~curation.rollouts.RolloutStore`). A rerun skips what is stored; a killed run
  loses at most the batch in flight. With ``adaptive`` it samples in rounds and stops a
  question once it has a correct and an incorrect answer: that question is medium whatever
  the other samples say, and questions that stay all-correct or all-wrong get all ``n``
  samples, so the buckets are those of the fixed count by construction.
- :func:`question_stats` turns rollouts into per-question pass rates with Wilson intervals
  and a bucket under a :class:`BucketRule` (score once, threshold many times).
- :func:`transitions` compares the buckets of two models (after stage 1, say).

``run.json`` in the run directory records the data, the image root and, per model id, the
backend, sampling parameters, preset, ``n``, adaptive settings and the command.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from statistics import NormalDist
from typing import TYPE_CHECKING, Any

from curation.engines import GeneratedSample, RolloutEngine, RolloutRequest, SamplingParams
from curation.rollouts import RolloutStore, now_utc

if TYPE_CHECKING:
    import polars as pl

log = logging.getLogger(__name__)

RUN_FILE = "run.json"
RUN_FORMAT = 1
BUCKETS = ("easy", "medium", "hard")
#: A question whose bucket cannot be decided yet (too few scored samples).
UNDECIDED = "undecided"
RULE_KINDS = ("pebr", "thresholds")
#: Samples per adaptive round: 2, then one at a time up to n (the fewest samples that keep
#: buckets exact; each round is one pass over the undecided questions, batched).
ADAPTIVE_ROUNDS = (2, 1)


# ---------------------------------------------------------------------------- config


@dataclass(frozen=True)
class BucketRule:
    """How a question's scored samples make a bucket.

    ``kind="pebr"``: easy when every sample is correct, hard when none is, medium when
    some are (decided as soon as there is one of each); needs ``n`` scored samples
    otherwise. ``kind="thresholds"``: easy when the pass rate of ``n`` samples is at least
    ``easy_min``, hard when at most ``hard_max``, else medium; with fewer samples the bucket
    is decided once every outcome of the missing ones gives the same bucket (with
    ``easy_min=0.25`` and n = 8, two correct answers make a question easy). With more than
    ``n`` samples the pass rate of all of them counts. ``confidence`` is the Wilson
    interval's level.
    """

    kind: str = "pebr"
    n: int = 8
    easy_min: float = 1.0
    hard_max: float = 0.0
    confidence: float = 0.95

    def __post_init__(self) -> None:
        if self.kind not in RULE_KINDS:
            raise ValueError(f"rule kind must be one of {list(RULE_KINDS)}, got {self.kind!r}")
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")
        if not 0 <= self.hard_max < self.easy_min <= 1:
            raise ValueError(
                f"thresholds need 0 <= hard_max < easy_min <= 1, got hard_max={self.hard_max}, easy_min={self.easy_min}"
            )
        if not 0 < self.confidence < 1:
            raise ValueError(f"confidence must be in (0, 1), got {self.confidence}")

    def decides(self) -> dict[str, Any]:
        """What decides a bucket under this rule (``n`` aside): the kind and, for thresholds,
        both thresholds. Stored with an adaptive run, which only this rule can split."""
        if self.kind == "pebr":
            return {"kind": "pebr"}
        return {"kind": self.kind, "easy_min": self.easy_min, "hard_max": self.hard_max}

    @property
    def z(self) -> float:
        return NormalDist().inv_cdf(0.5 + self.confidence / 2)


@dataclass(frozen=True)
class AdaptiveConfig:
    """Adaptive sampling: ``rounds`` samples per round (the last size repeats up to ``n``).

    A question stops as soon as ``rule`` decides its bucket whatever its missing samples
    would be, so its bucket is the one ``n`` samples give (``None``: PeBR's all/none/mixed
    rule, where one correct and one incorrect answer make it medium). Split the run with
    the same rule.
    """

    rounds: tuple[int, ...] = ADAPTIVE_ROUNDS
    rule: BucketRule | None = None

    def rule_for(self, n: int) -> BucketRule:
        return replace(self.rule, n=n) if self.rule is not None else BucketRule(n=n)

    def settings(self) -> dict[str, Any]:
        out: dict[str, Any] = {"rounds": list(self.rounds)}
        if self.rule is not None:  # runs scored before rules existed compare equal
            out["rule"] = self.rule.decides()
        return out

    def __post_init__(self) -> None:
        if not self.rounds or any(r < 1 for r in self.rounds):
            raise ValueError(f"adaptive rounds must be positive sample counts, got {self.rounds}")

    def boundaries(self, n: int) -> list[int]:
        """Cumulative sample counts after each round, ending at ``n`` (``[2, 3, 4, 5, 6, 7, 8]``
        for the default rounds and n = 8)."""
        out, total, i = [], 0, 0
        while total < n:
            total = min(n, total + self.rounds[min(i, len(self.rounds) - 1)])
            out.append(total)
            i += 1
        return out


def wilson_interval(correct: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson score interval of a pass rate; ``(0, 1)`` with no samples."""
    if n == 0:
        return 0.0, 1.0
    p = correct / n
    denom = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, center - half), min(1.0, center + half)


def _threshold_bucket(rate: float, rule: BucketRule) -> str:
    if rate >= rule.easy_min:
        return "easy"
    if rate <= rule.hard_max:
        return "hard"
    return "medium"


def bucket_for(n_scored: int, n_correct: int, rule: BucketRule) -> str:
    """The bucket of one question from its scored samples (``undecided`` while it can change)."""
    if rule.kind == "pebr":
        if 0 < n_correct < n_scored:
            return "medium"
        if n_scored < rule.n:
            return UNDECIDED
        return "easy" if n_correct == n_scored else "hard"
    if n_scored >= rule.n:
        return _threshold_bucket(n_correct / n_scored, rule)
    # buckets grow with the number correct: the missing samples all wrong or all right bound it
    low = _threshold_bucket(n_correct / rule.n, rule)
    high = _threshold_bucket((n_correct + rule.n - n_scored) / rule.n, rule)
    return low if low == high else UNDECIDED


# ---------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Questions:
    """The records to score and where they came from."""

    records: list[dict[str, Any]]
    path: str | None
    image_root: str | None
    fingerprint: str
    #: the held-out split named by the caller (else ``test.parquet`` next to the data file)
    held_out: str | None = None

    @property
    def test_path(self) -> str | None:
        """The held-out split recorded with the run: the one named by the caller, else
        ``test.parquet`` next to the data file, when there is one."""
        if self.held_out is not None:
            return self.held_out
        if self.path is None:
            return None
        test = Path(self.path).with_name("test.parquet")
        return str(test) if test.is_file() and test.resolve() != Path(self.path).resolve() else None


def fingerprint_uids(uids: Sequence[str]) -> str:
    h = hashlib.blake2b(digest_size=8)
    for u in sorted(uids):
        h.update(u.encode())
        h.update(b"\0")
    return h.hexdigest()


def load_questions(
    data: str | os.PathLike[str] | Sequence[Mapping[str, Any]] | Any, image_root: str | None = None
) -> Questions:
    """Canonical records from a canonical Parquet file, a PeBR GRPO JSON file (converted
    with :func:`curation.convert.from_pebr`), an Arrow table or a list of records.

    ``image_root`` defaults to the data file's directory.
    """
    import pyarrow as pa

    from curation.schema import check_records, from_arrow, read_parquet

    path = None
    if isinstance(data, (str, os.PathLike)):
        path = Path(data)
        if not path.is_file():
            raise FileNotFoundError(f"data file {path} does not exist")
        if path.suffix == ".parquet":
            records = from_arrow(read_parquet(str(path)))
        elif path.suffix in (".json", ".jsonl"):
            records = _read_pebr_json(path)
        else:
            raise ValueError(f"data file {path}: expected .parquet (canonical) or .json/.jsonl (PeBR GRPO)")
        if image_root is None:
            image_root = str(path.resolve().parent)
    elif isinstance(data, pa.Table):
        records = from_arrow(data)
    else:
        records = [dict(r) for r in data]
        check_records(records)
    uids = [r["uid"] for r in records]
    if len(set(uids)) != len(uids):
        dup = next(u for u in uids if uids.count(u) > 1)
        raise ValueError(f"the data has duplicate uids (first: {dup!r}); uids key the rollouts")
    return Questions(
        records=records,
        path=str(path.resolve()) if path else None,
        image_root=str(Path(image_root).resolve()) if image_root else None,
        fingerprint=fingerprint_uids(uids),
    )


def _read_pebr_json(path: Path) -> list[dict[str, Any]]:
    from curation.convert import from_pebr

    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        raw = [json.loads(line) for line in text.splitlines() if line.strip()]
    else:
        raw = json.loads(text)
    if not isinstance(raw, list):
        raise ValueError(f"{path}: a PeBR GRPO file is a JSON list of records")
    records, seen = [], set()
    for i, rec in enumerate(raw):
        try:
            canon = from_pebr(rec)
        except ValueError as exc:
            raise ValueError(f"{path}: record {i}: {exc}") from exc
        if canon["uid"] in seen:
            log.warning("%s: record %d repeats an earlier record exactly; kept once", path, i)
            continue
        seen.add(canon["uid"])
        records.append(canon)
    return records


def source_qid(record: Mapping[str, Any]) -> str | None:
    """The record's id in its source layout (PeBR's ``qid``), if it has one."""
    from curation.schema import meta_of

    qid = meta_of(record).get("pebr", {}).get("qid")
    return None if qid is None else str(qid)


# ---------------------------------------------------------------------------- run.json


def read_run(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    path = Path(run_dir) / RUN_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} does not exist: is {run_dir} a run directory of `pebr curate score`?"
        )
    return json.loads(path.read_text(encoding="utf-8"))


def _write_json(path: Path, payload: Mapping[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(payload, indent=2, ensure_ascii=False, default=str), encoding="utf-8")
    os.replace(tmp, path)


def _settings(
    engine: RolloutEngine,
    sampling: SamplingParams,
    preset_name: str,
    adaptive: AdaptiveConfig | None,
    trust: bool,
) -> dict[str, Any]:
    settings = {
        "backend": engine.backend,
        "sampling": asdict(sampling),
        "preset": preset_name,
        "n": sampling.n,
        "adaptive": adaptive.settings() if adaptive else None,
        "replayed_scores": trust,
    }
    # as stored in run.json (tuples become lists), so a resumed run compares equal
    return json.loads(json.dumps(settings))


@contextlib.contextmanager
def _run_lock(run_dir: Path) -> Iterator[None]:
    """One scoring process per run directory (an advisory lock, released if the process dies)."""
    import fcntl

    run_dir.mkdir(parents=True, exist_ok=True)
    fh = open(run_dir / ".lock", "a+")  # noqa: SIM115 - held for the duration of the run
    try:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise ValueError(
                f"another `pebr curate score` is writing to {run_dir}; wait for it to finish"
            ) from exc
        yield
    finally:
        fh.close()


# ---------------------------------------------------------------------------- scoring


@dataclass(frozen=True)
class ScoreProgress:
    """Passed to the progress callback after each batch."""

    done: int
    total: int
    round: int
    rollouts_per_second: float


@dataclass
class ScoreReport:
    """What :func:`score_dataset` did."""

    run_dir: str
    model_id: str
    questions: int
    n: int
    adaptive: bool
    rollouts_new: int
    rollouts_stored: int
    fixed_equivalent: int
    saved_fraction: float
    seconds: float
    rollouts_per_second: float
    buckets: dict[str, int]
    score_errors: int
    unavailable: int
    rounds: int
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _resolve_preset(preset: Any) -> tuple[Any, str]:
    if isinstance(preset, str):
        from rewards.presets import get_preset

        return get_preset(preset), preset
    name = getattr(preset, "name", None)
    if not isinstance(name, str) or not hasattr(preset, "score_batch"):
        raise ValueError("preset must be a preset name or an object with a name and score_batch()")
    return preset, name


def _replayed_accuracy(score: Any) -> float | None:
    if isinstance(score, Mapping):
        value = score.get("accuracy")
    else:
        value = score
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    return None


def _rows_for(
    batch: list[tuple[dict[str, Any], RolloutRequest, list[GeneratedSample]]],
    engine: RolloutEngine,
    sampling: SamplingParams,
    preset: Any,
    preset_name: str,
    image_root: str | None,
    trust_replayed: bool,
    round_of: Callable[[int], int],
) -> tuple[list[dict[str, Any]], int]:
    """Score a batch's samples and build store rows; returns (rows, score errors)."""
    from rewards.presets import ScoreError

    flat = [(rec, s) for rec, _, samples in batch for s in samples]
    results: list[Any] = [None] * len(flat)
    to_score = []
    for i, (_rec, s) in enumerate(flat):
        acc = _replayed_accuracy(s.replayed_score) if trust_replayed else None
        if acc is not None:
            results[i] = ("replayed", acc, s.replayed_score)
        else:
            to_score.append(i)
    if to_score:
        scored = preset.score_batch(
            [flat[i][1].text for i in to_score],
            [flat[i][0] for i in to_score],
            [flat[i][1].n_tokens for i in to_score],
            image_root=image_root,
            on_error="collect",
        )
        for i, res in zip(to_score, scored, strict=True):
            results[i] = res
    rows, errors = [], 0
    created = now_utc()
    for (rec, s), res in zip(flat, results, strict=True):
        row: dict[str, Any] = {
            "uid": rec["uid"],
            "sample_index": s.sample_index,
            "response": s.text,
            "n_tokens": s.n_tokens,
            "finish_reason": s.finish_reason,
            "model_id": engine.model_id,
            "backend": engine.backend,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "max_new_tokens": sampling.max_new_tokens,
            "seed": sampling.seed,
            "preset": preset_name,
            "round": round_of(s.sample_index or 0),
            "created_at": created,
        }
        if isinstance(res, tuple):
            _, acc, raw = res
            row.update(
                reward_total=acc,
                correct=acc == 1.0,
                components=json.dumps(
                    {"components": {"accuracy": acc}, "details": {"replayed": raw}}, default=str
                ),
            )
        elif isinstance(res, ScoreError):
            errors += 1
            row.update(reward_total=None, correct=None, score_error=res.error, components=None)
        else:
            row.update(
                reward_total=res.total,
                correct=res.correct,
                components=json.dumps({"components": res.components, "details": res.details}, default=str),
            )
        rows.append(row)
    return rows, errors


def score_dataset(
    data: Any,
    engine: RolloutEngine,
    out_dir: str | os.PathLike[str],
    *,
    n: int | None = None,
    sampling: SamplingParams = SamplingParams(),
    preset: Any = "pebr_sample",
    adaptive: AdaptiveConfig | bool | None = None,
    batch_size: int = 8,
    image_root: str | None = None,
    progress: Callable[[ScoreProgress], None] | None = None,
    trust_replayed_scores: bool = False,
    command: str | None = None,
    test_path: str | os.PathLike[str] | None = None,
) -> ScoreReport:
    """Sample, score and store ``n`` (``sampling.n``) rollouts per question (fewer with ``adaptive``).

    ``test_path`` names the held-out split that the splits and their export carry along
    (default: ``test.parquet`` next to the data file, when there is one).

    Resumable: stored rollouts of this model are skipped, so rerunning the same call after
    a crash finishes the job. ``batch_size`` questions go to the engine at a time (more in
    adaptive rounds of fewer samples, keeping about ``batch_size * n`` sequences per call) and
    each batch is written as one shard before the next starts. ``trust_replayed_scores`` uses a
    replayed file's own accuracy instead of rescoring its responses with ``preset``.
    """
    t_start = time.perf_counter()
    if n is not None:
        sampling = sampling.with_n(n)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if adaptive is True:
        adaptive = AdaptiveConfig()
    adaptive = adaptive or None
    questions = load_questions(data, image_root)
    if test_path is not None:
        if not Path(test_path).is_file():
            raise FileNotFoundError(f"held-out split {test_path} does not exist")
        questions = replace(questions, held_out=str(Path(test_path).resolve()))
    preset_obj, preset_name = _resolve_preset(preset)
    run_dir = Path(out_dir)
    n = sampling.n
    boundaries = adaptive.boundaries(n) if adaptive else [n]

    def round_of(index: int) -> int:
        return next(r for r, b in enumerate(boundaries) if index < b)

    with _run_lock(run_dir):
        settings = _settings(engine, sampling, preset_name, adaptive, trust_replayed_scores)
        run = _start_run(run_dir, questions, engine, settings, command)
        store = RolloutStore(run_dir)
        store.clean_temporary()
        # (uid -> {sample_index: correct}) of what this model already has
        have: dict[str, dict[int, bool | None]] = {}
        stored = store.read(engine.model_id, columns=["correct"])
        for uid, idx, ok in zip(stored["uid"], stored["sample_index"], stored["correct"], strict=True):
            have.setdefault(uid, {})[idx] = ok
        skipped = len(stored)
        unavailable: set[tuple[str, int]] = set()
        new = errors = done = 0
        total = 0
        gen_seconds = 0.0
        rounds = 0
        while True:
            work = _pending(
                questions.records,
                have,
                unavailable,
                boundaries,
                n,
                adaptive.rule_for(n) if adaptive else None,
            )
            if not work:
                break
            rounds += 1
            total += sum(len(idx) for _, idx in work)
            by_count: dict[int, list[tuple[dict[str, Any], tuple[int, ...]]]] = {}
            for rec, idx in work:
                by_count.setdefault(len(idx), []).append((rec, idx))
            progress_made = False
            for k, items in by_count.items():
                # Rounds of k < n samples take more questions per call, so every engine call
                # generates about batch_size * n sequences.
                step = max(1, batch_size * n // k)
                for start in range(0, len(items), step):
                    chunk = items[start : start + step]
                    requests = [
                        RolloutRequest(
                            uid=rec["uid"],
                            question=rec["question"],
                            images=tuple(rec.get("images") or ()),
                            sample_indices=idx,
                            qid=source_qid(rec),
                            image_root=questions.image_root,
                        )
                        for rec, idx in chunk
                    ]
                    t0 = time.perf_counter()
                    outs = engine.generate(requests, sampling.with_n(k))
                    batch = []
                    for (rec, idx), req, samples in zip(chunk, requests, outs, strict=True):
                        got = {s.sample_index for s in samples}
                        for i in idx:
                            if i not in got:
                                unavailable.add((rec["uid"], i))
                        batch.append((rec, req, samples))
                    rows, errs = _rows_for(
                        batch,
                        engine,
                        sampling,
                        preset_obj,
                        preset_name,
                        questions.image_root,
                        trust_replayed_scores,
                        round_of,
                    )
                    gen_seconds += time.perf_counter() - t0
                    if rows:
                        store.append(rows)
                        progress_made = True
                    for row in rows:
                        have.setdefault(row["uid"], {})[row["sample_index"]] = row["correct"]
                    new += len(rows)
                    errors += errs
                    done += sum(len(i) for _, i in chunk)
                    if progress:
                        progress(
                            ScoreProgress(done, total, rounds, new / gen_seconds if gen_seconds else 0.0)
                        )
            if not progress_made and not any(
                (rec["uid"], i) not in unavailable for rec, idx in work for i in idx
            ):
                break
        store.compact()
        stats = question_stats(
            store.read(engine.model_id),
            engine.model_id,
            adaptive.rule_for(n) if adaptive else BucketRule(n=n),
        )
        bucket_counts = {b: 0 for b in (*BUCKETS, UNDECIDED)}
        for b, k in stats["bucket"].value_counts().iter_rows():
            bucket_counts[b] = k
        bucket_counts[UNDECIDED] += len(questions.records) - stats.height
        current = {r["uid"] for r in questions.records}
        n_stored = sum(len(v) for uid, v in have.items() if uid in current)
        fixed = n * len(questions.records)
        notes = []
        if unavailable:
            notes.append(
                f"{len(unavailable)} requested samples were not available from the {engine.backend} engine "
                f"({len({u for u, _ in unavailable})} questions stay incomplete)"
            )
        if errors:
            notes.append(f"{errors} responses could not be scored (score_error column)")
        report = ScoreReport(
            run_dir=str(run_dir.resolve()),
            model_id=engine.model_id,
            questions=len(questions.records),
            n=n,
            adaptive=adaptive is not None,
            rollouts_new=new,
            rollouts_stored=n_stored,
            fixed_equivalent=fixed,
            saved_fraction=round(1 - n_stored / fixed, 4) if fixed else 0.0,
            seconds=round(time.perf_counter() - t_start, 3),
            rollouts_per_second=round(new / gen_seconds, 3) if gen_seconds else 0.0,
            buckets=bucket_counts,
            score_errors=errors,
            unavailable=len(unavailable),
            rounds=rounds,
            notes=notes,
        )
        log.info("skipped %d stored rollouts, generated %d", skipped, new)
        run["scorings"][engine.model_id]["report"] = report.to_dict()
        run["scorings"][engine.model_id]["updated_at"] = now_utc().isoformat()
        _write_json(run_dir / RUN_FILE, run)
        return report


def _pending(
    records: list[dict[str, Any]],
    have: Mapping[str, Mapping[int, bool | None]],
    unavailable: set[tuple[str, int]],
    boundaries: list[int],
    n: int,
    rule: BucketRule | None,
) -> list[tuple[dict[str, Any], tuple[int, ...]]]:
    """The sample indices each question still needs for its next round (``rule``: adaptive)."""
    work = []
    for rec in records:
        got = have.get(rec["uid"], {})
        if rule is not None:
            scored = [v for v in got.values() if v is not None]
            if bucket_for(len(scored), sum(scored), rule) != UNDECIDED:
                continue  # decided, whatever the missing samples would be
            target = next((b for b in boundaries if b > len(got)), n)
        else:
            target = n
        idx = tuple(i for i in range(target) if i not in got and (rec["uid"], i) not in unavailable)
        if idx:
            work.append((rec, idx))
    return work


def _start_run(
    run_dir: Path, questions: Questions, engine: RolloutEngine, settings: dict[str, Any], command: str | None
) -> dict[str, Any]:
    path = run_dir / RUN_FILE
    now = now_utc().isoformat()
    run = (
        json.loads(path.read_text(encoding="utf-8"))
        if path.is_file()
        else {"format": RUN_FORMAT, "scorings": {}}
    )
    data = {
        "path": questions.path,
        "fingerprint": questions.fingerprint,
        "questions": len(questions.records),
        "test_path": questions.test_path,
    }
    old = run.get("data")
    if old and old.get("fingerprint") != questions.fingerprint:
        log.warning(
            "the data changed since this run directory was scored (%s, %s questions); new questions are "
            "scored, stored rollouts are kept",
            old.get("path"),
            old.get("questions"),
        )
    run["data"] = data
    run["image_root"] = questions.image_root
    previous = run["scorings"].get(engine.model_id)
    if previous:
        differ = {k: (previous.get(k), v) for k, v in settings.items() if previous.get(k) != v}
        if differ:
            detail = "; ".join(f"{k}: stored {a!r}, now {b!r}" for k, (a, b) in differ.items())
            raise ValueError(
                f"{run_dir} already holds rollouts of {engine.model_id} scored differently ({detail}); "
                "use the same settings to resume, or another --out"
            )
        entry = previous
        entry.setdefault("commands", []).append(command)
    else:
        entry = {
            **settings,
            "model_path": getattr(engine, "model_path", None) or str(getattr(engine, "path", "")),
            "started_at": now,
            "commands": [command],
        }
        run["scorings"][engine.model_id] = entry
    entry["updated_at"] = now
    # The latest scoring, flat, for readers that want one model's settings.
    run.update(model_id=engine.model_id, **settings)
    run["latest_model_id"] = engine.model_id
    _write_json(path, run)
    return run


# ---------------------------------------------------------------------------- statistics


def question_stats(source: Any, model_id: str | None = None, rule: BucketRule = BucketRule()) -> pl.DataFrame:
    """Per (model_id, uid): samples, scored samples, correct, pass rate, Wilson bounds, bucket.

    ``source`` is a :class:`RolloutStore`, a run directory or a rollout frame.
    """
    import polars as pl

    if isinstance(source, (str, os.PathLike)):
        source = RolloutStore(source)
    frame = source.read(model_id) if isinstance(source, RolloutStore) else source
    if model_id is not None:
        frame = frame.filter(pl.col("model_id") == model_id)
    frame = frame.unique(subset=["model_id", "uid", "sample_index"], keep="first", maintain_order=True)
    agg = frame.group_by(["model_id", "uid"], maintain_order=True).agg(
        pl.len().alias("samples"),
        pl.col("correct").is_not_null().sum().alias("n"),
        pl.col("correct").fill_null(False).sum().alias("n_correct"),
        pl.col("reward_total").mean().alias("mean_reward"),
        pl.col("n_tokens").mean().alias("mean_tokens"),
        (pl.col("finish_reason") == "length").sum().alias("truncated"),
    )
    return agg.with_columns(
        pl.when(pl.col("n") > 0).then(pl.col("n_correct") / pl.col("n")).otherwise(None).alias("pass_rate"),
        *wilson_exprs(pl.col("n_correct"), pl.col("n"), rule.z),
        bucket_expr(pl.col("n"), pl.col("n_correct"), rule),
    ).select(
        "uid",
        "model_id",
        "n",
        "n_correct",
        "pass_rate",
        "wilson_lo",
        "wilson_hi",
        "bucket",
        "samples",
        "mean_reward",
        "mean_tokens",
        "truncated",
    )


def wilson_exprs(correct: pl.Expr, n: pl.Expr, z: float) -> tuple[pl.Expr, pl.Expr]:
    """:func:`wilson_interval` as polars expressions (``wilson_lo``, ``wilson_hi``)."""
    import polars as pl

    nf = n.cast(pl.Float64)
    p = correct.cast(pl.Float64) / nf
    denom = 1 + z * z / nf
    center = (p + z * z / (2 * nf)) / denom
    half = z * ((p * (1 - p) / nf + z * z / (4 * nf * nf)).sqrt()) / denom
    lo = pl.when(n > 0).then(pl.max_horizontal(center - half, pl.lit(0.0))).otherwise(0.0)
    hi = pl.when(n > 0).then(pl.min_horizontal(center + half, pl.lit(1.0))).otherwise(1.0)
    return lo.alias("wilson_lo"), hi.alias("wilson_hi")


def bucket_expr(n: pl.Expr, c: pl.Expr, rule: BucketRule) -> pl.Expr:
    """:func:`bucket_for` as a polars expression (``bucket``)."""
    import polars as pl

    if rule.kind == "pebr":
        expr = (
            pl.when((c > 0) & (c < n))
            .then(pl.lit("medium"))
            .when(n < rule.n)
            .then(pl.lit(UNDECIDED))
            .when(c == n)
            .then(pl.lit("easy"))
            .otherwise(pl.lit("hard"))
        )
    else:

        def classify(rate: pl.Expr) -> pl.Expr:
            return (
                pl.when(rate >= rule.easy_min)
                .then(pl.lit("easy"))
                .when(rate <= rule.hard_max)
                .then(pl.lit("hard"))
                .otherwise(pl.lit("medium"))
            )

        full = float(rule.n)
        low = classify(c.cast(pl.Float64) / full)
        high = classify((c + (rule.n - n)).cast(pl.Float64) / full)
        expr = (
            pl.when(n >= rule.n)
            .then(classify(c.cast(pl.Float64) / n.cast(pl.Float64)))
            .when(low == high)
            .then(low)
            .otherwise(pl.lit(UNDECIDED))
        )
    return expr.alias("bucket")


def transitions(stats: pl.DataFrame, from_model: str, to_model: str) -> pl.DataFrame:
    """How questions moved between two models' buckets: ``from_bucket, to_bucket, questions``."""
    import polars as pl

    a = stats.filter(pl.col("model_id") == from_model).select("uid", pl.col("bucket").alias("from_bucket"))
    b = stats.filter(pl.col("model_id") == to_model).select("uid", pl.col("bucket").alias("to_bucket"))
    if a.height == 0 or b.height == 0:
        missing = from_model if a.height == 0 else to_model
        raise ValueError(
            f"no buckets for model {missing!r}; models with stats: {stats['model_id'].unique().to_list()}"
        )
    return (
        a.join(b, on="uid", how="full", coalesce=True)
        .with_columns(pl.col("from_bucket").fill_null("unscored"), pl.col("to_bucket").fill_null("unscored"))
        .group_by("from_bucket", "to_bucket")
        .agg(pl.len().alias("questions"))
        .sort("from_bucket", "to_bucket")
    )
