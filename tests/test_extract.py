"""Answer extraction: which part of a response is the answer (tables with a comment per case)."""

from __future__ import annotations

import time

import pytest

from rewards.extract import (
    Extraction,
    ExtractOptions,
    answer_block,
    clean_answer,
    extract_answer,
    last_boxed,
)
from rewards.sections import render_sections

PEBR = render_sections("A bar chart.", "Read the bars.", ["Bar A is 3.", "Bar B is 4."], "$7$.")

EXTRACT_CASES = [
    # answer tag wins over everything, and the LAST block counts
    ("<answer>3</answer> later <answer>4</answer>", Extraction("4", "answer_tag")),
    # answer tag beats a later \boxed outside it
    ("<answer>5</answer> \\boxed{6}", Extraction("5", "answer_tag")),
    # rules apply again inside the tag: a box inside the block is its answer
    ("<answer>so it is \\boxed{\\frac{1}{2}}</answer>", Extraction("\\frac{1}{2}", "answer_tag")),
    # an anchor inside the tag refines it
    ("<answer>The answer is 12.</answer>", Extraction("12", "answer_tag")),
    # tags are case-insensitive
    ("<ANSWER> B </ANSWER>", Extraction("B", "answer_tag")),
    # an empty answer block is no answer (not the text outside it)
    ("The answer is 3. <answer> </answer>", Extraction(None, None)),
    # an unclosed answer tag does not count; the anchor before it does
    ("The answer is 3\n<answer>4", Extraction("3", "anchor")),
    # last box wins; earlier boxes never count
    ("First \\boxed{3}. Wait, \\boxed{4}.", Extraction("4", "boxed")),
    # \fbox is a box too
    ("so \\fbox{10}", Extraction("10", "boxed")),
    # nested braces inside the box
    ("\\boxed{\\frac{\\sqrt{2}}{2}}", Extraction("\\frac{\\sqrt{2}}{2}", "boxed")),
    # escaped braces: a set in a box
    ("$\\boxed{\\{1, 2\\}}$", Extraction("\\{1, 2\\}", "boxed")),
    # box without braces
    ("$\\boxed 5$", Extraction("5", "boxed")),
    # box beats an anchor (precedence of the rules)
    ("The answer is 3. \\boxed{4}", Extraction("4", "boxed")),
    # PeBR's sectioned layout: the final-answer section, $...$ and trailing period removed
    (PEBR, Extraction("7", "anchor")),
    # an anchor inside the final-answer section refines it
    ("### Step 1:\nx\n### The final answer is: The answer is B", Extraction("B", "anchor")),
    # only the first line of the final-answer section counts (chatter after it is ignored)
    ("### The final answer is:\n42\n\nI hope this helps.", Extraction("42", "anchor")),
    # display math after the anchor is taken whole, across lines
    (
        "### The final answer is: $$\\begin{pmatrix}1\\\\\n2\\end{pmatrix}$$",
        Extraction("\\begin{pmatrix}1\\\\\n2\\end{pmatrix}", "anchor"),
    ),
    # PeBR's final-answer section beats a box in an earlier step (steps are reasoning)
    (
        "### Step 1:\nMaybe \\boxed{5}\n### The final answer is: 12",
        Extraction("12", "anchor"),
    ),
    # a box inside the final-answer section is its answer
    ("### Step 1:\nx\n### The final answer is: $\\boxed{12}$", Extraction("12", "boxed")),
    # an empty final-answer section is no answer (an earlier box does not stand in)
    ("### Step 1:\n\\boxed{5}\n### The final answer is:", Extraction(None, None)),
    # a math span after the anchor is taken whole, the sentence after it is not
    ("Final Answer: The final answer is $5$. I hope it is correct.", Extraction("5", "anchor")),
    # the first sentence after the anchor, not the explanation that follows
    ("so the answer is 6. This is because 2 * 3 = 6.", Extraction("6", "anchor")),
    # a decimal point is not a sentence end
    ("the answer is 3.5 m", Extraction("3.5 m", "anchor")),
    # the last of several anchors wins
    ("The answer is 3? No, the final answer is 5", Extraction("5", "anchor")),
    # anchors are case-insensitive and "Answer:" counts, markdown bold removed
    ("Reasoning...\n**Answer:** 17", Extraction("17", "anchor")),
    # a short response is its own answer
    ("  $12$ ", Extraction("12", "whole")),
    # a long response without tag, box or anchor has no answer
    ("We compute many things here. " * 10, Extraction(None, None)),
    # an unclosed last box gives no box; the earlier box does not stand in for it
    ("\\boxed{3} then \\boxed{4", Extraction("\\boxed{3} then \\boxed{4", "whole")),
    # "$a$ and $b$" is not one math span: only the outer delimiters would be wrong to strip
    ("$a$ and $b$", Extraction("$a$ and $b$", "whole")),
    # empty input
    ("", Extraction(None, None)),
]


@pytest.mark.parametrize(("response", "expected"), EXTRACT_CASES)
def test_extract_answer(response: str, expected: Extraction) -> None:
    assert extract_answer(response) == expected


LAST_BOXED_CASES = [
    # no box at all
    ("no box", None),
    # a command that merely starts with \boxed is not a box
    ("\\boxedx{1}", None),
    # the last of box and fbox wins
    ("\\fbox{1} \\boxed{2} \\fbox{3}", "3"),
    # escaped closing brace does not close the box
    ("\\boxed{a\\}b}", "a\\}b"),
    # empty box is an empty string (the grader treats it as no answer)
    ("\\boxed{}", ""),
    # unbalanced last box
    ("\\boxed{\\frac{1}{2}", None),
]


@pytest.mark.parametrize(("text", "expected"), LAST_BOXED_CASES)
def test_last_boxed(text: str, expected: str | None) -> None:
    assert last_boxed(text) == expected


ANSWER_BLOCK_CASES = [
    # content kept verbatim (the grounding reward parses boxes from it)
    ("<answer> [1, 2, 3, 4] </answer>", " [1, 2, 3, 4] "),
    # last block
    ("<answer>a</answer><answer>b</answer>", "b"),
    # a closing tag without opening tag
    ("a</answer>", None),
    # non-ASCII case folding does not shift positions ("İ" lowercases to two characters)
    ("İİİ<answer>x</answer>", "x"),
]


@pytest.mark.parametrize(("text", "expected"), ANSWER_BLOCK_CASES)
def test_answer_block(text: str, expected: str | None) -> None:
    assert answer_block(text) == expected


CLEAN_CASES = [
    # trailing period and inline math
    (" $3$. ", "3"),
    # a decimal point is kept
    ("3.5.", "3.5"),
    # display math
    ("\\[x+1\\]", "x+1"),
    # inline math with parentheses delimiters
    ("\\(\\pi\\)", "\\pi"),
    # markdown bold
    ("**B**", "B"),
    # a dangling dollar left when a line was cut
    ("5$", "5"),
]


@pytest.mark.parametrize(("text", "expected"), CLEAN_CASES)
def test_clean_answer(text: str, expected: str) -> None:
    assert clean_answer(text) == expected


def test_options_switch_rules_off() -> None:
    # without boxes, the anchor decides
    assert (
        extract_answer("The answer is 3 \\boxed{4}", ExtractOptions(use_boxed=False)).text == "3 \\boxed{4}"
    )
    # custom anchor list
    assert (
        extract_answer("Result => 9", ExtractOptions(anchors=("result =>",), whole_max_chars=0)).text == "9"
    )


def test_bad_options_and_types() -> None:
    with pytest.raises(ValueError, match="whole_max_chars"):
        ExtractOptions(whole_max_chars=-1)
    with pytest.raises(ValueError, match="anchors"):
        ExtractOptions(anchors=("",))
    with pytest.raises(TypeError, match="str response"):
        extract_answer(None)  # type: ignore[arg-type]


HOSTILE = [
    # 1 MB of opening braces after a box: the brace scan is one pass
    "\\boxed{" + "{" * 1_000_000,
    # 1 MB of repeated box commands
    "\\boxed{1}" * 110_000,
    # 1 MB of anchors
    "the answer is " * 75_000,
    # 1 MB of unclosed answer tags
    "<answer>" * 130_000 + "</answer>",
    # 1 MB of header-like lines
    "### The final answer is: 1\n" * 40_000,
    # 1 MB of spaces and hashes (regex backtracking bait for the section parser)
    ("#" * 50 + " " * 50) * 10_000,
]


@pytest.mark.parametrize("text", HOSTILE, ids=range(len(HOSTILE)))
def test_linear_time_on_megabyte_inputs(text: str) -> None:
    start = time.perf_counter()
    extract_answer(text)
    answer_block(text)
    last_boxed(text)
    assert time.perf_counter() - start < 1.0
