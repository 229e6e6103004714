"""Options of ``pebr curate filter``: one frozen dataclass, readable from YAML.

The defaults reproduce PeBR-R1's SFT filter (drop "let me rethink it", missing images and
images under 28 px) plus the checks it lacks (unsafe paths, corrupt files, decompression
bombs, duplicates, empty answers, malformed records). ``curation/curation.yaml`` is an
annotated example. Unknown keys are errors, so a typo never silently changes nothing.

Example::

    >>> cfg = FilterConfig(min_side=32, reflective_patterns=("let me rethink it", "wait,"))
    >>> cfg.max_pixels
    178956970
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: PeBR-R1's reflective-sample marker (Mulberry inserts "... Let me rethink it.").
DEFAULT_REFLECTIVE_PATTERNS = ("let me rethink it",)
#: PeBR-R1 drops images narrower or shorter than this.
DEFAULT_MIN_SIDE = 28
#: Pillow refuses to open an image above twice ``Image.MAX_IMAGE_PIXELS`` (89,478,485) with a
#: DecompressionBombError; the reference filter drops exactly those, so the default cap is
#: the same number. Lower it to drop merely huge images too.
DEFAULT_MAX_PIXELS = 2 * 89_478_485

LAYOUTS = ("auto", "sharegpt", "pebr", "canonical")

# Names a column mapping may give, per layout (LLaMA-Factory's dataset_info "columns"/"tags").
SHAREGPT_MAPPING_KEYS = ("messages", "images", "role", "content", "user", "assistant", "system")
PEBR_MAPPING_KEYS = ("problem", "answer", "images", "qid", "key_words")


@dataclass(frozen=True)
class FilterConfig:
    """Everything ``pebr curate filter`` can be told.

    Text filters:
        reflective_patterns: phrases whose presence in an assistant turn drops the record,
            compared case-insensitively the way Python's ``str.lower()`` sees them (so a
            KELVIN SIGN matches "k", as in the reference).
        drop_empty_answers: drop records whose answer is empty (no assistant turn, an empty
            one, or an empty ``### The final answer is:`` section).
        check_image_tags: drop records whose ``<image>`` tag count differs from their number
            of images (LLaMA-Factory refuses such records at training time).
    Image filters:
        min_side: drop images whose width or height is below this many pixels.
        max_pixels: drop images with more pixels than this (decompression bombs).
        verify_images: also decode every image fully and drop files that fail to decode
            (catches files truncated after their header; slow).
        drop_duplicates: drop a record whose images (by content) and normalised question
            match an earlier kept record.
    Input:
        layout: ``auto`` (from the first record), ``sharegpt`` or ``pebr``.
        columns: a column mapping for other spellings, e.g. ``{"messages": "conversations",
            "role": "from", "content": "value", "user": "human", "assistant": "gpt"}``.
        split: the split to read from a saved Hugging Face ``DatasetDict``.
        skip_bad_lines: record unparseable records/lines as dropped (``bad_json``) instead of
            stopping with an error.
        source: the ``source`` column of the canonical output (default: from the layout).
    Output:
        dataset_name: the key of the ``dataset_info.json`` entry (default: ``<input stem>_kept``).
    Running:
        workers: worker processes for parsing and image checks (0: in this process;
            default: the number of CPUs).
        chunk_records: records per unit of work (4096 measured faster than 2048 and 8192
            on 260K Mulberry-sized records: fewer hand-overs, memory still flat).
        cache: keep image check results in a Parquet sidecar keyed by path, size and mtime.
        cache_path: where that sidecar lives (default: ``.pebr-image-cache.parquet`` in the
            image root, or in the output directory when the root is not writable).
    """

    reflective_patterns: tuple[str, ...] = DEFAULT_REFLECTIVE_PATTERNS
    drop_empty_answers: bool = True
    check_image_tags: bool = True
    min_side: int = DEFAULT_MIN_SIDE
    max_pixels: int = DEFAULT_MAX_PIXELS
    verify_images: bool = False
    drop_duplicates: bool = True
    layout: str = "auto"
    columns: Mapping[str, str] = field(default_factory=dict)
    split: str | None = None
    skip_bad_lines: bool = False
    source: str | None = None
    dataset_name: str | None = None
    workers: int | None = None
    chunk_records: int = 4096
    cache: bool = True
    cache_path: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.reflective_patterns, str):
            raise ValueError("reflective_patterns must be a list of phrases, not one string")
        object.__setattr__(self, "reflective_patterns", tuple(self.reflective_patterns))
        for p in self.reflective_patterns:
            if not isinstance(p, str) or not p:
                raise ValueError(f"reflective_patterns must be non-empty strings, got {p!r}")
        if self.min_side < 0:
            raise ValueError(f"min_side must be >= 0, got {self.min_side}")
        if self.max_pixels < 1:
            raise ValueError(f"max_pixels must be >= 1, got {self.max_pixels}")
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {list(LAYOUTS)}, got {self.layout!r}")
        if self.workers is not None and self.workers < 0:
            raise ValueError(f"workers must be >= 0, got {self.workers}")
        if self.chunk_records < 1:
            raise ValueError(f"chunk_records must be >= 1, got {self.chunk_records}")
        columns = dict(self.columns or {})
        allowed = set(SHAREGPT_MAPPING_KEYS) | set(PEBR_MAPPING_KEYS)
        unknown = sorted(set(columns) - allowed)
        if unknown:
            raise ValueError(f"columns: unknown keys {unknown}; known keys: {sorted(allowed)}")
        for k, v in columns.items():
            if not isinstance(v, str) or not v:
                raise ValueError(f"columns.{k} must be a non-empty string, got {v!r}")
        object.__setattr__(self, "columns", columns)

    @property
    def patterns_lower(self) -> tuple[str, ...]:
        return tuple(p.lower() for p in self.reflective_patterns)

    @property
    def n_workers(self) -> int:
        return (os.cpu_count() or 1) if self.workers is None else self.workers

    def replace(self, **changes: Any) -> FilterConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["reflective_patterns"] = list(self.reflective_patterns)
        out["columns"] = dict(self.columns)
        return out


def config_from_mapping(data: Mapping[str, Any], *, where: str = "config") -> FilterConfig:
    """Build a :class:`FilterConfig` from a mapping, refusing unknown keys."""
    known = {f.name for f in dataclasses.fields(FilterConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{where}: unknown keys {unknown}; known keys: {sorted(known)}")
    values = dict(data)
    if "reflective_patterns" in values and isinstance(values["reflective_patterns"], list):
        values["reflective_patterns"] = tuple(values["reflective_patterns"])
    try:
        return FilterConfig(**values)
    except TypeError as exc:
        raise ValueError(f"{where}: {exc}") from exc


def load_filter_config(path: str | os.PathLike[str]) -> FilterConfig:
    """Read a YAML file holding filter options, flat or under a top-level ``filter:`` key.

    A ``curation.yaml`` may hold sections for several curation stages; this reads only the
    ``filter`` section when there is one (and then the whole file's other top-level keys
    belong to other stages), else the whole file, where every key must be a filter option.
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    with path.open(encoding="utf-8") as f:
        data = yaml.safe_load(f) or {}
    if not isinstance(data, Mapping):
        raise ValueError(f"{path}: expected a mapping of options, got {type(data).__name__}")
    if "filter" in data:
        section = data["filter"] or {}
        if not isinstance(section, Mapping):
            raise ValueError(f"{path}: 'filter' must be a mapping of options")
        return config_from_mapping(section, where=f"{path}: filter")
    return config_from_mapping(data, where=str(path))
