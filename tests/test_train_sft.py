"""The SFT stage with the nano model: trains, freezes the vision side, reloads, skips, refuses."""

from __future__ import annotations

import json
import re

import pytest
from train_helpers import write_split

from trainer.config import SFTStageConfig
from trainer.config_io import load_config
from trainer.sft import run_sft
from trainer.stages import read_metrics, read_stage


@pytest.fixture(scope="module")
def sft_data(tmp_path_factory):
    return write_split(tmp_path_factory.mktemp("sftdata"), "kept.parquet", 6)


def _cfg(model_dir, data, out, *sets):
    return load_config(
        SFTStageConfig,
        None,
        [
            f"output_dir={out}",
            f"model.path={model_dir}",
            f"data.train={data}",
            "max_steps=2",
            "per_device_train_batch_size=2",
            "learning_rate=1e-3",
            "save_steps=1",
            "logging_steps=1",
            "max_length=512",
            *sets,
        ],
    )


def _state_dict(path):
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


def test_sft_trains_freezes_vision_and_reloads(tiny_nano_dir, sft_data, tmp_path):
    from trainer.vlm import generate, load_vlm

    out = tmp_path / "sft"
    info = run_sft(_cfg(tiny_nano_dir, sft_data, out))
    assert info["status"] == "done"
    assert info["summary"]["global_step"] == 2
    assert info["summary"]["samples"] == 6
    assert info["summary"]["parameters"]["frozen"] > 0

    before, after = _state_dict(tiny_nano_dir), _state_dict(out)
    visual = [k for k in before if k.startswith("visual.")]
    language = [k for k in before if k.startswith("model.layers.")]
    assert visual
    assert language
    # PeBR freezes the vision tower and the projector (merger): not a single value moved
    assert all(before[k].equal(after[k]) for k in visual)
    assert any(not before[k].equal(after[k]) for k in language)

    metrics = read_metrics(out)
    losses = [r for r in metrics if "loss" in r]
    assert [r["step"] for r in losses] == [1, 2]
    assert (out / "checkpoint-1" / "trainer_state.json").is_file()

    model, processor = load_vlm(out)
    from PIL import Image

    text = generate(
        model, processor, [Image.new("RGB", (56, 56), "red")], "How many circles?", max_new_tokens=4
    )
    assert isinstance(text, str)


def test_sft_unfrozen_vision_trains_the_merger(tiny_nano_dir, sft_data, tmp_path):
    out = tmp_path / "sft"
    run_sft(_cfg(tiny_nano_dir, sft_data, out, "freeze_projector=false"))
    before, after = _state_dict(tiny_nano_dir), _state_dict(out)
    merger = [k for k in before if k.startswith("visual.merger.")]
    tower = [k for k in before if k.startswith("visual.") and k not in merger]
    assert any(not before[k].equal(after[k]) for k in merger)
    assert all(before[k].equal(after[k]) for k in tower)


def test_finished_stage_is_skipped_and_other_config_refused(tiny_nano_dir, sft_data, tmp_path):
    out = tmp_path / "sft"
    cfg = _cfg(tiny_nano_dir, sft_data, out, "max_steps=1")
    first = run_sft(cfg)
    again = run_sft(cfg)
    assert again["skipped"] is True
    assert again["finished_at"] == first["finished_at"]
    with pytest.raises(ValueError, match="different config") as info:
        run_sft(_cfg(tiny_nano_dir, sft_data, out, "max_steps=1", "learning_rate=2e-3"))
    assert "--force" in str(info.value)
    forced = run_sft(_cfg(tiny_nano_dir, sft_data, out, "max_steps=1", "learning_rate=2e-3"), force=True)
    assert forced["status"] == "done"
    assert forced["attempts"] == 1
    assert json.loads((out / "stage.json").read_text())["config"]["learning_rate"] == 2e-3


def test_sft_reads_a_sharegpt_json(tiny_nano_dir, tmp_path):
    from train_helpers import make_records

    from curation.convert import to_sharegpt

    data = tmp_path / "data"
    records = make_records(data, 4)
    (data / "sft.json").write_text(json.dumps([to_sharegpt(r) for r in records]))
    info = run_sft(_cfg(tiny_nano_dir, data / "sft.json", tmp_path / "sft", "max_steps=1"))
    assert info["summary"]["samples"] == 4


@pytest.mark.parametrize(
    ("breakage", "error", "message"),
    [
        ("missing_image", FileNotFoundError, "image 'images/s0_0.png' not found under image root"),
        ("no_data_file", FileNotFoundError, "does not exist"),
        ("no_output_dir", ValueError, "output_dir is required"),
        ("tag_mismatch", ValueError, "has 2 <image> tag(s) for 1 image(s)"),
    ],
)
def test_bad_inputs_fail_clearly(tiny_nano_dir, tmp_path, breakage, error, message):
    from train_helpers import make_records

    from curation.schema import write_parquet

    data = tmp_path / "data"
    records = make_records(data, 2)
    path = data / "kept.parquet"
    if breakage == "tag_mismatch":
        records[1]["messages"][0]["content"] = "<image><image>How many?"
    write_parquet(records, str(path))
    out = tmp_path / "sft"
    if breakage == "missing_image":
        (data / "images" / "s0_0.png").unlink()
    if breakage == "no_data_file":
        path = data / "nope.parquet"
    if breakage == "no_output_dir":
        out = ""
    with pytest.raises(error, match=re.escape(message)):
        run_sft(_cfg(tiny_nano_dir, path, out))
    if out:
        assert read_stage(out) is None  # nothing half-written for a run that never started


@pytest.mark.parametrize(
    ("report", "explicit", "expected"),
    [
        (None, None, "data"),  # no report: the data file's directory
        ({"splits_report.json": "ABS"}, None, "images"),  # the splits' absolute image root
        ({"report.json": "images"}, None, "images"),  # the filter's root, relative to the cwd
        ({"report.json": "../images"}, None, "images"),  # relative to the report's folder
        ({"report.json": "ABS"}, "explicit", "explicit"),  # an explicit root wins
    ],
)
def test_resolve_image_root(tmp_path, monkeypatch, report, explicit, expected):
    from trainer.data import resolve_image_root

    for name in ("data", "images", "explicit"):
        (tmp_path / name).mkdir()
    monkeypatch.chdir(tmp_path)
    for file, value in (report or {}).items():
        root = str(tmp_path / "images") if value == "ABS" else value
        (tmp_path / "data" / file).write_text(json.dumps({"image_root": root}))
    got = resolve_image_root(tmp_path / "data" / "x.parquet", str(tmp_path / explicit) if explicit else None)
    assert got == str((tmp_path / expected).resolve())


def test_resolve_image_root_errors(tmp_path):
    from trainer.data import resolve_image_root

    with pytest.raises(FileNotFoundError, match=r"image root .* is not a directory"):
        resolve_image_root(tmp_path / "x.parquet", str(tmp_path / "nope"))
    (tmp_path / "report.json").write_text(json.dumps({"image_root": "missing"}))
    with pytest.raises(FileNotFoundError, match="image_root 'missing' is not a directory"):
        resolve_image_root(tmp_path / "x.parquet")
