"""The defects real Mulberry data has, placed at exact rates in the SFT set.

:func:`plan_defects` decides which records get which defect; :func:`shrink` and
:func:`truncate` make the broken images. Reflective answers are written by
:mod:`curation.synth.answers`; missing images are simply not written; duplicates are copied
by the build.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image

from curation.synth.config import DEFECTS, SynthConfig

NONE = "none"
#: Tasks whose question or answer depends on absolute pixels: never shrunk, or the answer
#: would no longer match the picture.
PIXEL_TASKS = ("grounding",)
#: Where, between the start and the end of the compressed data, a truncated file is cut.
_CUT_RANGE = (0.2, 0.8)


@dataclass(frozen=True)
class DefectPlan:
    """What happens to each SFT index: a defect kind, and for duplicates the copied index."""

    kinds: tuple[str, ...]
    duplicate_of: dict[int, int]

    def counts(self) -> dict[str, int]:
        return {k: self.kinds.count(k) for k in (NONE, *DEFECTS)}


def defect_counts(n: int, cfg: SynthConfig) -> dict[str, int]:
    """``round(rate * n)`` per defect: the exact counts promised by the config."""
    return {d: round(getattr(cfg, f"{d}_rate") * n) for d in DEFECTS}


def plan_defects(n: int, tasks: Sequence[str], rng: random.Random, cfg: SynthConfig) -> DefectPlan:
    """Assign defects to SFT indices; duplicates always copy an earlier defect-free record."""
    counts = defect_counts(n, cfg)
    if n and counts["duplicate"] and n - sum(counts.values()) < 1:
        raise ValueError(f"an SFT set of {n} records has no room for a clean record to duplicate")
    order = list(range(n))
    rng.shuffle(order)
    kinds = [NONE] * n
    # shrinking first, over records whose answer survives resizing
    scalable = [i for i in order if tasks[i] not in PIXEL_TASKS]
    if len(scalable) < counts["small_image"]:
        raise ValueError(
            f"{counts['small_image']} small-image defects need as many non-grounding records, "
            f"got {len(scalable)}"
        )
    for i in scalable[: counts["small_image"]]:
        kinds[i] = "small_image"
    free = [i for i in order if kinds[i] == NONE]
    for kind in ("reflective", "missing_image", "truncated_image", "duplicate"):
        for i in free[: counts[kind]]:
            kinds[i] = kind
        free = free[counts[kind] :]
    # a duplicate needs a clean record before it: swap roles with the first clean one if not
    first_clean = min((i for i in range(n) if kinds[i] == NONE), default=None)
    if first_clean is not None:
        for i in range(first_clean):
            if kinds[i] == "duplicate":
                kinds[i], kinds[first_clean] = NONE, "duplicate"
                break
    clean = [i for i in range(n) if kinds[i] == NONE]
    duplicate_of = {}
    for i in range(n):
        if kinds[i] == "duplicate":
            duplicate_of[i] = rng.choice([c for c in clean if c < i])
    return DefectPlan(tuple(kinds), duplicate_of)


def shrink(image: Image.Image, rng: random.Random, cfg: SynthConfig) -> Image.Image:
    """Scale uniformly so that the shorter side is below ``cfg.small_image_limit`` pixels."""
    short = rng.randint(cfg.small_image_min, cfg.small_image_limit - 1)
    scale = short / min(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.BILINEAR)


def truncate(data: bytes, rng: random.Random) -> bytes:
    """Cut an encoded JPEG or PNG inside its compressed data: headers (and so the size) stay
    readable, ``Image.open`` works, decoding fails."""
    if data[:2] == b"\xff\xd8":
        start = _jpeg_scan_start(data)
    elif data[:8] == b"\x89PNG\r\n\x1a\n":
        start = _png_idat_data_start(data)
    else:
        raise ValueError("truncate() handles JPEG and PNG data only")
    lo, hi = _CUT_RANGE
    cut = start + int((len(data) - start) * rng.uniform(lo, hi))
    return data[: max(cut, start + 1)]


def _jpeg_scan_start(data: bytes) -> int:
    """Offset of the first byte after the start-of-scan header."""
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            raise ValueError(f"malformed JPEG: no marker at offset {i}")
        marker = data[i + 1]
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        if marker == 0xDA:
            return i + 2 + length
        i += 2 + length
    raise ValueError("malformed JPEG: no start-of-scan marker")


def _png_idat_data_start(data: bytes) -> int:
    i = 8
    while i + 8 <= len(data):
        (length,) = struct.unpack(">I", data[i : i + 4])
        if data[i + 4 : i + 8] == b"IDAT":
            return i + 8
        i += 12 + length
    raise ValueError("malformed PNG: no IDAT chunk")
