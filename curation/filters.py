"""The filter's stages: each a small named check that keeps a record or drops it with a reason.

Stages run in the order of :data:`STAGES`; the first one that drops a record gives its
reason, so every dropped record has exactly one. Text stages look at the parsed record
(:class:`ParsedRecord`), image stages at :class:`curation.images.ImageInfo` results, and the
duplicate stage at the records kept so far (see :mod:`curation.filter_pipeline`).

=====================  =====================================================================
reason                 drops a record when
=====================  =====================================================================
``bad_json``           it is not valid JSON (only with ``skip_bad_lines``; else an error)
``malformed``          it lacks keys or has wrong types (the detail names the problem), or
                       its ``<image>`` tags do not match its images
``reflective``         an assistant turn contains a reflective phrase ("let me rethink it"),
                       compared the way Python's ``str.lower()`` sees it
``empty_answer``       there is no assistant answer, or it (or its final-answer section) is
                       empty
``unsafe_path``        an image path is absolute, uses ``..`` or is a symlink out of the root
``missing_image``      an image file does not exist
``corrupt_image``      Pillow cannot open an image
``undecodable_image``  with ``verify_images``: an image fails a full decode
``too_many_pixels``    an image has more than ``max_pixels`` pixels (decompression bomb)
``small_image``        an image is narrower or shorter than ``min_side``
``duplicate``          an earlier kept record has the same image bytes and normalised question
=====================  =====================================================================
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

from curation.filter_config import FilterConfig
from curation.images import CORRUPT, MISSING, UNSAFE, ImageInfo
from rewards.sections import _HEADER_RE, FINAL_ANSWER


class Stage(NamedTuple):
    """A filter stage: its reason code and what it checks."""

    reason: str
    description: str


STAGES: tuple[Stage, ...] = (
    Stage("bad_json", "the record is not valid JSON"),
    Stage("malformed", "the record lacks keys, has wrong types or mismatched <image> tags"),
    Stage("reflective", "an assistant turn contains a reflective phrase"),
    Stage("empty_answer", "the assistant answer is missing or empty"),
    Stage("unsafe_path", "an image path escapes the image root"),
    Stage("missing_image", "an image file does not exist"),
    Stage("corrupt_image", "Pillow cannot open an image"),
    Stage("undecodable_image", "an image fails a full decode (verify_images)"),
    Stage("too_many_pixels", "an image has more pixels than max_pixels"),
    Stage("small_image", "an image is smaller than min_side on a side"),
    Stage("duplicate", "an earlier kept record has the same images and question"),
)
REASONS: tuple[str, ...] = tuple(s.reason for s in STAGES)
#: reason -> small integer code used in worker results (0 means "kept so far")
CODES: dict[str, int] = {r: i + 1 for i, r in enumerate(REASONS)}

IMAGE_TAG = "<image>"
_SHAREGPT_ROLE_ALIASES = {"human": "user", "gpt": "assistant"}


class Drop(NamedTuple):
    reason: str
    detail: str


class ParsedRecord(NamedTuple):
    """What the stages need of a record, whatever its layout.

    ``turns`` are ``(role, content)`` with sharegpt's ``human``/``gpt`` read as
    ``user``/``assistant``; ``answer_text`` is the text the answer is taken from (the last
    assistant turn, or a PeBR record's ``answer``).
    """

    layout: str
    turns: tuple[tuple[str, str], ...]
    images: tuple[str, ...]
    answer_text: str | None
    record: Any


CANONICAL_KEYS = frozenset({"uid", "task", "stage_hint", "question", "answer", "images"})


def detect_layout(record: Any, columns: Mapping[str, str]) -> str | None:
    """``canonical``, ``sharegpt`` or ``pebr`` from a record's keys, or ``None`` when none fits.

    A record with the canonical schema's columns (pebr's own Parquet: ``uid``, ``task``,
    ``stage_hint``, ``question``, ``answer``, ``images``) is ``canonical`` even though it also
    has a ``messages`` column (empty for RL questions).
    """
    if not isinstance(record, Mapping):
        return None
    if not columns and record.keys() >= CANONICAL_KEYS:
        return "canonical"
    messages_key = columns.get("messages")
    if (messages_key and messages_key in record) or "messages" in record or "conversations" in record:
        return "sharegpt"
    problem_key = columns.get("problem", "problem")
    if problem_key in record:
        return "pebr"
    return None


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def image_list(value: Any, key: str) -> tuple[str, ...] | Drop:
    """``images`` as paths: a path, a list of paths, null/absent (no images)."""
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, Mapping) and "path" in value:
        value = [value]  # one Hugging Face Image struct
    if isinstance(value, list):
        out = []
        for i, item in enumerate(value):
            if isinstance(item, str):
                out.append(item)
            elif isinstance(item, Mapping) and "path" in item:
                # a Hugging Face Image struct from Parquet or a saved dataset
                if item.get("bytes") is not None:
                    return Drop(
                        "malformed",
                        f"'{key}'[{i}] embeds image bytes; the filter reads image files "
                        "(save the images to files first)",
                    )
                if not isinstance(item.get("path"), str):
                    return Drop("malformed", f"'{key}'[{i}] has no path")
                out.append(item["path"])
            else:
                return Drop("malformed", f"'{key}'[{i}] must be a path, got {_type_name(item)}")
        return tuple(out)
    return Drop("malformed", f"'{key}' must be a path or a list of paths, got {_type_name(value)}")


def parse_sharegpt(record: Any, columns: Mapping[str, str]) -> ParsedRecord | Drop:
    """Check a sharegpt record's structure (the ``malformed`` stage) and read its turns."""
    if not isinstance(record, Mapping):
        return Drop("malformed", f"a record must be a JSON object, got {_type_name(record)}")
    if "messages" in columns:
        mkey = columns["messages"]
        role_key, content_key = columns.get("role", "role"), columns.get("content", "content")
    elif "messages" in record:
        mkey = "messages"
        role_key, content_key = columns.get("role", "role"), columns.get("content", "content")
    elif "conversations" in record:
        mkey = "conversations"
        role_key, content_key = columns.get("role", "from"), columns.get("content", "value")
    else:
        return Drop("malformed", f"missing key 'messages' (keys: {sorted(map(str, record))[:8]})")
    turns_raw = record.get(mkey)
    if mkey not in record:
        return Drop("malformed", f"missing key {mkey!r} (keys: {sorted(map(str, record))[:8]})")
    if not isinstance(turns_raw, list) or not turns_raw:
        return Drop("malformed", f"'{mkey}' must be a non-empty list of turns, got {_type_name(turns_raw)}")
    aliases = dict(_SHAREGPT_ROLE_ALIASES)
    for canon in ("user", "assistant", "system"):
        if canon in columns:
            aliases[columns[canon]] = canon
    turns = []
    for i, turn in enumerate(turns_raw):
        if not isinstance(turn, Mapping):
            return Drop("malformed", f"'{mkey}'[{i}] must be an object, got {_type_name(turn)}")
        role = turn.get(role_key)
        content = turn.get(content_key)
        if not isinstance(role, str):
            return Drop("malformed", f"'{mkey}'[{i}] needs a string '{role_key}', got {_type_name(role)}")
        if not isinstance(content, str):
            return Drop(
                "malformed", f"'{mkey}'[{i}] needs a string '{content_key}', got {_type_name(content)}"
            )
        turns.append((aliases.get(role, role), content))
    if not any(role == "user" for role, _ in turns):
        return Drop("malformed", f"'{mkey}' has no user turn")
    images_key = columns.get("images", "images")
    images = image_list(record.get(images_key), images_key)
    if isinstance(images, Drop):
        return images
    answer = next((c for r, c in reversed(turns) if r == "assistant"), None)
    return ParsedRecord("sharegpt", tuple(turns), images, answer, record)


def _check_key_words(record: Mapping[str, Any], key: str) -> Drop | None:
    """``key_words``, when present, must be a list of strings."""
    kw = record.get(key)
    if kw is not None and not (isinstance(kw, list) and all(isinstance(k, str) for k in kw)):
        return Drop("malformed", f"'{key}' must be a list of strings")
    return None


def parse_pebr(record: Any, columns: Mapping[str, str]) -> ParsedRecord | Drop:
    """Check a PeBR GRPO record's structure (``problem``, ``answer``, ``images``...)."""
    if not isinstance(record, Mapping):
        return Drop("malformed", f"a record must be a JSON object, got {_type_name(record)}")
    problem_key = columns.get("problem", "problem")
    answer_key = columns.get("answer", "answer")
    for key in (problem_key, answer_key):
        if key not in record:
            return Drop("malformed", f"missing key {key!r} (keys: {sorted(map(str, record))[:8]})")
    problem = record[problem_key]
    if not isinstance(problem, str):
        return Drop("malformed", f"'{problem_key}' must be a string, got {_type_name(problem)}")
    answer = record[answer_key]
    if isinstance(answer, bool) or not isinstance(answer, (str, int, float)):
        return Drop("malformed", f"'{answer_key}' must be a string or a number, got {_type_name(answer)}")
    drop = _check_key_words(record, columns.get("key_words", "key_words"))
    if drop is not None:
        return drop
    images_key = columns.get("images", "images")
    images = image_list(record.get(images_key), images_key)
    if isinstance(images, Drop):
        return images
    text = answer if isinstance(answer, str) else str(answer)
    return ParsedRecord("pebr", (("user", problem),), images, text, record)


def parse_canonical(record: Any, columns: Mapping[str, str]) -> ParsedRecord | Drop:
    """Check a canonical-schema record (``curation.schema``): the question, the gold answer,
    the images and the SFT conversation, if any (its assistant turns are what the reflective
    stage reads, with the answer)."""
    if not isinstance(record, Mapping):
        return Drop("malformed", f"a record must be an object, got {_type_name(record)}")
    missing = sorted(CANONICAL_KEYS - record.keys())
    if missing:
        return Drop("malformed", f"missing canonical column(s) {missing}")
    for key in ("uid", "question", "answer"):
        if not isinstance(record[key], str):
            return Drop("malformed", f"'{key}' must be a string, got {_type_name(record[key])}")
    drop = _check_key_words(record, "key_words")
    if drop is not None:
        return drop
    turns: list[tuple[str, str]] = [("user", record["question"])]
    messages = record.get("messages") or []
    if not isinstance(messages, list):
        return Drop("malformed", f"'messages' must be a list of turns, got {_type_name(messages)}")
    for i, turn in enumerate(messages):
        if not (isinstance(turn, Mapping) and isinstance(turn.get("content"), str)):
            return Drop("malformed", f"'messages'[{i}] needs a string 'content'")
        if turn.get("role") == "assistant":
            turns.append(("assistant", turn["content"]))
    images = image_list(record["images"], "images")
    if isinstance(images, Drop):
        return images
    return ParsedRecord("canonical", tuple(turns), images, record["answer"], record)


def parse_record(layout: str) -> Callable[[Any, Mapping[str, str]], ParsedRecord | Drop]:
    """The structure check of ``layout``."""
    return {"sharegpt": parse_sharegpt, "pebr": parse_pebr, "canonical": parse_canonical}[layout]


def check_image_tags(parsed: ParsedRecord) -> Drop | None:
    """``<image>`` tags in the user turns must match the number of images (LLaMA-Factory's rule)."""
    if parsed.layout == "canonical":
        return None  # the canonical question is stored without its <image> tags
    tags = sum(c.count(IMAGE_TAG) for r, c in parsed.turns if r == "user")
    if parsed.layout == "pebr" and tags == 0:
        return None  # EasyR1/PeBR prompts may leave the tag to the chat template
    if tags != len(parsed.images):
        return Drop("malformed", f"{tags} <image> tag(s) for {len(parsed.images)} image(s)")
    return None


def check_reflective(parsed: ParsedRecord, patterns_lower: Sequence[str]) -> Drop | None:
    """Drop when an assistant turn's ``str.lower()`` contains a pattern (the reference's test)."""
    if parsed.layout == "pebr":
        texts: Sequence[tuple[int, str]] = ((0, parsed.answer_text or ""),)
    elif parsed.layout == "canonical":
        texts = [(i, c) for i, (r, c) in enumerate(parsed.turns) if r == "assistant"]
        texts.append((len(parsed.turns), parsed.answer_text or ""))
    else:
        texts = [(i, c) for i, (r, c) in enumerate(parsed.turns) if r == "assistant"]
    for i, content in texts:
        low = content.lower()
        for pattern in patterns_lower:
            if pattern in low:
                return Drop("reflective", f"turn {i} contains {pattern!r}")
    return None


_FA_LITERAL = FINAL_ANSWER.removeprefix("###").strip()  # "The final answer is:"
_FA_PREFIX = re.compile(r"[ \t]*###[ \t]*")


def fast_final_answer(text: str) -> str | None:
    """Exactly :func:`rewards.sections.final_answer`, without parsing every section.

    The last ``### The final answer is:`` header is found from the end (a header is the
    literal at a line start after ``[ \\t]*###[ \\t]*``, which is what the shared regex
    matches); its body runs to the next header of any kind.
    """
    end = len(text)
    while True:
        p = text.rfind(_FA_LITERAL, 0, end)
        if p < 0:
            return None
        line_start = text.rfind("\n", 0, p) + 1
        if _FA_PREFIX.fullmatch(text, line_start, p):
            break
        end = p + len(_FA_LITERAL) - 1
    body_start = p + len(_FA_LITERAL)
    nxt = _HEADER_RE.search(text, body_start)
    return text[body_start : nxt.start() if nxt else len(text)].strip()


def canonical_answer(parsed: ParsedRecord) -> str:
    """The canonical ``answer`` of a parsed record, as the converters compute it."""
    text = parsed.answer_text
    if parsed.layout in ("pebr", "canonical"):
        return text or ""
    if text is None:
        return ""
    answer = fast_final_answer(text)
    return answer if answer is not None else text.strip()


def check_empty_answer(parsed: ParsedRecord, answer: str | None) -> Drop | None:
    """Drop when there is no assistant answer or the answer (``answer``: canonical) is empty."""
    if parsed.answer_text is None:
        return Drop("empty_answer", "no assistant turn")
    if not parsed.answer_text.strip():
        return Drop("empty_answer", "the assistant turn is empty")
    if answer is not None and not answer.strip():
        return Drop("empty_answer", "the final-answer section is empty")
    return None


def check_image(info: ImageInfo, rel: str, config: FilterConfig) -> Drop | None:
    """The image stages, in order, for one image's probe result."""
    status = info.status
    if status == UNSAFE:
        return Drop("unsafe_path", info.detail or rel)
    if status == MISSING:
        return Drop("missing_image", info.detail or rel)
    if status == CORRUPT:
        return Drop("corrupt_image", f"{rel!r}: {info.detail}")
    if info.decode_error is not None and config.verify_images:
        return Drop("undecodable_image", f"{rel!r}: {info.decode_error}")
    w, h = info.width or 0, info.height or 0
    if w * h > config.max_pixels:
        return Drop("too_many_pixels", f"{rel!r} is {w}x{h} = {w * h} pixels > {config.max_pixels}")
    if w < config.min_side or h < config.min_side:
        return Drop("small_image", f"{rel!r} is {w}x{h}, under {config.min_side} px")
    return None


def normalise_question(question: str) -> str:
    """The question as duplicates are compared: case-folded, whitespace runs collapsed."""
    folded = question.lower() if question.isascii() else question.casefold()  # same on ASCII
    return " ".join(folded.split())


def question_key(question: str) -> bytes:
    """Hash of the normalised question."""
    data = normalise_question(question).encode("utf-8", "surrogatepass")
    return hashlib.blake2b(data, digest_size=16).digest()


def duplicate_key(digests: Sequence[str], question: str, *, lazy: bool = False) -> bytes:
    """Key of the duplicate stage: the images' content digests and the normalised question.

    ``F`` keys hash both and are final. With ``lazy=True`` a record with images gets an ``I``
    key of its images only; two records with the same ``I`` key are duplicates when their
    normalised questions match, which the caller then checks (normalising a question costs
    more than everything else about the key, and most images belong to one record). An
    ``I`` key is the raw digests themselves (32 bytes an image): no hash to compute.
    Digests are fixed-length hex, so joining them before a NUL separator is unambiguous.
    """
    if lazy and digests:
        return b"I" + bytes.fromhex("".join(digests))
    data = "".join(digests) + "\x00" + normalise_question(question)
    return b"F" + hashlib.blake2b(data.encode("utf-8", "surrogatepass"), digest_size=16).digest()
