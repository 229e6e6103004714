"""Loading and running VLMs (trainer.vlm): offline reload of tiny models, image tokens, real-checkpoint
layouts, batched generation, ``pebr model info``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from PIL import Image

from trainer.cli import run
from trainer.vlm import (
    GenerationOut,
    Qwen2_5_VLImageOnlyProcessor,
    chat_messages,
    describe_model,
    generate,
    generate_batch,
    load_processor,
    load_vlm,
    prepare_inputs,
)

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]


def _image(size=(200, 150), color="red"):
    return Image.new("RGB", size, color)


# --- offline reload -----------------------------------------------------------------------

RELOAD_SCRIPT = textwrap.dedent(
    """
    import sys, tempfile, torch
    torch.set_num_threads(1)
    import trainer.vlm  # registers the image-only processor; nothing else from pebr is used
    from PIL import Image
    from safetensors.torch import load_file
    from transformers import AutoModelForImageTextToText, AutoProcessor

    path = sys.argv[1]
    processor = AutoProcessor.from_pretrained(path)
    assert type(processor).__name__ == "Qwen2_5_VLImageOnlyProcessor", type(processor)
    assert not hasattr(processor, "video_processor")
    model = AutoModelForImageTextToText.from_pretrained(path)
    # the reloaded weights, saved again (under checkpoint names), equal the built ones
    saved = load_file(f"{path}/model.safetensors")
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        again = load_file(f"{tmp}/model.safetensors")
    assert saved.keys() == again.keys()
    for key, value in saved.items():
        assert torch.equal(again[key], value), key
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is shown?"}]}]
    text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    inputs = processor(text=[text], images=[Image.new("RGB", (64, 48), "blue")], return_tensors="pt")
    out = model.generate(**inputs, max_new_tokens=5, do_sample=False)
    completion = processor.decode(out[0, inputs["input_ids"].shape[1]:])
    assert out.shape[1] == inputs["input_ids"].shape[1] + 5
    print("OK", type(model).__name__, repr(completion))
    """
)


def test_offline_reload_in_a_fresh_process(tiny_nano_dir):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-c", RELOAD_SCRIPT, str(tiny_nano_dir)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "OK Qwen2_5_VLForConditionalGeneration" in proc.stdout


def test_saved_processor_keeps_pixel_bounds(tiny_nano_dir):
    saved = json.loads((tiny_nano_dir / "processor_config.json").read_text())
    assert saved["processor_class"] == "Qwen2_5_VLImageOnlyProcessor"
    assert saved["image_processor"]["size"] == {"shortest_edge": 28 * 28, "longest_edge": 112 * 112}
    processor = load_processor(tiny_nano_dir)
    assert processor.image_processor.size.shortest_edge == 28 * 28
    assert processor.image_processor.size.longest_edge == 112 * 112
    assert type(processor.image_processor).__name__ == "Qwen2VLImageProcessorPil"


# --- image tokens -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sizes", "n_tokens"),
    [
        ([(28, 28)], 1),  # exactly min_pixels: one 28x28 merged patch
        ([(56, 84)], 6),  # within bounds: 4x6 patches of 14 px, merged 2x2
        ([(112, 112)], 16),  # exactly max_pixels: 8x8 patches
        ([(200, 150)], 12),  # above max_pixels: shrunk to 112x84 keeping the aspect ratio
        ([(900, 600)], 12),  # far above: 112x84 as well
        ([(28, 28), (112, 112)], 17),  # two images in one prompt add up
    ],
)
def test_image_pad_tokens_per_image(tiny_nano, sizes, n_tokens):
    _, processor = tiny_nano
    images = [_image(size) for size in sizes]
    inputs = prepare_inputs(processor, [(images, "Describe.")])
    image_id = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert int((inputs["input_ids"] == image_id).sum()) == n_tokens
    assert int(inputs["image_grid_thw"].prod(dim=1).sum()) == 4 * n_tokens
    assert inputs["pixel_values"].shape[0] == 4 * n_tokens


def test_videos_are_rejected_not_dropped(tiny_nano):
    _, processor = tiny_nano
    with pytest.raises(ValueError, match="image-only"):
        processor(text=["hi"], videos=[[_image()]])


# --- real checkpoint layouts --------------------------------------------------------------


@pytest.fixture
def qwen_checkpoint_dir(tiny_nano_dir, tmp_path):
    """The tiny model's files laid out like a real Qwen2.5-VL-Instruct checkpoint: processor
    class Qwen2_5_VLProcessor everywhere, a preprocessor_config.json naming Qwen2VLImageProcessor
    with min/max_pixels, a video_preprocessor_config.json, tokenizer files and chat_template.json."""
    out = tmp_path / "qwen"
    out.mkdir()
    for name in ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json"):
        shutil.copy(tiny_nano_dir / name, out / name)
    image = dict(json.loads((tiny_nano_dir / "processor_config.json").read_text())["image_processor"])
    size = image.pop("size")
    image.update(
        image_processor_type="Qwen2VLImageProcessor",
        processor_class="Qwen2_5_VLProcessor",
        min_pixels=size["shortest_edge"],
        max_pixels=size["longest_edge"],
    )
    (out / "preprocessor_config.json").write_text(json.dumps(image))
    video = {**image, "video_processor_type": "Qwen2VLVideoProcessor"}
    (out / "video_preprocessor_config.json").write_text(json.dumps(video))
    tokenizer_config = json.loads((tiny_nano_dir / "tokenizer_config.json").read_text())
    tokenizer_config["processor_class"] = "Qwen2_5_VLProcessor"
    (out / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    template = (tiny_nano_dir / "chat_template.jinja").read_text()
    (out / "chat_template.json").write_text(json.dumps({"chat_template": template}))
    return out


def test_load_processor_on_a_qwen_checkpoint_layout(qwen_checkpoint_dir):
    processor = load_processor(qwen_checkpoint_dir)
    assert processor.image_processor is not None
    assert processor.image_processor.size.longest_edge == 112 * 112
    assert processor.chat_template is not None
    inputs = prepare_inputs(processor, [([_image((112, 112))], "Describe.")])
    assert int((inputs["input_ids"] == processor.image_token_id).sum()) == 16


def test_load_vlm_on_a_qwen_checkpoint_layout(qwen_checkpoint_dir, tiny_nano):
    model, processor = load_vlm(qwen_checkpoint_dir)
    reference, _ = tiny_nano
    assert type(model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), reference.parameters(), strict=True))
    assert isinstance(generate(model, processor, [_image()], "What is it?", max_new_tokens=3), str)


def test_plain_auto_processor_needs_torchvision_for_qwen_checkpoints(qwen_checkpoint_dir):
    """Why load_processor exists: transformers' own Qwen2_5_VLProcessor builds a video
    processor, which needs torchvision."""
    from transformers import AutoProcessor
    from transformers.utils import is_torchvision_available

    if is_torchvision_available():
        pytest.skip("torchvision is installed here; the real processor loads")
    with pytest.raises(ImportError, match="orchvision"):
        AutoProcessor.from_pretrained(qwen_checkpoint_dir)


def test_tokenizer_only_directory_gets_image_processor_from_same_files(tiny_nano_dir, tmp_path):
    # AutoProcessor alone returns a bare tokenizer here (nothing names a processor class)
    out = tmp_path / "tok"
    out.mkdir()
    shutil.copy(tiny_nano_dir / "tokenizer.json", out / "tokenizer.json")
    config = json.loads((tiny_nano_dir / "tokenizer_config.json").read_text())
    config.pop("processor_class")
    (out / "tokenizer_config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="cannot build an image processor"):
        load_processor(out)
    image = json.loads((tiny_nano_dir / "processor_config.json").read_text())["image_processor"]
    (out / "preprocessor_config.json").write_text(json.dumps(image))
    processor = load_processor(out)
    assert isinstance(processor, Qwen2_5_VLImageOnlyProcessor)


@pytest.mark.parametrize(
    ("make", "error"),
    [
        (lambda p: p.mkdir(), FileNotFoundError),  # directory without config.json
        (lambda p: p.write_text("x"), NotADirectoryError),  # a file
        (lambda p: None, FileNotFoundError),  # nothing there (offline)
    ],
)
def test_load_vlm_bad_paths(tmp_path, make, error):
    path = tmp_path / "model"
    make(path)
    with pytest.raises(error):
        load_vlm(path)


# --- generation ---------------------------------------------------------------------------


def test_chat_messages_layout():
    assert chat_messages("Q?", 2) == [
        {"role": "user", "content": [{"type": "image"}, {"type": "image"}, {"type": "text", "text": "Q?"}]}
    ]
    assert chat_messages("Q?", 0, system="S")[0] == {
        "role": "system",
        "content": [{"type": "text", "text": "S"}],
    }
    with pytest.raises(ValueError, match="n_images"):
        chat_messages("Q?", -1)


PROMPTS = [
    ([_image()], "How many circles are in the image?"),
    ([], "hello"),  # text only
    ([_image((60, 90), "blue"), _image((112, 56), "green")], "Compare the two images. Which is larger?"),
]


def test_left_padded_batch_matches_single_prompts(tiny_nano):
    model, processor = tiny_nano
    batch = prepare_inputs(processor, PROMPTS)
    assert (batch["attention_mask"][:, -1] == 1).all()  # left padding: every row ends on a real token
    with torch.inference_mode():
        batch_logits = model(**batch).logits[:, -1]
        for i, prompt in enumerate(PROMPTS):
            single = model(**prepare_inputs(processor, [prompt])).logits[0, -1]
            torch.testing.assert_close(batch_logits[i], single, rtol=1e-4, atol=1e-5)
    greedy = generate_batch(model, processor, PROMPTS, max_new_tokens=6)
    for prompt, outs in zip(PROMPTS, greedy, strict=True):
        assert (
            outs[0].token_ids == generate_batch(model, processor, [prompt], max_new_tokens=6)[0][0].token_ids
        )


def test_sampling_is_reproducible_per_seed_and_shapes_results(tiny_nano):
    model, processor = tiny_nano
    kwargs = {"n": 3, "max_new_tokens": 8, "temperature": 1.2, "top_p": 0.99}
    first = generate_batch(model, processor, PROMPTS, seed=5, **kwargs)
    assert [len(outs) for outs in first] == [3, 3, 3]
    assert all(
        isinstance(o, GenerationOut) and o.n_tokens == len(o.token_ids) for outs in first for o in outs
    )
    assert generate_batch(model, processor, PROMPTS, seed=5, **kwargs) == first
    assert generate_batch(model, processor, PROMPTS, seed=6, **kwargs) != first
    # the n samples of a prompt differ from each other (a 1024-token vocabulary, 8 tokens each)
    assert len({o.token_ids for o in first[0]}) > 1


def test_finish_reason_stop_and_length(tiny_nano):
    model, processor = tiny_nano
    first = generate_batch(model, processor, PROMPTS[:1], max_new_tokens=4)[0][0]
    assert first.finish_reason == "length"
    assert first.n_tokens == 4
    # make the model's own first greedy token a stop token: generation ends right there
    saved = model.generation_config.eos_token_id
    try:
        model.generation_config.eos_token_id = [*saved, first.token_ids[0]]
        stopped = generate_batch(model, processor, PROMPTS[:1], max_new_tokens=4)[0][0]
    finally:
        model.generation_config.eos_token_id = saved
    assert stopped.finish_reason == "stop"
    assert stopped.n_tokens == 1
    assert stopped.text == ""


def test_generate_returns_text_for_image_and_question(tiny_nano):
    model, processor = tiny_nano
    text = generate(model, processor, [_image()], "What is shown?", max_new_tokens=5, temperature=1.0, seed=1)
    assert isinstance(text, str)
    assert (
        text
        == generate_batch(
            model, processor, [([_image()], "What is shown?")], max_new_tokens=5, temperature=1.0, seed=1
        )[0][0].text
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n": 0}, "n must be"),  # no samples
        ({"max_new_tokens": 0}, "max_new_tokens"),  # nothing to generate
        ({"temperature": -0.1}, "temperature"),  # negative temperature
        ({"top_p": 0.0}, "top_p"),  # empty nucleus
        ({"batch_size": 0}, "batch_size"),  # empty batches
    ],
)
def test_generate_batch_validates_options(tiny_nano, kwargs, message):
    model, processor = tiny_nano
    with pytest.raises(ValueError, match=message):
        generate_batch(model, processor, PROMPTS[:1], **kwargs)


def test_batch_size_chunks_keep_prompt_order(tiny_nano):
    model, processor = tiny_nano
    whole = generate_batch(model, processor, PROMPTS, max_new_tokens=3)
    assert generate_batch(model, processor, PROMPTS, max_new_tokens=3, batch_size=2) == whole


def test_forward_with_labels_trains(tiny_nano_dir):
    """What TRL needs: attention_mask, pixel_values and labels in, a differentiable loss out."""
    model, processor = load_vlm(tiny_nano_dir)
    model.train()
    inputs = prepare_inputs(processor, PROMPTS[:2])
    labels = inputs["input_ids"].masked_fill(inputs["attention_mask"] == 0, -100)
    loss = model(**inputs, labels=labels).loss
    assert torch.isfinite(loss)
    loss.backward()
    assert model.model.visual.patch_embed.proj.weight.grad is not None


# --- model info ---------------------------------------------------------------------------


def test_describe_model(tiny_nano_dir, qwen_checkpoint_dir):
    info = describe_model(tiny_nano_dir)
    assert info["architecture"] == "Qwen2_5_VLForConditionalGeneration"
    assert info["processor_class"] == "Qwen2_5_VLImageOnlyProcessor"
    assert (info["min_pixels"], info["max_pixels"]) == (784, 12544)
    assert info["vocab_size"] == 1024
    assert info["tiny_preset"] == "nano"
    manifest = json.loads((tiny_nano_dir / "pebr_tiny.json").read_text())
    assert info["parameters"] == manifest["parameters"]
    real = describe_model(qwen_checkpoint_dir)
    assert real["parameters"] == info["parameters"]
    assert "tiny_preset" not in real


def test_cli_model_info(tiny_nano_dir, capsys):
    assert run(["model", "info", str(tiny_nano_dir), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["processor_class"] == "Qwen2_5_VLImageOnlyProcessor"
    assert run(["model", "info", str(tiny_nano_dir)]) == 0
    table = capsys.readouterr().out
    assert "Qwen2_5_VLForConditionalGeneration" in table
    assert "784 .. 12,544" in table


def test_cli_model_info_missing_directory(tmp_path, capsys):
    assert run(["model", "info", str(tmp_path / "nope")]) == 2
    assert "does not exist" in " ".join(capsys.readouterr().err.split())  # rich wraps long lines


def test_register_auto_classes_is_idempotent():
    from transformers import Qwen2_5_VLConfig
    from transformers.models.auto.processing_auto import PROCESSOR_MAPPING

    from trainer.vlm import register_auto_classes

    register_auto_classes()
    register_auto_classes()
    assert PROCESSOR_MAPPING[Qwen2_5_VLConfig] is Qwen2_5_VLImageOnlyProcessor
