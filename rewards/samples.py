"""A small built-in set of canonical records, one or more per task, for audits and examples.

Images are tiny PNGs drawn on the fly (embedded as bytes), so the records need no image root.
"""

from __future__ import annotations

import io
from typing import Any

from curation.schema import make_record

_W, _H = 96, 64


def _png(shapes: list[tuple[str, str, tuple[int, int, int, int]]]) -> bytes:
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (_W, _H), "white")
    draw = ImageDraw.Draw(img)
    for kind, color, box in shapes:
        (draw.ellipse if kind == "circle" else draw.rectangle)(box, fill=color)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


_SCENE = [("circle", "red", (8, 8, 32, 32)), ("square", "blue", (56, 24, 88, 56))]
_CAPTION = "A red circle in the upper left and a blue square in the lower right on a white background."
_KEYS = ["red circle", "blue square"]

# (task, question, answer, extra fields)
_SPECS: list[tuple[str, str, str, dict[str, Any]]] = [
    ("count", "How many shapes are in the image?", "2", {}),
    ("color", "What color is the circle?", "red", {}),
    ("shape", "What shape is blue?", "square", {}),
    ("position", "Is the square left or right of the circle?", "right", {}),
    (
        "grounding",
        "Give the bounding box of the blue square.",
        "[56, 24, 88, 56]",
        {"boxes": [[56, 24, 88, 56]]},
    ),
    ("caption", "Describe the image.", _CAPTION, {}),
    ("arithmetic", "What is the number of shapes times 7?", "14", {}),
    ("comparison", "Is the square larger than the circle? Answer yes or no.", "yes", {}),
    (
        "multiple_choice",
        "Which color is the square?",
        "B",
        {"choices": ["red", "blue", "green", "yellow"]},
    ),
    ("math", "The circle has radius 12. What is its area, in terms of pi?", "144\\pi", {}),
    ("other", "What is the background color?", "white", {}),
]


def sample_records() -> list[dict[str, Any]]:
    """Canonical records covering every task, with key words and a reference caption."""
    image = _png(_SCENE)
    records = []
    for task, question, answer, extra in _SPECS:
        records.append(
            make_record(
                question=question,
                answer=answer,
                images=[image],
                image_sizes=[(_W, _H)],
                task=task,
                stage_hint="perception"
                if task in ("count", "color", "shape", "position", "grounding", "caption")
                else "reasoning",
                source="pebr-audit",
                key_words=_KEYS,
                reference_caption=_CAPTION,
                **extra,
            )
        )
    return records
