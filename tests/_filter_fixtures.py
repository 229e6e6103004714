"""Small Mulberry-shaped datasets for the filter tests, built with Pillow in a temporary directory.

``build_dataset(tmp_path)`` writes a few dozen images and returns records (sharegpt dicts,
in order) with the reason each one is expected to be dropped for (``None``: kept), covering
every stage and the defect categories of the benchmark generator.
"""

from __future__ import annotations

import io
import json
import os
import struct
import zlib
from pathlib import Path
from typing import Any

from PIL import Image

KELVIN = "\u212a"  # str.lower() maps it to "k"
DOTTED_I = "\u0130"  # str.lower() maps it to "i" + COMBINING DOT ABOVE


def image_bytes(
    size: tuple[int, int], fmt: str = "PNG", color: tuple[int, int, int] = (200, 30, 30), **kw: Any
) -> bytes:
    im = Image.new("RGB", size, color)
    for x in range(0, size[0], 7):  # some structure, so every image differs
        im.putpixel((x, x % size[1]), (x % 256, 10, 200))
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def jpeg_segments(data: bytes) -> list[tuple[int, int, int]]:
    """(marker, start, end) of the segments of a JPEG up to and including SOS."""
    out, i = [], 2
    while i < len(data):
        marker = data[i + 1]
        length = struct.unpack(">H", data[i + 2 : i + 4])[0]
        out.append((marker, i, i + 2 + length))
        if marker == 0xDA:
            break
        i += 2 + length
    return out


def bomb_png(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width x height`` pixels, with almost no pixel data."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def answer(final: str = "5", extra: str = "") -> str:
    return (
        "### Image Description:\nA red square.\n\n### Rationales:\nCount it.\n\n"
        f"### Let's think step by step.\n\n### Step 1:\nThere is one square.{extra}\n\n"
        f"### The final answer is: {final}"
    )


def record(question: str, images: Any, final: str = "5", extra: str = "", tags: int | None = None) -> dict:
    n = (1 if isinstance(images, str) else len(images)) if tags is None else tags
    return {
        "messages": [
            {"role": "user", "content": "<image>" * n + question},
            {"role": "assistant", "content": answer(final, extra)},
        ],
        "images": images,
    }


def build_dataset(root: Path) -> tuple[list[Any], list[str | None], Path]:
    """Images under ``root/images`` and the records with their expected drop reasons."""
    images = root / "images"
    (images / "sub").mkdir(parents=True)
    outside = root / "outside.png"
    outside.write_bytes(image_bytes((64, 64)))

    def put(rel: str, data: bytes) -> str:
        (images / rel).write_bytes(data)
        return rel

    clean_png = put("clean.png", image_bytes((64, 48)))
    clean_jpg = put("sub/clean.jpg", image_bytes((80, 60), "JPEG", (10, 120, 30)))
    copy_of_jpg = put("sub/copy.jpg", (images / clean_jpg).read_bytes())
    jpg = image_bytes((96, 64), "JPEG", (40, 40, 200))
    segs = jpeg_segments(jpg)
    sof = next(s for s in segs if s[0] == 0xC0)
    cut_pre_sof = put("pre_sof.jpg", jpg[: sof[1] + 6])
    sos_end = segs[-1][2]
    cut_data = put("cut_data.jpg", jpg[: sos_end + 40])
    garbage = put("garbage.jpg", b"this is not an image at all" * 10)
    os.symlink(outside, images / "link_out.png")
    os.symlink(images / clean_png, images / "link_in.png")
    (images / "adir.png").mkdir()
    recs: list[tuple[Any, str | None]] = [
        (record("How many squares?", [clean_png]), None),  # 0
        (record("What colour is it?", [clean_jpg]), None),  # 1
        (
            record("Q2", [put("r1.png", image_bytes((40, 40)))], extra=" Wait. Let me rethink it."),
            "reflective",
        ),  # 2
        (
            record("Q3", [put("r2.png", image_bytes((41, 40)))], extra=f" LET ME RETHIN{KELVIN} IT."),
            "reflective",
        ),  # 3
        (record("Q4", [put("n1.png", image_bytes((42, 40)))], extra=" Let me re-think it."), None),  # 4
        (
            record("Q5", [put("n2.png", image_bytes((43, 40)))], extra=f" LET ME RETH{DOTTED_I}NK IT."),
            None,
        ),  # 5
        (record("Say 'let me rethink it' if unsure.", [put("u.png", image_bytes((44, 40)))]), None),  # 6
        (record("Q7", ["sub/missing.png"]), "missing_image"),  # 7
        (record("Q8", ["../outside.png"]), "unsafe_path"),  # 8
        (record("Q9", [str(outside)]), "unsafe_path"),  # 9
        (record("Q10", ["link_out.png"]), "unsafe_path"),  # 10
        (record("Q11", [garbage]), "corrupt_image"),  # 11
        (record("Q12", [cut_pre_sof]), "corrupt_image"),  # 12
        (record("Q13", [cut_data]), None),  # 13: opens; only a full decode fails
        (record("Q14", [put("small_w.png", image_bytes((20, 100)))]), "small_image"),  # 14
        (record("Q15", [put("small_h.jpg", image_bytes((100, 27), "JPEG"))]), "small_image"),  # 15
        (record("Q16", [put("edge.png", image_bytes((28, 28)))]), None),  # 16: exactly the minimum
        (record("Q17", [put("bomb.png", bomb_png(20000, 10000))]), "too_many_pixels"),  # 17
        (record("How many squares?", [clean_png]), "duplicate"),  # 18: same as 0
        (
            record("  what COLOUR  is it?", [copy_of_jpg]),
            "duplicate",
        ),  # 19: same bytes as 1, question case/space
        (record("Is it red?", [clean_png]), None),  # 20: same image as 0, another question
        (
            {
                "messages": [
                    {"role": "user", "content": "<image>Q21"},
                    {"role": "assistant", "content": "  "},
                ],
                "images": [put("e1.png", image_bytes((45, 40)))],
            },
            "empty_answer",
        ),  # 21
        (record("Q22", [put("e2.png", image_bytes((46, 40)))], final="   "), "empty_answer"),  # 22
        (
            {
                "messages": [{"role": "user", "content": "<image>Q23"}],
                "images": [put("e3.png", image_bytes((47, 40)))],
            },
            "empty_answer",
        ),  # 23
        ({"conversation": [], "images": []}, "malformed"),  # 24: no messages
        ({"messages": record("Q25", [])["messages"], "images": 7}, "malformed"),  # 25
        (
            {
                "messages": [
                    {"role": "user", "content": ["<image>", "Q26"]},
                    {"role": "assistant", "content": "x"},
                ],
                "images": [clean_png],
            },
            "malformed",
        ),  # 26: content is a list
        (["not", "an", "object"], "malformed"),  # 27
        (record("Q28", [put("t.png", image_bytes((48, 40)))], tags=2), "malformed"),  # 28: 2 tags, 1 image
        (record("A text-only question?", []), None),  # 29
        (record("Q30", put("single.png", image_bytes((49, 40)))), None),  # 30: images is a string
        (
            record(
                "Q31", [put("m1.png", image_bytes((50, 40))), put("m2.jpg", image_bytes((51, 40), "JPEG"))]
            ),
            None,
        ),  # 31
        (record("Q32", [put("m3.png", image_bytes((52, 40))), "sub/gone.png"]), "missing_image"),  # 32
        (
            {
                "id": "x33",
                "images": [put("k.png", image_bytes((53, 40)))],
                "messages": record("Q33", [1])["messages"],
            },
            None,
        ),  # 33: extra key, other key order
        (record("Q34", [put("png_named.jpg", image_bytes((54, 40)))]), None),  # 34: extension mismatch
        (record("Q35", [put("anim.gif", image_bytes((55, 40), "GIF"))]), None),  # 35: a rarer format
        (record("Q36", ["adir.png"]), "corrupt_image"),  # 36: a directory
        (
            record("Q37", ["link_in.png"]),
            None,
        ),  # 37: a symlink inside the root; a third question on clean.png
    ]
    return [r for r, _ in recs], [e for _, e in recs], images


def write_json(records: list[Any], path: Path, indent: int | None = 2) -> Path:
    path.write_text(json.dumps(records, indent=indent, ensure_ascii=False), encoding="utf-8")
    return path


def write_jsonl(records: list[Any], path: Path) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


#: records a typed table (Parquet, a saved dataset) can hold: objects with list-typed images
#: and string contents (the other malformed kinds cannot be written as such columns)
def tabular(records: list[Any], expected: list[str | None]) -> tuple[list[dict], list[str | None]]:
    keep = [
        i
        for i, r in enumerate(records)
        if isinstance(r, dict)
        and set(r) == {"messages", "images"}
        and isinstance(r["images"], list)
        and all(isinstance(m["content"], str) for m in r["messages"])
    ]
    return [records[i] for i in keep], [expected[i] for i in keep]
