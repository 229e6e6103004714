"""Format rewards: PeBR's section check and the ``<think>/<answer>`` tag layout.

PeBR's format reward is 1.0 when every required header (``### Image Description:``,
``### Rationales:``, ``### Step 1:``, ``### The final answer is:``) is present, else 0.0. The
headers, the style and partial credit are configurable through :class:`FormatOptions`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from rewards.sections import REQUIRED_HEADERS, parse_sections

FORMAT_STYLES = ("sections", "think_answer")

_THINK_ANSWER = re.compile(
    r"\s*<think>(?P<think>.*?)</think>\s*<answer>(?P<answer>.*?)</answer>\s*", re.DOTALL
)


@dataclass(frozen=True)
class FormatOptions:
    """Which layout a response must follow.

    ``style="sections"`` checks ``headers`` (PeBR's by default); ``style="think_answer"``
    wants exactly ``<think>...</think><answer>...</answer>`` with a non-empty answer.
    ``partial=True`` gives the fraction of headers present instead of all-or-nothing.
    """

    style: str = "sections"
    headers: tuple[str, ...] = REQUIRED_HEADERS
    partial: bool = False

    def __post_init__(self) -> None:
        if self.style not in FORMAT_STYLES:
            raise ValueError(f"format style must be one of {list(FORMAT_STYLES)}, got {self.style!r}")
        object.__setattr__(self, "headers", tuple(self.headers))
        if self.style == "sections" and not self.headers:
            raise ValueError("the sections format needs at least one header")


@dataclass(frozen=True)
class FormatResult:
    reward: float
    missing: tuple[str, ...]
    style: str


def _normal_header(header: str) -> str:
    return re.sub(r"\s+", " ", header.strip())


def check_format(response: str, options: FormatOptions | None = None) -> FormatResult:
    """Score the layout of ``response`` and name what is missing."""
    options = options or FormatOptions()
    if options.style == "think_answer":
        m = _THINK_ANSWER.fullmatch(response)
        ok = m is not None and bool(m.group("answer").strip())
        return FormatResult(
            1.0 if ok else 0.0, () if ok else ("<think>...</think><answer>...</answer>",), "think_answer"
        )
    present = {_normal_header(h) for h in parse_sections(response).headers}
    missing = tuple(h for h in options.headers if _normal_header(h) not in present)
    if options.partial:
        reward = 1.0 - len(missing) / len(options.headers)
    else:
        reward = 0.0 if missing else 1.0
    return FormatResult(reward, missing, "sections")


def format_reward(response: str, options: FormatOptions | None = None) -> float:
    """1.0 when ``response`` follows the layout (see :class:`FormatOptions`), else 0.0."""
    return check_format(response, options).reward


def headers_from(value: Sequence[str] | None) -> tuple[str, ...]:
    """Headers from config, defaulting to PeBR's."""
    return REQUIRED_HEADERS if value is None else tuple(value)
