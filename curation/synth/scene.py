"""Scenes of coloured shapes and their scene graphs.

A scene is a canvas with a background colour and a few non-overlapping objects. Every object
fills its square bounding box (a circle touches all four sides, a triangle's base is the box's
bottom edge and its apex the top edge's middle), so the box in the scene graph is the tight box
of the drawn pixels and counts, boxes and positions can be checked from the graph alone.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from dataclasses import dataclass, field
from typing import Any

from curation.synth.config import SynthConfig

#: Fraction of an object's side that is free for a centred digit (how "fat" the shape is).
DIGIT_ROOM = {"circle": 0.7, "square": 0.9, "hexagon": 0.75, "diamond": 0.5, "triangle": 0.45, "star": 0.4}
#: The smallest font (px) that stays readable; objects with less room get no digit.
MIN_DIGIT_FONT = 8
#: Font size relative to the free room.
DIGIT_FILL = 0.8


@dataclass(frozen=True)
class SceneObject:
    """One shape in a scene; ``bbox`` is ``[x1, y1, x2, y2]`` in pixels, both ends drawn."""

    id: int
    shape: str
    color: str
    size: str
    bbox: tuple[int, int, int, int]
    digit: int | None = None

    @property
    def side(self) -> int:
        return self.bbox[2] - self.bbox[0]

    @property
    def center(self) -> tuple[float, float]:
        x1, y1, x2, y2 = self.bbox
        return (x1 + x2) / 2, (y1 + y2) / 2

    @property
    def name(self) -> str:
        """``"red circle"``: the colour-shape phrase used in key words and descriptions."""
        return f"{self.color} {self.shape}"

    @property
    def area(self) -> float:
        """Area in square pixels: a star covers far less of its box than a square does."""
        return self.side * self.side * AREA_FRACTION[self.shape]

    def font_size(self) -> int:
        return int(self.side * DIGIT_ROOM[self.shape] * DIGIT_FILL)


@dataclass(frozen=True)
class Scene:
    """A canvas and its objects: the scene graph every question is derived from."""

    width: int
    height: int
    background: str
    objects: tuple[SceneObject, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return {
            "width": self.width,
            "height": self.height,
            "background": self.background,
            # field by field: dataclasses.asdict deep-copies and was a quarter of the build time
            "objects": [
                {
                    "id": o.id,
                    "shape": o.shape,
                    "color": o.color,
                    "size": o.size,
                    "bbox": list(o.bbox),
                    "digit": o.digit,
                }
                for o in self.objects
            ],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Scene:
        objs = tuple(SceneObject(**{**o, "bbox": tuple(o["bbox"])}) for o in data["objects"])
        return cls(int(data["width"]), int(data["height"]), str(data["background"]), objs)

    def digest(self) -> str:
        """Content hash of the scene graph (canonical JSON), used to keep splits disjoint."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def scaled(self, width: int, height: int) -> Scene:
        """The same scene on a resized canvas (boxes scaled), for resized images."""
        sx, sy = width / self.width, height / self.height
        objs = tuple(
            SceneObject(
                o.id,
                o.shape,
                o.color,
                o.size,
                (
                    round(o.bbox[0] * sx),
                    round(o.bbox[1] * sy),
                    round(o.bbox[2] * sx),
                    round(o.bbox[3] * sy),
                ),
                o.digit,
            )
            for o in self.objects
        )
        return Scene(width, height, self.background, objs)

    def region(self, obj: SceneObject) -> str:
        """Where an object sits, by thirds of the canvas: "top left", "center", "bottom"..."""
        cx, cy = obj.center
        col = ("left", "", "right")[min(2, int(3 * cx / self.width))]
        row = ("top", "", "bottom")[min(2, int(3 * cy / self.height))]
        return " ".join(p for p in (row, col) if p) or "center"


def polygon(shape: str, bbox: tuple[int, int, int, int]) -> list[tuple[float, float]] | None:
    """Vertices of a polygonal shape filling ``bbox``; ``None`` for circles and squares."""
    x1, y1, x2, y2 = bbox
    w, h = x2 - x1, y2 - y1
    unit = _UNIT_POLYGONS.get(shape)
    if unit is None:
        return None
    return [(x1 + u * w, y1 + v * h) for u, v in unit]


def _star(points: int = 5, inner: float = 0.45) -> list[tuple[float, float]]:
    raw = []
    for k in range(2 * points):
        r = 1.0 if k % 2 == 0 else inner
        a = -math.pi / 2 + k * math.pi / points
        raw.append((r * math.cos(a), r * math.sin(a)))
    xs, ys = [p[0] for p in raw], [p[1] for p in raw]
    # normalise to the unit box so the star touches all four sides of its bbox
    return [((x - min(xs)) / (max(xs) - min(xs)), (y - min(ys)) / (max(ys) - min(ys))) for x, y in raw]


_UNIT_POLYGONS = {
    "triangle": [(0.5, 0.0), (1.0, 1.0), (0.0, 1.0)],
    "diamond": [(0.5, 0.0), (1.0, 0.5), (0.5, 1.0), (0.0, 0.5)],
    "hexagon": [(0.25, 0.0), (0.75, 0.0), (1.0, 0.5), (0.75, 1.0), (0.25, 1.0), (0.0, 0.5)],
    "star": _star(),
}


def _fits(box: tuple[int, int, int, int], placed: list[SceneObject], gap: int) -> bool:
    x1, y1, x2, y2 = box
    return all(
        x2 + gap < o.bbox[0] or o.bbox[2] + gap < x1 or y2 + gap < o.bbox[1] or o.bbox[3] + gap < y1
        for o in placed
    )


def sample_scene(rng: random.Random, cfg: SynthConfig, level: int, *, digit_rate: float) -> Scene:
    """A random scene for difficulty ``level`` (1-based).

    Higher levels get more objects drawn from fewer shapes and colours, so look-alike
    distractors appear. Objects that find no free spot are made smaller, then dropped, so a
    scene can hold fewer objects than asked for; callers check what they need.
    """
    lo, hi = cfg.objects_per_level[level - 1]
    n = rng.randint(lo, hi)
    kinds = cfg.kinds_per_level[level - 1]
    shapes = rng.sample(list(cfg.shapes), min(kinds, len(cfg.shapes)))
    colors = rng.sample([c for c, _ in cfg.colors], min(kinds + 1, len(cfg.colors)))
    side_lo = min(cfg.canvas_max, max(cfg.canvas_min, int(cfg.canvas_px_per_object * math.sqrt(n))))
    width, height = rng.randint(side_lo, cfg.canvas_max), rng.randint(side_lo, cfg.canvas_max)
    background = rng.choice(cfg.backgrounds)[0]
    gap = cfg.object_gap
    placed: list[SceneObject] = []
    for _ in range(n):
        shape, color = rng.choice(shapes), rng.choice(colors)
        cls_index = rng.randrange(len(cfg.size_classes))
        box = None
        while box is None and cls_index >= 0:
            size, smin, smax = cfg.size_classes[cls_index]
            side = rng.randint(smin, smax)
            for _ in range(cfg.placement_tries):
                x1 = rng.randint(gap, width - gap - side - 1)
                y1 = rng.randint(gap, height - gap - side - 1)
                cand = (x1, y1, x1 + side, y1 + side)
                if _fits(cand, placed, gap):
                    box = cand
                    break
            else:
                cls_index -= 1
        if box is None:
            continue
        digit = None
        obj = SceneObject(len(placed), shape, color, size, box)
        if obj.font_size() >= MIN_DIGIT_FONT and rng.random() < digit_rate:
            digit = rng.randint(1, 9)
        placed.append(SceneObject(obj.id, shape, color, size, box, digit))
    return Scene(width, height, background, tuple(placed))


def _shoelace(points: list[tuple[float, float]]) -> float:
    return (
        abs(
            sum(x1 * y2 - x2 * y1 for (x1, y1), (x2, y2) in zip(points, points[1:] + points[:1], strict=True))
        )
        / 2
    )


#: Fraction of its bounding box a shape covers.
AREA_FRACTION = {
    "circle": math.pi / 4,
    "square": 1.0,
    **{name: _shoelace(unit) for name, unit in _UNIT_POLYGONS.items()},
}
