"""Reward presets: named, weighted combinations of reward components, loaded from YAML.

The built-in presets live in ``rewards/presets.yaml`` (PeBR's weights: ``pebr_stage1``,
``pebr_stage2``, ``pebr_sample``, plus ``pebr_stage1_guarded`` and ``grounding_iou``).
Weights always come from config; no function in this package has a default weight.

Every score explains itself: :class:`RewardResult` carries the total, each component's value
(``None`` = not applicable to this record), the weights, whether the response is correct
(computed for every record with a gold answer, so stage 1 logs it and the difficulty
sampler buckets on it) and details (extracted answer, method, IoUs, backend used).

**Not applicable components.** When a component does not apply, the total renormalises over
the applicable weights while keeping the preset's weight sum:
``total = sum(w_i * c_i, applicable) * sum(w, all) / sum(w, applicable)``. A stage-1 record
without key words is then scored 0.4/0.6 alignment + 0.1/0.6 format + 0.1/0.6 length, not
capped at 0.6. ``details["applicable_weight"]`` and ``details["renormalised"]`` show it.
Renormalising must not turn format and length alone into a full reward (an empty response
would earn 0.5 on a stage-1 record with neither key words nor a reference), so a preset names
its content components in ``require_one_of``: a record where none of them applies raises
:class:`NotApplicableError` (``score_batch(on_error="collect")`` marks it, TRL gets ``None``).

Example::

    >>> preset = get_preset("pebr_stage2")
    >>> result = preset.score("### The final answer is: 3", {"task": "count", "answer": "3"})
    >>> result.correct, result.components["accuracy"]
    (True, 1.0)
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

PRESETS_FILE = Path(__file__).with_name("presets.yaml")
#: The canonical record columns a preset reads: adapters (TRL, EasyR1, rescoring) copy these
#: from their inputs into the record they score.
RECORD_COLUMNS = (
    "uid",
    "task",
    "question",
    "answer",
    "choices",
    "key_words",
    "boxes",
    "image_sizes",
    "images",
    "reference_caption",
)
PRESET_KEYS = ("description", "components", "accuracy", "require_one_of")
ON_ERROR = ("raise", "collect")
#: What a bad sample raises (bad record, missing image file, unreadable image); anything else
#: is a bug and always propagates.
_SAMPLE_ERRORS = (ValueError, TypeError, KeyError, OSError)


@dataclass(frozen=True)
class RewardResult:
    """One scored response."""

    total: float
    components: dict[str, float | None]
    weights: dict[str, float]
    correct: bool | None
    details: dict[str, Any] = field(default_factory=dict)

    def to_row(self) -> dict[str, Any]:
        """Flat columns for a table: ``reward_total``, ``reward_<component>``, ``correct``."""
        row: dict[str, Any] = {"reward_total": self.total, "correct": self.correct}
        row.update({f"reward_{k}": v for k, v in self.components.items()})
        return row


class NotApplicableError(ValueError):
    """The preset has nothing to reward on this record (none of ``require_one_of`` applies)."""


@dataclass(frozen=True)
class ScoreError:
    """A sample that could not be scored (``score_batch(on_error="collect")``).

    ``not_applicable`` is true when the record is valid but the preset has nothing to
    reward on it (see ``require_one_of``), false for bad input.
    """

    index: int
    uid: str | None
    error: str
    not_applicable: bool = False


@dataclass(frozen=True)
class ComponentSpec:
    name: str
    weight: float
    params: dict[str, Any]


@dataclass(frozen=True)
class RewardPreset:
    """A weighted sum of reward components with accuracy options; build with :func:`get_preset`.

    Plain data, so it pickles; models (CLIP, sentence embedder) are loaded lazily per
    process and shared.
    """

    name: str
    description: str
    components: tuple[ComponentSpec, ...]
    accuracy_options: dict[str, Any]
    #: Content components of which at least one must apply to a record (format and length
    #: alone must not be renormalised into a full reward); empty = no requirement.
    require_one_of: tuple[str, ...] = ()

    @property
    def weights(self) -> dict[str, float]:
        return {c.name: c.weight for c in self.components}

    def component(self, name: str) -> ComponentSpec:
        for c in self.components:
            if c.name == name:
                return c
        raise KeyError(f"preset {self.name!r} has no component {name!r}; it has {list(self.weights)}")

    # ------------------------------------------------------------------ scoring

    def score(
        self,
        response: str,
        record: Mapping[str, Any],
        *,
        n_tokens: int | None = None,
        image_root: str | None = None,
    ) -> RewardResult:
        """Score one response against its canonical record."""
        return self._score_all([response], [record], [n_tokens], image_root)[0]

    def score_batch(
        self,
        responses: Sequence[str],
        records: Sequence[Mapping[str, Any]],
        n_tokens: Sequence[int | None] | None = None,
        image_root: str | None = None,
        workers: int = 1,
        *,
        on_error: str = "raise",
        progress: Callable[[int], None] | None = None,
        chunk_size: int = 64,
    ) -> list[RewardResult | ScoreError]:
        """Score many responses; model components (CLIP, embeddings) run batched.

        ``workers > 1`` scores chunks in that many processes (each loads its own models).
        ``on_error="collect"`` puts a :class:`ScoreError` in place of a sample that fails
        instead of raising; ``progress(n)`` is called as ``n`` more samples are done.
        """
        if on_error not in ON_ERROR:
            raise ValueError(f"on_error must be one of {list(ON_ERROR)}, got {on_error!r}")
        if len(responses) != len(records):
            raise ValueError(f"got {len(responses)} responses for {len(records)} records")
        tokens = list(n_tokens) if n_tokens is not None else [None] * len(responses)
        if len(tokens) != len(responses):
            raise ValueError(f"got {len(tokens)} token counts for {len(responses)} responses")
        chunks = [(s, min(s + chunk_size, len(responses))) for s in range(0, len(responses), chunk_size)]
        results: list[RewardResult | ScoreError] = []
        if workers <= 1 or len(chunks) <= 1:
            for s, e in chunks:
                results.extend(
                    self._chunk(responses[s:e], records[s:e], tokens[s:e], image_root, on_error, s)
                )
                if progress:
                    progress(e - s)
            return results
        import concurrent.futures as cf
        import multiprocessing as mp

        # spawn: forking a process that holds torch threads or a loaded model is unsafe.
        with cf.ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
            futures = [
                pool.submit(
                    self._chunk,
                    list(responses[s:e]),
                    [dict(r) for r in records[s:e]],
                    tokens[s:e],
                    image_root,
                    on_error,
                    s,
                )
                for s, e in chunks
            ]
            by_start: dict[int, list[RewardResult | ScoreError]] = {}
            index = {f: s for f, (s, _) in zip(futures, chunks, strict=True)}
            for fut in cf.as_completed(futures):
                by_start[index[fut]] = fut.result()
                if progress:
                    progress(len(by_start[index[fut]]))
        for s, _ in chunks:
            results.extend(by_start[s])
        return results

    def _chunk(
        self, responses, records, tokens, image_root, on_error, offset
    ) -> list[RewardResult | ScoreError]:
        try:
            return list(self._score_all(responses, records, tokens, image_root))
        except _SAMPLE_ERRORS as exc:
            if on_error == "raise":
                raise
            if len(responses) == 1:
                na = isinstance(exc, NotApplicableError)
                return [ScoreError(offset, _uid_of(records[0]), f"{type(exc).__name__}: {exc}", na)]
        # A batch failed in collect mode: score one by one to isolate the bad samples.
        out: list[RewardResult | ScoreError] = []
        for i, (resp, rec, n) in enumerate(zip(responses, records, tokens, strict=True)):
            out.extend(self._chunk([resp], [rec], [n], image_root, on_error, offset + i))
        return out

    def _score_all(self, responses, records, tokens, image_root) -> list[RewardResult]:
        from rewards.accuracy import accuracy, has_gold
        from rewards.components import score_many

        for i, (resp, rec) in enumerate(zip(responses, records, strict=True)):
            if not isinstance(resp, str):
                raise TypeError(
                    f"record {_uid_of(rec)!r}: response {i} must be a string, got {type(resp).__name__}"
                )
            if not isinstance(rec, Mapping):
                raise TypeError(f"sample {i}: a record must be a mapping, got {type(rec).__name__}")
        per_component: dict[str, list] = {}
        for c in self.components:
            if c.name != "accuracy":
                per_component[c.name] = score_many(c.name, c.params, responses, records, tokens, image_root)
        results = []
        for i, (resp, rec) in enumerate(zip(responses, records, strict=True)):
            components: dict[str, float | None] = {}
            details: dict[str, Any] = {"preset": self.name, "components": {}}
            acc = accuracy(resp, rec, **self.accuracy_options) if has_gold(rec) else None
            if acc is not None:
                details["accuracy"] = {"method": acc.method, "score": acc.score, **acc.details}
            for c in self.components:
                if c.name == "accuracy":
                    value = acc.score if acc is not None else None
                    comp_details = {} if acc is not None else {"skipped": "record has no gold answer"}
                else:
                    value, comp_details = per_component[c.name][i]
                components[c.name] = value
                details["components"][c.name] = comp_details
                if c.name == "alignment" and "backend" in comp_details:
                    details["alignment_backend"] = comp_details["backend"]
            results.append(self._combine(components, details, acc.correct if acc else None, rec))
        return results

    def _combine(self, components, details, correct, record) -> RewardResult:
        weights = self.weights
        applicable = [n for n, v in components.items() if v is not None]
        if self.require_one_of and not any(components.get(n) is not None for n in self.require_one_of):
            why = "; ".join(f"{n}: {details['components'][n].get('skipped')}" for n in self.require_one_of)
            raise NotApplicableError(
                f"record {_uid_of(record)!r}: preset {self.name!r} needs one of {list(self.require_one_of)} "
                f"to apply ({why})"
            )
        if not applicable:
            why = "; ".join(f"{n}: {details['components'][n].get('skipped')}" for n in components)
            raise ValueError(
                f"record {_uid_of(record)!r}: no component of preset {self.name!r} applies ({why})"
            )
        w_all = sum(weights.values())
        w_app = sum(weights[n] for n in applicable)
        weighted = sum(weights[n] * float(components[n]) for n in applicable)
        total = 0.0 if w_app == 0 else weighted * w_all / w_app
        if not math.isfinite(total):
            raise ValueError(f"record {_uid_of(record)!r}: preset {self.name!r} produced a non-finite total")
        details.update(applicable_weight=w_app, weight_sum=w_all, renormalised=w_app < w_all)
        return RewardResult(total, components, dict(weights), correct, details)


def _uid_of(record: Any) -> str | None:
    if isinstance(record, Mapping):
        uid = record.get("uid") or record.get("qid")
        return None if uid is None else str(uid)
    return None


# ----------------------------------------------------------------------------- loading


def _read_yaml(path: Path) -> dict[str, Any]:
    import yaml

    with open(path, encoding="utf-8") as fh:
        data = yaml.safe_load(fh) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a presets file must map preset names to presets")
    return data


def load_preset_configs(path: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """Raw preset configs: the built-in ones, plus (overriding) those of ``path``."""
    configs = _read_yaml(PRESETS_FILE)
    if path is not None:
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"presets file not found: {path}")
        configs.update(_read_yaml(path))
    return configs


def list_presets(path: str | Path | None = None) -> list[str]:
    """Names of the available presets."""
    return sorted(load_preset_configs(path))


def _deep_merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _deep_merge(dict(out[key]), value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def expand_overrides(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Turn dotted keys into nested ones: ``{"alignment.backend": "caption"}`` ->
    ``{"components": {"alignment": {"backend": "caption"}}}`` (a first part that is not
    ``components``/``accuracy``/``description`` names a component)."""
    nested: dict[str, Any] = {}
    for key, value in overrides.items():
        parts = key.split(".")
        if parts[0] not in PRESET_KEYS:
            parts = ["components", *parts]
        node = nested
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return nested


def build_preset(name: str, config: Mapping[str, Any]) -> RewardPreset:
    """Validate a preset config and resolve its backends."""
    from rewards.accuracy import AccuracyOptions
    from rewards.components import resolve

    if not isinstance(config, Mapping):
        raise ValueError(f"preset {name!r} must be a mapping, got {type(config).__name__}")
    unknown = sorted(set(config) - set(PRESET_KEYS))
    if unknown:
        raise ValueError(f"preset {name!r}: unknown keys {unknown}; allowed keys: {list(PRESET_KEYS)}")
    comps = config.get("components")
    if not isinstance(comps, Mapping) or not comps:
        raise ValueError(f"preset {name!r} needs a non-empty 'components' mapping")
    acc = dict(config.get("accuracy") or {})
    allowed_acc = list(AccuracyOptions.__dataclass_fields__)
    bad = sorted(set(acc) - set(allowed_acc))
    if bad:
        raise ValueError(f"preset {name!r}: unknown accuracy keys {bad}; allowed keys: {allowed_acc}")
    AccuracyOptions(**acc)
    specs = []
    for cname, params in comps.items():
        try:
            resolved = resolve(cname, params if params is not None else {})
        except ValueError as exc:
            raise ValueError(f"preset {name!r}: {exc}") from exc
        specs.append(ComponentSpec(cname, resolved.pop("weight"), resolved))
    if sum(s.weight for s in specs) <= 0:
        raise ValueError(f"preset {name!r}: the component weights sum to 0")
    required = tuple(config.get("require_one_of") or ())
    missing = [r for r in required if r not in comps]
    if missing:
        raise ValueError(
            f"preset {name!r}: require_one_of names {missing}, which are not its components {list(comps)}"
        )
    return RewardPreset(name, str(config.get("description") or ""), tuple(specs), acc, required)


def get_preset(
    name: str, overrides: Mapping[str, Any] | None = None, *, path: str | Path | None = None
) -> RewardPreset:
    """A preset by name, with optional overrides (nested or dotted keys, see :func:`expand_overrides`)."""
    configs = load_preset_configs(path)
    if name not in configs:
        raise ValueError(f"unknown reward preset {name!r}; available presets: {sorted(configs)}")
    config = configs[name]
    if overrides:
        config = _deep_merge(dict(config), expand_overrides(overrides))
    return build_preset(name, config)
