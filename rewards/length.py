"""PeBR's length reward: 1.0 up to ``max_tokens`` response tokens, else ``max_tokens / length``.

Token counts come from the caller (the trainer knows them: TRL passes ``completion_ids``,
EasyR1 ``response_length``). When a count is missing, :func:`approx_tokens` estimates it
from the text: one token per word or punctuation mark, which is within about 30% of BPE
counts on English prose and errs low on long numbers and rare words.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: PeBR's budget of response tokens before the length reward starts to fall.
PEBR_MAX_TOKENS = 512

_PIECE = re.compile(r"\w+|[^\w\s]")


@dataclass(frozen=True)
class LengthOptions:
    max_tokens: int = PEBR_MAX_TOKENS

    def __post_init__(self) -> None:
        if self.max_tokens <= 0:
            raise ValueError(f"max_tokens must be positive, got {self.max_tokens}")


def approx_tokens(text: str) -> int:
    """Approximate token count of ``text``: its words and punctuation marks."""
    return len(_PIECE.findall(text))


def length_reward(n_tokens: int, options: LengthOptions | None = None) -> float:
    """1.0 up to ``max_tokens`` tokens, else ``max_tokens / n_tokens``."""
    options = options or LengthOptions()
    if n_tokens < 0:
        raise ValueError(f"a token count cannot be negative, got {n_tokens}")
    if n_tokens <= options.max_tokens:
        return 1.0
    return options.max_tokens / n_tokens
