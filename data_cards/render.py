"""Fill the Hugging Face dataset card from a run's reports.

The card is ``README.md`` with YAML metadata (``configs``, ``dataset_info``, ``license``,
``task_categories``, ``size_categories``, ``tags``, ``pretty_name``) and a body that says what
the dataset is and how it was made: the filter funnel, the difficulty buckets, a pass-rate
histogram, the rollout model and sampling parameters, the reward preset and the commands that
reproduce it. Every number comes from the reports and data of the run, none is typed in.

The metadata is built as a mapping and dumped with ``huggingface_hub``'s
:class:`~huggingface_hub.DatasetCardData` (the same dumper ``datasets.push_to_hub`` uses), so it
always parses; the body is a Jinja2 template (``dataset_card.md.j2`` next to this module).

The histogram is drawn with Pillow (already a dependency for images): a labelled bar chart
needs no plotting library, and matplotlib would add ~40 MB and a slow import for one figure.
"""

from __future__ import annotations

import json
import logging
import shlex
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa

    from curation.export import ExportReport
    from curation.splits_dir import FilterFunnel

logger = logging.getLogger(__name__)

TEMPLATE = "dataset_card.md.j2"
BUCKETS = ("easy", "medium", "hard")

#: The Hub's size categories (upper bounds, label), smallest first.
SIZE_CATEGORIES = (
    (1_000, "n<1K"),
    (10_000, "1K<n<10K"),
    (100_000, "10K<n<100K"),
    (1_000_000, "100K<n<1M"),
    (10_000_000, "1M<n<10M"),
    (100_000_000, "10M<n<100M"),
    (1_000_000_000, "100M<n<1B"),
    (10_000_000_000, "1B<n<10B"),
    (100_000_000_000, "10B<n<100B"),
    (1_000_000_000_000, "100B<n<1T"),
)


@dataclass(frozen=True)
class CardOptions:
    """What the run's reports cannot say: licence, name, task categories and tags."""

    license: str = "other"
    pretty_name: str | None = None
    task_categories: tuple[str, ...] = ("image-text-to-text", "visual-question-answering")
    tags: tuple[str, ...] = ("pebr", "multimodal", "reinforcement-learning", "perception", "reasoning")
    #: the repository id shown in the loading snippet (``None``: the export directory)
    repo_id: str | None = None


@dataclass(frozen=True)
class HistogramOptions:
    """Layout of the pass-rate histogram (pixels)."""

    width: int = 760
    height: int = 440
    margin_left: int = 70
    margin_right: int = 20
    margin_top: int = 50
    margin_bottom: int = 70
    font_size: int = 14
    #: one bar per possible ``k/n`` when every question had the same ``n`` up to this many rollouts;
    #: otherwise ``bins`` equal-width bins over [0, 1]
    max_discrete_bars: int = 32
    bins: int = 10
    colors: tuple[tuple[str, str], ...] = (("easy", "#4c9f70"), ("medium", "#e0a030"), ("hard", "#c8553d"))


@dataclass(frozen=True)
class HistogramBar:
    label: str
    lo: float
    hi: float
    count: int
    bucket: str | None


@dataclass(frozen=True)
class DifficultyStats:
    """Bucket counts and pass-rate histogram of one rollout model's scores."""

    model_id: str | None
    n_scored: int
    bucket_counts: dict[str, int]
    #: task -> bucket -> count
    per_task: dict[str, dict[str, int]]
    rollouts_per_question: tuple[int, ...]
    bars: tuple[HistogramBar, ...] = field(default_factory=tuple)


def size_category(n: int) -> str:
    """The Hub's ``size_categories`` label for ``n`` rows."""
    for bound, label in SIZE_CATEGORIES:
        if n < bound:
            return label
    return "n>1T"


def _histogram_bars(difficulty: pa.Table, options: HistogramOptions) -> tuple[HistogramBar, ...]:
    ns = difficulty["n"].to_pylist()
    rates = difficulty["pass_rate"].to_pylist()
    buckets = difficulty["bucket"].to_pylist()
    distinct_n = set(ns)
    groups: list[tuple[str, float, float, list[int]]] = []
    if len(distinct_n) == 1 and 0 < next(iter(distinct_n)) <= options.max_discrete_bars:
        n = next(iter(distinct_n))
        correct = difficulty["n_correct"].to_pylist()
        for k in range(n + 1):
            groups.append((f"{k}/{n}", k / n, k / n, [i for i, c in enumerate(correct) if c == k]))
    else:
        width = 1.0 / options.bins
        members: list[list[int]] = [[] for _ in range(options.bins)]
        for i, r in enumerate(rates):
            members[min(int(r / width), options.bins - 1)].append(i)
        for b, idx in enumerate(members):
            lo, hi = b * width, (b + 1) * width
            groups.append((f"{lo:.1f}-{hi:.1f}", lo, hi, idx))
    bars = []
    for label, lo, hi, idx in groups:
        # colour a bar by the bucket most of its questions fell in (the rule decides, not the bar)
        common = Counter(buckets[i] for i in idx).most_common(1)
        bars.append(HistogramBar(label, lo, hi, len(idx), common[0][0] if common else None))
    return tuple(bars)


def difficulty_stats(
    difficulty: pa.Table,
    task_by_uid: Mapping[str, str | None] | None = None,
    *,
    histogram: HistogramOptions | None = None,
) -> DifficultyStats:
    """Bucket counts (overall and per task) and histogram bars of a difficulty table.

    ``task_by_uid`` maps uids to tasks (from the split files); uids it lacks count under
    ``"(unknown)"``.
    """
    histogram = histogram or HistogramOptions()
    task_by_uid = task_by_uid or {}
    uids = difficulty["uid"].to_pylist()
    buckets = difficulty["bucket"].to_pylist()
    unknown_buckets = sorted({b for b in buckets if b not in BUCKETS}, key=str)
    if unknown_buckets:
        raise ValueError(f"difficulty table: buckets {unknown_buckets} are not one of {list(BUCKETS)}")
    counts = {b: 0 for b in BUCKETS}
    per_task: dict[str, dict[str, int]] = {}
    for uid, bucket in zip(uids, buckets, strict=True):
        counts[bucket] += 1
        task = task_by_uid.get(uid) or "(unknown)"
        per_task.setdefault(task, {b: 0 for b in BUCKETS})[bucket] += 1
    model_ids = sorted({m for m in difficulty["model_id"].to_pylist() if m is not None})
    return DifficultyStats(
        model_id=model_ids[0] if len(model_ids) == 1 else (", ".join(model_ids) or None),
        n_scored=difficulty.num_rows,
        bucket_counts=counts,
        per_task=dict(sorted(per_task.items())),
        rollouts_per_question=tuple(sorted({int(n) for n in difficulty["n"].to_pylist()})),
        bars=_histogram_bars(difficulty, histogram) if difficulty.num_rows else (),
    )


def stats_from_report(splits_report: Mapping[str, Any]) -> DifficultyStats:
    """Bucket counts as the splits report records them, for a card rendered without the table."""
    counts = splits_report.get("counts") or {}
    bucket_counts = {b: int(counts.get(b, 0)) for b in BUCKETS}
    n = (splits_report.get("sampling") or {}).get("n")
    return DifficultyStats(
        model_id=splits_report.get("model_id"),
        n_scored=sum(bucket_counts.values()),
        bucket_counts=bucket_counts,
        per_task={},
        rollouts_per_question=(int(n),) if isinstance(n, int) else (),
    )


def pass_rate_histogram(
    difficulty: pa.Table | DifficultyStats,
    path: str | Path,
    *,
    options: HistogramOptions | None = None,
) -> Path:
    """Draw the pass-rate histogram as a PNG at ``path`` (bars coloured by bucket, counts on top)."""
    from PIL import Image, ImageDraw, ImageFont

    options = options or HistogramOptions()
    stats = difficulty if isinstance(difficulty, DifficultyStats) else difficulty_stats(difficulty)
    colors = dict(options.colors)
    img = Image.new("RGB", (options.width, options.height), "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=options.font_size)
    left, top = options.margin_left, options.margin_top
    right, bottom = options.width - options.margin_right, options.height - options.margin_bottom
    n_txt = "/".join(str(n) for n in stats.rollouts_per_question) or "?"
    title = (
        f"Pass rate of {stats.model_id or 'the rollout model'} ({n_txt} rollouts, {stats.n_scored} questions)"
    )
    draw.text((left, 12), title, fill="black", font=font)
    draw.line([(left, top), (left, bottom), (right, bottom)], fill="black", width=1)
    bars = stats.bars
    peak = max((b.count for b in bars), default=0)
    # y ticks: 0, peak/2, peak
    for frac in (0.0, 0.5, 1.0):
        value = round(peak * frac)
        y = bottom - (bottom - top - 20) * (value / peak if peak else 0)
        draw.line([(left - 4, y), (left, y)], fill="black")
        draw.text((left - 8, y), str(value), fill="black", font=font, anchor="rm")
    if bars:
        slot = (right - left) / len(bars)
        for i, bar in enumerate(bars):
            x0 = left + i * slot + slot * 0.12
            x1 = left + (i + 1) * slot - slot * 0.12
            h = (bottom - top - 20) * (bar.count / peak if peak else 0)
            if bar.count:
                draw.rectangle([x0, bottom - h, x1, bottom - 1], fill=colors.get(bar.bucket or "", "#888888"))
            draw.text(((x0 + x1) / 2, bottom - h - 3), str(bar.count), fill="black", font=font, anchor="md")
            draw.text(((x0 + x1) / 2, bottom + 6), bar.label, fill="black", font=font, anchor="ma")
    draw.text(((left + right) / 2, options.height - 30), "pass rate (correct rollouts / rollouts)", fill="black",
              font=font, anchor="ma")  # fmt: skip
    draw.text((8, top - 12), "questions", fill="black", font=font, anchor="lm")
    # legend, top right
    x = right
    for name, color in reversed(options.colors):
        label = f"{name} {stats.bucket_counts.get(name, 0)}"
        width = draw.textlength(label, font=font)
        x -= width + 22
        draw.rectangle([x, 32, x + 12, 44], fill=color)
        draw.text((x + 16, 38), label, fill="black", font=font, anchor="lm")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, format="PNG", optimize=True)
    return path


# ---------------------------------------------------------------------------- metadata and body


def card_metadata(
    export_report: ExportReport,
    options: CardOptions,
) -> dict[str, Any]:
    """The card's YAML metadata as a mapping (the keys the Hub reads)."""
    total = sum(s.rows for s in export_report.splits)
    meta: dict[str, Any] = {
        "license": options.license,
        "task_categories": list(options.task_categories),
        "size_categories": [size_category(total)],
        "tags": list(options.tags),
    }
    if options.pretty_name:
        meta["pretty_name"] = options.pretty_name
    if export_report.dataset_info:
        meta["dataset_info"] = export_report.dataset_info
    if export_report.configs:
        meta["configs"] = export_report.configs
    return meta


def _cell(value: Any) -> str:
    """A value as one Markdown table cell."""
    if value is None:
        return ""
    if isinstance(value, float):
        text = f"{value:g}"
    elif isinstance(value, (dict, list, tuple)):
        text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    else:
        text = str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _pct(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:.1f}%" if whole else "-"


def _nested_table(value: Any) -> dict[str, Any] | None:
    """A report value as ``{"columns": [...], "rows": [[...]]}`` when it is a mapping of
    mappings (or of scalars); ``None`` when it has another shape (rendered as JSON instead)."""
    if not isinstance(value, Mapping) or not value:
        return None
    if all(isinstance(v, Mapping) for v in value.values()):
        columns: list[str] = []
        for v in value.values():
            columns += [str(k) for k in v if str(k) not in columns]
        rows = [[_cell(k)] + [_cell(v.get(c)) for c in columns] for k, v in value.items()]
        return {"columns": columns, "rows": rows}
    if all(not isinstance(v, (Mapping, list)) for v in value.values()):
        return {"columns": ["value"], "rows": [[_cell(k), _cell(v)] for k, v in value.items()]}
    return None


def _installed_preset_weights(name: str) -> dict[str, float] | None:
    """The weights of reward preset ``name`` as ``rewards.presets`` defines it in this install."""
    try:
        from rewards.presets import get_preset
    except ImportError:  # a build without the reward presets: the card says the weights are unknown
        return None
    try:
        return dict(get_preset(name).weights)
    except (KeyError, ValueError) as exc:
        logger.warning("the card shows no weights for reward preset %r: %s", name, exc)
        return None


def _preset(report: Mapping[str, Any]) -> tuple[str | None, dict[str, Any] | None, str | None]:
    """(name, weights, where the weights come from) of the run's reward preset."""
    preset = report.get("preset")
    if isinstance(preset, Mapping):
        name = preset.get("name")
        weights = preset.get("weights")
        if weights is None:
            weights = {k: v for k, v in preset.items() if k != "name" and isinstance(v, (int, float))} or None
    else:
        name = preset
        weights = report.get("preset_weights")
    name = str(name) if name is not None else None
    if isinstance(weights, Mapping) and weights:
        return name, dict(weights), "the splits report"
    if name is not None:
        installed = _installed_preset_weights(name)
        if installed:
            return name, installed, "rewards/presets.yaml as installed when this card was rendered"
    return name, None, None


def _commands(report: Mapping[str, Any]) -> list[str]:
    out = []
    for cmd in report.get("commands") or []:
        if isinstance(cmd, (list, tuple)):
            out.append(shlex.join(str(c) for c in cmd))
        else:
            out.append(str(cmd))
    return out


def _template():
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(Path(__file__).parent)),
        undefined=jinja2.StrictUndefined,  # a missing variable is a bug, never an empty line
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,  # Markdown, not HTML
    )
    env.filters["cell"] = _cell
    return env.get_template(TEMPLATE)


def render_card(
    splits_report: Mapping[str, Any],
    export_report: ExportReport,
    filter_report: FilterFunnel | None = None,
    *,
    stats: DifficultyStats | None = None,
    options: CardOptions | None = None,
    funnel_note: str | None = None,
    split_tasks: Mapping[str, Mapping[str, int]] | None = None,
) -> str:
    """The dataset card (``README.md``) for one export or push.

    ``stats`` are the bucket counts of the difficulty table (without it, the report's ``counts``
    are used and the card has no histogram numbers per task); ``split_tasks`` maps split -> task
    -> rows in that split; ``funnel_note`` says why ``filter_report`` is ``None``.
    """
    from huggingface_hub import DatasetCardData

    options = options or CardOptions()
    if stats is None:
        stats = stats_from_report(splits_report)
    metadata = card_metadata(export_report, options)
    yaml_text = DatasetCardData(**metadata).to_yaml()
    preset_name, preset_weights, weights_source = _preset(splits_report)
    total_scored = stats.n_scored
    split_rows = {s.name: s.rows for s in export_report.splits}
    tasks = sorted({t for per in (split_tasks or {}).values() for t in per})
    funnel = None
    if filter_report is not None:
        funnel = {
            "input": filter_report.input,
            "drops": sorted(filter_report.drops.items(), key=lambda kv: (-kv[1], kv[0])),
            "kept": filter_report.kept,
            "dropped": filter_report.dropped,
            "path": filter_report.path,
        }
    from curation.splits_dir import SPLIT_ROLES

    context = {
        "title": options.pretty_name or (options.repo_id or "pebr curated splits").split("/")[-1],
        "repo_id": options.repo_id,
        "export": export_report,
        "location": options.repo_id or export_report.location,
        "splits": [
            {"name": s.name, "rows": s.rows, "role": SPLIT_ROLES.get(s.name, ""), "files": list(s.files)}
            for s in export_report.splits
        ],
        "skipped": dict(export_report.skipped),
        "total_rows": sum(split_rows.values()),
        "funnel": funnel,
        "funnel_note": funnel_note or "no filter report was given",
        "model_id": splits_report.get("model_id") or stats.model_id,
        "sampling": _nested_table(splits_report.get("sampling")),
        "rule": splits_report.get("rule"),
        "rule_text": _cell(splits_report.get("rule"))
        if not isinstance(splits_report.get("rule"), str)
        else None,
        "buckets": [
            {
                "name": b,
                "count": stats.bucket_counts.get(b, 0),
                "pct": _pct(stats.bucket_counts.get(b, 0), total_scored),
            }
            for b in BUCKETS
        ],
        "n_scored": total_scored,
        "rollouts": "/".join(str(n) for n in stats.rollouts_per_question),
        "per_task": [
            {"task": t, "counts": [c.get(b, 0) for b in BUCKETS], "total": sum(c.values())}
            for t, c in stats.per_task.items()
        ],
        "split_tasks": {
            "tasks": tasks,
            "rows": [
                {"split": s, "counts": [per.get(t, 0) for t in tasks], "total": sum(per.values())}
                for s, per in (split_tasks or {}).items()
            ],
        },
        "balance": [
            (key, _nested_table(splits_report.get(key)), splits_report.get(key))
            for key in ("per_task", "per_source")
            if splits_report.get(key) is not None
        ],
        "histogram": export_report.histogram,
        "preset_name": preset_name,
        "preset_weights": preset_weights,
        "weights_source": weights_source,
        "commands": _commands(splits_report),
        "this_command": export_report.command,
        "data": splits_report.get("data_path"),
        "license": options.license,
        "size_category": metadata["size_categories"][0],
    }
    body = _template().render(**context)
    return f"---\n{yaml_text}\n---\n\n{body}"


def parse_card(text: str) -> tuple[dict[str, Any], str]:
    """Split a card into its YAML metadata (parsed with ``yaml.safe_load``) and its body."""
    import yaml

    if not text.startswith("---\n"):
        raise ValueError("a dataset card starts with a '---' line opening its YAML metadata")
    end = text.find("\n---\n", 4)
    if end < 0:
        raise ValueError("the card's YAML metadata is not closed by a '---' line")
    meta = yaml.safe_load(text[4:end])
    if not isinstance(meta, dict):
        raise ValueError("the card's YAML metadata must be a mapping")
    return meta, text[end + 5 :]


def tasks_per_split(tables: Mapping[str, Iterable[str | None]]) -> dict[str, dict[str, int]]:
    """split -> task -> rows, from each split's ``task`` column."""
    out = {}
    for split, tasks in tables.items():
        counts = Counter(t or "(none)" for t in tasks)
        out[split] = dict(sorted(counts.items()))
    return out
