from __future__ import annotations

import pytest

from rewards.format import FormatOptions, check_format, format_reward
from rewards.length import LengthOptions, approx_tokens, length_reward
from rewards.sections import render_sections

FULL = render_sections("A red circle.", "Count the shapes.", ["There is one circle."], "1")

FORMAT_CASES = [
    # PeBR's full layout
    (FULL, FormatOptions(), 1.0),
    # headers only, no content: the format check alone passes (the audit shows what it earns)
    ("### Image Description:\n### Rationales:\n### Step 1:\n### The final answer is:", FormatOptions(), 1.0),
    # missing the rationales header
    (FULL.replace("### Rationales:", ""), FormatOptions(), 0.0),
    # missing the final answer header
    (FULL.replace("### The final answer is:", "Answer:"), FormatOptions(), 0.0),
    # only "### Step 2:" is not "### Step 1:"
    (FULL.replace("### Step 1:", "### Step 2:"), FormatOptions(), 0.0),
    # partial credit: 3 of 4 headers
    (FULL.replace("### Rationales:", ""), FormatOptions(partial=True), 0.75),
    # a custom header list
    (
        "### Image Description: x\n### The final answer is: 1",
        FormatOptions(headers=("### Image Description:",)),
        1.0,
    ),
    # empty response
    ("", FormatOptions(), 0.0),
    # <think>/<answer> layout
    ("<think>1+1</think><answer>2</answer>", FormatOptions(style="think_answer"), 1.0),
    # whitespace around the tags is fine
    ("  <think>a</think>\n<answer> 2 </answer>\n", FormatOptions(style="think_answer"), 1.0),
    # an empty answer is not the format
    ("<think>a</think><answer>  </answer>", FormatOptions(style="think_answer"), 0.0),
    # text after the answer breaks the layout
    ("<think>a</think><answer>2</answer> and more", FormatOptions(style="think_answer"), 0.0),
    # answer before think
    ("<answer>2</answer><think>a</think>", FormatOptions(style="think_answer"), 0.0),
]


@pytest.mark.parametrize(("response", "options", "expected"), FORMAT_CASES)
def test_format_table(response, options, expected):
    assert format_reward(response, options) == pytest.approx(expected)


def test_format_names_missing_headers():
    res = check_format(FULL.replace("### Rationales:", ""))
    assert res.missing == ("### Rationales:",)


def test_format_options_are_checked():
    with pytest.raises(ValueError, match="format style"):
        FormatOptions(style="xml")
    with pytest.raises(ValueError, match="at least one header"):
        FormatOptions(headers=())


LENGTH_CASES = [
    (0, 512, 1.0),  # empty: within budget
    (512, 512, 1.0),  # exactly the budget
    (513, 512, 512 / 513),  # one over
    (1024, 512, 0.5),  # twice the budget: half
    (100, 50, 0.5),  # a configured budget
]


@pytest.mark.parametrize(("n", "budget", "expected"), LENGTH_CASES)
def test_length_table(n, budget, expected):
    assert length_reward(n, LengthOptions(budget)) == pytest.approx(expected)


def test_length_errors():
    with pytest.raises(ValueError, match="negative"):
        length_reward(-1)
    with pytest.raises(ValueError, match="positive"):
        LengthOptions(0)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", 0),
        ("one two three", 3),
        ("x = 3.5!", 6),  # x, =, 3, ., 5, !
    ],
)
def test_approx_tokens(text, expected):
    assert approx_tokens(text) == expected
