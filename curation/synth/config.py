"""Options of the synthetic dataset: one frozen dataclass, validated on construction."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

#: Bumped whenever the same seed would produce different files; part of the saved params,
#: so a dataset written by an older generator is regenerated rather than reused.
GENERATOR_VERSION = "1"

RGB = tuple[int, int, int]

#: Eight colours far apart in hue and lightness, so that JPEG artefacts never blur one into
#: another and a small model can tell them apart.
PALETTE: tuple[tuple[str, RGB], ...] = (
    ("red", (220, 38, 38)),
    ("green", (34, 160, 60)),
    ("blue", (37, 89, 220)),
    ("yellow", (245, 205, 30)),
    ("orange", (245, 130, 20)),
    ("purple", (130, 60, 190)),
    ("brown", (125, 78, 40)),
    ("black", (25, 25, 25)),
)

#: Light backgrounds only: every palette colour stays visible on them.
BACKGROUNDS: tuple[tuple[str, RGB], ...] = (
    ("white", (255, 255, 255)),
    ("light gray", (225, 225, 225)),
    ("cream", (250, 243, 222)),
)

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond", "star", "hexagon")

#: (name, smallest, largest side in pixels). The ranges do not overlap, so "the largest X"
#: is decided by size class and is visible at a glance.
SIZE_CLASSES: tuple[tuple[str, int, int], ...] = (
    ("small", 16, 22),
    ("medium", 28, 36),
    ("large", 44, 56),
)

TASK_WEIGHTS: tuple[tuple[str, float], ...] = (
    ("count", 1.0),
    ("color", 1.0),
    ("shape", 1.0),
    ("position", 1.0),
    ("grounding", 1.0),
    ("caption", 1.0),
    ("arithmetic", 1.0),
    ("comparison", 1.0),
    ("multiple_choice", 1.0),
)

DEFECTS = ("reflective", "small_image", "missing_image", "truncated_image", "duplicate")


@dataclass(frozen=True)
class SynthConfig:
    """Everything that shapes the generated data except the sizes and the seed.

    Defect rates apply to the SFT set only and are exact: a set of ``N`` records holds
    ``round(rate * N)`` records of each defect (each record has at most one defect; duplicates
    copy defect-free records).
    """

    # SFT defects, as fractions of the SFT set (Mulberry-like rates)
    reflective_rate: float = 0.03
    small_image_rate: float = 0.02
    missing_image_rate: float = 0.01
    truncated_image_rate: float = 0.005
    duplicate_rate: float = 0.01
    #: "small image" defects get a side in [small_image_min, small_image_limit - 1] px
    small_image_limit: int = 28
    small_image_min: int = 8

    # canvases and objects
    canvas_min: int = 96
    canvas_max: int = 320
    #: extra canvas side per sqrt(object count), so crowded scenes get room
    canvas_px_per_object: int = 44
    shapes: tuple[str, ...] = SHAPES
    colors: tuple[tuple[str, RGB], ...] = PALETTE
    backgrounds: tuple[tuple[str, RGB], ...] = BACKGROUNDS
    size_classes: tuple[tuple[str, int, int], ...] = SIZE_CLASSES
    #: (min, max) objects per scene at difficulty 1, 2, 3
    objects_per_level: tuple[tuple[int, int], ...] = ((2, 4), (4, 7), (7, 10))
    #: distinct shapes / colours drawn from at each level; fewer kinds = more look-alike distractors
    kinds_per_level: tuple[int, ...] = (6, 4, 3)
    difficulty_weights: tuple[float, ...] = (0.35, 0.4, 0.25)
    #: chance that an object (large enough to hold it) carries a digit
    digit_rate: float = 0.5
    #: digit chance in scenes for digit-based questions (arithmetic, comparison)
    digit_rate_reasoning: float = 0.85
    #: font size as a fraction of the object's side
    digit_scale: float = 0.5
    #: empty pixels between objects and to the canvas border
    object_gap: int = 4
    #: "furthest left", "closest to" and similar questions need the winner ahead by this many px
    position_margin: int = 10
    #: "larger"/"largest" questions need the winner a size class up and this many times the area
    area_ratio: float = 1.5
    placement_tries: int = 80
    scene_attempts: int = 40

    # questions
    task_weights: tuple[tuple[str, float], ...] = TASK_WEIGHTS
    #: relative weight of yes/no templates (kept rare: a coin flip scores 50%)
    yes_no_weight: float = 0.15
    n_choices: int = 4

    # files
    image_format: str = "JPEG"
    jpeg_quality: int = 92
    files_per_folder: int = 1000

    def __post_init__(self) -> None:
        for name in ("reflective_rate", "small_image_rate", "missing_image_rate", "truncated_image_rate"):
            _check_rate(name, getattr(self, name))
        _check_rate("duplicate_rate", self.duplicate_rate)
        total = sum(getattr(self, f"{d}_rate") for d in DEFECTS)
        if total >= 0.5:
            raise ValueError(
                f"defect rates add up to {total:.3f}; keep them below 0.5 so clean records remain"
            )
        if not 1 <= self.small_image_min < self.small_image_limit:
            raise ValueError(
                f"need 1 <= small_image_min ({self.small_image_min}) < small_image_limit "
                f"({self.small_image_limit})"
            )
        if not 0 < self.canvas_min <= self.canvas_max:
            raise ValueError(f"need 0 < canvas_min ({self.canvas_min}) <= canvas_max ({self.canvas_max})")
        if self.canvas_min < self.small_image_limit:
            raise ValueError(
                f"canvas_min ({self.canvas_min}) must be at least small_image_limit "
                f"({self.small_image_limit}): clean images must not look like the small-image defect"
            )
        largest = max(hi for _, _, hi in self.size_classes)
        if largest + 2 * self.object_gap > self.canvas_min:
            raise ValueError(f"the largest object ({largest} px) does not fit a {self.canvas_min} px canvas")
        unknown = [s for s in self.shapes if s not in SHAPES]
        if unknown or len(set(self.shapes)) < 2:
            raise ValueError(f"shapes must be at least 2 of {list(SHAPES)}, got {list(self.shapes)}")
        if len({c for c, _ in self.colors}) != len(self.colors) or len(self.colors) < 2:
            raise ValueError("colors must be at least 2 distinct (name, rgb) pairs")
        if len(self.objects_per_level) != len(self.difficulty_weights) or len(self.kinds_per_level) != len(
            self.difficulty_weights
        ):
            raise ValueError(
                "objects_per_level, kinds_per_level and difficulty_weights need one entry per level"
            )
        for lo, hi in self.objects_per_level:
            if not 1 <= lo <= hi:
                raise ValueError(f"objects_per_level entries must be 1 <= min <= max, got {(lo, hi)}")
        from curation.schema import TASKS

        bad = [t for t, _ in self.task_weights if t not in TASKS]
        if bad:
            raise ValueError(f"task_weights names unknown tasks {bad}; known: {list(TASKS)}")
        if not any(w > 0 for _, w in self.task_weights):
            raise ValueError("task_weights must give some task a positive weight")
        if self.image_format not in ("JPEG", "PNG"):
            raise ValueError(f"image_format must be 'JPEG' or 'PNG', got {self.image_format!r}")
        if not 2 <= self.n_choices <= 6:
            raise ValueError(f"n_choices must be between 2 and 6, got {self.n_choices}")
        if self.files_per_folder < 1:
            raise ValueError("files_per_folder must be positive")

    @property
    def levels(self) -> int:
        return len(self.difficulty_weights)

    def rgb(self, color: str) -> RGB:
        return dict(self.colors)[color]

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict (tuples become lists), as saved in the report's params."""
        return _listify(dataclasses.asdict(self))


def _check_rate(name: str, value: float) -> None:
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value}")


def _listify(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _listify(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_listify(v) for v in value]
    return value
