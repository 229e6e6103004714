"""Export a splits directory for the trainers and hubs people use.

======================  =====================================================================
format                  what lands in OUT_DIR
======================  =====================================================================
``hf`` (default)        the Hub's repository layout: ``data/<split>-XXXXX-of-XXXXX.parquet``
                        shards with the images embedded, ``README.md`` (the dataset card, with
                        ``configs`` and ``dataset_info``) and ``assets/pass_rate_histogram.png``;
                        ``datasets.load_dataset(OUT_DIR)`` reads it back
``llamafactory``        sharegpt JSON per split + ``dataset_info.json``, images under ``images/``
``easyr1``              PeBR/EasyR1 JSON per split (qid, problem, answer, images, key_words),
                        images under ``images/``
======================  =====================================================================

Every export writes ``export_report.json`` (what was written) and the dataset card. Splits with
no rows are left out and the card says so: ``datasets`` cannot load an empty split.
An existing OUT_DIR is replaced only when it holds an earlier pebr export (its
``export_report.json``); stale shards are removed, as ``push_to_hub`` removes them on the Hub.

Example::

    >>> report = export_hf("runs/demo/splits", "runs/demo/hf")        # doctest: +SKIP
    >>> datasets.load_dataset("runs/demo/hf")["perception"][0]["images"][0].size  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import shutil
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from curation.splits_dir import ALL_SPLITS, BUCKET_SPLITS, SplitsRun, read_splits_dir, resolve_report_path

if TYPE_CHECKING:
    import pyarrow as pa
    from datasets import Dataset, Features

    from data_cards.render import CardOptions, DifficultyStats

logger = logging.getLogger(__name__)

FORMATS = ("hf", "llamafactory", "easyr1")
#: ``push_to_hub``'s default shard size (``datasets.config.MAX_SHARD_SIZE``)
DEFAULT_MAX_SHARD_SIZE = "500MB"
REPORT_FILE = "export_report.json"
CARD_FILE = "README.md"
HISTOGRAM_FILE = "assets/pass_rate_histogram.png"
#: the folder ``push_to_hub`` writes shards to for the default config
DATA_DIR = "data"
IMAGES_DIR = "images"
#: rows read, embedded and written at a time, so memory stays bounded by a batch of images
EMBED_BATCH_ROWS = 256

#: difficulty.parquet column -> export column, with the export's type
DIFFICULTY_EXPORT_COLUMNS = {
    "model_id": ("rollout_model", "string"),
    "n": ("n_rollouts", "int32"),
    "n_correct": ("n_correct", "int32"),
    "pass_rate": ("pass_rate", "float64"),
    "wilson_lo": ("wilson_lo", "float64"),
    "wilson_hi": ("wilson_hi", "float64"),
    "bucket": ("bucket", "string"),
}


@dataclass(frozen=True)
class SplitExport:
    """One exported split: its rows and files (relative to the export directory or repo)."""

    name: str
    rows: int
    files: tuple[str, ...]
    num_bytes: int | None = None


@dataclass(frozen=True)
class ExportReport:
    """What an export or push wrote; saved as ``export_report.json`` next to the data."""

    format: str
    location: str
    splits: tuple[SplitExport, ...]
    #: split -> why it is not exported (no rows, no test split in the run)
    skipped: dict[str, str] = field(default_factory=dict)
    card: str | None = CARD_FILE
    histogram: str | None = HISTOGRAM_FILE
    #: the card's ``dataset_info`` and ``configs`` YAML blocks (``configs`` for every format)
    dataset_info: dict[str, Any] | None = None
    configs: list[dict[str, Any]] | None = None
    images_written: int = 0
    #: the command that reproduces this export, shown in the card
    command: str | None = None
    splits_dir: str | None = None

    def split(self, name: str) -> SplitExport:
        for s in self.splits:
            if s.name == name:
                return s
        raise KeyError(f"split {name!r} is not in this export; it has {[s.name for s in self.splits]}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------------------- shared helpers


NO_TEST_SPLIT = "the splits directory has no held-out test split"


def _log_skipped(skipped: Mapping[str, str]) -> None:
    for name, why in skipped.items():
        # a run without a test split is normal; an empty bucket deserves a look
        level = logging.INFO if why == NO_TEST_SPLIT else logging.WARNING
        logger.log(level, "split %s not exported: %s", name, why)


def check_split_names(splits: Sequence[str]) -> tuple[str, ...]:
    """The requested split names, deduplicated in order; unknown names are a ``ValueError``."""
    unknown = [s for s in splits if s not in ALL_SPLITS]
    if unknown:
        raise ValueError(f"unknown split(s) {unknown}; choose from {list(ALL_SPLITS)}")
    if not splits:
        raise ValueError(f"no split to export; choose from {list(ALL_SPLITS)}")
    return tuple(dict.fromkeys(splits))


def _prepare_out_dir(out_dir: Path, fmt: str) -> None:
    """Make ``out_dir`` ready: new or empty, or an earlier pebr export of the same format, whose
    files are removed (stale shards and images must not survive)."""
    if not out_dir.exists():
        out_dir.mkdir(parents=True)
        return
    if not out_dir.is_dir():
        raise NotADirectoryError(f"{out_dir} exists and is not a directory")
    entries = list(out_dir.iterdir())
    if not entries:
        return
    marker = out_dir / REPORT_FILE
    if not marker.is_file():
        raise FileExistsError(
            f"{out_dir} is not empty and holds no earlier pebr export ({REPORT_FILE}); "
            "choose a new or empty directory"
        )
    previous = json.loads(marker.read_text(encoding="utf-8"))
    if previous.get("format") != fmt:
        raise FileExistsError(
            f"{out_dir} holds a '{previous.get('format')}' export; export '{fmt}' to another directory"
        )
    for split in previous.get("splits", []):
        for rel in split.get("files", []):
            (out_dir / rel).unlink(missing_ok=True)
    for rel in (DATA_DIR, IMAGES_DIR, "assets"):
        if (out_dir / rel).is_dir():
            shutil.rmtree(out_dir / rel)
    for rel in (CARD_FILE, "dataset_info.json", REPORT_FILE):
        (out_dir / rel).unlink(missing_ok=True)


def _iter_records(path: Path, *, batch_rows: int = EMBED_BATCH_ROWS) -> Iterator[list[dict[str, Any]]]:
    """Canonical records of a split file, batch by batch, checked against the schema."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from curation.schema import check_records, conform

    pf = pq.ParquetFile(path)
    for batch in pf.iter_batches(batch_size=batch_rows):
        records = conform(pa.Table.from_batches([batch])).to_pylist()
        try:
            check_records(records)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from exc
        yield records


def _read_image(run: SplitsRun, img: Mapping[str, Any], uid: str, index: int) -> bytes:
    """An image's bytes: embedded ones, or the file under the run's image root."""
    if img.get("bytes") is not None:
        return img["bytes"]
    return _image_file(run, img.get("path"), uid, index).read_bytes()


def _image_file(run: SplitsRun, rel: Any, uid: str, index: int) -> Path:
    """The file a path image names under the run's image root; an error naming the record when
    the path leaves the root (absolute, ``..``), there is no image root, or no such file."""
    if Path(rel).is_absolute() or ".." in Path(rel).parts:
        raise ValueError(
            f"record uid={uid!r}: images[{index}] path {rel!r} must be relative to the image root, without '..'"
        )
    if run.image_root is None:
        raise ValueError(
            f"record uid={uid!r}: images[{index}] is a path ({rel!r}) but the splits report has no image_root"
        )
    file = run.image_root / rel
    if not file.is_file():
        raise FileNotFoundError(
            f"record uid={uid!r}: images[{index}] {rel!r} not found under {run.image_root}"
        )
    return file


def split_tasks(run: SplitsRun, names: Sequence[str]) -> dict[str, dict[str, int]]:
    """split -> task -> rows, read from the split files (the card's per-split task table)."""
    import pyarrow.parquet as pq

    from data_cards.render import tasks_per_split

    return tasks_per_split(
        {n: pq.read_table(run.split_paths[n], columns=["task"])["task"].to_pylist() for n in names}
    )


def _task_by_uid(run: SplitsRun) -> dict[str, str | None]:
    """uid -> task over every split file, and the scored data file when the report names one."""
    import pyarrow.parquet as pq

    paths = list(run.split_paths.values())
    data = resolve_report_path(run.root, run.report.get("data_path"))
    if data is not None and data.is_file() and data.suffix == ".parquet":
        paths.append(data)
    out: dict[str, str | None] = {}
    for p in paths:
        names = pq.read_schema(p).names
        if "uid" in names and "task" in names:
            t = pq.read_table(p, columns=["uid", "task"])
            out.update(zip(t["uid"].to_pylist(), t["task"].to_pylist(), strict=True))
    return out


def difficulty_and_stats(run: SplitsRun) -> tuple[pa.Table, DifficultyStats]:
    """The run's difficulty table (its rollout model only) and the card's bucket statistics.

    Bucket counts come from the table; a splits report whose ``counts`` disagree is logged.
    """
    from data_cards.render import difficulty_stats

    difficulty = run.read_difficulty()
    stats = difficulty_stats(difficulty, _task_by_uid(run))
    counts = run.report.get("counts")
    if isinstance(counts, Mapping):
        differ = {
            b: (counts.get(b), stats.bucket_counts[b])
            for b in stats.bucket_counts
            if counts.get(b) is not None
        }
        differ = {b: v for b, v in differ.items() if v[0] != v[1]}
        if differ:
            logger.warning(
                "splits report counts differ from difficulty.parquet (report, table): %s; the card uses the table",
                differ,
            )
    return difficulty, stats


def _render_card_files(
    run: SplitsRun,
    report: ExportReport,
    out_dir: Path,
    stats: DifficultyStats,
    names: Sequence[str],
    card_options: CardOptions | None,
) -> None:
    from data_cards.render import pass_rate_histogram, render_card

    if report.histogram:
        pass_rate_histogram(stats, out_dir / report.histogram)
    card = render_card(
        run.report,
        report,
        run.funnel,
        stats=stats,
        options=card_options,
        funnel_note=run.funnel_note,
        split_tasks=split_tasks(run, names),
    )
    (out_dir / CARD_FILE).write_text(card, encoding="utf-8")


def card_args(card_options: CardOptions | None) -> list[str]:
    """The CLI options that reproduce non-default card options."""
    from data_cards.render import CardOptions

    default, options = CardOptions(), card_options or CardOptions()
    argv = []
    if options.license != default.license:
        argv += ["--license", options.license]
    if options.pretty_name:
        argv += ["--pretty-name", options.pretty_name]
    return argv


def _command(
    fmt: str, splits_dir: Path, out_dir: Path, names: Sequence[str], extra: Sequence[str] = ()
) -> str:
    argv = ["pebr", "curate", "export", "--splits", str(splits_dir), "--out", str(out_dir), "--format", fmt]
    if tuple(names) != ALL_SPLITS:
        for n in names:
            argv += ["--only", n]
    return shlex.join([*argv, *extra])


# ---------------------------------------------------------------------------- Hugging Face


def hf_features() -> Features:
    """The export's features: the canonical columns with images as ``List(Image())``, the
    images' source paths, and the difficulty columns."""
    from datasets import Features, Image, List, Value

    features = {
        "uid": Value("string"),
        "source": Value("string"),
        "task": Value("string"),
        "stage_hint": Value("string"),
        "images": List(Image()),
        "image_paths": List(Value("string")),
        "image_sizes": List({"width": Value("int32"), "height": Value("int32")}),
        "question": Value("string"),
        "answer": Value("string"),
        "choices": List(Value("string")),
        "key_words": List(Value("string")),
        "boxes": List(List(Value("float64"))),
        "reference_caption": Value("string"),
        "messages": List({"role": Value("string"), "content": Value("string")}),
        "meta": Value("string"),
    }
    for name, dtype in DIFFICULTY_EXPORT_COLUMNS.values():
        features[name] = Value(dtype)
    return Features(features)


def build_hf_split(
    run: SplitsRun,
    name: str,
    difficulty: pa.Table,
    work_dir: Path,
    *,
    batch_rows: int = EMBED_BATCH_ROWS,
) -> Dataset:
    """One split as a memory-mapped ``datasets.Dataset`` with the image bytes embedded.

    Rows are written batch by batch to an Arrow file under ``work_dir``, so a split larger than
    memory exports fine. Every row of a bucket split must have a difficulty row; test rows may not.
    """
    import pyarrow as pa
    from datasets import Dataset
    from datasets.arrow_writer import ArrowWriter

    features = hf_features()
    schema = features.arrow_schema
    by_uid = {uid: i for i, uid in enumerate(difficulty["uid"].to_pylist())}  # uid -> difficulty row
    diff_cols = {src: difficulty[src].to_pylist() for src in DIFFICULTY_EXPORT_COLUMNS}
    path = work_dir / f"{name}.arrow"
    writer = ArrowWriter(features=features, path=str(path))
    try:
        for records in _iter_records(run.split_paths[name], batch_rows=batch_rows):
            columns: dict[str, list[Any]] = {f: [] for f in schema.names}
            for rec in records:
                uid = rec["uid"]
                row = by_uid.get(uid)
                if row is None and name in BUCKET_SPLITS:
                    raise ValueError(
                        f"{run.split_paths[name]}: record uid={uid!r} has no row in difficulty.parquet"
                        f" for model {run.model_id!r}"
                    )
                images = rec["images"] or []
                columns["images"].append(
                    [
                        {
                            "bytes": _read_image(run, img, uid, i),
                            # the Image feature keeps a file name next to the bytes, as push_to_hub does
                            "path": os.path.basename(img["path"]) if img.get("path") else None,
                        }
                        for i, img in enumerate(images)
                    ]
                )
                columns["image_paths"].append([img.get("path") for img in images])
                for col in rec:
                    if col != "images":
                        columns[col].append(rec[col])
                for src, (dst, _) in DIFFICULTY_EXPORT_COLUMNS.items():
                    columns[dst].append(diff_cols[src][row] if row is not None else None)
            writer.write_table(pa.table(columns, schema=schema))
        writer.finalize()
    finally:
        writer.close()
    return Dataset.from_file(str(path))


def build_hf_dataset_dict(
    run: SplitsRun,
    names: Sequence[str],
    difficulty: pa.Table,
    work_dir: Path,
) -> tuple[dict[str, Dataset], dict[str, str]]:
    """The non-empty requested splits as Datasets, and why the others are left out."""
    datasets_: dict[str, Dataset] = {}
    skipped: dict[str, str] = {}
    for name in names:
        if name not in run.split_paths:
            skipped[name] = NO_TEST_SPLIT
            continue
        ds = build_hf_split(run, name, difficulty, work_dir)
        if len(ds) == 0:
            skipped[name] = "it has no rows (datasets cannot load an empty split)"
            continue
        datasets_[name] = ds
    _log_skipped(skipped)
    if not datasets_:
        raise ValueError(f"{run.root}: none of the splits {list(names)} has rows; nothing to export")
    return datasets_, skipped


def num_shards_for(ds: Dataset, max_shard_size: int | str) -> int:
    """Shards for a split, by ``push_to_hub``'s rule: in-memory bytes / max shard size, plus one."""
    from datasets.utils.py_utils import convert_file_size_to_int

    return int(ds.data.nbytes / convert_file_size_to_int(max_shard_size)) + 1


def shard_name(split: str, index: int, num_shards: int, data_dir: str = DATA_DIR) -> str:
    """``data/<split>-00000-of-00002.parquet``: the name ``push_to_hub`` gives a shard."""
    return f"{data_dir}/{split}-{index:05d}-of-{num_shards:05d}.parquet"


def hf_dataset_info(
    datasets_: Mapping[str, Dataset], download_sizes: Mapping[str, int]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The ``dataset_info`` and ``configs`` YAML blocks, built with the classes ``push_to_hub`` uses."""
    from datasets.info import DatasetInfo, DatasetInfosDict
    from datasets.splits import SplitDict, SplitInfo
    from datasets.utils.metadata import MetadataConfigs
    from huggingface_hub import DatasetCardData

    first = next(iter(datasets_.values()))
    info = DatasetInfo(config_name="default", features=first.features, splits=SplitDict(), download_size=0)
    info.dataset_size = 0
    for name, ds in datasets_.items():
        info.splits.add(SplitInfo(name=name, num_bytes=ds.data.nbytes, num_examples=len(ds)))
        info.download_size += download_sizes[name]
        info.dataset_size += ds.data.nbytes
    info.size_in_bytes = info.download_size + info.dataset_size
    card_data = DatasetCardData()
    DatasetInfosDict({"default": info}).to_dataset_card_data(card_data)
    MetadataConfigs(
        {"default": {"data_files": [{"split": n, "path": f"{DATA_DIR}/{n}-*"} for n in datasets_]}}
    ).to_dataset_card_data(card_data)
    as_dict = card_data.to_dict()
    return as_dict["dataset_info"], as_dict["configs"]


def export_hf(
    splits_dir: str | Path,
    out_dir: str | Path,
    *,
    splits: Sequence[str] = ALL_SPLITS,
    max_shard_size: int | str = DEFAULT_MAX_SHARD_SIZE,
    card_options: CardOptions | None = None,
) -> ExportReport:
    """Write the splits as a Hugging Face dataset in the Hub's repository layout.

    The shards are named and cut as ``DatasetDict.push_to_hub`` names and cuts them
    (contiguous shards, ``data/<split>-XXXXX-of-XXXXX.parquet``), images are embedded, and
    ``README.md`` carries ``configs`` and ``dataset_info``, so ``datasets.load_dataset(out_dir)``
    and an upload of the folder to the Hub both work. The same input gives the same bytes.
    """
    import tempfile

    names = check_split_names(splits)
    run = read_splits_dir(splits_dir)
    out = Path(out_dir).resolve()
    _prepare_out_dir(out, "hf")
    difficulty, stats = difficulty_and_stats(run)
    with tempfile.TemporaryDirectory(prefix="pebr-export-") as tmp:
        datasets_, skipped = build_hf_dataset_dict(run, names, difficulty, Path(tmp))
        split_exports, download_sizes = [], {}
        for name, ds in datasets_.items():
            n = num_shards_for(ds, max_shard_size)
            files = []
            for i in range(n):
                rel = shard_name(name, i, n)
                (out / rel).parent.mkdir(parents=True, exist_ok=True)
                ds.shard(num_shards=n, index=i, contiguous=True).to_parquet(str(out / rel))
                files.append(rel)
            download_sizes[name] = sum((out / f).stat().st_size for f in files)
            split_exports.append(SplitExport(name, len(ds), tuple(files), ds.data.nbytes))
            logger.info("%s: %d rows in %d shard(s)", name, len(ds), n)
        dataset_info, configs = hf_dataset_info(datasets_, download_sizes)
        del datasets_  # drop the memory maps before the temporary directory goes
    extra = [] if max_shard_size == DEFAULT_MAX_SHARD_SIZE else ["--max-shard-size", str(max_shard_size)]
    extra += card_args(card_options)
    report = ExportReport(
        format="hf",
        location=str(out),
        splits=tuple(split_exports),
        skipped=skipped,
        dataset_info=dataset_info,
        configs=configs,
        command=_command("hf", run.root, out, names, extra),
        splits_dir=str(run.root),
    )
    _render_card_files(run, report, out, stats, [s.name for s in report.splits], card_options)
    _write_report(out, report)
    return report


def _write_report(out: Path, report: ExportReport) -> None:
    (out / REPORT_FILE).write_text(
        json.dumps(report.to_dict(), indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )


# ---------------------------------------------------------------------------- LLaMA-Factory / EasyR1


def _place_image(run: SplitsRun, img: Mapping[str, Any], uid: str, index: int, out: Path, link: bool) -> str:
    """Put one image under ``out/images`` and return its path relative to ``out``.

    Path images keep their relative path (so two records sharing a file share it); embedded
    ones are named by content digest. Hard links save space where the filesystem allows.
    """
    import hashlib

    rel_src = img.get("path")
    if img.get("bytes") is not None or rel_src is None:
        data = _read_image(run, img, uid, index)
        ext = Path(rel_src).suffix if rel_src else ".png"
        rel = f"{IMAGES_DIR}/embedded/{hashlib.sha256(data).hexdigest()[:32]}{ext}"
        dst = out / rel
        if not dst.exists():
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(data)
        return rel
    src = _image_file(run, rel_src, uid, index)
    rel = f"{IMAGES_DIR}/{Path(rel_src).as_posix()}"
    dst = out / rel
    if not dst.exists():
        dst.parent.mkdir(parents=True, exist_ok=True)
        if link:
            try:
                os.link(src, dst)
                return rel
            except OSError:  # another filesystem, or links not allowed: copy instead
                pass
        shutil.copyfile(src, dst)
    return rel


def _export_json(
    fmt: str,
    splits_dir: str | Path,
    out_dir: str | Path,
    *,
    splits: Sequence[str],
    link_images: bool,
    card_options: CardOptions | None,
    convert: Any,
) -> tuple[ExportReport, SplitsRun]:
    from curation.schema import meta_of

    names = check_split_names(splits)
    run = read_splits_dir(splits_dir)
    out = Path(out_dir).resolve()
    _prepare_out_dir(out, fmt)
    _, stats = difficulty_and_stats(run)
    split_exports, skipped = [], {}
    placed: set[str] = set()
    for name in names:
        if name not in run.split_paths:
            skipped[name] = NO_TEST_SPLIT
            continue
        rows = []
        for records in _iter_records(run.split_paths[name]):
            for rec in records:
                new_paths = [
                    _place_image(run, img, rec["uid"], i, out, link_images)
                    for i, img in enumerate(rec["images"])
                ]
                placed.update(new_paths)
                meta = meta_of(rec)
                rows.append(convert({**rec, "images": [{"bytes": None, "path": p} for p in new_paths]}, meta))
        if not rows:
            skipped[name] = "it has no rows"
            continue
        rel = f"{name}.json"
        (out / rel).write_text(json.dumps(rows, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        split_exports.append(SplitExport(name, len(rows), (rel,)))
    _log_skipped(skipped)
    if not split_exports:
        raise ValueError(f"{run.root}: none of the splits {list(names)} has rows; nothing to export")
    configs = [
        {
            "config_name": "default",
            "data_files": [{"split": s.name, "path": s.files[0]} for s in split_exports],
        }
    ]
    extra = ([] if link_images else ["--copy-images"]) + card_args(card_options)
    report = ExportReport(
        format=fmt,
        location=str(out),
        splits=tuple(split_exports),
        skipped=skipped,
        configs=configs,
        images_written=len(placed),
        command=_command(fmt, run.root, out, names, extra),
        splits_dir=str(run.root),
    )
    _render_card_files(run, report, out, stats, [s.name for s in split_exports], card_options)
    return report, run


#: LLaMA-Factory dataset_info.json name of a split: ``pebr_<split>``
LLAMAFACTORY_PREFIX = "pebr_"


def export_llamafactory(
    splits_dir: str | Path,
    out_dir: str | Path,
    *,
    splits: Sequence[str] = ALL_SPLITS,
    link_images: bool = True,
    card_options: CardOptions | None = None,
) -> ExportReport:
    """Write LLaMA-Factory sharegpt JSON per split and its ``dataset_info.json``.

    Records go through :func:`curation.convert.to_sharegpt`; RL records without an SFT
    conversation get a user turn (``<image>`` tags + question) and an assistant turn (the gold
    answer). Every record uses the ``messages``/``role``/``content`` spelling LLaMA-Factory's
    ``dataset_info.json`` entry declares, so a source written as ``conversations`` is respelled.
    Image paths are relative to ``out_dir`` (LLaMA-Factory's ``dataset_dir``).
    """
    from curation.convert import to_sharegpt

    def convert(rec: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
        # one spelling per file: drop the per-record sharegpt layout, keep the rest of meta
        meta.pop("sharegpt", None)
        return to_sharegpt({**rec, "meta": json.dumps(meta)})

    report, _ = _export_json(
        "llamafactory",
        splits_dir,
        out_dir,
        splits=splits,
        link_images=link_images,
        card_options=card_options,
        convert=convert,
    )
    out = Path(report.location)
    info = {
        f"{LLAMAFACTORY_PREFIX}{s.name}": {
            "file_name": s.files[0],
            "formatting": "sharegpt",
            "columns": {"messages": "messages", "images": "images"},
            "tags": {
                "role_tag": "role",
                "content_tag": "content",
                "user_tag": "user",
                "assistant_tag": "assistant",
                "system_tag": "system",
            },
        }
        for s in report.splits
    }
    (out / "dataset_info.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    _write_report(out, report)
    return report


def export_easyr1(
    splits_dir: str | Path,
    out_dir: str | Path,
    *,
    splits: Sequence[str] = ALL_SPLITS,
    link_images: bool = True,
    card_options: CardOptions | None = None,
) -> ExportReport:
    """Write PeBR/EasyR1 JSON per split (qid, problem, answer, images, key_words) via
    :func:`curation.convert.to_pebr`, with image paths relative to ``out_dir``."""
    from curation.convert import to_pebr

    report, _ = _export_json(
        "easyr1",
        splits_dir,
        out_dir,
        splits=splits,
        link_images=link_images,
        card_options=card_options,
        convert=lambda rec, meta: to_pebr(rec, layout="pebr"),
    )
    _write_report(Path(report.location), report)
    return report


def export(
    splits_dir: str | Path,
    out_dir: str | Path,
    *,
    fmt: str = "hf",
    splits: Sequence[str] = ALL_SPLITS,
    max_shard_size: int | str = DEFAULT_MAX_SHARD_SIZE,
    link_images: bool = True,
    card_options: CardOptions | None = None,
) -> ExportReport:
    """Export in one of :data:`FORMATS`."""
    if fmt == "hf":
        return export_hf(
            splits_dir, out_dir, splits=splits, max_shard_size=max_shard_size, card_options=card_options
        )
    if fmt == "llamafactory":
        return export_llamafactory(
            splits_dir, out_dir, splits=splits, link_images=link_images, card_options=card_options
        )
    if fmt == "easyr1":
        return export_easyr1(
            splits_dir, out_dir, splits=splits, link_images=link_images, card_options=card_options
        )
    raise ValueError(f"unknown export format {fmt!r}; choose from {list(FORMATS)}")
