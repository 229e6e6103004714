"""Training data for the stages: canonical records to TRL datasets with structured image content.

- SFT: ``messages`` (every turn as structured content, ``<image>`` tags become
  ``{"type": "image"}`` parts) + ``images``.
- GRPO: ``prompt`` (the conversation up to the first user turn) + ``images`` + the canonical
  columns the reward functions read (``answer``, ``task``, ``key_words``, ``boxes``, ...).

Images are a ``datasets`` ``Image`` column holding absolute paths (or embedded bytes): they
are decoded to PIL images when a row is read, not up front. Every image file is checked to
exist before training starts, so a missing file is an error naming the record, not a crash
in the middle of a step.

Input files are canonical Parquet files (the filter's ``kept.parquet``, the splits'
``perception.parquet`` / ``reasoning.parquet``) or, for SFT, a Mulberry/LLaMA-Factory
sharegpt JSON file (converted with :func:`curation.convert.from_sharegpt`).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from curation.convert import ConversionError, to_trl
from rewards.presets import RECORD_COLUMNS

if TYPE_CHECKING:
    from datasets import Dataset

    from trainer.config import DataConfig

log = logging.getLogger(__name__)

#: Reports written next to curated data that name the data's image root, in the order tried.
REPORT_NAMES = ("splits_report.json", "filter_report.json", "report.json")
#: Canonical columns the GRPO dataset keeps for the reward functions (rewards.trl reads them);
#: ``images`` is the dataset's own column of decoded images.
REWARD_COLUMNS = tuple(c for c in RECORD_COLUMNS if c != "images")
#: Where a dropped record is listed, in the stage directory.
DROPPED_FILE = "dropped_prompts.jsonl"


@dataclass(frozen=True)
class GRPOData:
    """A GRPO training set: the dataset, its image root and the records dropped (with why)."""

    dataset: Dataset
    image_root: str
    dropped: list[dict[str, Any]]


def resolve_image_root(data_path: str | os.PathLike[str], explicit: str | None = None) -> str:
    """The directory image paths of ``data_path`` are relative to.

    ``explicit`` wins; else the ``image_root`` of a report next to the data file
    (:data:`REPORT_NAMES`); else the data file's own directory.
    """
    if explicit:
        root = Path(explicit)
        if not root.is_dir():
            raise FileNotFoundError(f"image root {root} is not a directory")
        return str(root.resolve())
    folder = Path(data_path).resolve().parent
    for name in REPORT_NAMES:
        report = folder / name
        if report.is_file():
            try:
                value = json.loads(report.read_text(encoding="utf-8")).get("image_root")
            except (json.JSONDecodeError, AttributeError) as exc:
                raise ValueError(f"{report}: not a JSON object with an image_root: {exc}") from exc
            if value:
                # relative roots: to the report's folder, else to the working directory (the
                # filter records the root as it was given on its command line)
                tries = [Path(value)] if Path(value).is_absolute() else [folder / value, Path(value)]
                root = next((t for t in tries if t.is_dir()), None)
                if root is None:
                    raise FileNotFoundError(f"{report}: image_root {value!r} is not a directory")
                log.info("image root %s (from %s)", root, report)
                return str(root.resolve())
    return str(folder)


def read_records(path: str | os.PathLike[str], max_samples: int | None = None) -> list[dict[str, Any]]:
    """Canonical records of a Parquet file or a sharegpt JSON file (the first ``max_samples``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"data file {path} does not exist")
    if path.suffix == ".parquet":
        from curation.schema import from_arrow, read_parquet

        table = read_parquet(str(path))
        if max_samples is not None:
            table = table.slice(0, max_samples)
        records = from_arrow(table)
    elif path.suffix in (".json", ".jsonl"):
        from curation.convert import from_sharegpt

        records = []
        for i, raw in enumerate(_read_json_records(path)):
            if max_samples is not None and i >= max_samples:
                break
            try:
                records.append(from_sharegpt(raw))
            except ConversionError as exc:
                raise ValueError(f"{path}: record {i}: {exc}") from exc
    else:
        raise ValueError(f"{path}: expected a canonical .parquet file or a sharegpt .json/.jsonl file")
    if not records:
        raise ValueError(f"{path} holds no records")
    return records


def _read_json_records(path: Path) -> list[Any]:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    data = json.loads(text)
    if not isinstance(data, list):
        raise ValueError(f"{path}: a sharegpt file is a JSON list of records, got {type(data).__name__}")
    return data


def _with_system(convo: list[dict[str, Any]], system: str | None) -> list[dict[str, Any]]:
    if system is None or (convo and convo[0]["role"] == "system"):
        return convo
    return [{"role": "system", "content": [{"type": "text", "text": system}]}, *convo]


def _image_cells(record: Mapping[str, Any], root: str, *, check: bool = True) -> list[dict[str, Any]]:
    """The record's images as ``{"bytes", "path"}`` cells with absolute paths (files checked)."""
    cells = []
    for img in record.get("images") or []:
        blob, rel = img.get("bytes"), img.get("path")
        if blob is None:
            if not rel:
                raise ValueError(f"record {record.get('uid')!r}: an image has neither bytes nor a path")
            full = os.path.join(root, rel)
            if check and not os.path.isfile(full):
                raise FileNotFoundError(
                    f"record {record.get('uid')!r}: image {rel!r} not found under image root {root}"
                )
            cells.append({"bytes": None, "path": full})
        else:
            cells.append({"bytes": blob, "path": rel})
    return cells


def _count_image_parts(convo: Sequence[Mapping[str, Any]]) -> int:
    return sum(1 for m in convo for p in m["content"] if p.get("type") == "image")


def _check_images_match(record: Mapping[str, Any], convo: Sequence[Mapping[str, Any]], n_images: int) -> None:
    parts = _count_image_parts(convo)
    if parts != n_images:
        raise ValueError(
            f"record {record.get('uid')!r}: the conversation has {parts} <image> tag(s) for {n_images} image(s)"
        )


def _image_dataset(columns: dict[str, list[Any]]) -> Dataset:
    """A ``datasets.Dataset`` whose ``images`` column decodes to PIL images on access."""
    from datasets import Dataset, Image, List

    ds = Dataset.from_dict(columns)
    return ds.cast_column("images", List(Image()))


def sft_dataset(config: DataConfig) -> Dataset:
    """The SFT dataset: structured ``messages`` + ``images`` for TRL's ``SFTTrainer``."""
    records = read_records(config.train, config.max_samples)
    root = resolve_image_root(config.train, config.image_root)
    messages, images = [], []
    for rec in records:
        try:
            example = to_trl(rec, kind="messages")
        except ConversionError as exc:
            raise ValueError(f"{config.train}: {exc}") from exc
        convo = _with_system(example["messages"], config.system_prompt)
        cells = _image_cells(rec, root)
        _check_images_match(rec, convo, len(cells))
        if not any(m["role"] == "assistant" for m in convo):
            raise ValueError(f"record {rec.get('uid')!r}: the SFT conversation has no assistant turn")
        messages.append(convo)
        images.append(cells)
    log.info("SFT data: %d conversations from %s (image root %s)", len(messages), config.train, root)
    return _image_dataset({"messages": messages, "images": images})


def grpo_records(config: DataConfig) -> tuple[list[dict[str, Any]], str]:
    """Canonical records of a GRPO split and the split's image root."""
    return read_records(config.train, config.max_samples), resolve_image_root(config.train, config.image_root)


def grpo_columns(
    records: Sequence[Mapping[str, Any]], root: str, system_prompt: str | None = None
) -> dict[str, list[Any]]:
    """Columns of the GRPO dataset for ``records``: ``prompt``, ``images``, :data:`REWARD_COLUMNS`."""
    columns: dict[str, list[Any]] = {"prompt": [], "images": [], **{c: [] for c in REWARD_COLUMNS}}
    for rec in records:
        example = to_trl(rec, kind="prompt")
        prompt = _with_system(example["prompt"], system_prompt)
        cells = _image_cells(rec, root)
        _check_images_match(rec, prompt, len(cells))
        columns["prompt"].append(prompt)
        columns["images"].append(cells)
        for col in REWARD_COLUMNS:
            columns[col].append(example.get(col))
    return columns


def grpo_dataset(config: DataConfig, processor: Any, max_prompt_length: int) -> GRPOData:
    """The GRPO dataset of a split, its image root and the prompts dropped for length.

    Prompts longer than ``max_prompt_length`` tokens (image tokens included, at the
    processor's pixel bounds) are dropped and returned with their lengths (the stage writes
    them to ``dropped_prompts.jsonl``); TRL does not truncate multimodal prompts.
    """
    records, root = grpo_records(config)
    columns = grpo_columns(records, root, config.system_prompt)
    lengths = prompt_lengths(columns["prompt"], columns["images"], processor)
    keep = [i for i, n in enumerate(lengths) if n <= max_prompt_length]
    dropped = [
        {
            "uid": columns["uid"][i],
            "reason": "prompt_too_long",
            "prompt_tokens": lengths[i],
            "max_prompt_length": max_prompt_length,
        }
        for i in range(len(lengths))
        if lengths[i] > max_prompt_length
    ]
    if dropped:
        log.warning(
            "%d of %d prompts are longer than max_prompt_length=%d tokens and are dropped",
            len(dropped),
            len(lengths),
            max_prompt_length,
        )
    if not keep:
        raise ValueError(
            f"{config.train}: every prompt is longer than max_prompt_length={max_prompt_length} tokens"
        )
    if len(keep) < len(lengths):
        columns = {k: [v[i] for i in keep] for k, v in columns.items()}
    log.info("GRPO data: %d prompts from %s (image root %s)", len(keep), config.train, root)
    return GRPOData(_image_dataset(columns), root, dropped)


def write_dropped(path: str | os.PathLike[str], dropped: Sequence[Mapping[str, Any]]) -> None:
    """Write dropped records, one JSON object per line (an empty file when none were dropped)."""
    with open(path, "w", encoding="utf-8") as fh:
        for row in dropped:
            fh.write(json.dumps(dict(row)) + "\n")


def _image_size(cell: Mapping[str, Any]) -> tuple[int, int]:
    import io

    from PIL import Image

    source = io.BytesIO(cell["bytes"]) if cell.get("bytes") is not None else cell["path"]
    with Image.open(source) as img:  # reads the header only
        return img.size


def prompt_lengths(
    prompts: Sequence[Sequence[Mapping[str, Any]]],
    images: Sequence[Sequence[Mapping[str, Any]]],
    processor: Any,
) -> list[int]:
    """Tokens of each prompt as the model sees it: chat template + the image tokens each image
    expands to at the processor's pixel bounds (computed from the image size, not the pixels)."""
    tokenizer = getattr(processor, "tokenizer", processor)
    image_processor = getattr(processor, "image_processor", None)
    texts = [
        processor.apply_chat_template(list(p), tokenize=False, add_generation_prompt=True) for p in prompts
    ]
    counts = [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
    if image_processor is None:
        return counts
    merge = getattr(image_processor, "merge_size", 1) or 1
    out = []
    for n, cells in zip(counts, images, strict=True):
        for cell in cells:
            width, height = _image_size(cell)
            patches = image_processor.get_number_of_image_patches(height, width, {})
            # the template holds one placeholder token per image; the processor expands it
            n += patches // (merge * merge) - 1
        out.append(n)
    return out
