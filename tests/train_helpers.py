"""Tiny canonical datasets with images for the trainer tests (a few records, 56x56 PNGs).

Records look like the synthetic data: a count question about coloured circles, a PeBR-layout
SFT answer, key words and a reference caption, so every pebr_stage1/pebr_stage2 component
applies.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

COLORS = [
    ("red", (220, 30, 30)),
    ("blue", (30, 30, 220)),
    ("green", (30, 180, 30)),
    ("yellow", (230, 210, 20)),
]


def pebr_answer(color: str, count: int) -> str:
    return (
        f"### Image Description: The image shows {count} {color} circles on a white background. "
        f"### Rationales: The question asks for the number of circles. "
        f"### Let's think step by step. ### Step 1: Count the {color} circles: there are {count}. "
        f"### The final answer is: {count}"
    )


def make_records(root: Path, n: int, *, with_messages: bool = True, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` canonical records whose images are written under ``root/images``."""
    from PIL import Image, ImageDraw

    from curation.schema import make_record

    (root / "images").mkdir(parents=True, exist_ok=True)
    records = []
    for i in range(n):
        color, rgb = COLORS[(i + seed) % len(COLORS)]
        count = 1 + (i + seed) % 3
        img = Image.new("RGB", (56, 56), "white")
        draw = ImageDraw.Draw(img)
        for k in range(count):
            x = 4 + 17 * k
            draw.ellipse([x, 20, x + 14, 34], fill=rgb)
        rel = f"images/s{seed}_{i}.png"
        img.save(root / rel)
        question = "How many circles are there?"
        answer = str(count)
        messages = (
            [
                {"role": "user", "content": "<image>" + question},
                {"role": "assistant", "content": pebr_answer(color, count)},
            ]
            if with_messages
            else None
        )
        records.append(
            make_record(
                uid=f"rec-{seed}-{i}",
                question=question,
                answer=answer,
                images=[rel],
                image_sizes=[(56, 56)],
                task="count",
                stage_hint="perception",
                source="test",
                key_words=[color, "circles"],
                reference_caption=f"{count} {color} circles on a white background",
                messages=messages or (),
            )
        )
    return records


def write_split(root: Path, name: str, n: int, *, with_messages: bool = True, seed: int = 0) -> Path:
    """A canonical Parquet file ``root/name`` of ``n`` records (images under ``root``)."""
    from curation.schema import write_parquet

    root.mkdir(parents=True, exist_ok=True)
    path = root / name
    write_parquet(make_records(root, n, with_messages=with_messages, seed=seed), str(path))
    return path
