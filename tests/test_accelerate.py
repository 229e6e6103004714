"""Stages under `accelerate launch` with two CPU processes (gloo), as on a multi-GPU machine."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from train_helpers import write_split

from trainer.stages import read_metrics, read_stage

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "trainer" / "accelerate_configs" / "cpu_2proc.yaml"
SMOKE = ROOT / "trainer" / "recipes" / "smoke.yaml"


def _accelerate() -> str:
    exe = Path(sys.executable).with_name("accelerate")
    return str(exe) if exe.is_file() else shutil.which("accelerate")


def _launch(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    cmd = [
        _accelerate(),
        "launch",
        "--config_file",
        str(CONFIG),
        "--num_processes",
        "2",
        "-m",
        "trainer.cli",
        *args,
    ]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("accdata")
    return write_split(root, "kept.parquet", 8), write_split(
        root, "reasoning.parquet", 8, with_messages=False
    )


@pytest.mark.slow
def test_sft_two_processes(tiny_nano_dir, data, tmp_path):
    out = tmp_path / "sft"
    proc = _launch(
        "train",
        "sft",
        "--config",
        str(SMOKE),
        "--set",
        f"model.path={tiny_nano_dir}",
        "--set",
        f"data.train={data[0]}",
        "--out",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    info = read_stage(out)
    assert info["status"] == "done"
    assert info["num_processes"] == 2
    # 2 steps x 2 processes x 2 samples cover the 8 conversations once
    assert [r["epoch"] for r in read_metrics(out) if "loss" in r] == [0.5, 1.0]
    assert proc.stdout.count("status") == 1  # one summary table, from the main process
    from trainer.vlm import load_vlm

    load_vlm(out)


@pytest.mark.slow
def test_grpo_two_processes_with_zero_adv_filter(tiny_nano_dir, data, tmp_path):
    out = tmp_path / "stage2"
    proc = _launch(
        "train",
        "stage2",
        "--config",
        str(SMOKE),
        "--set",
        f"model.path={tiny_nano_dir}",
        "--set",
        f"data.train={data[1]}",
        "--set",
        "zero_adv.enabled=true",
        "--set",
        "zero_adv.max_refill_groups=4",
        "--out",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    info = read_stage(out)
    assert info["status"] == "done"
    assert info["num_processes"] == 2
    assert info["summary"]["global_step"] == 2
    rows = read_metrics(out)
    assert any("rewards/pebr_stage2/accuracy/mean" in r for r in rows)
    assert any("zero_adv/groups_dropped" in r for r in rows)
    # the filter's decisions are global: every generation batch holds 4 groups over 2 processes
    totals = info["summary"]["zero_adv"]
    assert totals["generation_batches"] == 2
    generated = 2 * 4 + totals["refill_draws"]  # groups scored: 2 batches of 4, plus the refills
    assert totals["refill_draws"] <= 2 * 4  # the budget bounds every generation batch
    assert totals["groups_dropped"] <= generated
    assert totals["unfilled_rows"] <= 2 * 8
    if totals["groups_dropped"] == generated:  # the random model is (nearly) always wrong
        assert totals["unfilled_rows"] == 2 * 8
