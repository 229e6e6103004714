"""Math answer checking: tables of (prediction, gold, expected) per category, a comment per case."""

from __future__ import annotations

import logging

import pytest

import rewards.math as rm
from rewards.math import Grade, GradeOptions, grade, grade_extracted, is_correct
from rewards.sections import render_sections

INTEGERS = [
    ("12", "12", True),  # identical
    ("012", "12", True),  # leading zero
    ("-0", "0", True),  # negative zero is zero
    ("13", "12", False),  # off by one
    ("1000001", "1000000", False),  # exact integers must be equal: no tolerance between exact values
    ("−3", "-3", True),  # Unicode minus sign is a minus
    ("–3", "-3", True),  # en dash typed as a minus
    ("1,000", "1000", True),  # comma + three digits: thousands separator
    ("1{,}000", "1000", True),  # LaTeX thousands separator
    ("1\\,000", "1000", True),  # thin space thousands separator
    ("1,234,567", "1234567", True),  # several groups
    ("2,100", "2100", True),  # a bare number with a separator
    ("1 234", "1234", False),  # a plain space is not a separator: "1 234" is two numbers
    ("12.", "12", True),  # trailing period is not part of the answer
]

DECIMALS = [
    ("12.0", "12", True),  # 1000.0 = 1000: a decimal equal in value
    ("1000.0", "1{,}000", True),  # both spellings of one thousand
    ("1.9999999999", "2", True),  # relative error 5e-11: integers are not special
    ("1000000.5", "1000000", True),  # relative error 5e-7 <= 1e-6
    ("1.7e-19", "1.6e-19", False),  # relative, never absolute: 6% off
    ("1.6000001e-19", "1.6e-19", True),  # relative error 6e-8
    ("0.000001", "0", False),  # a gold of zero needs exactly zero
    ("0.333333", "\\frac{1}{3}", True),  # relative error exactly 1e-6 is accepted
    ("0.33", "\\frac{1}{3}", False),  # two decimals are not 1/3
    ("12.50", "12.5", True),  # trailing zero
    (".5", "0.5", True),  # leading point
    ("3.14", "\\pi", False),  # 3.14 is 5e-4 off pi
    ("3.14159265", "\\pi", True),  # within 1e-6 of pi
    ("0.866025", "\\frac{\\sqrt{3}}{2}", True),  # decimal for a radical, within 1e-6
    ("0.866", "\\frac{\\sqrt{3}}{2}", False),  # three decimals are too coarse
]

FRACTIONS = [
    ("\\frac12", "2/4", True),  # unbraced \frac arguments
    ("\\frac{1}{2}", "0.5", True),  # fraction vs decimal
    ("\\dfrac{2}{3}", "2/3", True),  # \dfrac
    ("\\tfrac{4}{6}", "\\frac{2}{3}", True),  # unreduced \tfrac
    ("2\\frac{1}{2}", "5/2", True),  # mixed number
    ("-\\frac{1}{2}", "\\frac{-1}{2}", True),  # sign placement
    ("\\frac{1}{-2}", "-0.5", True),  # negative denominator
    ("\\frac{2}{3}", "\\frac{3}{2}", False),  # reciprocal
    ("1/3", "0.3333", False),  # the gold's decimal is 1e-4 off: not within 1e-6
    ("\\frac{1}{0}", "1", False),  # division by zero has no value
]

RADICALS_AND_CONSTANTS = [
    ("3\\sqrt2", "\\sqrt{18}", True),  # simplified radical
    ("\\sqrt{8}", "2\\sqrt{2}", True),  # the other way round
    ("\\sqrt[3]{27}", "3", True),  # cube root
    ("\\sqrt[3]{-8}", "-2", True),  # real odd root of a negative number
    ("\\frac{\\sqrt{3}}{2}", "\\frac{1}{2}\\sqrt3", True),  # reordered
    ("\\sqrt{2}", "\\sqrt{3}", False),  # different radicals
    ("2\\pi", "6.283185307", True),  # pi times two
    ("\\frac{\\pi}{4}", "\\pi/4", True),  # plain-text division
    ("e^{2}", "e^2", True),  # Euler's number
    ("\\ln 8", "3\\ln 2", True),  # logarithm identity
    ("\\log_2 8", "3", True),  # logarithm with a base, exact
    ("\\sin 30^\\circ", "\\frac12", True),  # degrees inside a trigonometric function
    ("\\cos(\\pi/3)", "0.5", True),  # radians
    ("5!", "120", True),  # factorial
    ("\\binom{5}{2}", "10", True),  # binomial coefficient
    ("|-3|", "3", True),  # absolute value
    ("2^{10}", "1024", True),  # power
    ("\\infty", "\\infty", True),  # infinity equals infinity
    ("+\\infty", "∞", True),  # spelled differently
    ("-\\infty", "\\infty", False),  # the other infinity
    ("5", "\\infty", False),  # a number is not infinity
]

PERCENT = [
    ("25\\%", "0.25", True),  # X% means X/100
    ("25", "25\\%", True),  # gold with a percent sign accepts the bare number
    ("0.25", "25\\%", True),  # ... and the fraction it denotes
    ("25%", "25\\%", True),  # plain percent sign
    ("2.5", "25\\%", False),  # neither 25 nor 0.25
    ("25\\%", "25", False),  # a gold without a percent sign: 25% is 0.25, not 25
]

UNITS = [
    ("5 cm", "5", True),  # unit ignored
    ("5cm", "5", True),  # known unit without a space
    ("12 \\text{ cm}^2", "12", True),  # unit in \text with an exponent
    ("12\\,\\mathrm{cm}", "12", True),  # \mathrm unit
    ("30^\\circ", "30", True),  # degree sign
    ("45°", "45", True),  # Unicode degree sign
    ("45^{\\circ}", "45", True),  # braced degree sign
    ("10 m/s", "10", True),  # compound unit
    ("60 km/h", "60", True),  # compound unit
    ("5 apples", "5", True),  # a word after a number is a unit
    ("\\$12.50", "12.5", True),  # currency sign
    ("12 dollars", "12", True),  # currency word
    ("5 cm", "50 mm", False),  # no unit conversion: 5 is not 50
    ("6 cm", "5", False),  # the number still has to match
    ("7 (apples)", "7", True),  # a unit in parentheses
    ("There are 7 apples", "7", True),  # leading filler words and a unit
    ("The total is 7", "7", True),  # leading filler words
    ("The number of circles is 3", "3", False),  # a sentence with content words is not an answer
]

SCIENTIFIC = [
    ("3e8", "300000000", True),  # e-notation
    ("3e8", "3", False),  # 3e8 is not read as 3
    ("3 \\times 10^{8}", "3e8", True),  # times-ten notation
    ("3.0e8", "3 \\times 10^8", True),  # decimal mantissa
    ("1.6\\times10^{-19}", "1.6e-19", True),  # negative exponent
    ("6.02 \\times 10^{23}", "6.02e23", True),  # Avogadro
    ("6.02 \\times 10^{22}", "6.02e23", False),  # off by a factor of ten
    ("4.5 million", "4500000", True),  # number word
    ("2.5 billion", "2500000000", True),  # number word
    ("3 \\cdot 10^8", "300000000", True),  # \cdot notation
]

EXPRESSIONS = [
    ("2x+3", "3+2x", True),  # commuted sum
    ("x^2+2x+1", "(x+1)^2", True),  # expanded square
    ("x^2-1", "(x-1)(x+1)", True),  # factored
    ("\\frac{x^2-1}{x-1}", "x+1", True),  # equal where both are defined
    ("\\frac{x+1}{2}", "\\frac{1}{2}x + \\frac12", True),  # distributed
    ("\\sqrt{x^2}", "x", False),  # |x|, not x
    ("|x|", "x", False),  # differ for negative x
    ("a^2+b^2", "b^2+a^2", True),  # two variables
    ("2ab", "2ba", True),  # implicit products
    ("\\pi r^2", "\\pi r^{2}", True),  # constant times variable
    ("2x+4", "2x+3", False),  # different constant
    ("x", "3", False),  # a free symbol for a number
    ("3x", "3", False),  # a free symbol for a number
    ("2y+3", "2x+3", False),  # a different variable
    ("2+3i", "3i+2", True),  # i as a symbol, commuted
    ("\\sin^2 x + \\cos^2 x", "1", False),  # a free symbol where a number is expected, even if constant
]

SETS_AND_TUPLES = [
    ("1,2,3", "3,2,1", True),  # a bare list is a set: order does not count
    ("\\{3,1,2\\}", "\\{1,2,3\\}", True),  # set braces
    ("1,2", "1,2,3", False),  # missing element
    ("1,2,3,4", "1,2,3", False),  # extra element
    ("\\{1,2,3,3\\}", "\\{1,2,3\\}", False),  # a duplicate is an extra element
    ("(1,2)", "(1,2)", True),  # tuple
    ("(2,1)", "(1,2)", False),  # tuples are ordered
    ("(1,2,3)", "[1,2,3]", True),  # a triple in either bracket
    ("(1, 2)", "[1,2]", False),  # pairs: (1,2) and [1,2] differ as intervals
    ("(0,100)", "(0, 100)", True),  # leading zero: not a thousands separator
    ("(2,100)", "(2, 100)", True),  # a pair, not 2100 in parentheses
    ("(1,2),(3,4)", "(3,4),(1,2)", True),  # a set of points
    ("(1,2)", "(1,2),(3,4)", False),  # one of two points
    ("\\{(1,2),(3,4)\\}", "\\{(3,4),(1,2)\\}", True),  # set of tuples
    ("\\emptyset", "\\varnothing", True),  # empty set spellings
    ("\\{\\}", "\\emptyset", True),  # empty braces
    ("x = 2, x = -2", "x = \\pm 2", True),  # ± gold is a set of two values
    ("\\pm 2", "2, -2", True),  # ± answer
    ("x = 3", "x = 3, x = -3", False),  # one root of two
    ("\\frac{-3 \\pm \\sqrt{5}}{2}", "\\frac{-3+\\sqrt5}{2}, \\frac{-3-\\sqrt5}{2}", True),  # ± in a formula
    ("\\langle 1, 2 \\rangle", "(1, 2)", True),  # angle-bracket vector
]

INTERVALS = [
    ("[1,3)", "[1,3)", True),  # identical
    ("(1,3]", "[1,3)", False),  # open and closed ends swapped
    ("(2, \\infty)", "(2, \\infty)", True),  # infinite end
    ("[2, \\infty)", "(2, \\infty)", False),  # closed vs open
    (
        "(-\\infty, 1) \\cup (2, \\infty)",
        "(2,\\infty) \\cup (-\\infty, 1)",
        True,
    ),  # a union is a set of intervals
    ("(-\\infty, 1] \\cup [1, \\infty)", "\\mathbb{R}", True),  # touching closed ends merge
    ("(-\\infty,\\infty)", "\\mathbb{R}", True),  # the real line
    ("(-\\infty, 1) \\cup (1, \\infty)", "\\mathbb{R}", False),  # a point is missing
    ("x \\in [1,5]", "[1,5]", True),  # membership statement
    ("(1,3)", "(1,3.0000001)", True),  # endpoints compare like numbers
    ("(3,1)", "(1,3)", False),  # reversed
]

INEQUALITIES = [
    ("x > 2", "2 < x", True),  # flipped sides
    ("x \\ge 3", "3 \\le x", True),  # non-strict
    ("x > 3", "x \\ge 3", False),  # strictness matters
    ("-x < -3", "x > 3", True),  # multiplying by -1 flips
    ("2x + 1 > 7", "x > 3", True),  # linear, solved exactly
    ("(2, \\infty)", "x > 2", True),  # an interval for an inequality gold
    ("x > 2", "(2, \\infty)", False),  # ... but not the reverse
    ("[1, 5]", "1 \\le x \\le 5", True),  # closed interval for a chained inequality
    ("[-1, 5)", "-1 \\leq x < 5", True),  # half-open
    ("1 < x < 5", "1 \\le x \\le 5", False),  # open vs closed
    ("y > 2x + 1", "2x - y < -1", True),  # two variables: positive multiple
    ("y < 2x + 1", "2x - y < -1", False),  # two variables: opposite direction
    ("x \\ne 2", "(-\\infty, 2) \\cup (2, \\infty)", False),  # an inequality for an interval gold
    ("(-\\infty, 2) \\cup (2, \\infty)", "x \\ne 2", True),  # a union for a one-variable gold
]

EQUATIONS = [
    ("x = 3", "3", True),  # equation for a number gold
    ("3", "x = 3", True),  # number for an equation gold
    ("3 = x", "3", True),  # reversed equation
    ("y = 5", "x = 5", False),  # a different variable
    ("x = 4", "x = 3", False),  # a different value
    ("y = 2x + 1", "y = 2x + 1", True),  # identical
    ("2y = 4x + 2", "y = 2x + 1", True),  # same solution set
    ("y - 2x - 1 = 0", "y = 2x + 1", True),  # moved to one side
    ("y = 2x + 2", "y = 2x + 1", False),  # parallel line
    ("2x + 1", "y = 2x+1", True),  # the right-hand side alone
    ("x^2 + y^2 = 25", "y^2 + x^2 = 25", True),  # circle
    ("x^2 + y^2 = 5", "x^2+y^2=25", False),  # another radius
    ("2 + 1 = 3", "3", True),  # a chain of equalities ending in the answer
]

MATRICES = [
    (
        "\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}",
        "\\begin{bmatrix}1&2\\\\3&4\\end{bmatrix}",
        True,
    ),  # brackets differ
    (
        "\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}",
        "\\begin{pmatrix} 1 & 3 \\\\ 2 & 4 \\end{pmatrix}",
        False,
    ),  # transposed
    (
        "\\begin{pmatrix} 1 & 0 \\\\ 0 & 1 \\end{pmatrix}",
        "\\begin{pmatrix} 1 & 0 \\\\ 0 & 2 \\end{pmatrix}",
        False,
    ),  # one entry
    (
        "\\begin{bmatrix} 0.5 & 1 \\end{bmatrix}",
        "\\begin{pmatrix} \\frac12 & 1 \\end{pmatrix}",
        True,
    ),  # by value
    ("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "(1, 2)", True),  # column vector for a tuple
    (
        "\\begin{pmatrix} 1 & 2 \\end{pmatrix}",
        "\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}",
        False,
    ),  # shape counts
    (
        "\\begin{array}{cc} 1 & 2 \\\\ 3 & 4 \\end{array}",
        "\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}",
        True,
    ),  # array
]

MULTIPLE_CHOICE = [
    ("B", "B", True),  # the letter
    ("(B)", "B", True),  # in parentheses
    ("B.", "B", True),  # with a period
    ("B) 12", "B", True),  # with the option's text
    ("(B) 12 cm", "B", True),  # with the option's text and unit
    ("**B**", "B", True),  # markdown bold
    ("Option B", "B", True),  # "Option"
    ("b", "B", True),  # lower case
    ("\\text{(C)}", "C", True),  # in \text
    ("\\textbf{D}", "D", True),  # in \textbf
    ("The answer is B", "B", True),  # a sentence naming one option
    ("A or B", "B", False),  # hedged: two options
    ("B or C", "B", False),  # hedged: two options
    ("AB", "B", False),  # two letters
    ("B, C", "B", False),  # a list of options
    ("B and C", "B", False),  # two options
    ("B/C", "B", False),  # two options
    ("(B) or (C)", "B", False),  # two options in parentheses
    ("B) 12 or C) 13", "B", False),  # two options with their texts
    ("B) 3 and 4", "B", True),  # option text that itself contains "and"
    ("B) 12, or maybe C", "B", False),  # a hedge after the option text
    ("12", "B", False),  # the option's value instead of its letter
    ("E", "B", False),  # another letter
]

TEXT = [
    ("red", "red", True),  # identical
    ("Red", "red", True),  # case-insensitive
    ("\\text{Red}", "red", True),  # \text removed
    ("Yes.", "yes", True),  # trailing period
    ("no", "yes", False),  # different word
    ("the circle", "circle", True),  # one leading article is stripped
    ("a circle", "circle", True),  # ... any of the, a, an
    ("red circle", "circle", False),  # extra words
    ("the red one", "red", False),  # a paraphrase is not the answer
    ("counterclockwise", "clockwise", False),  # a longer word containing the gold
    ("crimson", "red", False),  # no synonyms
    ("isosceles triangle", "Isosceles Triangle", True),  # several words, case-insensitive
    ("red or blue", "red", False),  # hedged
]

ALL_TABLES = {
    "integers": INTEGERS,
    "decimals": DECIMALS,
    "fractions": FRACTIONS,
    "radicals_constants": RADICALS_AND_CONSTANTS,
    "percent": PERCENT,
    "units": UNITS,
    "scientific": SCIENTIFIC,
    "expressions": EXPRESSIONS,
    "sets_tuples": SETS_AND_TUPLES,
    "intervals": INTERVALS,
    "inequalities": INEQUALITIES,
    "equations": EQUATIONS,
    "matrices": MATRICES,
    "multiple_choice": MULTIPLE_CHOICE,
    "text": TEXT,
}


def _flat() -> list:
    return [
        pytest.param(p, g, e, id=f"{name}-{i}")
        for name, table in ALL_TABLES.items()
        for i, (p, g, e) in enumerate(table)
    ]


@pytest.mark.parametrize(("pred", "gold", "expected"), _flat())
def test_grade_extracted_table(pred: str, gold: str, expected: bool) -> None:
    result = grade_extracted(pred, gold)
    assert result.correct is expected, result
    assert not result.timed_out
    if expected:
        assert result.error is None


def _pebr(answer: str, steps: tuple[str, ...] = ("Add the two bars: 3 + 4 = 7.",)) -> str:
    return render_sections("A bar chart with two bars.", "Read both bars, then add.", list(steps), answer)


RESPONSES = [
    (_pebr("$7$."), "7", True),  # PeBR layout, inline math and a period
    (_pebr("7 apples"), "7", True),  # PeBR layout with a unit
    (_pebr("(B) 12 cm"), "B", True),  # PeBR layout, multiple choice with option text
    (_pebr("\\boxed{12}"), "12", True),  # a box inside the final-answer section
    (_pebr("12", ("The answer is 5.", "So \\boxed{5}")), "12", True),  # boxes in steps are reasoning
    (_pebr("5", ("The answer is 12.",)), "12", False),  # numbers in the reasoning never count
    (_pebr("The color is red."), "red", False),  # a sentence is not the text answer
    (_pebr("Red."), "red", True),  # text answer in the layout
    ("We have x = 5, so the answer is 6.\n", "6", True),  # anchor in free text
    ("<think>2+2=4</think><answer>4</answer>", "4", True),  # answer tag
    ("<answer>\\boxed{4}</answer>", "4", True),  # box inside the answer tag
    ("First \\boxed{3}. Actually \\boxed{4}.", "3", False),  # an earlier box never counts
    ("First \\boxed{3}. Actually \\boxed{4}.", "4", True),  # the last box does
    ("The final answer is $\\frac{3}{4}$.", "0.75", True),  # anchor with inline math
    ("Final Answer: The final answer is $5$. I hope it is correct.", "5", True),  # Minerva-style ending
    ("**Answer:** 42", "42", True),  # markdown anchor
    ("So the answer is (C).", "C", True),  # multiple choice after an anchor
    ("The answer is 3 or 4.", "3", False),  # hedged numbers
    ("\\boxed{3, 4}", "3", False),  # a list of candidates containing the gold
    ("\\boxed{3 \\text{ or } 4}", "3", False),  # candidates joined by "or"
    ("\\boxed{x = 3 \\text{ or } x = 4}", "3", False),  # candidate equations
    ("\\boxed{3 \\pm 1}", "4", False),  # ± names two values
    ("\\boxed{}", "3", False),  # empty box
    ("The answer is \\boxed{20\\%}", "20\\%", True),  # percent in a box
    ("A long discussion without any final statement. " * 5, "3", False),  # no answer at all
]


@pytest.mark.parametrize(("response", "gold", "expected"), RESPONSES, ids=range(len(RESPONSES)))
def test_grade_full_responses(response: str, gold: str, expected: bool) -> None:
    assert grade(response, gold).correct is expected
    assert is_correct(response, gold) is expected


METHOD_CASES = [
    ("\\boxed{12}", "12", "string"),  # same text after normalization
    ("\\boxed{12.0}", "12", "numeric"),  # by value
    ("\\boxed{2x+3}", "3+2x", "symbolic"),  # expression with a variable
    ("\\boxed{B}", "B", "multiple_choice"),  # option letter
    ("\\boxed{\\{2,1\\}}", "\\{1,2\\}", "set"),  # unordered
    ("\\boxed{(1,2,3)}", "[1,2,3]", "tuple"),  # ordered
    ("\\boxed{(2,\\infty)}", "x > 2", "interval"),  # inequality gold
    ("\\boxed{2y=4x+2}", "y = 2x + 1", "equation"),  # equation gold
    ("\\boxed{\\text{Red}}", "red", "text"),  # word gold
    ("\\boxed{\\begin{pmatrix}1\\end{pmatrix}}", "\\begin{bmatrix}1\\end{bmatrix}", "matrix"),  # matrix gold
    ("no answer here " * 20, "3", "none"),  # nothing extracted
]


@pytest.mark.parametrize(("response", "gold", "method"), METHOD_CASES, ids=range(len(METHOD_CASES)))
def test_method_says_how_it_decided(response: str, gold: str, method: str) -> None:
    assert grade(response, gold).method == method


def test_grade_explains_itself() -> None:
    g = grade("Thus \\boxed{\\frac{1}{2}}.", "0.5")
    assert isinstance(g, Grade)
    assert (g.correct, g.extracted, g.source, g.method, g.error, g.timed_out) == (
        True,
        "\\frac{1}{2}",
        "boxed",
        "numeric",
        None,
        False,
    )
    assert "recip" in g.pred_parsed
    assert "0" in g.gold_parsed
    assert g.elapsed_s >= 0
    assert bool(g) is True


ERROR_PATHS = [
    # nothing to grade
    ("The weather is nice today and so on and so forth, for quite a while. " * 3, "3", "no answer found"),
    # a character outside the grammar
    ("\\boxed{3 @ 4}", "3", "could not read answer: unexpected character '@'"),
    # a LaTeX command outside the whitelist
    ("\\boxed{\\input{/etc/passwd}}", "3", "could not read answer: unsupported command \\input"),
    # no value: division by zero
    ("\\boxed{1/0}", "1", "division by zero"),
    # bounded evaluation: a power tower
    ("\\boxed{9^{9^{9^9}}}", "3", "number too large"),
    # bounded evaluation: factorial
    ("\\boxed{(10^{10})!}", "3", "factorial of 10000000000 is out of range"),
    # a gold outside the grammar is compared as text and says so
    ("\\boxed{x}", "3 @ 4", "gold: unexpected character '@'"),
]


@pytest.mark.parametrize(("response", "gold", "error"), ERROR_PATHS, ids=range(len(ERROR_PATHS)))
def test_each_error_path_is_reported(response: str, gold: str, error: str) -> None:
    g = grade(response, gold)
    assert g.correct is False
    assert g.error == error


def test_internal_error_is_logged_and_reported(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # A bug inside the checker must not crash a training run, and must not pass silently.
    def broken(*args: object, **kwargs: object) -> None:
        raise KeyError("boom")

    monkeypatch.setattr(rm, "_grade_text", broken)
    with caplog.at_level(logging.ERROR, logger="rewards.math"):
        g = grade("\\boxed{3}", "3")
    assert g.correct is False
    assert g.error == "internal error: KeyError: 'boom'"
    assert "internal error grading" in caplog.text


def test_non_string_input_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="response must be a str, got int"):
        grade(3, "3")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="gold must be a str, got NoneType"):
        grade("3", None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="pred_text must be a str, got bytes"):
        grade_extracted(b"3", "3")  # type: ignore[arg-type]


def test_grade_extracted_accepts_none_as_no_answer() -> None:
    g = grade_extracted(None, "3")
    assert (g.correct, g.method, g.error) == (False, "none", "no answer found")


OPTION_ERRORS = [
    ({"timeout_s": 0}, "timeout_s must be > 0"),  # no time at all
    ({"rel_tol": 2.0}, "rel_tol must be in"),  # a tolerance over 100%
    ({"max_depth": 0}, "max_depth must be >= 1"),  # no nesting allowed
    ({"choices": "abc"}, "choices must be upper-case letters"),  # lower-case choices
]


@pytest.mark.parametrize(("kwargs", "message"), OPTION_ERRORS, ids=range(len(OPTION_ERRORS)))
def test_bad_options_are_rejected(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        GradeOptions(**kwargs)


def test_options_change_decisions() -> None:
    # a looser tolerance accepts 3.14 for pi
    assert not grade_extracted("3.14", "\\pi").correct
    assert grade_extracted("3.14", "\\pi", rel_tol=1e-3).correct
    # choices: a letter outside the allowed ones is rejected with a reason
    g = grade_extracted("E", "B", choices="ABCD")
    assert (g.correct, g.error) == (False, "option E is not among ABCD")
    assert grade_extracted("b", "B", choices="ABCD").correct
    # an options object and keyword overrides combine
    opts = GradeOptions(rel_tol=1e-3)
    assert grade("\\boxed{3.14}", "\\pi", opts).correct
    assert not grade("\\boxed{3.14}", "\\pi", opts, rel_tol=1e-6).correct
    # the symbolic worker can be switched off: what needs it is then not correct
    assert not grade_extracted("x^2 < 4", "-2 < x < 2", symbolic=False).correct


def test_gold_is_cached_per_options() -> None:
    rm._prepare_gold.cache_clear()
    for _ in range(5):
        grade_extracted("\\frac12", "0.5")
    info = rm._prepare_gold.cache_info()
    assert (info.misses, info.hits) == (1, 4)


def test_docstring_examples_hold() -> None:
    import doctest

    import rewards.extract

    for module in (rm, rewards.extract):
        result = doctest.testmod(module)
        assert result.attempted > 0
        assert result.failed == 0, module.__name__
