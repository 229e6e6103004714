"""Tiny local Qwen2.5-VL-architecture models with random weights.

No model can be downloaded where pebr is tested, so the platform builds its own: the real
Qwen2.5-VL architecture (window-attention vision tower, patch merger, M-RoPE language model)
shrunk to well under a million parameters (``nano``, for unit tests) or about five million
(``small``, for the CPU demo), with

- a byte-level BPE tokenizer trained here, on the synthetic corpus when one is given, carrying
  Qwen's special tokens at the same names so prompts look exactly like Qwen2.5-VL prompts;
- a chat template in Qwen2-VL's layout whose assistant turns are wrapped in
  ``{% generation %}`` markers, so TRL's ``assistant_only_loss`` works;
- an image-only processor (:class:`trainer.vlm.Qwen2_5_VLImageOnlyProcessor`): no torchvision,
  no video processor.

The directory is written with ``save_pretrained`` and reloads with ``AutoProcessor`` and
``AutoModelForImageTextToText`` after ``import trainer.vlm``. Building is deterministic for a
seed and idempotent: a directory already holding the same build is left alone.

Example::

    from trainer.tiny import build_tiny_vlm
    summary = build_tiny_vlm("runs/tiny", preset="nano", seed=0)
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transformers import Qwen2_5_VLConfig, Qwen2Tokenizer

log = logging.getLogger(__name__)

#: Written next to the model; its fingerprint decides whether a rebuild is needed.
MANIFEST_NAME = "pebr_tiny.json"
#: Bumped whenever the build changes in a way that makes old directories stale.
BUILD_FORMAT = 1

EOS_TOKEN = "<|im_end|>"
PAD_TOKEN = "<|endoftext|>"
IMAGE_TOKEN = "<|image_pad|>"
VIDEO_TOKEN = "<|video_pad|>"
VISION_START_TOKEN = "<|vision_start|>"
VISION_END_TOKEN = "<|vision_end|>"
#: Qwen2.5-VL's special tokens in Qwen's id order; they get the first ids of the tiny vocabulary.
SPECIAL_TOKENS: tuple[str, ...] = (
    PAD_TOKEN,
    "<|im_start|>",
    EOS_TOKEN,
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    VISION_START_TOKEN,
    VISION_END_TOKEN,
    "<|vision_pad|>",
    IMAGE_TOKEN,
    VIDEO_TOKEN,
)
DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant."
#: The tokenizer's model_max_length, Qwen2.5-VL's.
TOKENIZER_MAX_LENGTH = 32768

#: File of the chat template (Qwen2-VL's prompt layout with generation markers).
CHAT_TEMPLATE_FILE = "qwen_vl_chat_template.jinja"


def chat_template() -> str:
    """The tiny models' chat template: Qwen2.5-VL's prompt layout, with ``{% generation %}``
    around assistant content + ``<|im_end|>`` for assistant-only loss."""
    from importlib.resources import files

    return files("trainer").joinpath(CHAT_TEMPLATE_FILE).read_text(encoding="utf-8")


@dataclass(frozen=True)
class TinyPreset:
    """Sizes of one tiny model. Architecture values follow Qwen2.5-VL, only smaller."""

    name: str
    #: Vocabulary size: the BPE tokenizer's target (special tokens included) and the number of
    #: embedding rows. A small corpus can run out of merges first; the rows beyond the
    #: tokenizer are then padding, as in Qwen's own checkpoints (151,936 rows, 151,665 tokens),
    #: so a preset has the same size whatever the corpus.
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    #: M-RoPE split of the rotary half-dimension into (temporal, height, width); Qwen2.5-VL uses
    #: 1/4, 3/8, 3/8 of it, and the parts must sum to head_dim / 2.
    mrope_section: tuple[int, int, int]
    vision_depth: int
    vision_hidden_size: int
    vision_intermediate_size: int
    vision_num_heads: int
    #: Vision blocks with full attention; the others attend within windows (Qwen2.5-VL's design).
    vision_fullatt_block_indexes: tuple[int, ...]
    #: Image size bounds of the image processor, in pixels (area).
    min_pixels: int
    max_pixels: int
    patch_size: int = 14
    spatial_merge_size: int = 2
    temporal_patch_size: int = 2
    #: Window of the vision window attention, in pixels (Qwen2.5-VL: 112 = 4 merged patches).
    window_size: int = 112
    max_position_embeddings: int = 4096
    rope_theta: float = 1_000_000.0
    rms_norm_eps: float = 1e-6
    initializer_range: float = 0.02
    description: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        head_dim, rest = divmod(self.hidden_size, self.num_attention_heads)
        if rest:
            raise ValueError(
                f"preset {self.name!r}: hidden_size {self.hidden_size} is not a multiple of "
                f"num_attention_heads {self.num_attention_heads}"
            )
        if sum(self.mrope_section) * 2 != head_dim:
            raise ValueError(
                f"preset {self.name!r}: mrope_section {self.mrope_section} must sum to head_dim / 2 = {head_dim // 2}"
            )
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                f"preset {self.name!r}: num_attention_heads must be a multiple of num_key_value_heads"
            )
        if self.vision_hidden_size % self.vision_num_heads:
            raise ValueError(
                f"preset {self.name!r}: vision_hidden_size must be a multiple of vision_num_heads"
            )
        if any(not 0 <= i < self.vision_depth for i in self.vision_fullatt_block_indexes):
            raise ValueError(
                f"preset {self.name!r}: vision_fullatt_block_indexes must lie in [0, vision_depth)"
            )
        factor = self.patch_size * self.spatial_merge_size
        if not factor * factor <= self.min_pixels <= self.max_pixels:
            raise ValueError(
                f"preset {self.name!r}: need {factor}*{factor} <= min_pixels <= max_pixels, "
                f"got {self.min_pixels}, {self.max_pixels}"
            )
        if self.vocab_size < len(SPECIAL_TOKENS) + 256:
            raise ValueError(f"preset {self.name!r}: vocab_size must cover 256 bytes and the special tokens")


PRESETS: dict[str, TinyPreset] = {
    "nano": TinyPreset(
        name="nano",
        description="under 1M parameters, for unit tests",
        vocab_size=1024,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        mrope_section=(2, 3, 3),
        vision_depth=2,
        vision_hidden_size=32,
        vision_intermediate_size=64,
        vision_num_heads=2,
        vision_fullatt_block_indexes=(1,),
        min_pixels=28 * 28,
        max_pixels=112 * 112,
    ),
    "small": TinyPreset(
        name="small",
        description="about 5M parameters, for the CPU demo",
        vocab_size=6144,
        hidden_size=256,
        intermediate_size=512,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        mrope_section=(8, 12, 12),
        vision_depth=4,
        vision_hidden_size=128,
        vision_intermediate_size=256,
        vision_num_heads=4,
        vision_fullatt_block_indexes=(1, 3),
        min_pixels=28 * 28,
        max_pixels=224 * 224,
    ),
}


def get_preset(preset: str | TinyPreset) -> TinyPreset:
    """The preset named ``preset`` (or ``preset`` itself); a clear error for unknown names."""
    if isinstance(preset, TinyPreset):
        return preset
    if preset not in PRESETS:
        raise ValueError(f"unknown tiny preset {preset!r}; available: {', '.join(sorted(PRESETS))}")
    return PRESETS[preset]


# --- corpus -------------------------------------------------------------------------------


_SHAPES = (
    "circle",
    "square",
    "triangle",
    "star",
    "hexagon",
    "rectangle",
    "diamond",
    "ellipse",
    "pentagon",
    "arrow",
)
_COLORS = (
    "red",
    "green",
    "blue",
    "yellow",
    "purple",
    "orange",
    "black",
    "white",
    "gray",
    "pink",
    "brown",
    "cyan",
)
_PLACES = (
    "top left",
    "top right",
    "bottom left",
    "bottom right",
    "center",
    "left side",
    "right side",
    "middle",
)
_OBJECTS = (
    "apple",
    "banana",
    "car",
    "bus",
    "bicycle",
    "dog",
    "cat",
    "bird",
    "horse",
    "chair",
    "table",
    "book",
    "bottle",
    "cup",
    "clock",
    "tree",
    "flower",
    "house",
    "window",
    "door",
    "person",
    "child",
    "boat",
    "airplane",
    "train",
    "ball",
    "kite",
    "umbrella",
    "phone",
    "laptop",
    "sign",
    "road",
    "river",
    "mountain",
)
_MATH = (
    ("the area of the rectangle", "multiply the length by the width"),
    ("the perimeter of the square", "add the four equal sides"),
    ("the measure of angle ABC", "use that the angles of a triangle add up to 180 degrees"),
    ("the radius of the circle", "halve the diameter"),
    ("the value of x in the equation", "isolate x on one side and divide by its coefficient"),
    ("the probability of drawing a red marble", "divide the favourable outcomes by all outcomes"),
    ("the average of the values in the table", "sum the values and divide by how many there are"),
    ("the difference between the tallest and shortest bar", "read both bars from the chart and subtract"),
    ("the slope of the line through points A and B", "divide the change in y by the change in x"),
    ("the total cost of the items", "multiply each price by its quantity and add the results"),
    ("the percentage increase from 2019 to 2020", "divide the increase by the original value"),
    ("the length of the hypotenuse", "apply the Pythagorean theorem to the two legs"),
)

_REASONING = (
    "First, look at the image carefully. Second, compare the objects by size, colour and position. "
    "Because the larger object is closer to the camera, it appears brighter; therefore the smaller one "
    "must be further away. Next, estimate the distance between them in centimetres, metres or kilometres, "
    "and convert minutes into hours or seconds when the question mentions time. Finally, check whether "
    "the result is reasonable: a negative length, an angle above 360 degrees or a probability greater "
    "than one would indicate an error. The statement is true if both conditions hold, otherwise false. "
    "Consider the graph of the function: the horizontal axis shows the year and the vertical axis shows "
    "the population in thousands; the maximum occurs in the third quarter and the minimum in January. "
    "Each row of the table lists a student, their score, grade and weight in kilograms. "
    "Zero, one, two, three, four, five, six, seven, eight, nine, ten, eleven, twelve, twenty, hundred, "
    "thousand, million, half, quarter, double, triple, percent, fraction, decimal, integer, positive, "
    "parallel, perpendicular, vertical, horizontal, diagonal, symmetric, opposite, adjacent, interior, "
    "exterior, volume, cylinder, sphere, cone, cube, prism, pyramid, segment, midpoint, tangent, chord, "
    "arc, sector, inscribed, circumference, congruent, similar, ratio, proportion, median, mode, range."
)


def builtin_corpus() -> Iterator[str]:
    """A deterministic corpus in PeBR's answer layout: questions and sectioned answers about
    counting, colours, shapes, positions, boxes, arithmetic and school geometry.

    It makes the tokenizer learn the section headers (``### Image Description:`` ...) and the
    words of simple visual questions even without data, and it is always added to the data
    corpus so those pieces stay cheap to encode.
    """
    yield DEFAULT_SYSTEM_PROMPT
    yield from _REASONING.split(". ")
    for i, obj in enumerate(_OBJECTS):
        for j, color in enumerate(_COLORS):
            shape = _SHAPES[(i + j) % len(_SHAPES)]
            place = _PLACES[(i * 3 + j) % len(_PLACES)]
            count = (i * len(_COLORS) + j) % 9 + 1
            a, b = (i + 2) * (j + 3), (j + 1) * 7 + i
            question, hint = _MATH[(i + j) % len(_MATH)]
            other = _COLORS[(j + 1) % len(_COLORS)]
            yield f"How many {color} {obj}s are there in the image? Answer with a single number."
            yield f"What color is the {obj} at the {place} of the picture? Is it {color} or {other}?"
            yield f"Find {question}. Give the final answer as a number."
            yield (
                f"### Image Description:\nThe image shows {count} {color} {obj}{'s' if count > 1 else ''} next to "
                f"a {other} {shape}. The {shape} is at the {place}, and the {obj} is partly hidden behind it.\n"
                f"### Rationales:\nThe question asks for {question}, so we {hint}.\n"
                "### Let's think step by step.\n"
                f"### Step 1:\nIdentify every {color} {obj} and the {other} {shape} in the image.\n"
                f"### Step 2:\nThere are {count} of them; {a} + {b} = {a + b}, {a} - {b} = {a - b}, "
                f"{a} * {count} = {a * count} and {a} / 2 = {a / 2}.\n"
                f"### Step 3:\nTherefore, {question} is {a + b}.\n"
                f"### The final answer is: {a + b}"
            )
            yield (
                f"Which option describes the {shape} near the {obj}? Choices: (A) {color} (B) {other} "
                f"(C) {_COLORS[(j + 2) % len(_COLORS)]} (D) none of these.\n"
                f"Locate the {obj}: its bounding box is [{a}, {b}, {a + 40 + j}, {b + 30 + i}].\n"
                f"### The final answer is: {'ABCD'[(i + j) % 4]}"
            )


def _strip_image_tags(text: str) -> str:
    from curation.convert import strip_image_tags

    return strip_image_tags(text)


def _load_json_list(path: Path) -> list[Any]:
    import orjson

    try:
        data = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of records, got {type(data).__name__}")
    return data


def _check_data_dir(data_dir: Path) -> None:
    if not data_dir.is_dir():
        raise FileNotFoundError(f"data directory {data_dir} does not exist")
    if not (data_dir / "sft.json").exists() and not (data_dir / "rl.json").exists():
        raise FileNotFoundError(f"{data_dir} holds neither sft.json nor rl.json")


def corpus_from_data_dir(data_dir: str | os.PathLike[str]) -> Iterator[str]:
    """Texts of a data directory for tokenizer training.

    Reads ``sft.json`` (Mulberry / LLaMA-Factory sharegpt: every message's ``content``) and
    ``rl.json`` (PeBR GRPO: ``problem`` and ``answer``) when present, with ``<image>`` tags
    removed. A directory holding neither is an error (it is almost certainly the wrong one).
    """
    data_dir = Path(data_dir)
    _check_data_dir(data_dir)
    sft, rl = data_dir / "sft.json", data_dir / "rl.json"
    if sft.exists():
        for i, record in enumerate(_load_json_list(sft)):
            messages = record.get("messages") if isinstance(record, dict) else None
            if not isinstance(messages, list):
                raise ValueError(f"{sft}: record {i} has no 'messages' list")
            for message in messages:
                content = message.get("content") if isinstance(message, dict) else None
                if not isinstance(content, str):
                    raise ValueError(f"{sft}: record {i} has a message without string 'content'")
                yield _strip_image_tags(content)
    if rl.exists():
        for i, record in enumerate(_load_json_list(rl)):
            if not isinstance(record, dict) or not isinstance(record.get("problem"), str):
                raise ValueError(f"{rl}: record {i} has no string 'problem'")
            yield _strip_image_tags(record["problem"])
            yield str(record.get("answer", ""))


def data_fingerprint(data_dir: str | os.PathLike[str] | None) -> str:
    """Content hash of the files :func:`corpus_from_data_dir` reads ("builtin" without data)."""
    if data_dir is None:
        return "builtin"
    digest = hashlib.sha256()
    for name in ("sft.json", "rl.json"):
        path = Path(data_dir) / name
        if path.exists():
            digest.update(name.encode())
            with path.open("rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()


# --- tokenizer ----------------------------------------------------------------------------


def train_tokenizer(texts: Iterable[str], vocab_size: int) -> Qwen2Tokenizer:
    """Train a byte-level BPE with Qwen2's pre-tokenizer on ``texts``.

    Qwen's special tokens get ids 0.. in Qwen's order and stay atomic; ``<|im_end|>`` is the eos
    token and ``<|endoftext|>`` the padding token, as in Qwen2.5-VL-Instruct. Any text
    round-trips: bytes never seen in training are still covered by the 256-byte alphabet.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    minimum = len(SPECIAL_TOKENS) + 256
    if vocab_size < minimum:
        raise ValueError(
            f"vocab_size must be at least {minimum} (special tokens + 256 bytes), got {vocab_size}"
        )
    bpe = Tokenizer(models.BPE())
    bpe.normalizer = normalizers.NFC()
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(texts, trainer=trainer)
    state = json.loads(bpe.to_str())["model"]
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in state["merges"]]
    tokenizer = Qwen2Tokenizer(
        vocab=state["vocab"],
        merges=merges,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        unk_token=None,
        model_max_length=TOKENIZER_MAX_LENGTH,
    )
    # Registered as special, the rest of Qwen's markers are matched before BPE; otherwise
    # "<|image_pad|>" would be split into characters and the processor could not find images.
    tokenizer.add_special_tokens(
        {"additional_special_tokens": [t for t in SPECIAL_TOKENS if t not in (EOS_TOKEN, PAD_TOKEN)]}
    )
    return tokenizer


# --- model --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SpecialIds:
    """Ids of the special tokens the config needs."""

    pad: int
    eos: int
    image: int
    video: int
    vision_start: int
    vision_end: int

    @classmethod
    def from_tokenizer(cls, tokenizer: Any) -> SpecialIds:
        ids = {
            "pad": PAD_TOKEN,
            "eos": EOS_TOKEN,
            "image": IMAGE_TOKEN,
            "video": VIDEO_TOKEN,
            "vision_start": VISION_START_TOKEN,
            "vision_end": VISION_END_TOKEN,
        }
        return cls(**{key: int(tokenizer.convert_tokens_to_ids(tok)) for key, tok in ids.items()})

    @classmethod
    def default(cls) -> SpecialIds:
        """The ids :func:`train_tokenizer` assigns (specials first, in Qwen's order)."""
        index = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
        return cls(
            pad=index[PAD_TOKEN],
            eos=index[EOS_TOKEN],
            image=index[IMAGE_TOKEN],
            video=index[VIDEO_TOKEN],
            vision_start=index[VISION_START_TOKEN],
            vision_end=index[VISION_END_TOKEN],
        )


def tiny_config(
    preset: str | TinyPreset, *, vocab_size: int | None = None, ids: SpecialIds | None = None
) -> Qwen2_5_VLConfig:
    """The ``Qwen2_5_VLConfig`` of a preset (vocabulary size defaults to the preset's target)."""
    from transformers import Qwen2_5_VLConfig

    p = get_preset(preset)
    ids = ids or SpecialIds.default()
    text_config = {
        "vocab_size": vocab_size or p.vocab_size,
        "hidden_size": p.hidden_size,
        "intermediate_size": p.intermediate_size,
        "num_hidden_layers": p.num_hidden_layers,
        "num_attention_heads": p.num_attention_heads,
        "num_key_value_heads": p.num_key_value_heads,
        "max_position_embeddings": p.max_position_embeddings,
        "rms_norm_eps": p.rms_norm_eps,
        "initializer_range": p.initializer_range,
        "rope_parameters": {
            "rope_type": "default",
            "rope_theta": p.rope_theta,
            "mrope_section": list(p.mrope_section),
        },
        "bos_token_id": ids.pad,
        "eos_token_id": ids.eos,
        "pad_token_id": ids.pad,
        "tie_word_embeddings": True,
    }
    vision_config = {
        "depth": p.vision_depth,
        "hidden_size": p.vision_hidden_size,
        "intermediate_size": p.vision_intermediate_size,
        "num_heads": p.vision_num_heads,
        "out_hidden_size": p.hidden_size,
        "patch_size": p.patch_size,
        "spatial_merge_size": p.spatial_merge_size,
        "temporal_patch_size": p.temporal_patch_size,
        "window_size": p.window_size,
        "fullatt_block_indexes": list(p.vision_fullatt_block_indexes),
        "initializer_range": p.initializer_range,
    }
    return Qwen2_5_VLConfig(
        text_config=text_config,
        vision_config=vision_config,
        image_token_id=ids.image,
        video_token_id=ids.video,
        vision_start_token_id=ids.vision_start,
        vision_end_token_id=ids.vision_end,
        tie_word_embeddings=True,
    )


def count_parameters(model: Any) -> dict[str, int]:
    """Parameter counts of a Qwen2/2.5-VL model: ``total``, ``vision`` (tower + merger), ``language``.

    Tied embeddings are counted once (``model.parameters()`` deduplicates shared tensors).
    """
    total = sum(p.numel() for p in model.parameters())
    visual = getattr(getattr(model, "model", model), "visual", None)
    vision = sum(p.numel() for p in visual.parameters()) if visual is not None else 0
    return {"total": total, "vision": vision, "language": total - vision}


def preset_parameter_count(preset: str | TinyPreset, *, vocab_size: int | None = None) -> dict[str, int]:
    """Parameter counts of a preset, computed on the meta device (no memory, no tokenizer)."""
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    with torch.device("meta"):
        model = Qwen2_5_VLForConditionalGeneration(tiny_config(preset, vocab_size=vocab_size))
    return count_parameters(model)


def image_processor_for(preset: str | TinyPreset) -> Any:
    """Qwen2-VL's PIL image processor (no torchvision) with the preset's pixel bounds."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    p = get_preset(preset)
    return Qwen2VLImageProcessorPil(
        min_pixels=p.min_pixels,
        max_pixels=p.max_pixels,
        patch_size=p.patch_size,
        temporal_patch_size=p.temporal_patch_size,
        merge_size=p.spatial_merge_size,
    )


def _fingerprint(preset: TinyPreset, seed: int, data: str) -> str:
    payload = {"format": BUILD_FORMAT, "preset": asdict(preset), "seed": seed, "data": data}
    payload["preset"].pop("description", None)
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def read_manifest(model_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The ``pebr_tiny.json`` of a directory, or None when it holds no tiny model."""
    path = Path(model_dir) / MANIFEST_NAME
    if not path.exists():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def build_tiny_vlm(
    out_dir: str | os.PathLike[str],
    *,
    preset: str | TinyPreset = "nano",
    data_dir: str | os.PathLike[str] | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Build a tiny Qwen2.5-VL-architecture model, its tokenizer and processor into ``out_dir``.

    Returns a summary (preset, seed, parameter counts, vocabulary size, paths, build seconds)
    that is also written to ``out_dir/pebr_tiny.json``. When ``out_dir`` already holds a build
    with the same preset, seed and data fingerprint, that summary is returned and nothing is
    rebuilt. A stale tiny build is replaced; a non-empty directory that is not a tiny build is
    refused. The directory is written to a temporary sibling first and renamed into place,
    so an interrupted build never leaves a half-written model behind.
    """
    p = get_preset(preset)
    out_dir = Path(out_dir)
    if data_dir is not None:
        _check_data_dir(Path(data_dir))
    fingerprint = _fingerprint(p, seed, data_fingerprint(data_dir))

    existing = read_manifest(out_dir) if out_dir.is_dir() else None
    if existing is not None and existing.get("fingerprint") == fingerprint:
        log.info("tiny model in %s is up to date (preset %s, seed %d); not rebuilding", out_dir, p.name, seed)
        return {**existing, "path": str(out_dir), "reused": True}
    if out_dir.exists() and existing is None and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise FileExistsError(f"{out_dir} exists and does not hold a tiny pebr model; choose another --out")
    if existing is not None:
        log.info("tiny model in %s was built with other settings; rebuilding", out_dir)

    started = time.perf_counter()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    # A unique hidden sibling (same file system, so the final rename is atomic); plain mkdir
    # so the directory gets the usual permissions rather than mkdtemp's 0700.
    staging = out_dir.parent / f".{out_dir.name}.building-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        summary = _build_into(staging, p, data_dir=data_dir, seed=seed)
        summary.update(
            fingerprint=fingerprint,
            data_dir=str(data_dir) if data_dir is not None else None,
            build_seconds=round(time.perf_counter() - started, 2),
        )
        (staging / MANIFEST_NAME).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        staging.rename(out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log.info(
        "built tiny %s model in %s: %d parameters, vocab %d, %.1f s",
        p.name,
        out_dir,
        summary["parameters"]["total"],
        summary["vocab_size"],
        summary["build_seconds"],
    )
    return {**summary, "path": str(out_dir), "reused": False}


def _build_into(
    out: Path, p: TinyPreset, *, data_dir: str | os.PathLike[str] | None, seed: int
) -> dict[str, Any]:
    import itertools

    import torch
    from transformers import GenerationConfig, Qwen2_5_VLForConditionalGeneration

    from trainer.vlm import Qwen2_5_VLImageOnlyProcessor

    texts: Iterable[str] = builtin_corpus()
    if data_dir is not None:
        texts = itertools.chain(texts, corpus_from_data_dir(data_dir))
    tokenizer = train_tokenizer(texts, p.vocab_size)
    ids = SpecialIds.from_tokenizer(tokenizer)
    if ids != SpecialIds.default():
        raise RuntimeError(f"special token ids moved during tokenizer training: {ids}")
    processor = Qwen2_5_VLImageOnlyProcessor(
        image_processor=image_processor_for(p), tokenizer=tokenizer, chat_template=chat_template()
    )

    if len(tokenizer) > p.vocab_size:
        raise RuntimeError(f"tokenizer has {len(tokenizer)} tokens, more than the preset's {p.vocab_size}")
    config = tiny_config(p, ids=ids)
    # Weights depend on the seed only: a local generator state, restored afterwards, so that
    # building a model does not disturb the caller's random stream.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2_5_VLForConditionalGeneration(config)
    model.eval()
    model.generation_config = GenerationConfig(
        bos_token_id=ids.pad,
        eos_token_id=[ids.eos, ids.pad],
        pad_token_id=ids.pad,
        do_sample=False,
    )
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return {
        "preset": p.name,
        "seed": seed,
        "architecture": type(model).__name__,
        "parameters": count_parameters(model),
        "vocab_size": len(tokenizer),
        "embedding_rows": p.vocab_size,
        "min_pixels": p.min_pixels,
        "max_pixels": p.max_pixels,
        "processor_class": type(processor).__name__,
        "preset_config": {k: v for k, v in asdict(p).items() if k != "description"},
    }
