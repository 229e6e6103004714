"""Stage configs: defaults, YAML recipes, --set overrides, unknown keys, type errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from trainer.config import (
    CONFIG_CLASSES,
    GRPOStageConfig,
    ModelConfig,
    PipelineConfig,
    SFTStageConfig,
)
from trainer.config_io import apply_sets, config_hash, help_table, load_config
from trainer.train_cli import _stage_config

RECIPES = Path(__file__).resolve().parents[1] / "trainer" / "recipes"


def _yaml(tmp_path, text: str) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    return path


def test_defaults_are_pebrs():
    sft = SFTStageConfig()
    assert (sft.learning_rate, sft.num_train_epochs, sft.lr_scheduler_type, sft.warmup_ratio) == (
        1e-5,
        2.0,
        "cosine",
        0.1,
    )
    assert sft.freeze_vision_tower
    assert sft.freeze_projector
    assert sft.assistant_only_loss
    assert sft.max_length == 4096
    s1 = load_config(GRPOStageConfig, stage="stage1")
    s2 = load_config(GRPOStageConfig, stage="stage2")
    for s in (s1, s2):
        assert (s.learning_rate, s.beta, s.num_generations, s.temperature, s.top_p) == (
            1e-6,
            0.01,
            8,
            1.2,
            0.99,
        )
        assert (s.max_prompt_length, s.max_completion_length) == (2048, 2048)
        assert not s.freeze_vision_tower
    assert (s1.reward_preset, s1.num_train_epochs) == ("pebr_stage1", 1.0)
    assert (s2.reward_preset, s2.num_train_epochs) == ("pebr_stage2", 2.0)


def test_yaml_then_set_override_in_order(tmp_path):
    path = _yaml(tmp_path, "learning_rate: 2.0e-5\nmodel:\n  path: /m\n  max_pixels: 1000\n")
    cfg = load_config(
        SFTStageConfig, path, ["learning_rate=3e-5", "model.min_pixels=100", "data.train=a.parquet"]
    )
    assert cfg.learning_rate == 3e-5
    assert cfg.model == ModelConfig(path="/m", min_pixels=100, max_pixels=1000)
    assert cfg.data.train == "a.parquet"
    assert cfg.num_train_epochs == 2.0  # untouched default


@pytest.mark.parametrize(
    ("sets", "field", "expected"),
    [
        (["max_steps=7"], "max_steps", 7),  # int
        (["learning_rate=1"], "learning_rate", 1.0),  # an int is a fine float
        (["bf16=true"], "bf16", True),  # YAML boolean
        (["save_total_limit=null"], "save_total_limit", None),  # optional -> None
        (["report_to=[tensorboard]"], "report_to", ["tensorboard"]),  # list
        (
            ["reward_overrides.alignment.backend=caption"],
            "reward_overrides",
            {"alignment": {"backend": "caption"}},
        ),
        (["zero_adv.enabled=true"], "zero_adv.enabled", True),  # nested section
        (["vllm_mode=server"], "vllm_mode", "server"),  # Literal choice
    ],
)
def test_set_parses_by_field_type(sets, field, expected):
    cfg = load_config(GRPOStageConfig, None, sets, stage="stage1")
    value = cfg
    for part in field.split("."):
        value = getattr(value, part)
    assert value == expected


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["learning_rat=1e-5"], "unknown config key 'learning_rat'"),  # typo at the top
        (["model.pth=/x"], "unknown config key 'model.pth'"),  # typo in a section
        (["nosuch.path=/x"], "unknown config key 'nosuch'"),  # unknown section in --set
        (["max_steps=abc"], "max_steps: expected an integer, got 'abc'"),  # wrong type
        (["max_steps=1.5"], "max_steps: expected an integer"),  # float for int
        (["bf16=maybe"], "bf16: expected true or false"),  # not a boolean
        (["vllm_mode=remote"], "vllm_mode: expected one of ['colocate', 'server']"),  # bad choice
        (["model=3"], "model: expected a mapping of ModelConfig options"),  # scalar for a section
        (["temperature=0"], "temperature must be > 0"),  # __post_init__ validation
        (["top_p=1.5"], "top_p must be in (0, 1]"),  # range check
        (["num_generations=1"], "num_generations must be >= 2"),  # GRPO needs a group
        (["model.min_pixels=10", "model.max_pixels=5"], "must not exceed model.max_pixels"),  # cross-field
        (["zero_adv.max_refill_groups=-1"], "zero_adv.max_refill_groups must be >= 0"),  # nested validation
        (["novalue"], "--set expects key=value"),  # malformed --set
    ],
)
def test_bad_values_fail_with_the_key(sets, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        load_config(GRPOStageConfig, None, sets, stage="stage1")


def test_unknown_key_lists_the_allowed_ones(tmp_path):
    path = _yaml(tmp_path, "model:\n  path: /m\n  dtyp: bfloat16\n")
    with pytest.raises(ValueError, match=r"unknown config key 'model\.dtyp'") as info:
        load_config(SFTStageConfig, path)
    assert str(path) in str(info.value)
    assert "allowed: attn_implementation, dtype, max_pixels, min_pixels, path" in str(info.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- a\n- b\n", "a recipe must be a mapping"),  # a list, not a mapping
        ("learning_rate: [1\n", "not valid YAML"),  # broken YAML
    ],
)
def test_bad_recipe_files(tmp_path, text, message):
    with pytest.raises(ValueError, match=message):
        load_config(SFTStageConfig, _yaml(tmp_path, text))


def test_missing_recipe_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_config(SFTStageConfig, tmp_path / "nope.yaml")


def test_trl_passthrough_is_checked_against_trl():
    cfg = load_config(GRPOStageConfig, None, ["trl={logging_first_step: true, epsilon: 0.3}"], stage="stage1")
    assert cfg.trl == {"logging_first_step": True, "epsilon": 0.3}
    with pytest.raises(ValueError, match=r"trl\.not_an_option is not an option of TRL's GRPOConfig"):
        load_config(GRPOStageConfig, None, ["trl.not_an_option=1"], stage="stage1")
    # a TRL option that pebr owns must be set through pebr's name
    with pytest.raises(ValueError, match="use the pebr option 'learning_rate'"):
        load_config(GRPOStageConfig, None, ["trl.learning_rate=1"], stage="stage1")
    with pytest.raises(ValueError, match="use the pebr option 'warmup_ratio'"):
        load_config(SFTStageConfig, None, ["trl.warmup_steps=3"])


def test_set_into_free_form_dicts():
    data = apply_sets(GRPOStageConfig, {}, ["reward_overrides.keywords.mode=normalized", "trl.epsilon=0.3"])
    assert data == {"reward_overrides": {"keywords": {"mode": "normalized"}}, "trl": {"epsilon": 0.3}}


@pytest.mark.parametrize("name", ["pebr.yaml", "demo.yaml", "smoke.yaml"])
def test_pipeline_recipes_load(name):
    cfg = load_config(PipelineConfig, RECIPES / name)
    assert cfg.stage1.reward_preset == "pebr_stage1"
    assert cfg.stage2.reward_preset == "pebr_stage2"


def test_pebr_recipe_holds_the_papers_settings():
    cfg = load_config(PipelineConfig, RECIPES / "pebr.yaml")
    assert (cfg.model.min_pixels, cfg.model.max_pixels) == (576, 802816)
    assert (cfg.sft.learning_rate, cfg.sft.num_train_epochs, cfg.sft.warmup_ratio, cfg.sft.max_length) == (
        1e-5,
        2.0,
        0.1,
        4096,
    )
    assert cfg.sft.freeze_vision_tower
    assert cfg.sft.freeze_projector
    for stage, epochs in ((cfg.stage1, 1.0), (cfg.stage2, 2.0)):
        assert (stage.learning_rate, stage.beta, stage.num_generations, stage.num_train_epochs) == (
            1e-6,
            0.01,
            8,
            epochs,
        )
        assert (stage.temperature, stage.top_p, stage.max_completion_length) == (1.2, 0.99, 2048)
    assert (cfg.difficulty.n, cfg.difficulty.temperature) == (8, 1.2)


@pytest.mark.parametrize(
    ("name", "kind"), [("sft.yaml", "sft"), ("stage1.yaml", "stage1"), ("stage2.yaml", "stage2")]
)
def test_stage_recipes_load(name, kind):
    cfg = _stage_config(kind, RECIPES / name, ["output_dir=/tmp/x"], [])
    assert type(cfg) is CONFIG_CLASSES[kind]


def test_stage_command_reads_its_section_of_a_pipeline_recipe():
    cfg = _stage_config("stage2", RECIPES / "smoke.yaml", ["model.path=/m"], [])
    assert cfg.reward_preset == "pebr_stage2"
    assert cfg.max_steps == 2
    assert cfg.model.path == "/m"
    sft = _stage_config("sft", RECIPES / "pebr.yaml", [], [])
    assert sft.model.path == "Qwen/Qwen2.5-VL-3B-Instruct"
    assert sft.model.max_pixels == 802816
    # the GRPO stages do not inherit the base model's path (they start from a previous stage)
    assert _stage_config("stage1", RECIPES / "pebr.yaml", [], []).model.path == ""


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["stage1.output_dir=/x"], "stage1.output_dir is set by the pipeline"),  # wiring is the pipeline's
        (["stage2.data.train=/x.parquet"], "stage2.data.train is set by the pipeline"),
        (["stage1.model.dtype=bfloat16"], "stage1.model: set model options once, at the top level"),
        (["stage1.beta=-1"], "beta must be >= 0"),  # a section's own validation, named
    ],
)
def test_pipeline_wiring_errors(sets, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        load_config(PipelineConfig, RECIPES / "smoke.yaml", sets)


def test_config_hash_ignores_only_the_output_dir():
    a = load_config(SFTStageConfig, None, ["output_dir=/a"])
    b = load_config(SFTStageConfig, None, ["output_dir=/b"])
    c = load_config(SFTStageConfig, None, ["output_dir=/a", "learning_rate=2e-5"])
    assert config_hash(a) == config_hash(b) != config_hash(c)


@pytest.mark.parametrize("kind", sorted(CONFIG_CLASSES))
def test_every_option_has_help(kind):
    rows = help_table(CONFIG_CLASSES[kind])
    assert rows
    missing = [key for key, _, _, text in rows if not text]
    assert not missing, f"options without help: {missing}"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "sft", "--set", "learning_rat=1e-5"], "unknown config key 'learning_rat'"),  # typo
        (["train", "stage1", "--set", "beta=lots"], "beta: expected a number, got 'lots'"),  # type
        (
            ["train", "stage2", "--config", "/nonexistent.yaml"],
            "config file /nonexistent.yaml does not exist",
        ),
        (
            [
                "train",
                "pipeline",
                "--config",
                str(RECIPES / "smoke.yaml"),
                "--out",
                "/tmp/x",
                "--set",
                "stage9.beta=1",
            ],
            "unknown config key 'stage9'",
        ),  # unknown section
        (["train", "sft"], "output_dir is required"),  # nothing to run
        (["train", "options", "stage3"], "unknown stage 'stage3'"),
    ],
)
def test_cli_config_errors_are_one_red_line(args, message, capsys):
    from trainer.cli import run

    assert run(args) == 2
    err = " ".join(capsys.readouterr().err.split())  # rich wraps long lines
    assert err.startswith("error:")
    assert message in err


def test_cli_prints_the_resolved_config(capsys):
    import yaml

    from trainer.cli import run

    assert (
        run(
            [
                "train",
                "stage2",
                "--config",
                str(RECIPES / "stage2.yaml"),
                "--set",
                "beta=0.02",
                "--print-config",
            ]
        )
        == 0
    )
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["beta"] == 0.02
    assert cfg["reward_preset"] == "pebr_stage2"
    assert cfg["zero_adv"]["enabled"] is False
