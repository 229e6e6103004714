"""PeBR's sectioned response layout, parsed in one place.

A PeBR/Mulberry response reads::

    ### Image Description:
    ...
    ### Rationales:
    ...
    ### Let's think step by step.
    ### Step 1:
    ...
    ### The final answer is: X

Every package that needs a section (the SFT converter, the format and alignment rewards,
the synthetic data generator) uses these functions instead of its own regex.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

DESCRIPTION = "### Image Description:"
RATIONALES = "### Rationales:"
THINK = "### Let's think step by step."
FINAL_ANSWER = "### The final answer is:"

#: The headers PeBR's format reward requires (``### Step 1:`` stands for the steps).
REQUIRED_HEADERS = (DESCRIPTION, RATIONALES, "### Step 1:", FINAL_ANSWER)

_HEADER_RE = re.compile(
    r"^[ \t]*###[ \t]*(Image Description:|Rationales:|Let's think step by step\.?|Step[ \t]+(\d+):"
    r"|The final answer is:)",
    re.MULTILINE,
)


@dataclass(frozen=True)
class Sections:
    """The parts of a sectioned response; a part is ``None`` when its header is absent."""

    description: str | None = None
    rationales: str | None = None
    steps: tuple[str, ...] = field(default_factory=tuple)
    final_answer: str | None = None
    headers: tuple[str, ...] = field(default_factory=tuple)


def parse_sections(text: str) -> Sections:
    """Split a response at its ``###`` headers.

    The text of a section runs to the next header. When a header appears more than once,
    the last occurrence wins for the final answer (a model that restates its answer is
    judged on the restatement) and the first for the description.
    """
    matches = list(_HEADER_RE.finditer(text))
    description = rationales = final = None
    steps: list[str] = []
    headers: list[str] = []
    for i, m in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        body = text[m.end() : end].strip()
        name = m.group(1)
        if name.startswith("Image Description"):
            headers.append(DESCRIPTION)
            if description is None:
                description = body
        elif name.startswith("Rationales"):
            headers.append(RATIONALES)
            if rationales is None:
                rationales = body
        elif name.startswith("Let's think"):
            headers.append(THINK)
        elif name.startswith("Step"):
            headers.append(f"### Step {int(m.group(2))}:")
            steps.append(body)
        else:
            headers.append(FINAL_ANSWER)
            final = body
    return Sections(description, rationales, tuple(steps), final, tuple(headers))


def final_answer(text: str) -> str | None:
    """The text after the last ``### The final answer is:`` header, or ``None``."""
    return parse_sections(text).final_answer


def description(text: str) -> str | None:
    """The ``### Image Description:`` section, or ``None``."""
    return parse_sections(text).description


def render_sections(description: str, rationales: str, steps: list[str], answer: str) -> str:
    """Write a response in PeBR's layout (used by the synthetic data generator)."""
    parts = [f"{DESCRIPTION}\n{description}", f"{RATIONALES}\n{rationales}", THINK]
    parts += [f"### Step {k}:\n{body}" for k, body in enumerate(steps, start=1)]
    parts.append(f"{FINAL_ANSWER} {answer}")
    return "\n\n".join(parts)
