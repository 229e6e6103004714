"""CLIP alignment with a tiny random CLIP built in the test (no download)."""

from __future__ import annotations

import io

import pytest

torch = pytest.importorskip("torch")

from rewards.alignment import CLIP_ENV, ClipAligner, ClipOptions, load_image  # noqa: E402
from rewards.caption import threshold_map  # noqa: E402
from rewards.presets import get_preset  # noqa: E402

CAPTION = "a red circle and a blue square on white"


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    """A 2-layer CLIP with a word-level tokenizer and the PIL image processor, saved to disk."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
    from transformers import CLIPConfig, CLIPModel, PreTrainedTokenizerFast
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    out = tmp_path_factory.mktemp("tiny_clip")
    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(
        [CAPTION, "the stock market fell", "a green triangle"],
        trainers.WordLevelTrainer(special_tokens=["[PAD]", "[UNK]", "<s>", "</s>"]),
    )
    bos, eos = tok.token_to_id("<s>"), tok.token_to_id("</s>")
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", bos), ("</s>", eos)]
    )
    PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", bos_token="<s>", eos_token="</s>"
    ).save_pretrained(out)
    small = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2}
    config = CLIPConfig(
        text_config={
            **small,
            "vocab_size": tok.get_vocab_size(),
            "max_position_embeddings": 32,
            "eos_token_id": eos,
            "bos_token_id": bos,
            "pad_token_id": 0,
        },
        vision_config={**small, "image_size": 32, "patch_size": 8},
        projection_dim=16,
    )
    torch.manual_seed(0)
    CLIPModel(config).save_pretrained(out)
    CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(
        out
    )
    return str(out)


def _png(color: str) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (40, 30), color).save(buf, format="PNG")
    return buf.getvalue()


def _reference_similarity(model_dir: str, text: str, image: bytes) -> float:
    """Cosine similarity computed directly with transformers, to check the aligner against."""
    from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel

    model = CLIPModel.from_pretrained(model_dir).eval()
    ids = AutoTokenizer.from_pretrained(model_dir)(
        [text], padding="max_length", max_length=16, return_tensors="pt"
    )
    pixels = AutoImageProcessor.from_pretrained(model_dir)(images=[load_image(image)], return_tensors="pt")
    with torch.inference_mode():
        t = model.get_text_features(
            input_ids=ids["input_ids"], attention_mask=ids["attention_mask"]
        ).pooler_output
        v = model.get_image_features(pixel_values=pixels["pixel_values"]).pooler_output
    return float(torch.nn.functional.cosine_similarity(t, v)[0])


def test_similarity_matches_direct_computation(tiny_clip):
    aligner = ClipAligner(ClipOptions(tiny_clip, text_max_length=16))
    image = _png("red")
    (sim,) = aligner.similarity([CAPTION], [image])
    assert sim == pytest.approx(_reference_similarity(tiny_clip, CAPTION, image), abs=1e-5)
    assert -1.0 <= sim <= 1.0


def test_batching_and_image_cache(tiny_clip, tmp_path):
    aligner = ClipAligner(ClipOptions(tiny_clip, batch_size=2, text_max_length=16))
    red, blue = _png("red"), _png("blue")
    (tmp_path / "blue.png").write_bytes(blue)
    texts = [CAPTION, "a green triangle", CAPTION, CAPTION, "a blue square"]
    # the 8 rollouts of a prompt share its image: five texts, two distinct images (one by path)
    images = [red, red, {"bytes": red, "path": None}, "blue.png", {"bytes": None, "path": "blue.png"}]
    sims = aligner.similarity(texts, images, image_root=str(tmp_path))
    assert aligner.text_batches == 3  # 5 texts in batches of 2
    assert aligner.cache_misses == 2  # red once, blue.png once
    assert aligner.image_batches == 1
    # same text, same image -> same similarity, whatever the image's form
    assert sims[2] == pytest.approx(sims[0], abs=1e-6)
    # same text, another image -> another similarity
    assert sims[3] != pytest.approx(sims[0], abs=1e-6)
    again = aligner.similarity([CAPTION], [red])
    assert aligner.image_batches == 1  # served from the cache
    assert again[0] == pytest.approx(sims[0], abs=1e-6)
    # the blue image as bytes is keyed by its digest, not by the file's path: computed once more,
    # with the same result
    assert aligner.similarity([CAPTION], [blue])[0] == pytest.approx(sims[3], abs=1e-6)
    assert aligner.image_batches == 2


def test_cache_is_bounded(tiny_clip):
    aligner = ClipAligner(ClipOptions(tiny_clip, cache_size=1, text_max_length=16))
    aligner.similarity(["a", "b"], [_png("red"), _png("blue")])
    assert len(aligner._cache) == 1


def test_missing_image_file_is_a_clear_error(tiny_clip, tmp_path):
    aligner = ClipAligner(ClipOptions(tiny_clip, text_max_length=16))
    with pytest.raises(FileNotFoundError, match=r"nope\.png"):
        aligner.similarity(["a"], ["nope.png"], image_root=str(tmp_path))


def test_preset_with_clip_backend(tiny_clip):
    threshold = 0.05
    preset = get_preset(
        "pebr_stage1",
        {
            "alignment.backend": "clip",
            "alignment.clip_model": tiny_clip,
            "alignment.threshold": threshold,
            "alignment.clip": {"text_max_length": 16, "batch_size": 4},
        },
    )
    image = _png("red")
    record = {
        "uid": "r1",
        "task": "caption",
        "images": [{"bytes": image, "path": None}],
        "key_words": ["red circle"],
        "reference_caption": CAPTION,
    }
    response = (
        f"### Image Description:\n{CAPTION}\n### Rationales:\nr\n### Step 1:\ns\n### The final answer is: ok"
    )
    result = preset.score(response, record)
    sim = _reference_similarity(tiny_clip, CAPTION, image)
    assert result.details["alignment_backend"] == "clip"
    assert result.details["components"]["alignment"]["similarity"] == pytest.approx(sim, abs=1e-5)
    assert result.components["alignment"] == pytest.approx(threshold_map(sim, threshold), abs=1e-5)
    # a record without an image: alignment does not apply, the total renormalises
    no_image = preset.score(response, {**record, "images": []})
    assert no_image.components["alignment"] is None
    assert no_image.details["renormalised"] is True
    # a response without a description section earns no alignment
    assert preset.score("### The final answer is: ok", record).components["alignment"] == 0.0


def test_clip_backend_without_a_model_fails_at_load(monkeypatch):
    monkeypatch.delenv(CLIP_ENV, raising=False)
    with pytest.raises(ValueError, match=CLIP_ENV):
        get_preset("pebr_stage1", {"alignment.backend": "clip"})
    with pytest.raises(FileNotFoundError, match="not found"):
        get_preset("pebr_stage1", {"alignment.backend": "clip", "alignment.clip_model": "/no/such/dir"})


def test_auto_backend_follows_the_environment(monkeypatch, tiny_clip):
    monkeypatch.delenv(CLIP_ENV, raising=False)
    assert get_preset("pebr_stage1").component("alignment").params["backend"] == "caption"
    monkeypatch.setenv(CLIP_ENV, tiny_clip)
    params = get_preset("pebr_stage1").component("alignment").params
    assert params["backend"] == "clip"
    assert params["clip_model"] == tiny_clip
