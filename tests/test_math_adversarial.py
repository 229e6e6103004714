"""Hostile input is normal input: every case returns "not correct" quickly, never hangs, never
crashes the caller, never executes anything."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rewards.math import grade, grade_extracted, warm_up

#: generous wall-clock bound for one call (the default time limit is 1 s)
BOUND_S = 2.0

HOSTILE_ANSWERS = [
    # power towers, exact and approximate
    "9^9^9^9",
    "9^{9^{9^{9}}}",
    "10^{10^{10}}",
    "2^{2^{2^{2^{2^{2}}}}}",
    "e^{e^{e^{100}}}",
    "10^{-10^{10}}",
    "1e999999",
    "(10^10)!",
    "(10^{10})!",
    "1000!!",
    "\\binom{10^{9}}{5}",
    "\\sin(10^{100})",
    "\\exp(10^{10})",
    "x^{10^{10}}",
    "\\sqrt[10^{10}]{2}",
    "2^{2^{20}}",
    # huge structures
    "\\begin{pmatrix}" + "\\\\".join("&".join("1" for _ in range(40)) for _ in range(40)) + "\\end{pmatrix}",
    ",".join(["1"] * 1000),
    "1" * 5000,
    "+".join(["x"] * 1500),
    # deep nesting
    "{" * 10_000 + "1" + "}" * 10_000,
    "(" * 10_000 + "1" + ")" * 10_000,
    "\\frac{" * 500 + "1" + "}{2}" * 500,
    "-" * 1500 + "3",
    "3" + "!" * 1500,
    "5" + "\\%" * 800,
    "\\sqrt" * 800 + "{2}",
    # bytes that are not text
    "\x00",
    "3\x00",
    "\ud800",
    "3\udfff",
    "\x1b[2J",
    # values that are not numbers or are ambiguous
    "nan",
    "NaN",
    "zoo",
    "oo",
    "\\mathbb{R}",
    "(-\\infty,\\infty)",
    "3 \\pm 1",
    "\\infty",
    "1/0",
    "0^0^0",
    "\\ln 0",
    "\\tan(\\pi/2)",
    "x",
    "\\text{undefined}",
    # hedges and candidate lists containing the gold (gold is 3)
    "3 or 4",
    "3, 4",
    "\\{3, 4\\}",
    "x = 3 \\text{ or } x = 4",
    "3 \\text{ and } 4",
    "2 \\le x \\le 4",
    "[3, 4]",
]


@pytest.mark.parametrize("answer", HOSTILE_ANSWERS, ids=range(len(HOSTILE_ANSWERS)))
def test_hostile_answers_are_not_correct_and_fast(answer: str) -> None:
    start = time.perf_counter()
    results = [
        grade(f"\\boxed{{{answer}}}", "3"),
        grade(f"<answer>{answer}</answer>", "3"),
        grade_extracted(answer, "3"),
    ]
    assert time.perf_counter() - start < 3 * BOUND_S
    for r in results:
        assert r.correct is False, r
        assert r.elapsed_s < BOUND_S


HOSTILE_RESPONSES = [
    # a 1 MB response without an answer
    "word " * 210_000,
    # a 1 MB box
    "\\boxed{" + "1+" * 500_000 + "1}",
    # a 1 MB answer tag
    "<answer>" + "x" * 1_000_000 + "</answer>",
    # 1 MB of unbalanced braces in a box
    "\\boxed{" + "{" * 1_000_000,
    # 1 MB of NUL bytes
    "\x00" * 1_000_000,
    # 1 MB of lone surrogates around an answer
    "\ud800" * 500_000 + "\\boxed{3}" + "\ud800" * 500_000,
    # 1 MB of anchors
    "The answer is " * 75_000,
    # many boxes: only the last counts, found by one reverse scan
    "\\boxed{3}" * 100_000 + "\\boxed{4}",
]


@pytest.mark.parametrize("response", HOSTILE_RESPONSES, ids=range(len(HOSTILE_RESPONSES)))
def test_megabyte_responses_return_quickly(response: str) -> None:
    start = time.perf_counter()
    r = grade(response, "3")
    assert time.perf_counter() - start < BOUND_S
    # the surrogate case contains a genuine final \boxed{3}; everything else is wrong
    assert r.correct is ("\ud800" in response)


def test_hostile_golds_do_not_crash() -> None:
    # golds come from datasets, but datasets are not trusted either
    for gold in ("9^9^9^9", "{" * 10_000, "\x00", "\ud800", "nan", "", "(((", "\\input{x}"):
        start = time.perf_counter()
        r = grade("\\boxed{3}", gold)
        assert time.perf_counter() - start < BOUND_S
        assert r.correct is False


def _injections(marker: Path) -> list[str]:
    path = str(marker)
    return [
        f"__import__('os').system('touch {path}')",
        f'__import__("pathlib").Path("{path}").touch()',
        f"exec(\"open('{path}', 'w').close()\")",
        f"eval(\"__import__('os').system('touch {path}')\")",
        f"().__class__.__bases__[0].__subclasses__()[0]('{path}')",
        f"lambda: open('{path}', 'w')",
        f"Symbol('x').__class__.__init__.__globals__['os'].system('touch {path}')",
        f"\\input{{{path}}}",
        f"\\immediate\\write18{{touch {path}}}",
        f"$(touch {path})",
        f"`touch {path}`",
        f"x; import os; os.system('touch {path}')",
    ]


def test_code_injection_never_executes(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    for payload in _injections(marker):
        for response, gold in (
            (f"\\boxed{{{payload}}}", "3"),  # as the answer
            (f"The answer is {payload}", "3"),  # after an anchor
            ("\\boxed{3}", payload),  # as the gold
            (f"<answer>{payload}</answer>", "x"),  # against a symbolic gold (points, worker)
            (f"\\boxed{{{payload}}}", "x^2 < 4"),  # against a gold that uses the sympy worker
        ):
            r = grade(response, gold)
            assert r.correct is False
        assert not marker.exists(), payload


def test_model_text_never_reaches_sympy_in_process() -> None:
    # The inline path does not even import sympy; the worker only ever sees the parsed AST.
    code = (
        "import sys\n"
        "from rewards.math import grade\n"
        "grade('\\\\boxed{\\\\frac{1}{2}}', '0.5')\n"
        "grade('\\\\boxed{x^2+2x+1}', '(x+1)^2')\n"
        "grade('\\\\boxed{(2, \\\\infty)}', 'x > 2')\n"
        "print('sympy' in sys.modules)\n"
    )
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root, timeout=60
    )
    assert out.stdout.strip() == "False"


WORKER_REJECTS = [
    # a node kind outside the whitelist
    (["call", "os.system", "ls"], "unsupported node 'call'"),
    # a variable name that is not an identifier
    (["var", "__import__('os')"], "bad variable name"),
    # a number that is not digits
    (["num", "1e5", "", 0], "bad number"),
    # a huge exponent in a number
    (["num", "1", "", 10**9], "bad number"),
]


@pytest.mark.parametrize(("node", "message"), WORKER_REJECTS, ids=range(len(WORKER_REJECTS)))
def test_worker_builds_only_whitelisted_nodes(node: list, message: str) -> None:
    import sympy

    from rewards._symworker import _handle

    with pytest.raises(ValueError, match=message):
        _handle({"op": "expr_equal", "gold": node, "pred": ["num", "1", "", 0]}, sympy)


def test_worker_reports_errors_as_data() -> None:
    # the worker answers a bad request with an error line and keeps serving
    root = Path(__file__).resolve().parent.parent
    requests = [
        {"op": "expr_equal", "gold": ["call", "x"], "pred": ["num", "1", "", 0]},
        {"op": "expr_equal", "gold": ["num", "2", "", 0], "pred": ["num", "2", "", 0]},
    ]
    proc = subprocess.run(
        [sys.executable, "-c", "from rewards._symworker import serve; serve()"],
        input="".join(json.dumps(r) + "\n" for r in requests),
        capture_output=True,
        text=True,
        cwd=root,
        timeout=120,
    )
    lines = [json.loads(x) for x in proc.stdout.splitlines()]
    assert lines[0] == {"ready": True}
    assert lines[1]["error"].startswith("ValueError: unsupported node 'call'")
    assert lines[2] == {"equal": True}


def test_time_limit_kills_a_slow_symbolic_comparison() -> None:
    # a nonlinear inequality goes to the sympy worker; 50 ms is far too little for solveset
    grade_extracted("x^2 < 4", "-2 < x < 2")  # the worker is started (not charged to the limit)
    gold = "x^{17} - 3x^{11} + 5x^7 - x^3 + 2 > 0"
    start = time.perf_counter()
    r = grade_extracted("x^{17} - 3x^{11} + 5x^7 - x^3 + 1 > 0", gold, timeout_s=0.05)
    elapsed = time.perf_counter() - start
    assert r.timed_out is True
    assert r.correct is False
    assert r.error == "time limit of 0.05 s reached"
    assert elapsed < 0.5
    # the worker is replaced: once the replacement is up, symbolic comparisons work again
    warm_up()
    assert grade_extracted("(-2, 2)", "x^2 < 4").correct


def test_long_literals_respect_python_int_limit() -> None:
    # Python refuses int() of more than 4300 digits; a raised max_length must not turn that into
    # an internal error
    g = grade_extracted("1" * 5000, "3", max_length=10_000)
    assert (g.correct, g.error) == (False, "number literal too long")
