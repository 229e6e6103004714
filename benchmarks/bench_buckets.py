"""PeBR-compatible buckets vs PeBR-R1's reference script on a PeBR-shaped GRPO set.

Generates ``--questions`` questions with 8 rollouts each (800K rollout lines for 100K) with
the shared ``gen_grpo.py`` when absent, then runs the reference algorithm
(:mod:`benchmarks.reference_buckets`: per-line ``json.loads``, Python dicts,
``json.dump(indent=2)``) and :func:`curation.pebr_compat.split_pebr` alternately, checks that
both write the same bytes, and prints median wall and CPU times and their ratio (target: at
least 4x faster).

Usage::

    python benchmarks/bench_buckets.py --questions 100000 --runs 3 [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import bench_data_dir, median, run_generator, timed
from benchmarks.reference_buckets import reference_split
from curation.pebr_compat import FILE_NAMES, PebrCompatConfig, split_pebr


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--questions", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=3, help="runs of each implementation (alternating)")
    ap.add_argument("--data-dir", type=Path, default=None, help="where generated data is kept")
    ap.add_argument("--workers", type=int, default=2, help="scan threads of the pebr implementation")
    ap.add_argument("--json", type=Path, default=None, help="write the results here too")
    args = ap.parse_args(argv)

    data = (args.data_dir or bench_data_dir()) / f"grpo_{args.questions}"
    rollouts = data / "_rollout_outputs" / "rollout_results.jsonl"
    dataset = data / "dataset" / "grpo" / "pebr_grpo_dataset.json"
    if not (rollouts.is_file() and dataset.is_file()):
        print(f"generating {args.questions} questions into {data} ...", flush=True)
        run_generator("gen_grpo.py", ["--questions", str(args.questions), "--out", str(data)])
    work = Path(tempfile.mkdtemp(prefix="bench_buckets_"))
    config = PebrCompatConfig(workers=args.workers)
    ref_t, ref_c, our_t, our_c = [], [], [], []
    report = None
    try:
        for i in range(args.runs):
            w, c = timed(lambda: reference_split(str(rollouts), str(dataset), str(work / "ref")))
            ref_t.append(w)
            ref_c.append(c)

            def ours():
                nonlocal report
                report = split_pebr(rollouts, dataset, work / "ours", config)

            w, c = timed(ours)
            our_t.append(w)
            our_c.append(c)
            for name in FILE_NAMES.values():
                if (work / "ref" / name).read_bytes() != (work / "ours" / name).read_bytes():
                    raise SystemExit(f"run {i}: {name} differs from the reference")
            print(f"run {i + 1}: reference {ref_t[-1]:.2f} s, pebr {our_t[-1]:.2f} s", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    assert report is not None
    result = {
        "questions": args.questions,
        "rollout_lines": report.lines,
        "rollout_bytes": os.path.getsize(rollouts),
        "runs": args.runs,
        "workers": args.workers,
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
        "reference_wall_s": ref_t,
        "pebr_wall_s": our_t,
        "reference_cpu_s": ref_c,
        "pebr_cpu_s": our_c,
        "median_reference_s": median(ref_t),
        "median_pebr_s": median(our_t),
        "speedup_wall": median(ref_t) / median(our_t),
        "speedup_cpu": median(ref_c) / median(our_c),
        "fast_path_lines": report.fast_lines,
        "records": report.records,
        "malformed_lines": report.malformed_count,
        "irregular_qids": report.irregular_count,
        "identical_outputs": True,
    }
    print(
        f"{report.lines} rollout lines, {args.questions} questions: reference {result['median_reference_s']:.2f} s, "
        f"pebr {result['median_pebr_s']:.2f} s (median of {args.runs}) -> {result['speedup_wall']:.1f}x faster "
        f"(CPU time {result['speedup_cpu']:.1f}x); outputs identical"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
