"""The reward components a preset combines, each scoring a batch of (response, record) pairs.

A component returns, per sample, ``(value, details)`` with ``value`` in [0, 1], or ``None``
when it does not apply to the record (keywords without ``key_words``, alignment without an
image or reference caption, grounding without gold boxes). Components validate their
parameters and resolve their backends once, at preset load (:func:`resolve`), so a preset
that cannot run fails before training starts, not after a silent zero.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from rewards import sections

log = logging.getLogger(__name__)

Scored = tuple[float | None, dict[str, Any]]

#: Parameters each component accepts (``weight`` is required for all).
COMPONENT_KEYS: dict[str, tuple[str, ...]] = {
    "alignment": ("weight", "backend", "threshold", "caption_threshold", "similarity", "clip_model", "clip"),
    "keywords": ("weight", "mode", "scope", "max_density"),
    "format": ("weight", "style", "headers", "partial"),
    "length": ("weight", "max_tokens"),
    "accuracy": ("weight",),
    "grounding": ("weight", "convention", "metric", "f1_threshold"),
}

ALIGNMENT_BACKENDS = ("auto", "clip", "caption")
#: PeBR's CLIP similarity at which alignment reaches 1.0.
CLIP_THRESHOLD = 0.4
#: The same mapping for the caption backend (sentence-embedding cosines run higher than CLIP's).
CAPTION_ALIGN_THRESHOLD = 0.6
KEYWORD_SCOPES = ("response", "description")
GROUNDING_METRICS = ("iou", "f1")


def _uid(record: Mapping[str, Any]) -> str:
    return repr(record.get("uid") or record.get("qid") or "?")


def resolve(name: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """Check a component's parameters and resolve its backend; returns the resolved params.

    Raises ``ValueError`` for unknown components or keys (naming the allowed ones), and
    ``ValueError``/``FileNotFoundError``/``ImportError`` when a backend cannot run.
    """
    if name not in COMPONENT_KEYS:
        raise ValueError(f"unknown reward component {name!r}; known components: {sorted(COMPONENT_KEYS)}")
    if not isinstance(params, Mapping):
        raise ValueError(f"component {name!r} must be a mapping of parameters, got {params!r}")
    unknown = sorted(set(params) - set(COMPONENT_KEYS[name]))
    if unknown:
        raise ValueError(
            f"component {name!r}: unknown keys {unknown}; allowed keys: {list(COMPONENT_KEYS[name])}"
        )
    if "weight" not in params:
        raise ValueError(f"component {name!r} needs a 'weight' (weights come from config)")
    weight = params["weight"]
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight < 0:
        raise ValueError(f"component {name!r}: weight must be a non-negative number, got {weight!r}")
    out = dict(params)
    out["weight"] = float(weight)
    return _RESOLVERS.get(name, lambda p: p)(out)


def _resolve_alignment(p: dict[str, Any]) -> dict[str, Any]:
    from rewards.alignment import CLIP_ENV, ClipOptions, get_aligner
    from rewards.caption import resolve_similarity_backend

    backend = p.get("backend", "auto")
    if backend not in ALIGNMENT_BACKENDS:
        raise ValueError(f"alignment backend must be one of {list(ALIGNMENT_BACKENDS)}, got {backend!r}")
    clip_model = p.get("clip_model") or os.environ.get(CLIP_ENV) or None
    p["backend_requested"] = backend
    if backend == "auto":
        backend = "clip" if clip_model else "caption"
        log.info(
            "alignment backend 'auto' -> %r (%s)",
            backend,
            f"CLIP model {clip_model}"
            if clip_model
            else f"no CLIP model: set clip_model or {CLIP_ENV} for clip",
        )
    p["backend"] = backend
    p.setdefault("threshold", CLIP_THRESHOLD)
    p.setdefault("caption_threshold", CAPTION_ALIGN_THRESHOLD)
    for key in ("threshold", "caption_threshold"):
        if not float(p[key]) > 0:
            raise ValueError(f"alignment {key} must be positive, got {p[key]!r}")
    if backend == "clip":
        if not clip_model:
            raise ValueError(
                f"alignment backend 'clip' needs a local CLIP/FG-CLIP directory: set alignment.clip_model "
                f"in the preset or the {CLIP_ENV} environment variable (or use backend 'caption')"
            )
        extra = dict(p.get("clip") or {})
        allowed = [f for f in ClipOptions.__dataclass_fields__ if f != "model_dir"]
        unknown = sorted(set(extra) - set(allowed))
        if unknown:
            raise ValueError(f"alignment.clip: unknown keys {unknown}; allowed keys: {allowed}")
        p["clip_model"] = str(clip_model)
        p["clip"] = extra
        get_aligner(ClipOptions(model_dir=str(clip_model), **extra))  # checks the directory, loads nothing
    else:
        p["similarity"] = resolve_similarity_backend(p.get("similarity", "auto"))
    return p


def _resolve_keywords(p: dict[str, Any]) -> dict[str, Any]:
    from rewards.caption import KEYWORD_MODES

    p.setdefault("mode", "normalized")
    p.setdefault("scope", "response")
    p.setdefault("max_density", None)
    if p["mode"] not in KEYWORD_MODES:
        raise ValueError(f"keywords mode must be one of {list(KEYWORD_MODES)}, got {p['mode']!r}")
    if p["scope"] not in KEYWORD_SCOPES:
        raise ValueError(f"keywords scope must be one of {list(KEYWORD_SCOPES)}, got {p['scope']!r}")
    if p["max_density"] is not None and not 0 <= float(p["max_density"]) < 1:
        raise ValueError(f"keywords max_density must be in [0, 1), got {p['max_density']!r}")
    return p


def _resolve_format(p: dict[str, Any]) -> dict[str, Any]:
    from rewards.format import FormatOptions, headers_from

    FormatOptions(p.get("style", "sections"), headers_from(p.get("headers")), bool(p.get("partial", False)))
    return p


def _resolve_length(p: dict[str, Any]) -> dict[str, Any]:
    from rewards.length import PEBR_MAX_TOKENS, LengthOptions

    LengthOptions(int(p.setdefault("max_tokens", PEBR_MAX_TOKENS)))
    return p


def _resolve_grounding(p: dict[str, Any]) -> dict[str, Any]:
    from rewards.grounding import CONVENTIONS

    p.setdefault("convention", "auto")
    p.setdefault("metric", "iou")
    p.setdefault("f1_threshold", 0.5)
    if p["convention"] not in CONVENTIONS:
        raise ValueError(f"grounding convention must be one of {list(CONVENTIONS)}, got {p['convention']!r}")
    if p["metric"] not in GROUNDING_METRICS:
        raise ValueError(f"grounding metric must be one of {list(GROUNDING_METRICS)}, got {p['metric']!r}")
    return p


_RESOLVERS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "alignment": _resolve_alignment,
    "keywords": _resolve_keywords,
    "format": _resolve_format,
    "length": _resolve_length,
    "grounding": _resolve_grounding,
}


# ----------------------------------------------------------------------------- scoring


def score_alignment(
    p: Mapping[str, Any],
    responses: Sequence[str],
    records: Sequence[Mapping[str, Any]],
    image_root: str | None,
) -> list[Scored]:
    """Description vs first image (clip) or vs reference caption (caption), batched."""
    from rewards.caption import caption_similarity, threshold_map

    out: list[Scored] = [(None, {}) for _ in responses]
    backend = p["backend"]
    todo: list[tuple[int, str, Any]] = []
    for i, (resp, rec) in enumerate(zip(responses, records, strict=True)):
        target = (rec.get("images") or [None])[0] if backend == "clip" else rec.get("reference_caption")
        if not target:
            why = "record has no image" if backend == "clip" else "record has no reference_caption"
            out[i] = (None, {"backend": backend, "skipped": why})
            continue
        desc = sections.description(resp)
        if desc is None or not desc.strip():
            out[i] = (0.0, {"backend": backend, "similarity": None, "reason": "no image description section"})
            continue
        todo.append((i, desc, target))
    if not todo:
        return out
    texts = [t[1] for t in todo]
    targets = [t[2] for t in todo]
    if backend == "clip":
        from rewards.alignment import ClipOptions, get_aligner

        aligner = get_aligner(ClipOptions(model_dir=p["clip_model"], **dict(p.get("clip") or {})))
        sims = aligner.similarity(texts, targets, image_root)
        threshold, used = float(p["threshold"]), "clip"
    else:
        sims, used = caption_similarity(texts, targets, p["similarity"])
        threshold, used = float(p["caption_threshold"]), f"caption:{used}"
    for (i, _, _), sim in zip(todo, sims, strict=True):
        out[i] = (threshold_map(sim, threshold), {"backend": used, "similarity": sim, "threshold": threshold})
    return out


def score_keywords(p: Mapping[str, Any], response: str, record: Mapping[str, Any]) -> Scored:
    from rewards.caption import keyword_match

    key_words = [k for k in record.get("key_words") or [] if isinstance(k, str) and k.strip()]
    if not key_words:
        return None, {"skipped": "record has no key_words"}
    text = response if p["scope"] == "response" else (sections.description(response) or "")
    kw = keyword_match(text, key_words, p["mode"])
    value = kw.recall
    details: dict[str, Any] = {
        "found": list(kw.found),
        "missing": list(kw.missing),
        "mode": kw.mode,
        "scope": p["scope"],
        "density": kw.density,
    }
    max_density = p.get("max_density")
    if max_density is not None and kw.density > float(max_density):
        # Key words that crowd out everything else are stuffing, not description.
        value *= (1.0 - kw.density) / (1.0 - float(max_density))
        details["density_penalty"] = True
    return value, details


def score_format(p: Mapping[str, Any], response: str) -> Scored:
    from rewards.format import FormatOptions, check_format, headers_from

    res = check_format(
        response,
        FormatOptions(p.get("style", "sections"), headers_from(p.get("headers")), bool(p.get("partial"))),
    )
    return res.reward, {"missing": list(res.missing), "style": res.style}


def score_length(p: Mapping[str, Any], response: str, n_tokens: int | None) -> Scored:
    from rewards.length import LengthOptions, approx_tokens, length_reward

    source = "caller"
    if n_tokens is None:
        n_tokens, source = approx_tokens(response), "approx"
    return length_reward(int(n_tokens), LengthOptions(int(p["max_tokens"]))), {
        "n_tokens": int(n_tokens),
        "n_tokens_source": source,
    }


def score_grounding_component(p: Mapping[str, Any], response: str, record: Mapping[str, Any]) -> Scored:
    from rewards.accuracy import first_image_size, gold_boxes
    from rewards.grounding import score_grounding

    if not record.get("boxes") and record.get("task") != "grounding":
        return None, {"skipped": "record has no gold boxes"}
    boxes = gold_boxes(record)
    if not boxes:
        return None, {"skipped": "record has no gold boxes"}
    res = score_grounding(
        response, boxes, first_image_size(record), p["convention"], f1_threshold=float(p["f1_threshold"])
    )
    value = res.reward if p["metric"] == "iou" else res.f1
    return value, {
        "metric": p["metric"],
        "ious": list(res.ious),
        "best_iou": res.best_iou,
        "n_pred": res.n_pred,
        "n_gold": res.n_gold,
        "n_invalid": res.n_invalid,
        "scope": res.scope,
    }


def score_many(
    name: str,
    p: Mapping[str, Any],
    responses: Sequence[str],
    records: Sequence[Mapping[str, Any]],
    n_tokens: Sequence[int | None],
    image_root: str | None,
) -> list[Scored]:
    """Score one component (other than accuracy) on a batch."""
    if name == "alignment":
        return score_alignment(p, responses, records, image_root)
    if name == "keywords":
        return [score_keywords(p, r, rec) for r, rec in zip(responses, records, strict=True)]
    if name == "format":
        return [score_format(p, r) for r in responses]
    if name == "length":
        return [score_length(p, r, n) for r, n in zip(responses, n_tokens, strict=True)]
    if name == "grounding":
        return [score_grounding_component(p, r, rec) for r, rec in zip(responses, records, strict=True)]
    raise ValueError(f"component {name!r} is not scored by score_many")
