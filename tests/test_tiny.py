"""Tiny Qwen2.5-VL models: presets and budgets, determinism, idempotent builds, the tokenizer,
the chat template and its assistant-only mask, ``pebr model tiny``."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file

from trainer.cli import run
from trainer.tiny import (
    DEFAULT_SYSTEM_PROMPT,
    MANIFEST_NAME,
    PRESETS,
    SPECIAL_TOKENS,
    SpecialIds,
    build_tiny_vlm,
    builtin_corpus,
    corpus_from_data_dir,
    preset_parameter_count,
    train_tokenizer,
)

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(builtin_corpus(), PRESETS["nano"].vocab_size)


# --- presets ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("preset", "low", "high"),
    [
        ("nano", 100_000, 1_000_000),  # unit-test model: under 1M, vision tower included
        ("small", 4_000_000, 6_000_000),  # CPU demo model: about 5M
    ],
)
def test_preset_parameter_budget(preset, low, high):
    counts = preset_parameter_count(preset)
    assert low <= counts["total"] < high
    assert counts["vision"] > 0
    assert counts["language"] > 0
    assert counts["vision"] + counts["language"] == counts["total"]


def test_built_model_has_preset_size_and_vocab(tiny_nano_dir):
    manifest = json.loads((tiny_nano_dir / MANIFEST_NAME).read_text())
    assert manifest["parameters"] == preset_parameter_count("nano")
    # the built-in corpus is rich enough to fill the nano vocabulary
    assert manifest["vocab_size"] == PRESETS["nano"].vocab_size
    assert manifest["processor_class"] == "Qwen2_5_VLImageOnlyProcessor"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"mrope_section": (2, 3, 4)}, "mrope_section"),  # must sum to head_dim / 2
        ({"hidden_size": 66}, "multiple of"),  # heads must divide hidden size
        ({"num_key_value_heads": 3}, "num_key_value_heads"),  # GQA groups must be whole
        ({"vision_fullatt_block_indexes": (5,)}, "vision_fullatt_block_indexes"),  # beyond depth
        ({"min_pixels": 100}, "min_pixels"),  # below one merged patch (28x28)
        ({"vocab_size": 100}, "vocab_size"),  # cannot hold the byte alphabet
    ],
)
def test_invalid_preset_is_rejected(change, message):
    with pytest.raises(ValueError, match=message):
        replace(PRESETS["nano"], **change)


def test_unknown_preset_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="available: nano, small"):
        build_tiny_vlm(tmp_path / "m", preset="huge")


# --- determinism and idempotency ----------------------------------------------------------


def test_same_seed_same_weights_and_tokenizer(tmp_path, tiny_nano_dir):
    other = build_tiny_vlm(tmp_path / "again", preset="nano", seed=0)
    assert not other["reused"]
    a = load_file(tiny_nano_dir / "model.safetensors")
    b = load_file(tmp_path / "again" / "model.safetensors")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (tiny_nano_dir / "tokenizer.json").read_text() == (
        tmp_path / "again" / "tokenizer.json"
    ).read_text()


def test_other_seed_other_weights(tmp_path, tiny_nano_dir):
    build_tiny_vlm(tmp_path / "seed1", preset="nano", seed=1)
    a = load_file(tiny_nano_dir / "model.safetensors")
    b = load_file(tmp_path / "seed1" / "model.safetensors")
    # saved under Qwen2.5-VL checkpoint names
    for key in ("model.embed_tokens.weight", "visual.patch_embed.proj.weight"):
        assert not torch.equal(a[key], b[key]), key


def test_building_does_not_disturb_the_callers_random_stream(tmp_path):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    build_tiny_vlm(tmp_path / "m", preset="nano", seed=7)
    assert torch.equal(torch.rand(3), expected)


def test_rebuild_is_skipped_when_up_to_date_and_redone_when_settings_change(tmp_path):
    out = tmp_path / "m"
    first = build_tiny_vlm(out, preset="nano", seed=0)
    weights = out / "model.safetensors"
    stamp = weights.stat().st_mtime_ns
    second = build_tiny_vlm(out, preset="nano", seed=0)
    assert second["reused"]
    assert second["fingerprint"] == first["fingerprint"]
    assert weights.stat().st_mtime_ns == stamp  # untouched

    third = build_tiny_vlm(out, preset="nano", seed=3)
    assert not third["reused"]
    assert json.loads((out / MANIFEST_NAME).read_text())["seed"] == 3
    # no staging directories left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_refuses_to_overwrite_a_foreign_directory(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="does not hold a tiny pebr model"):
        build_tiny_vlm(out, preset="nano")
    assert (out / "notes.txt").read_text() == "keep me"


# --- corpus and tokenizer -----------------------------------------------------------------


def _write_data(data_dir, word):
    data_dir.mkdir()
    sft = [
        {
            "messages": [
                {"role": "user", "content": f"<image>Is there a {word} here?"},
                {
                    "role": "assistant",
                    "content": f"### Image Description:\nA {word}.\n### The final answer is: yes",
                },
            ],
            "images": ["a.png"],
        }
    ] * 50
    rl = [{"qid": "1", "problem": f"<image>Count the {word}s.", "answer": "3", "images": ["a.png"]}] * 50
    (data_dir / "sft.json").write_text(json.dumps(sft))
    (data_dir / "rl.json").write_text(json.dumps(rl))


def test_corpus_from_data_dir_reads_messages_problems_and_answers(tmp_path):
    _write_data(tmp_path / "data", "quokka")
    texts = list(corpus_from_data_dir(tmp_path / "data"))
    assert texts[:2] == [
        "Is there a quokka here?",
        "### Image Description:\nA quokka.\n### The final answer is: yes",
    ]
    assert "Count the quokkas." in texts
    assert "3" in texts
    assert not any("<image>" in t for t in texts)


@pytest.mark.parametrize(
    ("files", "error", "message"),
    [
        ({}, FileNotFoundError, "neither sft.json nor rl.json"),  # wrong directory
        ({"sft.json": "{not json"}, ValueError, "sft.json: not valid JSON"),  # broken file
        ({"sft.json": '{"messages": []}'}, ValueError, "expected a JSON list"),  # one record, not a list
        (
            {"sft.json": '[{"images": []}]'},
            ValueError,
            "record 0 has no 'messages'",
        ),  # sharegpt without messages
        (
            {"rl.json": '[{"answer": "1"}]'},
            ValueError,
            "record 0 has no string 'problem'",
        ),  # PeBR without problem
    ],
)
def test_bad_data_dir_is_a_clear_error(tmp_path, files, error, message):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(error, match=message):
        list(corpus_from_data_dir(tmp_path))


def test_data_trains_the_tokenizer_and_changes_the_fingerprint(tmp_path, tiny_nano_dir):
    _write_data(tmp_path / "data", "quokka")
    summary = build_tiny_vlm(tmp_path / "m", preset="nano", data_dir=tmp_path / "data", seed=0)
    assert summary["fingerprint"] != json.loads((tiny_nano_dir / MANIFEST_NAME).read_text())["fingerprint"]
    from transformers import AutoTokenizer

    with_data = AutoTokenizer.from_pretrained(tmp_path / "m")
    without = AutoTokenizer.from_pretrained(tiny_nano_dir)
    assert len(with_data(" quokka")["input_ids"]) == 1
    assert len(without(" quokka")["input_ids"]) > 1


@pytest.mark.parametrize(
    "text",
    [
        "### Image Description:\nThree red circles.\n### The final answer is: 3",  # PeBR layout
        "  leading spaces, tabs\tand trailing newline\n",  # whitespace kept exactly
        "∠ABC = 45°, √2 ≈ 1.414, π r², x ≥ 0",  # maths symbols never seen in training
        "图中有三个红色圆圈。 émoji 🙂",  # other scripts and emoji (byte fallback)
        "[12, 34, 56, 78] (A) (B) 1e-6 3e8",  # boxes, options, scientific notation
    ],
)
def test_tokenizer_round_trips_text(tokenizer, text):
    ids = tokenizer(text)["input_ids"]
    assert tokenizer.decode(ids) == text


def test_tokenizer_compresses_the_pebr_headers(tokenizer):
    # the section header is learned as a handful of tokens, not ~25 bytes
    assert len(tokenizer("### Image Description:")["input_ids"]) <= 5


@pytest.mark.parametrize("token", SPECIAL_TOKENS)
def test_special_tokens_are_atomic_and_keep_qwen_order(tokenizer, token):
    ids = tokenizer(f"a{token}b")["input_ids"]
    assert tokenizer.convert_tokens_to_ids(token) == SPECIAL_TOKENS.index(token)
    assert SPECIAL_TOKENS.index(token) in ids
    assert len(ids) == 3


def test_tokenizer_roles(tokenizer):
    assert tokenizer.eos_token == "<|im_end|>"
    assert tokenizer.pad_token == "<|endoftext|>"
    assert SpecialIds.from_tokenizer(tokenizer) == SpecialIds.default()


def test_tokenizer_rejects_too_small_vocab():
    with pytest.raises(ValueError, match="at least"):
        train_tokenizer(["abc"], 100)


# --- chat template ------------------------------------------------------------------------

SYS = f"<|im_start|>system\n{DEFAULT_SYSTEM_PROMPT}<|im_end|>\n"
IMG = "<|vision_start|><|image_pad|><|vision_end|>"


@pytest.mark.parametrize(
    ("messages", "kwargs", "expected"),
    [
        # plain string content gets Qwen's default system prompt
        (
            [{"role": "user", "content": "Hi"}],
            {"add_generation_prompt": True},
            SYS + "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
        ),
        # an explicit system message replaces the default one; structured system content
        (
            [
                {"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
                {"role": "user", "content": "Hi"},
            ],
            {},
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n",
        ),
        # image parts become the vision placeholder in place, text parts are concatenated
        (
            [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Count."}]}],
            {"add_generation_prompt": True},
            SYS + f"<|im_start|>user\n{IMG}Count.<|im_end|>\n<|im_start|>assistant\n",
        ),
        # two images numbered with add_vision_id, then a finished assistant turn
        (
            [
                {
                    "role": "user",
                    "content": [{"type": "image"}, {"type": "image"}, {"type": "text", "text": "Q"}],
                },
                {"role": "assistant", "content": "A"},
            ],
            {"add_vision_id": True},
            SYS
            + f"<|im_start|>user\nPicture 1: {IMG}Picture 2: {IMG}Q<|im_end|>\n<|im_start|>assistant\nA<|im_end|>\n",
        ),
    ],
)
def test_chat_template_renders_qwen_layout(tiny_nano, messages, kwargs, expected):
    _, processor = tiny_nano
    assert processor.apply_chat_template(messages, tokenize=False, **kwargs) == expected


def test_chat_template_rejects_video(tiny_nano):
    _, processor = tiny_nano
    with pytest.raises(Exception, match="image-only"):
        processor.apply_chat_template([{"role": "user", "content": [{"type": "video"}]}], tokenize=False)


def _assistant_text(processor, messages, **kwargs):
    out = processor.apply_chat_template(
        messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True, **kwargs
    )
    ids, mask = out["input_ids"][0], out["assistant_masks"][0]
    assert len(ids) == len(mask)
    # contiguous runs of masked tokens, decoded
    runs, current = [], []
    for token, keep in zip(ids, mask, strict=True):
        if keep:
            current.append(token)
        elif current:
            runs.append(current)
            current = []
    if current:
        runs.append(current)
    return [processor.tokenizer.decode(run) for run in runs]


def test_assistant_mask_covers_exactly_assistant_text_and_stop_token(tiny_nano):
    _, processor = tiny_nano
    messages = [
        {"role": "user", "content": "How many?"},
        {"role": "assistant", "content": "### The final answer is: 3"},
        {"role": "user", "content": [{"type": "text", "text": "Sure?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Yes."}]},
    ]
    assert _assistant_text(processor, messages) == ["### The final answer is: 3<|im_end|>", "Yes.<|im_end|>"]


def test_assistant_mask_stays_aligned_after_image_expansion(tiny_nano):
    from PIL import Image

    _, processor = tiny_nano
    messages = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Count."}]},
        {"role": "assistant", "content": "3"},
    ]
    images = [Image.new("RGB", (112, 112), "red")]
    assert _assistant_text(processor, messages, images=images) == ["3<|im_end|>"]


def test_trl_accepts_the_template_for_assistant_only_loss(tiny_nano):
    from trl.chat_template_utils import has_generation_markers, is_chat_template_stop_token_trained

    _, processor = tiny_nano
    assert has_generation_markers(processor.chat_template)
    assert is_chat_template_stop_token_trained(processor)


# --- CLI ----------------------------------------------------------------------------------


def test_cli_model_tiny_builds_then_reuses(tmp_path, capsys):
    out = tmp_path / "m"
    assert run(["model", "tiny", "--out", str(out), "--preset", "nano", "--seed", "2"]) == 0
    assert "built" in capsys.readouterr().out
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert (manifest["preset"], manifest["seed"]) == ("nano", 2)
    assert run(["model", "tiny", "--out", str(out), "--preset", "nano", "--seed", "2"]) == 0
    assert "already built" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--preset", "huge"], "unknown tiny preset"),  # bad preset name
        (["--data", "/no/such/dir"], "does not exist"),  # missing data directory
    ],
)
def test_cli_model_tiny_user_errors(tmp_path, capsys, args, message):
    assert run(["model", "tiny", "--out", str(tmp_path / "m"), *args]) == 2
    assert message in " ".join(capsys.readouterr().err.split())  # rich wraps long lines
    assert not (tmp_path / "m").exists()


def test_trl_sft_labels_only_the_assistant_turn(tiny_nano_dir, tmp_path):
    """End to end through TRL's SFTTrainer collator: an image chat with assistant_only_loss
    trains on the answer and its stop token, nothing of the prompt or the image."""
    from datasets import Dataset
    from PIL import Image
    from trl import SFTConfig, SFTTrainer

    from trainer.vlm import load_vlm

    model, processor = load_vlm(tiny_nano_dir)
    row = {
        "messages": [
            {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "How many?"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "### The final answer is: 3"}]},
        ],
        "images": [Image.new("RGB", (112, 84), "red")],
    }
    args = SFTConfig(
        output_dir=str(tmp_path),
        assistant_only_loss=True,
        per_device_train_batch_size=2,
        max_length=None,
        report_to=[],
        use_cpu=True,
    )
    trainer = SFTTrainer(
        model=model, args=args, train_dataset=Dataset.from_list([row, row]), processing_class=processor
    )
    batch = next(iter(trainer.get_train_dataloader()))
    labels = batch["labels"][0]
    assert processor.tokenizer.decode(labels[labels != -100]) == "### The final answer is: 3<|im_end|>"
    assert int((batch["input_ids"][0] == processor.image_token_id).sum()) == 12
