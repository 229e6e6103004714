"""Benchmark ``pebr curate filter`` against PeBR-R1's reference filter on Mulberry-shaped data.

One command::

    python benchmarks/bench_filter.py --records 260000 --data /work/bench_data/mulberry_260000 --runs 3
    python benchmarks/bench_filter.py --growth 50000,260000,1000000 --data-root /work/bench_data

For each dataset (generated with ``shared/bench/gen_mulberry.py`` when absent) it

1. checks correctness: the reference keeps what the generator's manifest says it keeps, and
   pebr keeps the same set except for duplicates (each verified against the record it
   names: same image bytes, same normalised question);
2. times, alternately and each in a fresh subprocess after warming the page cache (the
   machine reclaims pages unused for about a minute): the reference (``reference_filter.py``),
   ``pebr curate filter`` with no image cache, and ``pebr curate filter`` rerun with its
   metadata cache;
3. reports median wall and CPU time of those runs, and peak memory from one more run of each
   (``median_peak_*`` keys): the peak over time of the summed RSS of the whole process tree
   (pebr's worker processes included), polled every 10 ms. Timed runs are not polled: the
   poller's CPU would slow a command using both cores (pebr) but not one using one.

Prints a table and writes the numbers as JSON (``--json``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
REFERENCE = HERE / "reference_filter.py"
CACHE_NAME = ".pebr-image-cache.parquet"


# --------------------------------------------------------------------------- data


def find_generator(explicit: str | None) -> Path:
    candidates = [explicit] if explicit else []
    candidates += [
        os.environ.get("PEBR_BENCH_GENERATOR"),
        str(REPO.parent / "shared/bench/gen_mulberry.py"),
        str(REPO.parent.parent / "shared/bench/gen_mulberry.py"),
    ]
    for c in candidates:
        if c and Path(c).is_file():
            return Path(c)
    raise SystemExit("cannot find gen_mulberry.py; pass --generator PATH")


def ensure_data(data: Path, records: int, generator: str | None) -> None:
    if (data / "mulberry_sft.json").is_file() and (data / "manifest.jsonl").is_file():
        info = json.loads((data / "gen_info.json").read_text())
        if info["records"] != records:
            raise SystemExit(f"{data} holds {info['records']} records, not {records}")
        return
    gen = find_generator(generator)
    print(f"generating {records} records into {data} with {gen} ...", file=sys.stderr, flush=True)
    subprocess.run(
        [sys.executable, str(gen), "--records", str(records), "--out", str(data)],
        check=True,
        stdout=subprocess.DEVNULL,
    )


def warm(data: Path) -> float:
    """Read the input and every image once, so each timed run starts from a warm page cache."""
    t0 = time.perf_counter()
    files = [data / "mulberry_sft.json"]
    for root, _dirs, names in os.walk(data / "images"):
        files.extend(Path(root, n) for n in names)

    def read(p: Path) -> None:
        with open(p, "rb") as f:
            while f.read(1 << 20):
                pass

    with ThreadPoolExecutor(8) as ex:
        list(ex.map(read, files, chunksize=512))
    return time.perf_counter() - t0


# --------------------------------------------------------------------------- measuring


def _tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for tid in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{tid}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except OSError:
            continue
    return out


def _rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _pss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def measure(cmd: list[str], env: dict[str, str] | None = None, *, memory: bool = False) -> dict[str, float]:
    """Run ``cmd``: wall seconds, CPU seconds of the whole tree, and (``memory``) memory.

    Memory: the peak over time of the summed RSS of the process tree (conservative: shared
    library pages count once per process), of the summed PSS (shared pages split between
    the processes that map them), and the largest single RSS. Polling the tree every 10 ms
    takes CPU from the command: on two cores it slows a command that uses both (pebr) and
    not one that uses one (the reference), so timed runs do not poll and memory is measured
    in runs of its own.
    """
    peak = [0, 0, 0]
    load = os.getloadavg()[0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    done = threading.Event()

    def poll() -> None:
        tick = 0
        while not done.is_set():
            pids = _tree(proc.pid)
            sizes = [_rss_kb(p) for p in pids]
            peak[0] = max(peak[0], sum(sizes))
            peak[1] = max(peak[1], max(sizes, default=0))
            if tick % 5 == 0:  # PSS is dearer to read
                peak[2] = max(peak[2], sum(_pss_kb(p) for p in pids))
            tick += 1
            done.wait(0.01)

    th = threading.Thread(target=poll, daemon=True)
    if memory:
        th.start()
    _out, err = proc.communicate()
    wall = time.perf_counter() - t0
    done.set()
    if memory:
        th.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{err.decode()[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {
        "seconds": wall,
        "cpu_seconds": cpu,
        "peak_tree_rss_mb": peak[0] / 1024,
        "peak_tree_pss_mb": peak[2] / 1024,
        "peak_process_rss_mb": peak[1] / 1024,
        "load_before": load,
    }


def reference_cmd(data: Path, out: Path) -> list[str]:
    return [sys.executable, str(REFERENCE), str(data / "mulberry_sft.json"), str(data / "images"), str(out)]


def pebr_cmd(data: Path, out: Path, workers: int | None) -> list[str]:
    cmd = [
        sys.executable,
        "-m",
        "trainer.cli",
        "-q",
        "curate",
        "filter",
        "--input",
        str(data / "mulberry_sft.json"),
    ]
    cmd += ["--image-root", str(data / "images"), "--out", str(out)]
    if workers is not None:
        cmd += ["--workers", str(workers)]
    return cmd


def pebr_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


# --------------------------------------------------------------------------- correctness


def check_kept_set(data: Path, run: Path) -> dict[str, int]:
    """pebr's kept set == the reference's, except duplicates (each verified)."""
    import orjson
    import pyarrow.parquet as pq

    sys.path.insert(0, str(REPO))
    from curation.filters import normalise_question

    manifest = [json.loads(line) for line in (data / "manifest.jsonl").open()]
    dropped = pq.read_table(run / "dropped.parquet", columns=["index", "reason", "detail"]).to_pydict()
    reason = dict(zip(dropped["index"], dropped["reason"], strict=True))
    detail = dict(zip(dropped["index"], dropped["detail"], strict=True))
    ref_keep = {m["i"] for m in manifest if m["ref_keep"]}
    ours = set(range(len(manifest))) - set(reason)
    if not ours <= ref_keep:
        extra = sorted(ours - ref_keep)[:10]
        raise SystemExit(
            f"pebr keeps records the reference drops: {[(i, manifest[i]['cat']) for i in extra]}"
        )
    extra_drops = sorted(ref_keep - ours)
    bad = [(i, reason[i]) for i in extra_drops if reason[i] != "duplicate"]
    if bad:
        raise SystemExit(f"pebr drops records the reference keeps, not as duplicates: {bad[:10]}")
    records = orjson.loads((data / "mulberry_sft.json").read_bytes())
    images = data / "images"

    def key(rec: dict) -> tuple:
        q = next(m["content"] for m in rec["messages"] if m["role"] == "user").replace("<image>", "").strip()
        return tuple((images / p).read_bytes() for p in rec["images"]), normalise_question(q)

    for i in extra_drops:
        first = int(detail[i].rsplit(" ", 1)[1])
        if not (first < i and first in ours and key(records[i]) == key(records[first])):
            raise SystemExit(f"record {i} is not a duplicate of record {first}")
    kept_json = orjson.loads((run / "kept.json").read_bytes())
    if len(kept_json) != len(ours):
        raise SystemExit(f"kept.json has {len(kept_json)} records, expected {len(ours)}")
    report = json.loads((run / "report.json").read_text())
    return {
        "input": len(manifest),
        "reference_kept": len(ref_keep),
        "pebr_kept": len(ours),
        "extra_duplicate_drops": len(extra_drops),
        "pebr_duplicate_drops": report["dropped"]["duplicate"],
    }


# --------------------------------------------------------------------------- one dataset


def bench_dataset(data: Path, records: int, runs: int, workers: int | None, tmp: Path) -> dict:
    ensure_data(data, records, ARGS.generator)
    env = pebr_env()
    ref_out = tmp / "reference_kept.json"
    cold_out, warm_out = tmp / "pebr_cold", tmp / "pebr_cached"
    sidecar = data / "images" / CACHE_NAME
    result: dict = {"records": records, "data": str(data), "runs": runs, "workers": workers}

    print(f"[{records}] warming the page cache ...", file=sys.stderr, flush=True)
    warm(data)
    sidecar.unlink(missing_ok=True)
    measure(pebr_cmd(data, cold_out, workers), env)  # also the correctness run
    result["correctness"] = check_kept_set(data, cold_out)
    ref_check = json.loads(
        subprocess.run(reference_cmd(data, ref_out), capture_output=True, check=True).stdout.decode()
    )
    if ref_check["kept"] != result["correctness"]["reference_kept"]:
        raise SystemExit(f"the reference kept {ref_check['kept']}, the manifest says {result['correctness']}")
    print(f"[{records}] correctness: {result['correctness']}", file=sys.stderr, flush=True)

    def one(name: str, memory: bool) -> dict:
        # the previous run's outputs (a 400 MB kept.json) must not be written back to disk
        # while this one is timed: the kernel's writeback takes CPU from whichever runs next
        os.sync()
        warm(data)
        if name == "reference":
            return measure(reference_cmd(data, ref_out), memory=memory)
        if name == "pebr":
            sidecar.unlink(missing_ok=True)
            return measure(pebr_cmd(data, cold_out, workers), env, memory=memory)
        if not sidecar.exists():
            measure(pebr_cmd(data, cold_out, workers), env)
        return measure(pebr_cmd(data, warm_out, workers), env, memory=memory)

    names = ("reference", "pebr", "pebr_cached")
    timings: dict[str, list[dict]] = {name: [] for name in names}
    for r in range(runs):
        for name in names:
            m = one(name, memory=False)
            timings[name].append(m)
            print(
                f"[{records}] run {r + 1}/{runs} {name:12s} {m['seconds']:6.2f}s wall "
                f"{m['cpu_seconds']:6.2f}s cpu (load {m['load_before']:.1f})",
                file=sys.stderr,
                flush=True,
            )
    memory_runs = {}
    for name in names:
        m = memory_runs[name] = one(name, memory=True)
        print(
            f"[{records}] memory run {name:12s} {m['peak_tree_rss_mb']:6.0f} MB rss "
            f"{m['peak_tree_pss_mb']:6.0f} MB pss ({m['seconds']:.2f}s wall while polled)",
            file=sys.stderr,
            flush=True,
        )
    for name, ms in timings.items():
        mem = memory_runs[name]
        result[name] = {
            "median_seconds": statistics.median(m["seconds"] for m in ms),
            "median_cpu_seconds": statistics.median(m["cpu_seconds"] for m in ms),
            "median_peak_tree_rss_mb": mem["peak_tree_rss_mb"],
            "median_peak_tree_pss_mb": mem["peak_tree_pss_mb"],
            "runs": ms,
            "memory_run": mem,
        }
    ref = result["reference"]
    for name in ("pebr", "pebr_cached"):
        r = result[name]
        r["speedup"] = ref["median_seconds"] / r["median_seconds"]
        r["cpu_ratio"] = ref["median_cpu_seconds"] / r["median_cpu_seconds"]
        r["memory_ratio"] = r["median_peak_tree_rss_mb"] / ref["median_peak_tree_rss_mb"]
    return result


def print_table(results: list[dict]) -> None:
    head = (
        f"{'records':>9} {'run':<22} {'wall s':>7} {'cpu s':>7} {'RSS MB':>7} {'PSS MB':>7}"
        f" {'speed-up':>9} {'cpu ratio':>9} {'mem':>6}"
    )
    print(head)
    print("-" * len(head))
    for res in results:
        n = res["records"]
        for name, label in (
            ("reference", "reference (PeBR-R1)"),
            ("pebr", "pebr (cold cache)"),
            ("pebr_cached", "pebr (metadata cache)"),
        ):
            r = res[name]
            extra = ""
            if name != "reference":
                extra = f" {r['speedup']:>8.2f}x {r['cpu_ratio']:>8.2f}x {r['memory_ratio']:>5.2f}x"
            print(
                f"{n:>9} {label:<22} {r['median_seconds']:>7.2f} {r['median_cpu_seconds']:>7.2f}"
                f" {r['median_peak_tree_rss_mb']:>7.0f} {r['median_peak_tree_pss_mb']:>7.0f}{extra}"
            )
        c = res["correctness"]
        print(
            f"{'':>9} kept: reference {c['reference_kept']}, pebr {c['pebr_kept']} "
            f"(the difference: {c['extra_duplicate_drops']} duplicates, each verified)"
        )
    print(
        "\nspeed-up = reference wall / pebr wall (medians); cpu ratio = reference CPU / pebr CPU "
        "summed over all processes;\nmem = peak summed RSS of the pebr process tree / the reference's"
    )
    if len(results) > 1:
        print()
        print("growth (per 100K records: wall s, cpu s, peak RSS MB):")
        for res in results:
            k = res["records"] / 100_000
            parts = []
            for name in ("reference", "pebr", "pebr_cached"):
                r = res[name]
                parts.append(
                    f"{name} {r['median_seconds'] / k:5.2f} {r['median_cpu_seconds'] / k:5.2f} "
                    f"{r['median_peak_tree_rss_mb'] / k:5.0f}"
                )
            print(f"{res['records']:>9}  " + "   ".join(parts))


def main(argv: list[str] | None = None) -> int:
    global ARGS
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=260_000)
    ap.add_argument("--data", type=Path, help="dataset directory (default: DATA_ROOT/mulberry_RECORDS)")
    ap.add_argument("--data-root", type=Path, default=Path(os.environ.get("PEBR_BENCH_DATA", "bench_data")))
    ap.add_argument("--runs", type=int, default=3, help="timed runs of each program (alternating)")
    ap.add_argument("--growth", help="comma-separated record counts, e.g. 50000,260000,1000000")
    ap.add_argument("--growth-runs", type=int, default=1, help="runs per size above 260K in --growth")
    ap.add_argument("--workers", type=int, default=None, help="pebr worker processes (default: CPUs)")
    ap.add_argument("--generator", help="path of gen_mulberry.py")
    ap.add_argument("--json", type=Path, default=REPO / "runs/bench/filter.json")
    ap.add_argument("--tmp", type=Path, default=None, help="scratch directory for outputs")
    ARGS = ap.parse_args(argv)
    sizes = [int(s) for s in ARGS.growth.split(",")] if ARGS.growth else [ARGS.records]
    results = []
    for n in sizes:
        data = ARGS.data if (ARGS.data and len(sizes) == 1) else ARGS.data_root / f"mulberry_{n}"
        tmp = ARGS.tmp or (data.parent / f".bench_out_{n}")
        tmp.mkdir(parents=True, exist_ok=True)
        runs = ARGS.runs if n <= 260_000 else ARGS.growth_runs
        results.append(bench_dataset(data, n, runs, ARGS.workers, tmp))
        ARGS.json.parent.mkdir(parents=True, exist_ok=True)
        ARGS.json.write_text(json.dumps(results, indent=2))
    print()
    print(f"machine: {os.cpu_count()} CPUs; Python {sys.version.split()[0]}")
    print_table(results)
    print(f"\nresults: {ARGS.json}")
    return 0


ARGS: argparse.Namespace

if __name__ == "__main__":
    sys.exit(main())
