"""When is a caption "correct" (the outcome that buckets caption questions and drives stage 2)?"""

from __future__ import annotations

import pytest

from rewards.accuracy import accuracy
from rewards.sections import render_sections

REFERENCE = (
    "A white picture with 4 shapes: a red circle, a blue square, a green triangle and a red star. "
    "The digit 7 is written on the blue square."
)
RECORD = {
    "uid": "cap",
    "task": "caption",
    "answer": REFERENCE,
    "reference_caption": REFERENCE,
    "key_words": ["4 shapes", "red circle", "blue square", "green triangle", "red star"],
}
# both similarity backends: MiniLM embeddings (installed with the embed extra) and the lexical F1
BACKENDS = pytest.mark.parametrize("backend", ["lexical", "auto"])


def _described(text: str) -> str:
    return render_sections(text, "Describe the image.", ["Look at every shape."], "done")


@pytest.mark.parametrize(
    ("description", "correct"),
    [
        (REFERENCE, True),  # the reference itself
        (  # a paraphrase naming the same shapes
            "There are 4 shapes on white: a red circle, a blue square with a 7, a green triangle "
            "and a red star.",
            True,
        ),
        (  # the right style, the wrong content: similar wording, few key words
            "A white picture with 4 shapes: a yellow diamond, a purple square, a green diamond "
            "and a black star. The digit 2 is written on the purple square.",
            False,
        ),
        ("4 shapes red circle blue square green triangle red star " * 5, False),  # key-word stuffing
        ("A picture.", False),  # says nothing
    ],
)
@BACKENDS
def test_a_caption_must_read_like_the_reference_and_name_the_content(description, correct, backend):
    result = accuracy(_described(description), RECORD, caption_similarity=backend)
    assert result.correct is correct, result.details
    assert 0.0 <= result.score <= 1.0


@BACKENDS
def test_without_key_words_similarity_decides(backend):
    record = {**RECORD, "key_words": []}
    assert accuracy(_described(REFERENCE), record, caption_similarity=backend).correct
    assert not accuracy(_described("A picture."), record, caption_similarity=backend).correct
