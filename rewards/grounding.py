"""Grounding rewards: boxes parsed from a response, scored against gold boxes by IoU.

Three coordinate conventions exist in the wild and a reward must know which one it reads:

=================  ==============================================================  ===========
convention         what a coordinate means                                          written by
=================  ==============================================================  ===========
``absolute``       pixels of the (first) image                                      Qwen2.5-VL
``qwen2vl_1000``   a 0-1000 grid: pixel = value * W / 1000 (or H / 1000)            Qwen2-VL
``normalized``     a fraction of the image: pixel = value * W (or H)                LLaVA-style
=================  ==============================================================  ===========

With ``convention="auto"`` each box decides for itself: Qwen2-VL box tokens
(``<|box_start|>(x1,y1),(x2,y2)<|box_end|>``) are on the 0-1000 grid; a bracketed list of
four plain numbers is normalised when all four lie in [0, 1] and at least one is written
with a decimal point, otherwise absolute pixels. An explicit convention applies to every box.

Scoring (:func:`iou_reward`) sums IoUs under the optimal one-to-one matching and divides by
``max(#predicted, #gold)``: extra boxes dilute the score, so spamming boxes, one whole-image
box or the right box repeated never pays. Reversed or zero-area boxes are not repaired; they
count as predictions with IoU 0.

Example::

    >>> round(iou_reward("<answer>[10, 10, 50, 50]</answer>", [[10, 10, 50, 50]], (100, 100)), 3)
    1.0
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

Box = tuple[float, float, float, float]

CONVENTIONS = ("auto", "absolute", "qwen2vl_1000", "normalized")

#: Model family -> coordinate convention its grounding outputs use. Keys are matched as
#: case-insensitive substrings of a model name or path, longest key first.
MODEL_CONVENTIONS: dict[str, str] = {
    "qwen2-vl": "qwen2vl_1000",
    "qwen2_vl": "qwen2vl_1000",
    "qwen2.5-vl": "absolute",
    "qwen2_5_vl": "absolute",
    "qwen3-vl": "qwen2vl_1000",
    "qwen3_vl": "qwen2vl_1000",
    "internvl": "qwen2vl_1000",
    "llava": "normalized",
}

#: The grid size of Qwen2-VL's box tokens.
QWEN2VL_GRID = 1000.0

_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_PLAIN_NUMBER = re.compile(rf"^\s*{_NUM}\s*$")
# The optional label before a box is found by looking back from the box (see _label_before):
# an optional lazy group in front of the box token would rescan the text from every
# ``<|object_ref_start|>`` and make parsing quadratic.
_QWEN_BOX = re.compile(
    rf"<\|box_start\|>\s*\(\s*(?P<x1>{_NUM})\s*,\s*(?P<y1>{_NUM})\s*\)\s*,?\s*"
    rf"\(\s*(?P<x2>{_NUM})\s*,\s*(?P<y2>{_NUM})\s*\)\s*<\|box_end\|>",
)
_REF_START, _REF_END = "<|object_ref_start|>", "<|object_ref_end|>"
# Innermost square-bracket lists: their content holds no bracket, so lists of lists yield
# one match per inner list.
_INNER_LIST = re.compile(r"\[([^\[\]]*)\]")


@dataclass(frozen=True)
class ParsedBox:
    """One box read from a response, in absolute pixels (before clipping)."""

    coords: Box
    source: str  # "qwen_tokens" or "list"
    convention: str  # the convention that scaled it
    raw: str
    label: str | None = None

    @property
    def valid(self) -> bool:
        """A box is valid iff x2 > x1 and y2 > y1; invalid boxes are never repaired."""
        x1, y1, x2, y2 = self.coords
        return x2 > x1 and y2 > y1


@dataclass(frozen=True)
class MatchResult:
    """The optimal one-to-one matching between predicted and gold boxes."""

    pairs: tuple[tuple[int, int, float], ...]  # (pred index, gold index, IoU)
    total_iou: float


@dataclass(frozen=True)
class GroundingResult:
    """What :func:`score_grounding` found and how it scored it."""

    reward: float
    f1: float
    best_iou: float
    n_pred: int
    n_gold: int
    n_invalid: int
    ious: tuple[float, ...]
    boxes: tuple[Box, ...]
    convention: str
    scope: str
    details: dict = field(default_factory=dict)


def convention_for_model(model_name: str) -> str:
    """The coordinate convention of a model family, from :data:`MODEL_CONVENTIONS`.

    Raises ``ValueError`` naming the known families when none matches.
    """
    name = model_name.lower()
    for key in sorted(MODEL_CONVENTIONS, key=len, reverse=True):
        if key in name:
            return MODEL_CONVENTIONS[key]
    raise ValueError(
        f"no coordinate convention known for model {model_name!r}; known families: "
        f"{sorted(MODEL_CONVENTIONS)}; pass convention= one of {list(CONVENTIONS[1:])}"
    )


def _check_convention(convention: str) -> None:
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {list(CONVENTIONS)}, got {convention!r}")


def _image_size(image_size: Sequence[float] | Mapping[str, float]) -> tuple[float, float]:
    if isinstance(image_size, Mapping):
        w, h = image_size["width"], image_size["height"]
    else:
        w, h = image_size
    w, h = float(w), float(h)
    if not (w > 0 and h > 0 and math.isfinite(w) and math.isfinite(h)):
        raise ValueError(f"image size must be positive and finite, got {image_size!r}")
    return w, h


def _scale(values: Sequence[float], convention: str, w: float, h: float) -> Box:
    x1, y1, x2, y2 = values
    if convention == "qwen2vl_1000":
        sx, sy = w / QWEN2VL_GRID, h / QWEN2VL_GRID
    elif convention == "normalized":
        sx, sy = w, h
    else:
        sx = sy = 1.0
    return (x1 * sx, y1 * sy, x2 * sx, y2 * sy)


def grounding_text(response: str) -> tuple[str, str]:
    """The part of a response that holds its boxes, and which part it is.

    The last ``<answer>...</answer>`` block when there is one; else the section after
    ``### The final answer is:`` (PeBR's layout: a description may mention coordinates
    that are not the answer); else the whole response.
    """
    from rewards.extract import answer_block
    from rewards.sections import final_answer

    block = answer_block(response)
    if block is not None:
        return block, "answer_block"
    final = final_answer(response)
    if final is not None:
        return final, "final_answer"
    return response, "response"


def _label_before(text: str, pos: int, floor: int = 0) -> str | None:
    """The ``<|object_ref_start|>label<|object_ref_end|>`` right before ``pos``, if any.

    The label must start after ``floor`` (the end of the previous box), so each lookup scans
    only the text since the previous box."""
    stop = pos
    while stop > 0 and text[stop - 1].isspace():  # no slicing: linear over many boxes
        stop -= 1
    end = stop - len(_REF_END)
    if end < 0 or not text.startswith(_REF_END, end):
        return None
    start = text.rfind(_REF_START, floor, end)
    return None if start < 0 else text[start + len(_REF_START) : end].strip()


def parse_boxes(
    text: str, image_size: Sequence[float] | Mapping[str, float], convention: str = "auto"
) -> list[ParsedBox]:
    """Every box in ``text``, in order of appearance, scaled to absolute pixels.

    ``text`` is read as given (use :func:`grounding_text` to pick the answer part first).
    Lists of another length than four, or holding anything but plain numbers (``NaN``,
    ``Infinity``, strings, ``null``), are not boxes. Invalid (reversed, zero-area) boxes are
    returned too, with ``valid == False``, because they count as predictions.
    """
    _check_convention(convention)
    w, h = _image_size(image_size)
    found: list[tuple[int, ParsedBox]] = []
    floor = 0
    for m in _QWEN_BOX.finditer(text):
        values = [float(m.group(k)) for k in ("x1", "y1", "x2", "y2")]
        conv = "qwen2vl_1000" if convention == "auto" else convention
        label = _label_before(text, m.start(), floor)
        floor = m.end()
        found.append(
            (m.start(), ParsedBox(_scale(values, conv, w, h), "qwen_tokens", conv, m.group(0), label))
        )
    # Blank out the token boxes so their numbers are not read a second time as lists.
    rest = _QWEN_BOX.sub(lambda m: " " * len(m.group(0)), text)
    for m in _INNER_LIST.finditer(rest):
        items = m.group(1).split(",")
        if len(items) != 4 or not all(_PLAIN_NUMBER.match(it) for it in items):
            continue
        values = [float(it) for it in items]
        if not all(math.isfinite(v) for v in values):
            continue  # 1e999 parses to inf: not a plain coordinate
        if convention == "auto":
            is_fraction = all(0.0 <= v <= 1.0 for v in values) and any("." in it for it in items)
            conv = "normalized" if is_fraction else "absolute"
        else:
            conv = convention
        found.append((m.start(), ParsedBox(_scale(values, conv, w, h), "list", conv, m.group(0))))
    found.sort(key=lambda t: t[0])
    return [box for _, box in found]


def clip_box(box: Sequence[float], image_size: Sequence[float] | Mapping[str, float]) -> Box:
    """Clip a box to the image ``[0, W] x [0, H]``."""
    w, h = _image_size(image_size)
    x1, y1, x2, y2 = (float(v) for v in box)
    return (min(max(x1, 0.0), w), min(max(y1, 0.0), h), min(max(x2, 0.0), w), min(max(y2, 0.0), h))


def _area(box: Sequence[float]) -> float:
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two ``[x1, y1, x2, y2]`` boxes with continuous areas.

    An invalid box (x2 <= x1 or y2 <= y1) has IoU 0 with anything.
    """
    if not (a[2] > a[0] and a[3] > a[1] and b[2] > b[0] and b[3] > b[1]):
        return 0.0
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    return inter / (_area(a) + _area(b) - inter)


def _max_weight_assignment(weights: list[list[float]]) -> list[tuple[int, int]]:
    """Rows matched to columns maximising the total weight (Hungarian algorithm).

    Shortest augmenting paths with potentials, O(n^2 m) for n rows <= m columns; the
    matrix is transposed when it has more rows than columns.
    """
    n = len(weights)
    m = len(weights[0]) if n else 0
    if n == 0 or m == 0:
        return []
    if n > m:
        transposed = [[weights[i][j] for i in range(n)] for j in range(m)]
        return [(i, j) for j, i in _max_weight_assignment(transposed)]
    # Minimise cost = -weight. Arrays are 1-based; index 0 is the virtual start column.
    inf = float("inf")
    u = [0.0] * (n + 1)
    v = [0.0] * (m + 1)
    owner = [0] * (m + 1)  # owner[j] = row matched to column j
    way = [0] * (m + 1)
    for i in range(1, n + 1):
        owner[0] = i
        j0 = 0
        minv = [inf] * (m + 1)
        used = [False] * (m + 1)
        while True:
            used[j0] = True
            i0, delta, j1 = owner[j0], inf, 0
            for j in range(1, m + 1):
                if used[j]:
                    continue
                cur = -weights[i0 - 1][j - 1] - u[i0] - v[j]
                if cur < minv[j]:
                    minv[j], way[j] = cur, j0
                if minv[j] < delta:
                    delta, j1 = minv[j], j
            for j in range(m + 1):
                if used[j]:
                    u[owner[j]] += delta
                    v[j] -= delta
                else:
                    minv[j] -= delta
            j0 = j1
            if owner[j0] == 0:
                break
        while j0:
            j1 = way[j0]
            owner[j0] = owner[j1]
            j0 = j1
    return [(owner[j] - 1, j - 1) for j in range(1, m + 1) if owner[j]]


def _candidates(
    pred: Sequence[Sequence[float]], gold: Sequence[Sequence[float]]
) -> tuple[list[int], list[list[float]]]:
    """Predictions that can take part in a matching, with their IoU rows.

    A prediction overlapping no gold box can never be matched, and no more than ``len(gold)``
    copies of one box can; dropping the rest keeps spam of thousands of boxes cheap.
    """
    copies: dict[tuple[float, ...], int] = {}
    rows: list[int] = []
    weights: list[list[float]] = []
    for i, p in enumerate(pred):
        key = tuple(p)
        if copies.get(key, 0) >= len(gold):
            continue
        row = [iou(p, g) for g in gold]
        if any(x > 0 for x in row):
            copies[key] = copies.get(key, 0) + 1
            rows.append(i)
            weights.append(row)
    return rows, weights


def match(pred: Sequence[Sequence[float]], gold: Sequence[Sequence[float]]) -> MatchResult:
    """Optimal one-to-one matching of predicted to gold boxes by total IoU (not greedy).

    Only the candidates of :func:`_candidates` enter the assignment.
    """
    rows, weights = _candidates(pred, gold)
    pairs = [(rows[r], j, weights[r][j]) for r, j in _max_weight_assignment(weights) if weights[r][j] > 0]
    pairs.sort()
    return MatchResult(tuple(pairs), sum(p[2] for p in pairs))


def f1_at(pred: Sequence[Sequence[float]], gold: Sequence[Sequence[float]], threshold: float = 0.5) -> float:
    """F1 of a one-to-one matching that counts a pair as a hit when IoU >= ``threshold``.

    The matching maximises the number of hits first, then their total IoU. No predictions
    and no gold boxes is a perfect 1.0.
    """
    if not pred and not gold:
        return 1.0
    if not pred or not gold:
        return 0.0
    big = min(len(pred), len(gold)) + 1.0  # any extra hit outweighs all IoU tie-breaks
    _, ious = _candidates(pred, gold)
    weights = [[(big + x) if x >= threshold else 0.0 for x in row] for row in ious]
    hits = sum(1 for i, j in _max_weight_assignment(weights) if ious[i][j] >= threshold)
    if hits == 0:
        return 0.0
    precision, recall = hits / len(pred), hits / len(gold)
    return 2 * precision * recall / (precision + recall)


def score_boxes(
    pred: Sequence[ParsedBox], gold_boxes: Sequence[Sequence[float]], image_size, *, f1_threshold: float = 0.5
) -> tuple[float, float, float, MatchResult, list[Box]]:
    """Reward, F1, best IoU, matching and clipped boxes for parsed predictions."""
    gold = [clip_box(g, image_size) for g in gold_boxes]
    # Invalid boxes keep their (unclipped) coordinates so they stay invalid: IoU 0.
    boxes = [clip_box(b.coords, image_size) if b.valid else b.coords for b in pred]
    result = match(boxes, gold)
    denom = max(len(boxes), len(gold))
    reward = 1.0 if denom == 0 else result.total_iou / denom
    # the best IoU of any predicted box with any gold box (not only within the matching)
    best = max((x for row in _candidates(boxes, gold)[1] for x in row), default=0.0)
    return reward, f1_at(boxes, gold, f1_threshold), best, result, boxes


def score_grounding(
    response: str,
    gold_boxes: Sequence[Sequence[float]],
    image_size: Sequence[float] | Mapping[str, float],
    convention: str = "auto",
    *,
    f1_threshold: float = 0.5,
) -> GroundingResult:
    """Parse the boxes of a response and score them against ``gold_boxes`` (absolute pixels)."""
    text, scope = grounding_text(response)
    parsed = parse_boxes(text, image_size, convention)
    reward, f1, best, result, boxes = score_boxes(parsed, gold_boxes, image_size, f1_threshold=f1_threshold)
    ious = [0.0] * len(boxes)
    for i, _j, x in result.pairs:
        ious[i] = x
    return GroundingResult(
        reward=reward,
        f1=f1,
        best_iou=best,
        n_pred=len(parsed),
        n_gold=len(gold_boxes),
        n_invalid=sum(not b.valid for b in parsed),
        ious=tuple(ious),
        boxes=tuple(boxes),
        convention=convention,
        scope=scope,
        details={"conventions": [b.convention for b in parsed], "pairs": [list(p) for p in result.pairs]},
    )


def iou_reward(
    response: str,
    gold_boxes: Sequence[Sequence[float]],
    image_size: Sequence[float] | Mapping[str, float],
    convention: str = "auto",
) -> float:
    """Sum of IoUs under the optimal one-to-one matching / max(#predicted, #gold).

    No gold boxes and no predicted boxes scores 1.0 (nothing to find, nothing claimed).
    """
    return score_grounding(response, gold_boxes, image_size, convention).reward


def f1_reward(
    response: str,
    gold_boxes: Sequence[Sequence[float]],
    image_size: Sequence[float] | Mapping[str, float],
    convention: str = "auto",
    threshold: float = 0.5,
) -> float:
    """F1@``threshold`` of the response's boxes against the gold boxes."""
    return score_grounding(response, gold_boxes, image_size, convention, f1_threshold=threshold).f1
