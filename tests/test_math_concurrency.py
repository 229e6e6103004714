"""Thread and process safety: the same verdicts from many threads and from worker processes, and
the time limit honoured outside the main thread (no signals involved)."""

from __future__ import annotations

import multiprocessing as mp
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from rewards.math import grade, grade_extracted

# (response, gold, expected): inline numeric, symbolic at test points, and cases that need the
# sympy worker process (nonlinear relations), so that both paths run concurrently.
CASES = [
    ("\\boxed{\\frac{1}{2}}", "0.5", True),  # numeric
    ("\\boxed{3\\sqrt{2}}", "\\sqrt{18}", True),  # irrational, mpmath per thread
    ("\\boxed{\\sqrt{2}}", "1.414", False),  # tolerance
    ("\\boxed{x^2+2x+1}", "(x+1)^2", True),  # symbolic at test points
    ("\\boxed{\\{1,2,3\\}}", "\\{3,2,1\\}", True),  # set
    ("\\boxed{(2, \\infty)}", "x > 2", True),  # linear inequality, inline
    ("\\boxed{(-2, 2)}", "x^2 < 4", True),  # nonlinear inequality: sympy worker
    ("\\boxed{(-3, 3)}", "x^2 < 4", False),  # sympy worker, not equal
    ("\\boxed{x = 1, x = 2}", "x^2 - 3x + 2 = 0", True),  # equation solved by the worker
    ("\\boxed{B}", "B", True),  # multiple choice
    ("\\boxed{red}", "blue", False),  # text
    ("\\boxed{9^{9^{9^9}}}", "3", False),  # bounded evaluation
]


def _verdicts(cases: list[tuple[str, str, bool]]) -> list[bool]:
    return [grade(r, g).correct for r, g, _ in cases]


EXPECTED = [e for _, _, e in CASES]


def test_many_threads_agree_with_expected() -> None:
    # A generous limit: this test is about equal verdicts under contention; on a loaded 2-core
    # machine eight threads queueing for two sympy workers can take longer than the default 1 s.
    jobs = CASES * 10
    with ThreadPoolExecutor(max_workers=8) as ex:
        results = list(ex.map(lambda c: grade(c[0], c[1], timeout_s=30), jobs))
    assert [r.correct for r in results] == [e for _, _, e in jobs]
    assert not any(r.timed_out for r in results)


def test_time_limit_in_a_non_main_thread() -> None:
    # the symbolic worker is killed from a plain thread: no SIGALRM, which only the main thread has
    grade_extracted("(-2, 2)", "x^2 < 4")  # make sure a worker is up (start-up is not charged)
    out: dict[str, object] = {}

    def run() -> None:
        start = time.perf_counter()
        out["grade"] = grade_extracted(
            "x^{17} - 3x^{11} + 5x^7 - x^3 + 1 > 0", "x^{17} - 3x^{11} + 5x^7 - x^3 + 2 > 0", timeout_s=0.05
        )
        out["elapsed"] = time.perf_counter() - start

    t = threading.Thread(target=run)
    t.start()
    t.join(5)
    assert not t.is_alive()
    assert out["grade"].timed_out is True
    assert out["elapsed"] < 0.5


def test_inline_time_limit_in_a_thread() -> None:
    # no worker involved: the evaluator checks the deadline itself (400 radicals on each side)
    gold = "\\{" + ",".join(f"\\sqrt{{{k}}}" for k in range(2, 402)) + "\\}"
    pred = "\\{" + ",".join(f"\\sqrt{{{k}}}" for k in range(401, 1, -1)) + "\\}"
    out: dict[str, object] = {}

    def run() -> None:
        start = time.perf_counter()
        out["grade"] = grade_extracted(pred, gold, timeout_s=0.001, max_length=10_000)
        out["elapsed"] = time.perf_counter() - start

    t = threading.Thread(target=run)
    t.start()
    t.join(5)
    assert out["grade"].timed_out is True
    assert out["elapsed"] < 0.5
    # with the default limit the same comparison completes and is correct
    assert grade_extracted(pred, gold, max_length=10_000).correct


def _grade_case(case: tuple[str, str, bool]) -> bool:
    return grade(case[0], case[1]).correct


def test_multiprocessing_pool_after_the_parent_used_the_worker() -> None:
    # The parent already runs a sympy worker; forked pool workers (daemonic, like DataLoader
    # workers) must start their own instead of sharing the parent's pipes.
    assert grade_extracted("(-2, 2)", "x^2 < 4").correct
    ctx = mp.get_context("fork")
    with ctx.Pool(2) as pool:
        verdicts = pool.map(_grade_case, CASES * 2)
    assert verdicts == EXPECTED * 2
    # the parent's worker still answers after the children are gone
    assert grade_extracted("(-3, 3)", "x^2 < 9").correct


def _in_daemon(queue: mp.Queue) -> None:
    queue.put(_verdicts(CASES))


def test_daemonic_process_can_use_the_worker() -> None:
    # multiprocessing forbids daemonic processes to have children; the worker uses subprocess
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=_in_daemon, args=(queue,), daemon=True)
    proc.start()
    verdicts = queue.get(timeout=120)
    proc.join(10)
    assert verdicts == EXPECTED


@pytest.mark.parametrize("threads", [2, 4])
def test_threads_share_gold_cache_safely(threads: int) -> None:
    # the same gold graded concurrently (one gold, eight rollouts): cached meaning is immutable
    gold = "x^2 + 2x + 1"
    preds = ["(x+1)^2", "x^2+2x+1", "x^2+2x", "(x+1)(x+1)", "x^2+1+2x", "(x-1)^2", "2x+x^2+1", "x+1"]
    expected = [True, True, False, True, True, False, True, False]
    with ThreadPoolExecutor(max_workers=threads) as ex:
        results = list(ex.map(lambda p: grade_extracted(p, gold).correct, preds * 20))
    assert results == expected * 20


def test_gold_cached_by_one_thread_is_read_correctly_by_another() -> None:
    # Each thread has its own mpmath context; a gold's values cached by one thread (complex at
    # x < 0 for 2\ln x) must be recognised as complex in another thread too.
    import rewards.math as rm

    rm._prepare_gold.cache_clear()
    assert grade_extracted("\\ln(x^2)", "2\\ln x").correct
    out: list[bool] = []
    t = threading.Thread(target=lambda: out.append(grade_extracted("\\ln(x^2)", "2\\ln x").correct))
    t.start()
    t.join(10)
    assert out == [True]


def test_limit_holds_while_killed_workers_restart() -> None:
    # Only a process's first worker start is exempt from the limit: after kills, callers that
    # find the replacements still starting get a time-out at their own deadline, not later.
    grade_extracted("(-2, 2)", "x^2 < 4")  # first start done
    slow = ("x^{17} - 3x^{11} + 5x^7 - x^3 + 1 > 0", "x^{17} - 3x^{11} + 5x^7 - x^3 + 2 > 0")
    with ThreadPoolExecutor(max_workers=4) as ex:
        killed = list(ex.map(lambda _: grade_extracted(*slow, timeout_s=0.05), range(4)))
    assert all(r.timed_out for r in killed)
    start = time.perf_counter()
    after = grade_extracted("(-3, 3)", "x^2 < 9", timeout_s=0.3)
    assert time.perf_counter() - start < 0.6
    assert after.correct or after.timed_out


def test_warm_up_starts_the_worker_ahead_of_time() -> None:
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import time\n"
        "from rewards.math import grade, warm_up\n"
        "warm_up()\n"
        "t = time.perf_counter()\n"
        "g = grade('\\\\boxed{(-2, 2)}', 'x^2 < 4')\n"
        "print(g.correct, time.perf_counter() - t < 0.5)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert out.stdout.split() == ["True", "True"]
