"""TRL adapter: a preset's components as reward functions for ``trl.GRPOTrainer``.

TRL calls each reward function as ``f(prompts=..., completions=..., completion_ids=...,
**dataset_columns)`` and logs ``rewards/<f.__name__>/mean``; ``None`` means "does not apply"
(TRL turns it into NaN and ignores it in its weighted sum). :func:`reward_functions`
returns one picklable callable per component, named ``<preset>/<component>``, with the
preset's weights, plus ``<preset>/accuracy`` with weight 0 when accuracy is not weighted
(stage 1), so TRL logs correctness without training on it.

Example::

    funcs, weights = reward_functions("pebr_stage1")
    trainer = GRPOTrainer(model, reward_funcs=funcs, args=GRPOConfig(reward_weights=weights, ...))

**Weights and not-applicable components.** TRL sums ``weight * reward`` over the functions
that apply and does not renormalise, while :meth:`RewardPreset.score` does. Which components
apply depends on the record only (key words present, image present...), so all completions
of one prompt share it, and GRPO's per-group advantage with per-group std scaling (TRL's
default ``scale_rewards="group"``) is the same either way. For exact totals use
``mode="total"``: one function returning the preset's total, weight 1, and every component
logged with weight 0.

The dataset columns the functions read are the canonical record's (``answer``, ``task``,
``choices``, ``key_words``, ``boxes``, ``image_sizes``, ``images``, ``reference_caption``,
``uid``, ``question``); completions may be plain strings or conversational message lists.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from rewards.presets import RECORD_COLUMNS, RewardPreset, RewardResult, ScoreError, get_preset

#: Dataset columns copied into the record a preset scores (qid: PeBR's id column).
SCORED_COLUMNS = (*RECORD_COLUMNS, "qid")
MODES = ("components", "total")

# The component functions of one preset are called one after another on the same batch:
# the preset scores the batch once and the others reuse it.
_LAST: dict[str, tuple[str, list[RewardResult | ScoreError]]] = {}
_LAST_LOCK = threading.Lock()


def completion_text(completion: str | Sequence[Mapping[str, Any]]) -> str:
    """The text of a completion: a string as is; a conversation's assistant contents joined."""
    if isinstance(completion, str):
        return completion
    parts: list[str] = []
    for message in completion:
        if message.get("role", "assistant") != "assistant":
            continue
        content = message.get("content")
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, Sequence):
            parts.extend(
                p.get("text", "") for p in content if isinstance(p, Mapping) and p.get("type") == "text"
            )
        elif content is not None:
            raise TypeError(f"cannot read message content of type {type(content).__name__}")
    return "".join(parts)


def _records(n: int, kwargs: Mapping[str, Any]) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = [{} for _ in range(n)]
    for col in SCORED_COLUMNS:
        values = kwargs.get(col)
        if values is None:
            continue
        if len(values) != n:
            raise ValueError(f"dataset column {col!r} has {len(values)} values for {n} completions")
        for rec, value in zip(records, values, strict=True):
            rec[col] = value
    return records


def _batch_key(preset: RewardPreset, texts: list[str], records: list[dict], n_tokens: list) -> str:
    h = hashlib.blake2b(digest_size=16)
    h.update(repr(preset).encode())
    for text, rec, n in zip(texts, records, n_tokens, strict=True):
        h.update(text.encode("utf-8", "surrogatepass"))
        h.update(repr((rec.get("uid"), rec.get("question"), rec.get("answer"), n)).encode())
    return h.hexdigest()


class PresetReward:
    """One value of a preset's result as a TRL reward function (picklable, stable name).

    ``what`` is a component name, ``"accuracy"`` (``correct`` as 1.0/0.0 when accuracy is
    not a component) or ``"total"``.
    """

    def __init__(self, preset: RewardPreset, what: str, image_root: str | None = None):
        self.preset = preset
        self.what = what
        self.image_root = image_root
        self.__name__ = f"{preset.name}/{what}"

    def __repr__(self) -> str:
        return f"PresetReward({self.__name__!r})"

    def results(
        self,
        completions: Sequence[Any],
        completion_ids: Sequence[Sequence[int]] | None = None,
        **kwargs: Any,
    ) -> list[RewardResult | ScoreError]:
        """The preset's results for a TRL batch (shared between a preset's functions).

        A record the preset has nothing to reward on gives a not-applicable
        :class:`ScoreError` (every function returns ``None`` for it); bad input raises.
        """
        texts = [completion_text(c) for c in completions]
        records = _records(len(texts), kwargs)
        n_tokens = [len(ids) for ids in completion_ids] if completion_ids is not None else [None] * len(texts)
        key = _batch_key(self.preset, texts, records, n_tokens)
        with _LAST_LOCK:
            cached = _LAST.get(self.preset.name)
        if cached is not None and cached[0] == key:
            return cached[1]
        results = self.preset.score_batch(
            texts, records, n_tokens, image_root=self.image_root, on_error="collect"
        )
        for r in results:
            if isinstance(r, ScoreError) and not r.not_applicable:
                raise ValueError(f"{self.__name__}: sample {r.index} (uid {r.uid}): {r.error}")
        with _LAST_LOCK:
            _LAST[self.preset.name] = (key, results)
        return results  # type: ignore[return-value]

    def __call__(
        self,
        prompts: Sequence[Any] | None = None,
        completions: Sequence[Any] | None = None,
        completion_ids: Sequence[Sequence[int]] | None = None,
        **kwargs: Any,
    ) -> list[float | None]:
        if completions is None:
            raise ValueError(f"{self.__name__}: TRL passes 'completions'; got none")
        return [self._value(r) for r in self.results(completions, completion_ids, **kwargs)]

    def _value(self, result: RewardResult | ScoreError) -> float | None:
        if isinstance(result, ScoreError):
            return None
        if self.what == "total":
            return result.total
        if self.what == "accuracy" and "accuracy" not in self.preset.weights:
            return None if result.correct is None else float(result.correct)
        return result.components[self.what]


def reward_functions(
    preset: str | RewardPreset,
    *,
    image_root: str | None = None,
    log_accuracy: bool = True,
    mode: str = "components",
    overrides: Mapping[str, Any] | None = None,
) -> tuple[list[Callable[..., list[float | None]]], list[float]]:
    """TRL reward functions and their weights for a preset.

    ``mode="components"``: one function per component with the preset's weights, plus
    ``accuracy`` at weight 0 when accuracy is not weighted and ``log_accuracy``.
    ``mode="total"``: the preset's total at weight 1, then every component (and accuracy)
    at weight 0 for logging.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {list(MODES)}, got {mode!r}")
    if isinstance(preset, str):
        preset = get_preset(preset, overrides)
    elif overrides:
        raise ValueError("overrides apply to a preset name; pass get_preset(name, overrides) instead")
    funcs: list[Callable[..., list[float | None]]] = []
    weights: list[float] = []
    if mode == "total":
        funcs.append(PresetReward(preset, "total", image_root))
        weights.append(1.0)
    for c in preset.components:
        funcs.append(PresetReward(preset, c.name, image_root))
        weights.append(c.weight if mode == "components" else 0.0)
    if log_accuracy and "accuracy" not in preset.weights:
        funcs.append(PresetReward(preset, "accuracy", image_root))
        weights.append(0.0)
    return funcs, weights
