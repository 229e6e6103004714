"""The GRPO stages with the nano model: per-component rewards logged, checkpoints reload,
resume after SIGKILL, zero-advantage filtering (drop, refill, budget exhausted)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from trainer.grpo import run_grpo
from trainer.stages import read_metrics, read_stage

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "trainer" / "recipes" / "smoke.yaml"


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    """Synthetic RL questions: prompts of different lengths and image sizes, so padding matters."""
    from curation.synth import generate_dataset

    out = tmp_path_factory.mktemp("split")
    generate_dataset(out, sft=0, rl=8, test=0, seed=1)
    return out / "rl.parquet"


def _cfg(stage, model_dir, data, out, *sets):
    from trainer.train_cli import _stage_config

    base = [f"output_dir={out}", f"model.path={model_dir}", f"data.train={data}"]
    return _stage_config(stage, SMOKE, [*base, *sets], [])


def _last(rows, key):
    return next(r[key] for r in reversed(rows) if key in r)


@pytest.mark.parametrize(
    ("stage", "components"),
    [
        ("stage1", ["alignment", "keywords", "format", "length", "accuracy"]),  # accuracy logged at weight 0
        ("stage2", ["accuracy", "format"]),
    ],
)
def test_stage_logs_every_reward_component_and_reloads(tiny_nano_dir, split, tmp_path, stage, components):
    from trainer.vlm import load_vlm

    out = tmp_path / stage
    info = run_grpo(_cfg(stage, tiny_nano_dir, split, out), stage=stage)
    assert info["status"] == "done"
    assert info["summary"]["global_step"] == 2
    preset = f"pebr_{stage}"
    assert info["summary"]["reward_functions"] == [f"{preset}/{c}" for c in components]
    rows = read_metrics(out)
    assert [r["step"] for r in rows if "loss" in r] == [1, 2]
    for c in components:
        value = _last(rows, f"rewards/{preset}/{c}/mean")
        assert 0.0 <= value <= 1.0
    assert _last(rows, "timing/rewards_seconds") > 0
    # random tiny-model tokens are short of 512 tokens: the length component is 1.0 when it applies
    if stage == "stage1":
        assert _last(rows, "rewards/pebr_stage1/length/mean") == pytest.approx(1.0)
    assert (out / "checkpoint-1" / "trainer_state.json").is_file()
    model, processor = load_vlm(out)
    assert type(model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    assert processor.image_processor is not None
    checkpoint, _ = load_vlm(out / "checkpoint-1")  # a checkpoint is a loadable model too
    assert checkpoint.config.model_type == model.config.model_type
    assert (out / "dropped_prompts.jsonl").read_text() == ""


def test_prompt_lengths_match_the_processor_and_long_prompts_are_dropped(tiny_nano_dir, tmp_path):
    from PIL import Image
    from train_helpers import make_records

    from curation.schema import write_parquet
    from trainer.data import grpo_columns, grpo_dataset, grpo_records, prompt_lengths
    from trainer.modeling import load_processor_for

    records = make_records(tmp_path / "data", 6, with_messages=False)
    for rec in records[:2]:  # two prompts far longer than the others
        rec["question"] = "How many circles are there? " * 12
    write_parquet(records, str(tmp_path / "data" / "split.parquet"))
    cfg = _cfg("stage1", tiny_nano_dir, tmp_path / "data" / "split.parquet", tmp_path / "s1")
    processor = load_processor_for(cfg.model)
    recs, root = grpo_records(cfg.data)
    cols = grpo_columns(recs, root)
    lengths = prompt_lengths(cols["prompt"], cols["images"], processor)
    for i in (0, 5):  # the computed length is what the processor produces with the image
        text = processor.apply_chat_template(cols["prompt"][i], tokenize=False, add_generation_prompt=True)
        image = Image.open(cols["images"][i][0]["path"])
        assert lengths[i] == processor(text=[text], images=[image], return_tensors="pt")["input_ids"].shape[1]
    short = max(lengths[2:])
    assert min(lengths[:2]) > short

    data = grpo_dataset(cfg.data, processor, short)
    assert len(data.dataset) == 4
    assert [d["uid"] for d in data.dropped] == [records[0]["uid"], records[1]["uid"]]
    assert all(d["reason"] == "prompt_too_long" and d["prompt_tokens"] > short for d in data.dropped)

    out = tmp_path / "s1"
    with pytest.raises(ValueError, match=f"every prompt is longer than max_prompt_length={short // 4}"):
        run_grpo(
            _cfg(
                "stage1",
                tiny_nano_dir,
                tmp_path / "data" / "split.parquet",
                out,
                f"max_prompt_length={short // 4}",
            ),
            stage="stage1",
        )
    assert read_stage(out) is None  # failed before anything was written


def test_use_vllm_without_vllm_names_the_install(tiny_nano_dir, split, tmp_path):
    from trainer.cli import run

    with pytest.raises(ImportError, match=re.escape("pip install 'pebr[vllm]'")):
        run_grpo(_cfg("stage1", tiny_nano_dir, split, tmp_path / "s1", "use_vllm=true"), stage="stage1")
    code = run(
        [
            "train",
            "stage1",
            "--config",
            str(SMOKE),
            "--set",
            f"model.path={tiny_nano_dir}",
            "--set",
            f"data.train={split}",
            "--out",
            str(tmp_path / "s1"),
            "--use-vllm",
        ]
    )
    assert code == 2


@pytest.mark.slow
def test_resume_after_sigkill(tiny_nano_dir, split, tmp_path):
    """A stage killed (SIGKILL) after a checkpoint resumes from it and ends where an unkilled
    run would, with each step logged once."""
    from trainer.cli import run

    out = tmp_path / "s1"
    steps = 24
    args = [
        "train",
        "stage1",
        "--config",
        str(SMOKE),
        "--set",
        f"model.path={tiny_nano_dir}",
        "--set",
        f"data.train={split}",
        "--set",
        f"max_steps={steps}",
        "--set",
        "save_steps=2",
        "--set",
        "save_total_limit=null",
        "--out",
        str(out),
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "trainer.cli", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    marker = out / "checkpoint-2" / "trainer_state.json"
    deadline = time.monotonic() + 120
    while not marker.is_file():
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
        assert time.monotonic() < deadline, "no checkpoint within 120 s"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stderr.close()
    killed = read_stage(out)
    assert killed["status"] == "running"
    done_before = max(int(p.name.split("-")[1]) for p in out.glob("checkpoint-*"))
    assert done_before < steps, "the run finished before it was killed; the test proves nothing"

    assert run(args) == 0
    info = read_stage(out)
    assert info["status"] == "done"
    assert info["attempts"] == 2
    assert re.search(r"checkpoint-\d+$", info["resumed_from"])
    assert info["summary"]["global_step"] == steps
    logged = [r["step"] for r in read_metrics(out) if "loss" in r]
    assert logged == list(range(1, steps + 1))

    # a rerun of the finished stage is a no-op
    mtime = (out / "stage.json").stat().st_mtime
    assert run(args) == 0
    assert (out / "stage.json").stat().st_mtime == mtime


def test_prompts_of_different_lengths_in_one_batch(tiny_nano_dir, tmp_path):
    """TRL left-pads prompts; the processor's image token types must be padded the same way
    (a right-padding tokenizer breaks Qwen2.5-VL's M-RoPE positions)."""
    from PIL import Image
    from train_helpers import make_records

    from curation.schema import write_parquet

    records = make_records(tmp_path / "data", 2, with_messages=False)
    # 112x112 is 16 image tokens for the nano model, 56x56 is 4; with the longer question the
    # short prompt gets more left padding than the text before its image
    Image.new("RGB", (112, 112), "white").save(tmp_path / "data" / records[0]["images"][0]["path"])
    records[0]["image_sizes"] = [{"width": 112, "height": 112}]
    records[0]["question"] = "Count the circles in the picture, one by one, and give the total. " * 3
    write_parquet(records, str(tmp_path / "data" / "split.parquet"))
    out = tmp_path / "s1"
    info = run_grpo(_cfg("stage1", tiny_nano_dir, tmp_path / "data" / "split.parquet", out, "max_steps=1"))
    assert info["status"] == "done"


@pytest.mark.parametrize(
    ("preset", "mode", "outcome"),
    [
        ("pebr_stage1", "warn", "trains"),  # PeBR's stage-1 reward pays for keyword stuffing: logged
        ("pebr_stage1", "fail", "refuses"),  # ... or refused before any training step
        ("pebr_stage1_guarded", "fail", "trains"),  # the guarded preset passes every probe
    ],
)
def test_reward_audit_runs_before_training(tiny_nano_dir, split, tmp_path, preset, mode, outcome):
    import json

    out = tmp_path / "stage1"
    cfg = _cfg("stage1", tiny_nano_dir, split, out, f"reward_preset={preset}", f"reward_audit.mode={mode}")
    if outcome == "refuses":
        with pytest.raises(ValueError, match="keyword_stuffing"):
            run_grpo(cfg, stage="stage1")
        assert not list(out.glob("checkpoint-*"))
    else:
        assert run_grpo(cfg, stage="stage1")["status"] == "done"
    report = json.loads((out / "reward_audit.json").read_text())
    assert report["preset"] == preset
    assert ("keyword_stuffing" in report["failed"]) == (preset == "pebr_stage1")
    assert report["control"]["mean"] > 0.5  # the gold answer itself is rewarded
