"""The SFT conversation: a Mulberry-style user turn and a sectioned assistant answer."""

from __future__ import annotations

import random

from curation.synth.describe import count_phrase, describe
from curation.synth.questions import Question
from curation.synth.scene import Scene
from rewards.sections import render_sections

IMAGE_TAG = "<image>"

#: The instruction paragraph of the user turn (Mulberry asks for the same four sections).
INSTRUCTION = (
    "Look at the image and answer the question below.\n"
    "Start with a description of the image, then explain what the question asks for, "
    "then reason one step at a time, and end with the answer written as "
    "'The final answer is: xxx'.\n\n"
    "Use these sections, each starting with ###:\n"
    "### Image Description:\n### Rationales:\n### Let's think step by step.\n"
    "### Step 1:\n### Step 2:\n...\n### The final answer is: \n\n"
)

#: Reflective sentences in the varied casing real Mulberry samples use; each contains
#: "let me rethink it" once lower-cased, which is what PeBR's filter drops.
RETHINK_FORMS = (
    "I think I have made a mistake. Let me rethink it.",
    "Wait, that does not match the image. let me rethink it.",
    "Hmm, that cannot be right. LET ME RETHINK IT.",
    "That seems wrong. Let Me Rethink It.",
    "I may have misread the picture; let me RETHINK it carefully.",
)


def user_turn(question: str) -> str:
    return f"{IMAGE_TAG}{INSTRUCTION}Question: {question}"


def assistant_turn(scene: Scene, q: Question, *, reflective_rng: random.Random | None = None) -> str:
    """The answer in PeBR's layout; with ``reflective_rng`` one step first goes wrong and is retracted.

    The description is written from ``scene`` (the scene as drawn, so a resized image gets
    its real size), the steps and the answer from the question.
    """
    steps = list(q.steps)
    if reflective_rng is not None:
        k = reflective_rng.randrange(len(steps))
        if q.wrong and q.wrong != q.answer:
            slip = f"So far this suggests the answer is {q.wrong}."
        else:
            slip = f"At first I counted {count_phrase(len(scene.objects) + 1, 'shape')}."
        # the slip comes after the step's own reasoning, as in Mulberry's reflective samples
        steps[k] = f"{steps[k]} {slip} {reflective_rng.choice(RETHINK_FORMS)}"
    return render_sections(describe(scene), q.rationale, steps, q.answer)


def conversation(
    scene: Scene, q: Question, image_path: str, *, reflective_rng: random.Random | None = None
) -> dict:
    """One Mulberry/LLaMA-Factory sharegpt record."""
    return {
        "messages": [
            {"role": "user", "content": user_turn(q.question)},
            {"role": "assistant", "content": assistant_turn(scene, q, reflective_rng=reflective_rng)},
        ],
        "images": [image_path],
    }
