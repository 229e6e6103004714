"""EasyR1 / PeBR adapter: pebr's reward presets behind EasyR1's reward-function interface.

EasyR1 loads a reward function from a file: ``worker.reward.reward_function=PATH.py:compute_score``
(``PATH`` = this file; ``python -c "import rewards.easyr1; print(rewards.easyr1.__file__)"``
prints it) and passes ``reward_function_kwargs`` as keyword arguments. With
``reward_type: batch`` it calls ``compute_score(reward_inputs)`` with one dict per response::

    {"response": str, "response_length": int, "ground_truth": str, ...}

PeBR's fork adds ``key_words`` and ``images``; any canonical record column (``task``,
``choices``, ``boxes``, ``image_sizes``, ``reference_caption``, ``uid``/``qid``) is read when
present, and ``problem`` stands for ``question``. A ``ground_truth`` that is a mapping is
read as record columns. The result per response is ``{"overall": total, <component>: value,
..., "correct": 0.0/1.0}``; a component that does not apply to a record is left out of its
dict (EasyR1 averages each key over the responses that have it). A record the preset has
nothing to reward on (none of its ``require_one_of`` components applies) scores
``{"overall": 0.0, "not_applicable": 1.0}`` with a warning: all rollouts of that prompt get
the same value, so GRPO's advantage is zero and the prompt is effectively skipped. Bad input
raises ``ValueError`` naming the reward input.

Example config::

    worker:
      reward:
        reward_type: batch
        reward_function: /path/to/rewards/easyr1.py:compute_score
        reward_function_kwargs: {preset: pebr_stage1, alignment.backend: caption}
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

from rewards.presets import RECORD_COLUMNS, RewardPreset, ScoreError, get_preset

log = logging.getLogger(__name__)

REWARD_NAME = "pebr"
REWARD_TYPE = "batch"
DEFAULT_PRESET = "pebr_stage2"

#: EasyR1 / PeBR reward-input keys -> canonical record columns.
KEY_MAP = {"ground_truth": "answer", "problem": "question"}
RECORD_KEYS = (*RECORD_COLUMNS, "qid")

_PRESETS: dict[str, RewardPreset] = {}
_PRESETS_LOCK = threading.Lock()


def _preset(name: str, overrides: Mapping[str, Any], presets_file: str | None) -> RewardPreset:
    key = repr((name, sorted(overrides.items()), presets_file))
    with _PRESETS_LOCK:
        if key not in _PRESETS:
            _PRESETS[key] = get_preset(name, overrides or None, path=presets_file)
        return _PRESETS[key]


def to_record(reward_input: Mapping[str, Any]) -> dict[str, Any]:
    """A canonical record (the parts a reward reads) from one EasyR1 reward input."""
    record: dict[str, Any] = {}
    for key, value in reward_input.items():
        if key == "ground_truth" and isinstance(value, Mapping):
            record.update(
                {KEY_MAP.get(k, k): v for k, v in value.items() if KEY_MAP.get(k, k) in RECORD_KEYS}
            )
            continue
        col = KEY_MAP.get(key, key)
        if col in RECORD_KEYS:
            record[col] = value
    images = record.get("images")
    if images is not None and not isinstance(images, (list, tuple)):
        record["images"] = list(images)  # numpy object arrays from EasyR1's non-tensor batch
    return record


def compute_score(
    reward_inputs: list[dict[str, Any]],
    preset: str = DEFAULT_PRESET,
    image_root: str | None = None,
    presets_file: str | None = None,
    **overrides: Any,
) -> list[dict[str, float]]:
    """Score a batch of EasyR1 reward inputs with a pebr preset.

    ``overrides`` are dotted preset keys (``alignment.backend="caption"``).
    """
    if not isinstance(reward_inputs, list):
        raise ValueError(f"pebr's EasyR1 reward is a batch function: set reward_type: {REWARD_TYPE}")
    chosen = _preset(preset, overrides, presets_file)
    responses, records, n_tokens = [], [], []
    for i, item in enumerate(reward_inputs):
        if not isinstance(item, Mapping) or not isinstance(item.get("response"), str):
            raise ValueError(f"reward input {i} needs a string 'response', got {item!r:.200}")
        responses.append(item["response"])
        records.append(to_record(item))
        length = item.get("response_length")
        n_tokens.append(None if length is None else int(length))
    scores = []
    for result in chosen.score_batch(responses, records, n_tokens, image_root=image_root, on_error="collect"):
        if isinstance(result, ScoreError):
            if not result.not_applicable:
                raise ValueError(f"pebr reward, reward input {result.index}: {result.error}")
            # Every rollout of this prompt gets the same 0: zero advantage, so the prompt is
            # effectively skipped rather than trained on a format/length-only reward.
            log.warning("pebr reward: %s; scored 0", result.error)
            scores.append({"overall": 0.0, "not_applicable": 1.0})
            continue
        out = {"overall": float(result.total)}
        out.update({k: float(v) for k, v in result.components.items() if v is not None})
        if result.correct is not None:
            out["correct"] = float(result.correct)
        scores.append(out)
    return scores
