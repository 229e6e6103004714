"""Helpers shared by the benchmarks: where generators and data live, timing, medians."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def find_upwards(relative: str) -> Path | None:
    """The first ``<ancestor>/<relative>`` that exists, from the repository upwards."""
    for parent in [REPO, *REPO.parents]:
        candidate = parent / relative
        if candidate.exists():
            return candidate
    return None


def generator(name: str) -> Path:
    """A shared benchmark data generator (``$PEBR_BENCH_GENERATORS`` or ``shared/bench`` above the repo)."""
    env = os.environ.get("PEBR_BENCH_GENERATORS")
    path = Path(env) / name if env else find_upwards(f"shared/bench/{name}")
    if path is None or not path.is_file():
        raise FileNotFoundError(
            f"benchmark generator {name} not found; set PEBR_BENCH_GENERATORS to its folder"
        )
    return path


def bench_data_dir() -> Path:
    """``$PEBR_BENCH_DATA``, else an existing ``bench_data`` folder above the repository, else
    ``bench_data`` next to it."""
    env = os.environ.get("PEBR_BENCH_DATA")
    if env:
        return Path(env)
    return find_upwards("bench_data") or REPO.parent / "bench_data"


def run_generator(name: str, args: list[str]) -> None:
    subprocess.run([sys.executable, str(generator(name)), *args], check=True, stdout=subprocess.DEVNULL)


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of one call."""
    t, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t, time.process_time() - c


def median(values: list[float]) -> float:
    return statistics.median(values)
