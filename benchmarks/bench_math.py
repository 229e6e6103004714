"""Benchmark pebr's math grader against Math-Verify on pebr's own labelled cases.

Both graders run in this process (pebr's sympy worker is a child of it), one case at a time, in
the main thread (Math-Verify's time limits use ``signal.alarm``, which only works there). For
every case the script records the verdict and the wall-clock latency of one grade, then prints
accuracy (overall and per category), grades per second, p50/p99 latency and the ratios, and
writes everything to JSON.

Math-Verify is used as in its documentation: ``verify(parse(gold), parse(response))`` on the
full response (it extracts the answer itself) with the gold wrapped in ``$...$``. It is reported
three ways: the full call; with the gold parsed outside the timer (as if cached, like pebr
caches golds); and on pebr's extracted answer (``$answer$``), which compares the equivalence
checks alone, since Math-Verify does not know PeBR's layout or ``<answer>`` tags. Ratios use the
fastest variant and the accuracy target the most accurate one. pebr's gold cache is cleared before each
pass, so every distinct gold is parsed once per pass.

"Typical" answers are all categories except ``adversarial`` (power towers and the like, which
cost Math-Verify its full 5 s time-outs); throughput and latency targets are on typical answers.

Run from the repository root::

    pip install math-verify==0.9.0     # benchmark only, not a pebr dependency
    python benchmarks/bench_math.py [--cases benchmarks/math_cases.jsonl] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DEFAULT_CASES = ROOT / "benchmarks" / "math_cases.jsonl"
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "bench_math.json"
MATH_VERIFY_PIN = "math-verify==0.9.0"
TARGET_RATE = 1_000.0
TARGET_P99_MS = 50.0
TARGET_SPEEDUP = 5.0
ADVERSARIAL = "adversarial"


def _load(path: Path) -> list[dict]:
    rows = []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            row = json.loads(line)
            missing = {"id", "category", "response", "gold", "expected"} - row.keys()
            if missing:
                raise ValueError(f"{path}:{n}: case is missing {sorted(missing)}")
            rows.append(row)
    if not rows:
        raise ValueError(f"{path}: no cases")
    return rows


def _import_math_verify():
    try:
        from math_verify import parse, verify
    except ImportError:
        sys.exit(
            f"Math-Verify is not installed. It is needed for this benchmark only:\n"
            f"    {sys.executable} -m pip install {MATH_VERIFY_PIN}"
        )
    return parse, verify


def run_pebr(rows: list[dict], repeat: int) -> dict:
    import rewards.math as rm

    start = time.perf_counter()
    rm.grade("\\boxed{(-2, 2)}", "x^2 < 4")  # starts the sympy worker (one-time, ~1 s)
    startup = time.perf_counter() - start
    latencies: list[list[float]] = [[] for _ in rows]
    verdicts: list[bool] = []
    timeouts = 0
    for r in range(repeat):
        rm._prepare_gold.cache_clear()
        for i, row in enumerate(rows):
            t0 = time.perf_counter()
            g = rm.grade(row["response"], row["gold"])
            latencies[i].append(time.perf_counter() - t0)
            if r == 0:
                verdicts.append(g.correct)
                timeouts += g.timed_out
    return {
        "verdicts": verdicts,
        "latency": [statistics.median(x) for x in latencies],
        "startup_s": startup,
        "timeouts": timeouts,
    }


def run_math_verify(rows: list[dict], answers: list[str] | None = None) -> dict:
    """Math-Verify on each case: on the full response (its own extraction), or on ``answers``
    (pebr's extraction, wrapped in ``$...$``) to compare the equivalence checks alone."""
    parse, verify = _import_math_verify()
    logging.getLogger("math_verify").setLevel(logging.CRITICAL)
    parse("$1$")  # imports and warms its grammar
    verdicts, full, cached_gold, errors = [], [], [], 0
    for i, row in enumerate(rows):
        text = row["response"] if answers is None else f"${answers[i]}$"
        t0 = time.perf_counter()
        ok = False
        t1 = t0
        try:
            gold = parse(f"${row['gold']}$")
            t1 = time.perf_counter()
            ok = bool(verify(gold, parse(text)))
        except Exception:  # noqa: BLE001 - a crash of the baseline counts as "not correct"
            errors += 1
        t2 = time.perf_counter()
        verdicts.append(ok)
        full.append(t2 - t0)
        cached_gold.append(t2 - t1)
    return {"verdicts": verdicts, "latency": full, "latency_gold_cached": cached_gold, "errors": errors}


def _stats(latency: list[float]) -> dict:
    ordered = sorted(latency)
    n = len(ordered)
    return {
        "n": n,
        "grades_per_s": n / sum(ordered) if sum(ordered) > 0 else float("inf"),
        "p50_ms": 1000 * ordered[n // 2],
        "p99_ms": 1000 * ordered[min(n - 1, int(0.99 * n))],
        "max_ms": 1000 * ordered[-1],
    }


def _accuracy(rows: list[dict], verdicts: list[bool], keep) -> float:
    idx = [i for i, r in enumerate(rows) if keep(r)]
    return sum(verdicts[i] == rows[i]["expected"] for i in idx) / len(idx)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=Path, default=DEFAULT_CASES)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--repeat", type=int, default=3, help="passes of pebr's grader (median latency per case)")
    args = ap.parse_args(argv)
    if args.repeat < 1:
        ap.error("--repeat must be >= 1")
    _import_math_verify()  # fail before any work when it is missing
    rows = _load(args.cases)

    pebr = run_pebr(rows, args.repeat)
    mv = run_math_verify(rows)
    from rewards.extract import extract_answer

    extracted = [extract_answer(r["response"]).text or "" for r in rows]
    mv_ex = run_math_verify(rows, extracted)

    typical = [i for i, r in enumerate(rows) if r["category"] != ADVERSARIAL]
    report: dict = {
        "cases": len(rows),
        "typical_cases": len(typical),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "math_verify": MATH_VERIFY_PIN,
        "pebr_worker_startup_s": round(pebr["startup_s"], 3),
        "pebr_timeouts": pebr["timeouts"],
        "math_verify_errors": mv["errors"],
    }
    graders = (
        ("pebr", pebr, "latency"),
        ("math_verify", mv, "latency"),
        ("math_verify_gold_cached", mv, "latency_gold_cached"),
        ("math_verify_on_pebr_extract", mv_ex, "latency"),
    )
    for name, res, lat_key in graders:
        lat = res[lat_key]
        report[name] = {
            "accuracy_all": _accuracy(rows, res["verdicts"], lambda r: True),
            "accuracy_typical": _accuracy(rows, res["verdicts"], lambda r: r["category"] != ADVERSARIAL),
            "typical": _stats([lat[i] for i in typical]),
            "all": _stats(lat),
        }
    categories = sorted({r["category"] for r in rows})
    report["per_category"] = {
        c: {
            "n": sum(r["category"] == c for r in rows),
            "pebr": _accuracy(rows, pebr["verdicts"], lambda r, c=c: r["category"] == c),
            "math_verify": _accuracy(rows, mv["verdicts"], lambda r, c=c: r["category"] == c),
            "math_verify_on_pebr_extract": _accuracy(
                rows, mv_ex["verdicts"], lambda r, c=c: r["category"] == c
            ),
        }
        for c in categories
    }
    mv_names = ("math_verify", "math_verify_gold_cached", "math_verify_on_pebr_extract")
    # conservative ratios: against the fastest and the most accurate Math-Verify variant
    for subset in ("typical", "all"):
        best = max(report[n][subset]["grades_per_s"] for n in mv_names)
        report[f"speedup_{subset}"] = report["pebr"][subset]["grades_per_s"] / best
    best_mv_accuracy = max(report[n]["accuracy_all"] for n in mv_names)
    report["disagreements"] = [
        {
            "id": r["id"],
            "expected": r["expected"],
            "pebr": pebr["verdicts"][i],
            "math_verify": mv["verdicts"][i],
            "math_verify_on_pebr_extract": mv_ex["verdicts"][i],
        }
        for i, r in enumerate(rows)
        if len({r["expected"], pebr["verdicts"][i], mv["verdicts"][i], mv_ex["verdicts"][i]}) > 1
    ]
    targets = {
        f"pebr >= {TARGET_RATE:.0f} grades/s (typical)": report["pebr"]["typical"]["grades_per_s"]
        >= TARGET_RATE,
        f"pebr p99 < {TARGET_P99_MS:.0f} ms (typical)": report["pebr"]["typical"]["p99_ms"] < TARGET_P99_MS,
        f"pebr >= {TARGET_SPEEDUP:.0f}x Math-Verify throughput (typical)": report["speedup_typical"]
        >= TARGET_SPEEDUP,
        "pebr accuracy >= Math-Verify, best variant (all cases)": report["pebr"]["accuracy_all"]
        >= best_mv_accuracy,
    }
    report["targets"] = targets

    _print(report, categories)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {args.out}")
    return report


_GRADERS = ("pebr", "math_verify", "math_verify_gold_cached", "math_verify_on_pebr_extract")


def _print(report: dict, categories: list[str]) -> None:
    print(f"cases: {report['cases']} ({report['typical_cases']} typical), Python {report['python']}")
    print(f"pebr worker start-up (once per process, not in the timings): {report['pebr_worker_startup_s']} s")
    header = (
        f"{'grader':<30}{'acc all':>9}{'acc typ':>9}{'grades/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>10}"
    )
    print("\ntypical answers")
    print(header)
    for name in _GRADERS:
        r = report[name]
        t = r["typical"]
        print(
            f"{name:<30}{r['accuracy_all']:>9.3f}{r['accuracy_typical']:>9.3f}{t['grades_per_s']:>10.0f}"
            f"{t['p50_ms']:>9.2f}{t['p99_ms']:>9.2f}{t['max_ms']:>10.1f}"
        )
    print("\nall cases (including adversarial)")
    print(f"{'grader':<30}{'grades/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>10}")
    for name in _GRADERS:
        a = report[name]["all"]
        print(
            f"{name:<30}{a['grades_per_s']:>10.1f}{a['p50_ms']:>9.2f}{a['p99_ms']:>9.2f}{a['max_ms']:>10.1f}"
        )
    print(
        f"\nspeed-up vs Math-Verify: {report['speedup_typical']:.1f}x typical, {report['speedup_all']:.1f}x all"
    )
    print("\naccuracy per category")
    print(f"{'category':<18}{'n':>5}{'pebr':>8}{'math_verify':>13}{'mv_on_pebr_extract':>20}")
    for c in categories:
        p = report["per_category"][c]
        print(
            f"{c:<18}{p['n']:>5}{p['pebr']:>8.3f}{p['math_verify']:>13.3f}{p['math_verify_on_pebr_extract']:>20.3f}"
        )
    pebr_wrong = [d["id"] for d in report["disagreements"] if d["pebr"] != d["expected"]]
    print(f"\npebr wrong on {len(pebr_wrong)} case(s): {', '.join(pebr_wrong) or '-'}")
    print(
        f"pebr time-outs: {report['pebr_timeouts']}; Math-Verify exceptions: {report['math_verify_errors']}"
    )
    print("\ntargets")
    for name, ok in report["targets"].items():
        print(f"  [{'PASS' if ok else 'FAIL'}] {name}")


if __name__ == "__main__":
    main()
