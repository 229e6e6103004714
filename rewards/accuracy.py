"""Task-aware correctness: what "accuracy" means for PeBR's difficulty buckets and stage 2.

- ``grounding``: the best-matching predicted box has IoU >= ``iou_threshold`` (0.5) with a
  gold box; the score is :func:`rewards.grounding.iou_reward` (extra boxes dilute it).
- ``caption``: similarity of the description (or the answer) to the record's
  ``reference_caption``, or keyword recall when there is no reference, at least
  ``caption_threshold``.
- everything else: :func:`rewards.math.grade` of the response against ``record["answer"]``
  (with the record's ``choices`` for multiple choice); score 1.0 or 0.0.

Example::

    >>> accuracy("### The final answer is: 3", {"task": "count", "answer": "3"}).correct
    True
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from rewards import sections

#: PeBR-style threshold: a grounding answer is correct when a box overlaps gold at IoU >= 0.5.
IOU_THRESHOLD = 0.5
#: A caption is correct when its similarity to the reference reaches this value...
CAPTION_THRESHOLD = 0.5
#: ... and it names at least this fraction of the record's key words...
CAPTION_KEYWORD_RECALL = 0.5
#: ... without the key words making up more than this fraction of its words (stuffing).
CAPTION_MAX_KEYWORD_DENSITY = 0.8


@dataclass(frozen=True)
class AccuracyOptions:
    """Options of :func:`accuracy`; every threshold is named here, PeBR's values by default."""

    iou_threshold: float = IOU_THRESHOLD
    convention: str = "auto"
    caption_threshold: float = CAPTION_THRESHOLD
    caption_keyword_recall: float = CAPTION_KEYWORD_RECALL
    caption_max_keyword_density: float = CAPTION_MAX_KEYWORD_DENSITY
    caption_similarity: str = "auto"
    keyword_mode: str = "normalized"
    #: Keyword arguments for :func:`rewards.math.grade` (e.g. a timeout).
    math: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AccuracyResult:
    """Whether a response is correct, a graded score in [0, 1], and how it was decided."""

    correct: bool
    score: float
    method: str
    details: dict = field(default_factory=dict)


def _uid(record: Mapping[str, Any]) -> str:
    return repr(record.get("uid") or record.get("qid") or "?")


def has_gold(record: Mapping[str, Any]) -> bool:
    """Whether ``record`` carries something to be correct against."""
    if record.get("task") == "grounding" and record.get("boxes"):
        return True
    if record.get("task") == "caption" and (record.get("reference_caption") or record.get("key_words")):
        return True
    answer = record.get("answer")
    return isinstance(answer, str) and bool(answer.strip())


def first_image_size(record: Mapping[str, Any]) -> tuple[float, float]:
    """``(width, height)`` of the record's first image, or ``ValueError`` naming the record."""
    sizes = record.get("image_sizes") or []
    if not sizes:
        raise ValueError(f"record {_uid(record)}: a grounding reward needs image_sizes (width, height)")
    size = sizes[0]
    if isinstance(size, Mapping):
        return float(size["width"]), float(size["height"])
    return float(size[0]), float(size[1])


def gold_boxes(record: Mapping[str, Any]) -> list[list[float]]:
    """The record's gold boxes (absolute pixels); falls back to boxes written in ``answer``."""
    boxes = record.get("boxes")
    if boxes:
        return [[float(v) for v in b] for b in boxes]
    from rewards.grounding import parse_boxes

    answer = record.get("answer") or ""
    parsed = parse_boxes(answer, first_image_size(record), "absolute") if answer else []
    return [list(b.coords) for b in parsed]


def caption_text(response: str) -> str:
    """What a caption is judged on: the description section, else the final answer, else all."""
    parts = sections.parse_sections(response)
    if parts.description is not None:
        return parts.description
    if parts.final_answer is not None:
        return parts.final_answer
    return response


def accuracy(response: str, record: Mapping[str, Any], **opts: Any) -> AccuracyResult:
    """Task-aware correctness of ``response`` for a canonical ``record``.

    ``opts`` are the fields of :class:`AccuracyOptions`. Raises ``ValueError`` naming the
    record when it has no gold answer (see :func:`has_gold`).
    """
    options = AccuracyOptions(**opts)
    task = record.get("task")
    if task == "grounding" and (record.get("boxes") or record.get("answer")):
        return _grounding(response, record, options)
    if task == "caption" and (record.get("reference_caption") or record.get("key_words")):
        return _caption(response, record, options)
    answer = record.get("answer")
    if not isinstance(answer, str) or not answer.strip():
        raise ValueError(f"record {_uid(record)} (task {task!r}) has no gold answer to grade against")
    from rewards.math import grade

    choices = [c for c in record.get("choices") or [] if isinstance(c, str)]
    if choices:
        return _multiple_choice(response, answer, choices, options)
    g = grade(response, answer, **dict(options.math))
    return AccuracyResult(
        correct=bool(g.correct),
        score=1.0 if g.correct else 0.0,
        method=f"math:{g.method}",
        details={"extracted": g.extracted, "error": g.error, "timed_out": g.timed_out},
    )


def _norm_choice(text: str) -> str:
    return " ".join(text.lower().replace(".", " ").split())


def _multiple_choice(
    response: str, answer: str, choices: list[str], options: AccuracyOptions
) -> AccuracyResult:
    """Grade against the option letter; the option's text, written out alone, also counts.

    The gold may be a letter (``"B"``) or the text of an option (``"blue"``); the letters are
    ``A..`` for the record's choices, so an answer naming a letter beyond them is wrong.
    """
    from rewards.math import grade

    letters = "".join(chr(ord("A") + i) for i in range(min(len(choices), 26)))
    gold = answer.strip().strip("()").rstrip(".")
    if not (len(gold) == 1 and gold.upper() in letters):
        matches = [i for i, c in enumerate(choices) if _norm_choice(c) == _norm_choice(answer)]
        if len(matches) != 1:  # the gold is not one of the options: grade it as it is
            g = grade(response, answer, **dict(options.math))
            return AccuracyResult(
                bool(g.correct),
                float(g.correct),
                f"math:{g.method}",
                {"extracted": g.extracted, "error": g.error, "timed_out": g.timed_out},
            )
        gold = letters[matches[0]]
    gold = gold.upper()
    g = grade(response, gold, choices=letters, **dict(options.math))
    correct, method = bool(g.correct), f"math:{g.method}"
    gold_text = choices[letters.index(gold)]
    if not correct and g.extracted is not None and _norm_choice(g.extracted) == _norm_choice(gold_text):
        correct, method = True, "multiple_choice:text"
    details = {"extracted": g.extracted, "error": g.error, "timed_out": g.timed_out, "gold_letter": gold}
    return AccuracyResult(correct, 1.0 if correct else 0.0, method, details)


def _grounding(response: str, record: Mapping[str, Any], options: AccuracyOptions) -> AccuracyResult:
    from rewards.grounding import score_grounding

    boxes = gold_boxes(record)
    if not boxes:
        raise ValueError(f"record {_uid(record)}: a grounding record needs gold boxes")
    res = score_grounding(response, boxes, first_image_size(record), options.convention)
    return AccuracyResult(
        correct=res.best_iou >= options.iou_threshold,
        score=res.reward,
        method="grounding:iou",
        details={
            "best_iou": res.best_iou,
            "ious": list(res.ious),
            "n_pred": res.n_pred,
            "n_gold": res.n_gold,
            "n_invalid": res.n_invalid,
            "f1": res.f1,
            "scope": res.scope,
            "iou_threshold": options.iou_threshold,
        },
    )


def _caption(response: str, record: Mapping[str, Any], options: AccuracyOptions) -> AccuracyResult:
    """A caption is correct when it reads like the reference AND names what is in the image.

    Similarity alone is too lenient: every caption of a family of images ("The image shows 5
    shapes on a white background...") is close to every other one, whatever it gets wrong.
    So when the record has key words, at least ``caption_keyword_recall`` of them must appear,
    and they may make up at most ``caption_max_keyword_density`` of the words (a list of key
    words is not a caption). The score is the weaker of the two signals.
    """
    from rewards.caption import caption_similarity, keyword_match

    text = caption_text(response)
    reference = record.get("reference_caption")
    key_words = [k for k in record.get("key_words") or [] if isinstance(k, str) and k.strip()]
    details: dict[str, Any] = {"caption_threshold": options.caption_threshold}
    checks, scores, methods = [], [], []
    if reference:
        (similarity,), backend = caption_similarity([text], [reference], options.caption_similarity)
        details["similarity"] = similarity
        checks.append(similarity >= options.caption_threshold)
        scores.append(similarity)
        methods.append(backend)
    if key_words:
        kw = keyword_match(text, key_words, options.keyword_mode)
        details.update(
            found=list(kw.found),
            missing=list(kw.missing),
            keyword_recall=kw.recall,
            keyword_density=kw.density,
            caption_keyword_recall=options.caption_keyword_recall,
        )
        stuffed = kw.density > options.caption_max_keyword_density
        details["stuffed"] = stuffed
        checks.append(kw.recall >= options.caption_keyword_recall and not stuffed)
        scores.append(0.0 if stuffed else kw.recall)
        methods.append(f"keywords:{kw.mode}")
    method = "caption:" + "+".join(methods)
    return AccuracyResult(all(checks), min(scores), method, details)
