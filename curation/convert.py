"""Loss-free converters between the canonical schema and the layouts the field uses.

=====================  ==========================================================
layout                 functions
=====================  ==========================================================
Mulberry/LLaMA-Factory  :func:`from_sharegpt`, :func:`to_sharegpt`
"sharegpt"              (``messages`` + ``images``, ``<image>`` tags in the text;
                        the older ``conversations``/``from``/``value`` spelling too)
PeBR GRPO / EasyR1      :func:`from_pebr`, :func:`to_pebr`
                        (``qid``, ``problem``, ``answer``, ``images``, ``key_words``)
TRL conversational      :func:`to_trl`, :func:`from_trl` (structured image content)
=====================  ==========================================================

"Loss-free" means ``to_x(from_x(r)) == r`` for every record ``r`` of layout x, key order
included: whatever the canonical columns do not hold (extra keys, a string instead of a
list of images, tags in unusual places, non-string answers) is kept in ``meta``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from curation.schema import (
    COLUMNS,
    compute_uid,
    image_keys_for,
    make_record,
    meta_of,
)
from rewards.sections import final_answer

IMAGE_TAG = "<image>"

_SHAREGPT_ROLES = {
    "human": "user",
    "gpt": "assistant",
    "system": "system",
    "user": "user",
    "assistant": "assistant",
}
_SHAREGPT_ROLES_BACK = {"user": "human", "assistant": "gpt", "system": "system"}


class ConversionError(ValueError):
    """A record that cannot be read in the layout it claims to have."""


def strip_image_tags(text: str) -> str:
    return text.replace(IMAGE_TAG, "").strip()


def _images_list(value: Any, what: str) -> tuple[list[str], bool]:
    """``images`` may be a list of paths or a single path; returns (paths, was_string)."""
    if value is None:
        return [], False
    if isinstance(value, str):
        return [value], True
    if isinstance(value, list) and all(isinstance(p, str) for p in value):
        return list(value), False
    raise ConversionError(f"{what}: 'images' must be a path or a list of paths, got {value!r:.80}")


# ---------------------------------------------------------------------------- sharegpt


def from_sharegpt(
    record: Mapping[str, Any],
    *,
    source: str = "sharegpt",
    task: str | None = None,
    stage_hint: str | None = None,
    image_keys: Sequence[str] | None = None,
    image_sizes: Sequence[Sequence[int]] | None = None,
) -> dict[str, Any]:
    """A Mulberry/LLaMA-Factory sharegpt record to a canonical record.

    ``question`` is the first user turn without ``<image>`` tags; ``answer`` is the text
    after ``### The final answer is:`` in the last assistant turn (the whole turn when the
    header is missing). ``image_keys`` (content digests) make the uid a content hash; without
    them the uid hashes the image paths.
    """
    if not isinstance(record, Mapping):
        raise ConversionError(f"a sharegpt record must be a JSON object, got {type(record).__name__}")
    if "messages" in record:
        mkey, role_key, content_key = "messages", "role", "content"
    elif "conversations" in record:
        mkey, role_key, content_key = "conversations", "from", "value"
    else:
        raise ConversionError(
            f"a sharegpt record needs 'messages' or 'conversations'; keys: {sorted(record)}"
        )
    turns = record[mkey]
    if not isinstance(turns, list) or not turns:
        raise ConversionError(f"'{mkey}' must be a non-empty list of turns")
    messages, turn_extra, role_names = [], {}, {}
    for i, turn in enumerate(turns):
        if (
            not isinstance(turn, Mapping)
            or not isinstance(turn.get(content_key), str)
            or role_key not in turn
        ):
            raise ConversionError(f"'{mkey}'[{i}] must have '{role_key}' and a string '{content_key}'")
        raw_role = turn[role_key]
        role = _SHAREGPT_ROLES.get(raw_role, raw_role)
        # remember role spellings that the default mapping would not restore
        restored = _SHAREGPT_ROLES_BACK.get(role) if mkey == "conversations" else role
        if restored != raw_role:
            role_names[str(i)] = raw_role
        messages.append({"role": role, "content": turn[content_key]})
        if list(turn) != [role_key, content_key]:
            turn_extra[str(i)] = {
                "keys": list(turn),
                "extra": {k: v for k, v in turn.items() if k not in (role_key, content_key)},
            }
    paths, images_str = _images_list(record.get("images"), "sharegpt record")

    user = next((m["content"] for m in messages if m["role"] == "user"), None)
    if user is None:
        raise ConversionError("a sharegpt record needs a user turn")
    assistant = next((m["content"] for m in reversed(messages) if m["role"] == "assistant"), "")
    answer = final_answer(assistant)
    answer = answer if answer is not None else assistant.strip()

    layout: dict[str, Any] = {}
    if mkey != "messages":
        layout["messages_key"] = mkey
    default_order = [mkey, "images"] if "images" in record else [mkey]
    if list(record) != default_order:
        layout["key_order"] = list(record)
    extra = {k: v for k, v in record.items() if k not in (mkey, "images")}
    if extra:
        layout["extra"] = extra
    if images_str:
        layout["images_str"] = True
    if "images" not in record:
        layout["no_images"] = True
    elif record["images"] is None:
        layout["images_null"] = True
    if role_names:
        layout["role_names"] = role_names
    if turn_extra:
        layout["turn_extra"] = turn_extra
    question = strip_image_tags(user)
    keys = list(image_keys) if image_keys is not None else ["path:" + p for p in paths]
    return make_record(
        uid=compute_uid(question, answer, keys),
        question=question,
        answer=answer,
        images=paths,
        image_sizes=image_sizes,
        source=source,
        task=task,
        stage_hint=stage_hint,
        messages=messages,
        meta={"sharegpt": layout} if layout else None,
    )


def to_sharegpt(record: Mapping[str, Any]) -> dict[str, Any]:
    """A canonical record to a sharegpt record (``messages`` + ``images``).

    Records that came from sharegpt come back exactly; records without an SFT conversation
    (RL questions) get a user turn with one ``<image>`` tag per image and an assistant turn
    holding the gold answer.
    """
    layout = meta_of(record).get("sharegpt", {})
    paths = [img.get("path") for img in record.get("images") or []]
    messages = list(record.get("messages") or [])
    if not messages:
        messages = [
            {"role": "user", "content": IMAGE_TAG * len(paths) + record["question"]},
            {"role": "assistant", "content": record["answer"]},
        ]
    mkey = layout.get("messages_key", "messages")
    role_key, content_key = ("from", "value") if mkey == "conversations" else ("role", "content")
    role_names = layout.get("role_names", {})
    turn_extra = layout.get("turn_extra", {})
    turns = []
    for i, m in enumerate(messages):
        role = role_names.get(str(i))
        if role is None:
            role = _SHAREGPT_ROLES_BACK.get(m["role"], m["role"]) if mkey == "conversations" else m["role"]
        base = {role_key: role, content_key: m["content"]}
        te = turn_extra.get(str(i))
        if te:
            base = {k: base[k] if k in base else te["extra"][k] for k in te["keys"]}
        turns.append(base)
    out: dict[str, Any] = {mkey: turns}
    if layout.get("images_null"):
        out["images"] = None
    elif layout.get("images_str") and len(paths) == 1:
        out["images"] = paths[0]
    elif paths or not layout.get("no_images"):
        out["images"] = paths
    out.update(layout.get("extra", {}))
    if "key_order" in layout:
        out = {k: out[k] for k in layout["key_order"] if k in out}
    return out


# ---------------------------------------------------------------------------- PeBR / EasyR1

_PEBR_KEYS = ["qid", "problem", "answer", "images", "key_words"]


def from_pebr(
    record: Mapping[str, Any],
    *,
    source: str = "pebr_grpo",
    task: str | None = None,
    stage_hint: str | None = None,
    image_keys: Sequence[str] | None = None,
) -> dict[str, Any]:
    """A PeBR GRPO (or EasyR1: ``problem``/``answer``/``images``) record to a canonical record."""
    if not isinstance(record, Mapping):
        raise ConversionError(f"a PeBR record must be a JSON object, got {type(record).__name__}")
    for key in ("problem", "answer"):
        if key not in record:
            raise ConversionError(f"a PeBR record needs '{key}'; keys: {sorted(record)}")
    problem = record["problem"]
    if not isinstance(problem, str):
        raise ConversionError(f"'problem' must be a string, got {type(problem).__name__}")
    raw_answer = record["answer"]
    if isinstance(raw_answer, (dict, list)) or raw_answer is None:
        raise ConversionError(f"'answer' must be a string or a number, got {raw_answer!r:.80}")
    answer = raw_answer if isinstance(raw_answer, str) else json.dumps(raw_answer)
    paths, images_str = _images_list(record.get("images"), "PeBR record")
    key_words = record.get("key_words")
    if key_words is not None and not (
        isinstance(key_words, list) and all(isinstance(k, str) for k in key_words)
    ):
        raise ConversionError(f"'key_words' must be a list of strings, got {key_words!r:.80}")

    question = strip_image_tags(problem)
    layout: dict[str, Any] = {}
    if "qid" in record:
        layout["qid"] = record["qid"]
    if IMAGE_TAG * len(paths) + question != problem:
        layout["problem"] = problem
    if not isinstance(raw_answer, str):
        layout["answer_json"] = True
    if images_str:
        layout["images_str"] = True
    if key_words is None:
        layout["no_key_words"] = True
    if list(record) != [k for k in _PEBR_KEYS if k in record]:
        layout["key_order"] = list(record)
    if "images" not in record:
        layout["no_images"] = True
    extra = {k: v for k, v in record.items() if k not in _PEBR_KEYS}
    if extra:
        layout["extra"] = extra
    keys = list(image_keys) if image_keys is not None else ["path:" + p for p in paths]
    return make_record(
        uid=compute_uid(question, answer, keys),
        question=question,
        answer=answer,
        images=paths,
        key_words=key_words or [],
        source=source,
        task=task,
        stage_hint=stage_hint,
        meta={"pebr": layout},
    )


def to_pebr(record: Mapping[str, Any], *, layout: str = "pebr") -> dict[str, Any]:
    """A canonical record to PeBR GRPO JSON (``layout="pebr"``) or EasyR1 JSON (``"easyr1"``).

    EasyR1 reads ``problem`` (with ``<image>`` tags), ``answer`` and ``images``; PeBR adds
    ``qid`` and ``key_words``. Records that came from PeBR JSON come back exactly.
    """
    if layout not in ("pebr", "easyr1"):
        raise ValueError(f"layout must be 'pebr' or 'easyr1', got {layout!r}")
    saved = meta_of(record).get("pebr", {})
    paths = [img.get("path") for img in record.get("images") or []]
    answer = json.loads(record["answer"]) if saved.get("answer_json") else record["answer"]
    out: dict[str, Any] = {}
    if layout == "pebr":
        out["qid"] = saved.get("qid", record["uid"])
    out["problem"] = saved.get("problem", IMAGE_TAG * len(paths) + record["question"])
    out["answer"] = answer
    if not saved.get("no_images"):
        out["images"] = paths[0] if saved.get("images_str") and len(paths) == 1 else paths
    if layout == "pebr" and not saved.get("no_key_words"):
        out["key_words"] = list(record.get("key_words") or [])
    if layout == "pebr":
        out.update(saved.get("extra", {}))
        if "key_order" in saved:
            out = {k: out[k] for k in saved["key_order"] if k in out}
    return out


# ---------------------------------------------------------------------------- TRL


def structured_content(text: str) -> list[dict[str, Any]]:
    """``"<image>What is...?"`` to ``[{"type": "image"}, {"type": "text", "text": "What is...?"}]``."""
    parts: list[dict[str, Any]] = []
    for i, chunk in enumerate(text.split(IMAGE_TAG)):
        if i > 0:
            parts.append({"type": "image"})
        if chunk:
            parts.append({"type": "text", "text": chunk})
    return parts


def flatten_content(content: str | Sequence[Mapping[str, Any]]) -> str:
    """Inverse of :func:`structured_content`: image parts become ``<image>`` tags."""
    if isinstance(content, str):
        return content
    out = []
    for part in content:
        kind = part.get("type")
        if kind == "image":
            out.append(IMAGE_TAG)
        elif kind == "text":
            out.append(part.get("text", ""))
        else:
            raise ConversionError(f"unsupported content part type {kind!r}; pebr reads 'text' and 'image'")
    return "".join(out)


_TRL_PASSTHROUGH = [c for c in COLUMNS if c not in ("images", "messages", "question")]


def to_trl(
    record: Mapping[str, Any], *, kind: str = "prompt", image_root: str | None = None
) -> dict[str, Any]:
    """A canonical record to TRL's conversational format with structured image content.

    ``kind="prompt"`` gives a GRPO example (``prompt`` = the conversation up to the last user
    turn); ``kind="messages"`` gives an SFT example (the whole conversation). ``images``
    holds paths (joined to ``image_root`` when given). Every other canonical column rides
    along, so reward functions receive ``answer``, ``key_words``, ``boxes``... as keyword
    arguments, and :func:`from_trl` restores the record.
    """
    if kind not in ("prompt", "messages"):
        raise ValueError(f"kind must be 'prompt' or 'messages', got {kind!r}")
    import os

    paths = [img.get("path") for img in record.get("images") or []]
    n_images = len(paths)
    messages = list(record.get("messages") or [])
    if kind == "prompt":
        head = messages[: next((i for i, m in enumerate(messages) if m["role"] == "user"), -1) + 1]
        if not head:
            head = [{"role": "user", "content": IMAGE_TAG * n_images + record["question"]}]
        convo = head
    else:
        if not messages:
            raise ConversionError(
                f"record {record.get('uid')!r} has no SFT conversation ('messages' is empty)"
            )
        convo = messages
    out: dict[str, Any] = {
        kind: [{"role": m["role"], "content": structured_content(m["content"])} for m in convo],
        "images": [os.path.join(image_root, p) if image_root and p else p for p in paths],
        "question": record["question"],
    }
    for col in _TRL_PASSTHROUGH:
        out[col] = record.get(col)
    if kind == "prompt":
        out["messages"] = messages
    if any(img.get("bytes") is not None for img in record.get("images") or []):
        out["image_bytes"] = [img.get("bytes") for img in record["images"]]
    return out


def from_trl(example: Mapping[str, Any], *, image_root: str | None = None) -> dict[str, Any]:
    """Inverse of :func:`to_trl`."""
    import os

    if "prompt" in example:
        kind = "prompt"
    elif (
        "messages" in example
        and example["messages"]
        and not isinstance(example["messages"][0]["content"], str)
    ):
        kind = "messages"
    else:
        raise ConversionError("a TRL example needs a conversational 'prompt' or 'messages' column")
    if kind == "messages":
        messages = [
            {"role": m["role"], "content": flatten_content(m["content"])} for m in example["messages"]
        ]
    else:
        messages = list(example.get("messages") or [])
    paths = list(example.get("images") or [])
    if image_root:
        paths = [os.path.relpath(p, image_root) if p else p for p in paths]
    blobs = example.get("image_bytes") or [None] * len(paths)
    images = [{"bytes": b, "path": p} for b, p in zip(blobs, paths, strict=True)]
    question = example.get("question")
    if question is None:
        convo = example[kind]
        user = next(m for m in convo if m["role"] == "user")
        question = strip_image_tags(flatten_content(user["content"]))
    rec = {col: example.get(col) for col in _TRL_PASSTHROUGH}
    rec.update(question=question, images=images, messages=messages)
    if not rec.get("uid"):
        rec["uid"] = compute_uid(question, rec.get("answer") or "", image_keys_for(images))
    rec["key_words"] = rec.get("key_words") or []
    return {c: rec.get(c) for c in COLUMNS}
