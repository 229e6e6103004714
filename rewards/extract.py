"""Find the answer a response commits to. Pure string functions, shared by every reward.

Which answer counts, in order of precedence:

1. the content of the LAST ``<answer>...</answer>`` block (:func:`answer_block`);
2. in PeBR's sectioned layout, the LAST ``### The final answer is:`` section (found by
   :mod:`rewards.sections`, so there is one parser for it): a box inside it, else the text after
   a further anchor inside it, else its first line. Boxes in the ``### Step`` sections before it
   are reasoning, not the answer (PeBR judges the text after this header);
3. else the content of the LAST ``\\boxed{...}`` / ``\\fbox{...}`` (:func:`last_boxed`);
4. else the text after the last of :data:`ANCHORS` (``final answer is``, ``the answer is``,
   ``answer:``, case-insensitive): a leading ``$...$`` span, else the rest of its line up to the
   end of the first sentence;
5. else the whole response when it is short (``whole_max_chars``).

Inside an ``<answer>`` block the same rules apply again (``<answer>The answer is \\boxed{5}
</answer>`` gives ``5``). Earlier boxed answers and numbers in the reasoning never count: a model
that boxes ``3`` and later boxes ``4`` is judged on ``4``; when the last ``\\boxed{`` is never closed
(a truncated response) :func:`last_boxed` gives ``None`` rather than falling back to an earlier box.

The answer text is cleaned (:func:`clean_answer`): surrounding whitespace, ``$...$``, ``$$...$$``,
``\\(...\\)``, ``\\[...\\]``, markdown emphasis and a trailing period are not part of it.

Everything here is linear in the length of the input: no regular expression that can backtrack
(``str.find``/``rfind``, single-pass scans, and the section parser's one line-anchored pattern),
so a 1 MB response costs milliseconds.

Example::

    >>> extract_answer("### Step 1:\\n2+2=4\\n### The final answer is: $4$.")
    Extraction(text='4', source='anchor')
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from typing import Literal

from rewards import sections

Source = Literal["answer_tag", "boxed", "anchor", "whole"]

#: Phrases after which the answer follows, matched case-insensitively; the last occurrence wins.
#: PeBR's ``### The final answer is:`` header is handled by :mod:`rewards.sections` first.
ANCHORS: tuple[str, ...] = ("final answer is", "the answer is", "answer:")

#: Box commands whose braced argument is an answer.
BOX_COMMANDS: tuple[str, ...] = ("\\boxed", "\\fbox")

ANSWER_OPEN = "<answer>"
ANSWER_CLOSE = "</answer>"

# Only ASCII letters are folded so that positions in the folded text equal positions in the
# original (str.lower() can change the length of some non-ASCII strings, e.g. "İ").
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)

# Guards against pathological cleaning loops; each round removes at least one character.
_MAX_CLEAN_ROUNDS = 8


@dataclass(frozen=True)
class ExtractOptions:
    """Where to look for the answer.

    Attributes:
        anchors: phrases after which the answer follows (case-insensitive, last wins).
        whole_max_chars: a response without tag, box or anchor counts as the answer only when it
            is at most this long (stripped); longer free text has no answer.
        use_answer_tag, use_boxed, use_anchors, use_whole: switch single rules off.
    """

    anchors: tuple[str, ...] = ANCHORS
    whole_max_chars: int = 100
    use_answer_tag: bool = True
    use_boxed: bool = True
    use_anchors: bool = True
    use_whole: bool = True

    def __post_init__(self) -> None:
        if self.whole_max_chars < 0:
            raise ValueError(f"whole_max_chars must be >= 0, got {self.whole_max_chars}")
        if any(not a for a in self.anchors):
            raise ValueError(f"anchors must be non-empty strings, got {self.anchors!r}")


DEFAULT_OPTIONS = ExtractOptions()


@dataclass(frozen=True)
class Extraction:
    """The answer found in a response: ``text`` is ``None`` when there is none.

    ``source`` says which rule found it: ``"answer_tag"``, ``"boxed"``, ``"anchor"``, ``"whole"``,
    or ``None`` when nothing was found.
    """

    text: str | None
    source: Source | None


def _fold(text: str) -> str:
    return text.translate(_ASCII_LOWER)


def answer_block(text: str) -> str | None:
    """The content of the LAST ``<answer>...</answer>`` block (tags case-insensitive), or ``None``.

    The content is returned as written (not stripped), so the grounding reward sees the same
    characters as the model wrote. An opening tag without a closing one does not count.

    >>> answer_block("<answer>1</answer> then <ANSWER> 2 </ANSWER>")
    ' 2 '
    """
    folded = _fold(text)
    close = folded.rfind(ANSWER_CLOSE)
    if close < 0:
        return None
    start = folded.rfind(ANSWER_OPEN, 0, close)
    if start < 0:
        return None
    return text[start + len(ANSWER_OPEN) : close]


def _braced_argument(text: str, open_pos: int) -> int | None:
    """Index just past the ``}`` matching the ``{`` at ``open_pos``, or ``None`` when unbalanced.

    Escaped braces (``\\{``, ``\\}``) do not count; the scan is a single pass.
    """
    depth = 0
    i = open_pos
    n = len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return None


def last_boxed(text: str) -> str | None:
    """The content of the LAST ``\\boxed{...}`` or ``\\fbox{...}``, or ``None``.

    Nested and escaped braces are handled (``\\boxed{\\frac{1}{2}}`` gives ``\\frac{1}{2}``,
    ``\\boxed{\\{1,2\\}}`` gives ``\\{1,2\\}``). ``\\boxed 5`` (argument without braces) gives
    ``5``. When the last box is never closed, the result is ``None``: an earlier box does not
    stand in for it.

    >>> last_boxed(r"first \\boxed{3}, then \\boxed{\\frac{1}{2}}")
    '\\\\frac{1}{2}'
    """
    pos = -1
    cmd_len = 0
    for cmd in BOX_COMMANDS:
        search_from = len(text)
        # Skip matches that are a prefix of a longer command name (\boxedx is not \boxed).
        while True:
            p = text.rfind(cmd, 0, search_from)
            if p < 0:
                break
            after = p + len(cmd)
            if after < len(text) and text[after].isalpha():
                search_from = p
                continue
            if p > pos:
                pos, cmd_len = p, len(cmd)
            break
    if pos < 0:
        return None
    i = pos + cmd_len
    n = len(text)
    while i < n and text[i] in " \t":
        i += 1
    if i < n and text[i] == "{":
        end = _braced_argument(text, i)
        if end is None:
            return None
        return text[i + 1 : end - 1]
    # \boxed 5: the argument runs to the next whitespace or math delimiter.
    j = i
    while j < n and not text[j].isspace() and text[j] not in "$":
        j += 1
    return text[i:j] if j > i else None


def _strip_math_delimiters(s: str) -> str:
    # "$a$ and $b$" starts and ends with "$" but is not one math span: the inner text must not
    # contain the delimiter again.
    for left, right in (("$$", "$$"), ("\\[", "\\]"), ("\\(", "\\)"), ("$", "$")):
        if len(s) >= len(left) + len(right) and s.startswith(left) and s.endswith(right):
            inner = s[len(left) : len(s) - len(right)]
            if right not in inner and (right != "$" or "$" not in inner):
                return inner
    return s


def clean_answer(text: str) -> str:
    """Strip what is not part of an answer: whitespace, ``$...$``, ``\\(...\\)``, ``\\[...\\]``,
    markdown emphasis (``**B**``), a trailing period or comma.

    >>> clean_answer(" $\\\\frac{1}{2}$. ")
    '\\\\frac{1}{2}'
    """
    s = text.strip()
    for _ in range(_MAX_CLEAN_ROUNDS):
        before = s
        s = _strip_math_delimiters(s).strip()
        if len(s) >= 4 and s.startswith("__") and s.endswith("__"):
            s = s[2:-2].strip()
        # Markdown emphasis, also when unbalanced ("**Answer:** B" leaves "** B").
        s = s.strip("*`").strip()
        while s.endswith((".", ",", ";", "。")) and not s.endswith("\\."):
            # "..." stays an ellipsis only inside an expression, not at the end of an answer.
            s = s[:-1].rstrip()
        if s.endswith("$") and s.count("$") == 1:
            s = s[:-1].rstrip()  # "5$" left over when "$5$." was cut at a line end
        if s.startswith("$") and s.count("$") == 1:
            s = s[1:].lstrip()
        if s == before:
            break
    return s


def _answer_span(text: str) -> str:
    """The answer part of the text after an anchor: a leading math span taken whole (``$...$``,
    ``$$...$$``, ``\\(...\\)``, ``\\[...\\]``, which may cross lines), else the first line up to
    the end of its first sentence (". " before a letter: "$5$. I hope it is correct")."""
    s = text.lstrip()
    for left, right in (("$$", "$$"), ("\\[", "\\]"), ("\\(", "\\)"), ("$", "$")):
        if s.startswith(left):
            end = s.find(right, len(left))
            if end >= 0:
                return s[: end + len(right)]
    newline = s.find("\n")
    line = s if newline < 0 else s[:newline]
    k = line.find(". ")
    while k >= 0:
        if k + 2 < len(line) and line[k + 2].isalpha():
            return line[:k]
        k = line.find(". ", k + 2)
    return line


def _after_last_anchor(text: str, anchors: tuple[str, ...]) -> str | None:
    folded = _fold(text)
    best_end = -1
    best_start = -1
    for anchor in anchors:
        p = folded.rfind(_fold(anchor))
        if p > best_start:
            best_start, best_end = p, p + len(anchor)
    if best_start < 0:
        return None
    rest = text[best_end:].lstrip(" \t:")
    return _answer_span(rest)


def _extract_from(text: str, options: ExtractOptions, *, whole_limit: int | None) -> tuple[str, str] | None:
    if options.use_anchors:
        section = sections.final_answer(text)
        if section is not None:
            # PeBR's layout: the final-answer section is the answer; boxes in earlier steps are
            # reasoning. Within the section a box, then a further anchor, refine it.
            boxed = last_boxed(section) if options.use_boxed else None
            if boxed is not None:
                return clean_answer(boxed), "boxed"
            inner = _after_last_anchor(section, options.anchors)
            return clean_answer(inner if inner is not None else _answer_span(section)), "anchor"
    if options.use_boxed:
        boxed = last_boxed(text)
        if boxed is not None:
            return clean_answer(boxed), "boxed"
    if options.use_anchors:
        anchored = _after_last_anchor(text, options.anchors)
        if anchored is not None:
            return clean_answer(anchored), "anchor"
    if options.use_whole:
        stripped = text.strip()
        if whole_limit is None or len(stripped) <= whole_limit:
            return clean_answer(stripped), "whole"
    return None


def extract_answer(text: str, options: ExtractOptions = DEFAULT_OPTIONS) -> Extraction:
    """Find the answer a response commits to (see the module docstring for the rules).

    >>> extract_answer("I think \\\\boxed{3}. No: \\\\boxed{4}.")
    Extraction(text='4', source='boxed')
    >>> extract_answer("A long essay without any answer. " * 10)
    Extraction(text=None, source=None)
    """
    if not isinstance(text, str):
        raise TypeError(f"extract_answer expects a str response, got {type(text).__name__}")
    if options.use_answer_tag:
        block = answer_block(text)
        if block is not None:
            found = _extract_from(block, options, whole_limit=None)
            if found is None or not found[0]:
                return Extraction(None, None)
            return Extraction(found[0], "answer_tag")
    found = _extract_from(text, options, whole_limit=options.whole_max_chars)
    if found is None or not found[0]:
        return Extraction(None, None)
    return Extraction(found[0], found[1])  # type: ignore[arg-type]


__all__ = [
    "ANCHORS",
    "BOX_COMMANDS",
    "DEFAULT_OPTIONS",
    "ExtractOptions",
    "Extraction",
    "answer_block",
    "clean_answer",
    "extract_answer",
    "last_boxed",
]
