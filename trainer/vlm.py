"""Loading and running Qwen2/2.5-VL models: tiny local ones and real checkpoints alike.

Importing this module imports transformers and registers :class:`Qwen2_5_VLImageOnlyProcessor`
with ``AutoProcessor``, so that a directory written by :func:`trainer.tiny.build_tiny_vlm`
reloads with plain ``AutoProcessor.from_pretrained``. Real Qwen2.5-VL checkpoints name
``Qwen2_5_VLProcessor``, which also needs a video processor (torchvision);
:func:`load_processor` loads them image-only where torchvision is missing.

Example::

    from trainer.vlm import generate, load_vlm
    model, processor = load_vlm("runs/tiny")
    text = generate(model, processor, [image], "How many circles are there?", max_new_tokens=32)
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from transformers import AutoModelForImageTextToText, AutoProcessor, ProcessorMixin, Qwen2_5_VLConfig
from transformers.models.qwen2_5_vl.processing_qwen2_5_vl import Qwen2_5_VLProcessor
from transformers.utils import is_torchvision_available

if TYPE_CHECKING:
    from PIL import Image

log = logging.getLogger(__name__)

#: Processor classes of real Qwen-VL checkpoints that load a video processor (torchvision).
VIDEO_PROCESSOR_CLASSES = frozenset({"Qwen2_5_VLProcessor", "Qwen2VLProcessor"})
#: Defaults of :func:`generate_batch`: greedy decoding of a short answer.
DEFAULT_MAX_NEW_TOKENS = 128
DEFAULT_TEMPERATURE = 0.0
DEFAULT_TOP_P = 1.0


class Qwen2_5_VLImageOnlyProcessor(Qwen2_5_VLProcessor):
    """Qwen2.5-VL's processor without the video processor (and so without torchvision).

    Images, text and chat templates behave exactly as in ``Qwen2_5_VLProcessor``; passing
    ``videos`` is an error instead of being ignored.
    """

    # transformers 5 reads the sub-processors from the __init__ signature below (4.x read this
    # list); kept so that the two agree for readers and older tooling.
    attributes = ["image_processor", "tokenizer"]

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        super().__init__(
            image_processor=image_processor,
            tokenizer=tokenizer,
            video_processor=None,
            chat_template=chat_template,
            **kwargs,
        )

    def __call__(self, images=None, text=None, videos=None, **kwargs):
        if videos is not None:
            raise ValueError(f"{type(self).__name__} is image-only: it cannot process videos")
        return super().__call__(images=images, text=text, **kwargs)


_REGISTERED = False


def register_auto_classes() -> None:
    """Register the image-only processor with ``AutoProcessor`` (idempotent).

    ``save_pretrained`` writes its class name as ``processor_class``; ``AutoProcessor`` then
    finds it in this registry. Real checkpoints name transformers' own classes and are not
    affected.
    """
    global _REGISTERED
    if not _REGISTERED:
        AutoProcessor.register(Qwen2_5_VLConfig, Qwen2_5_VLImageOnlyProcessor, exist_ok=True)
        _REGISTERED = True


register_auto_classes()


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def _hub_kwargs(path: str | os.PathLike[str]) -> dict[str, Any]:
    return {"local_files_only": True} if _offline() or Path(path).is_dir() else {}


def check_model_path(path: str | os.PathLike[str]) -> None:
    """Raise ``FileNotFoundError`` (a user error) for a path that cannot hold a model: a file, a
    directory without ``config.json``, or a missing directory while the Hub is offline. Other
    names are left to the Hub."""
    p = Path(path)
    if p.is_dir():
        if not (p / "config.json").is_file():
            raise FileNotFoundError(f"{p} is not a model directory: it has no config.json")
    elif p.exists():
        raise NotADirectoryError(f"{p} is a file; expected a model directory")
    elif _offline() or p.is_absolute() or str(path).startswith((".", "~")):
        raise FileNotFoundError(f"model directory {p} does not exist")


def declared_processor_class(path: str | os.PathLike[str]) -> str | None:
    """The ``processor_class`` a local model directory declares, looked up where transformers
    looks (processor, preprocessor, tokenizer config), or None."""
    path = Path(path)
    for name in ("processor_config.json", "preprocessor_config.json", "tokenizer_config.json"):
        file = path / name
        if file.is_file():
            value = json.loads(file.read_text(encoding="utf-8")).get("processor_class")
            if value:
                return value
    return None


def _has_image_processor(processor: Any) -> bool:
    return isinstance(processor, ProcessorMixin) and getattr(processor, "image_processor", None) is not None


def load_processor(path: str | os.PathLike[str], **kwargs: Any) -> ProcessorMixin:
    """An image-capable processor for the model at ``path``.

    Uses ``AutoProcessor``. A real Qwen2/2.5-VL checkpoint whose processor needs a video
    processor that cannot be built here (no torchvision), or any directory for which
    ``AutoProcessor`` yields only a tokenizer, is loaded with
    :class:`Qwen2_5_VLImageOnlyProcessor` from the same files. Never returns a bare tokenizer:
    raises ``ValueError`` when no image processor can be built.
    """
    kwargs = {**_hub_kwargs(path), **kwargs}
    declared = declared_processor_class(path) if Path(path).is_dir() else None
    if declared in VIDEO_PROCESSOR_CLASSES and not is_torchvision_available():
        log.info("%s declares %s, which needs torchvision; loading it image-only", path, declared)
        return _load_image_only(path, **kwargs)
    try:
        processor = AutoProcessor.from_pretrained(path, **kwargs)
    except ImportError as exc:
        if declared not in VIDEO_PROCESSOR_CLASSES:
            raise
        log.info("%s: %s failed to load (%s); loading it image-only", path, declared, exc)
        return _load_image_only(path, **kwargs)
    if _has_image_processor(processor):
        return processor
    log.info("AutoProcessor gave %s for %s; building an image-only processor", type(processor).__name__, path)
    return _load_image_only(path, **kwargs)


def _load_image_only(path: str | os.PathLike[str], **kwargs: Any) -> ProcessorMixin:
    try:
        processor = Qwen2_5_VLImageOnlyProcessor.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as exc:
        raise ValueError(
            f"cannot build an image processor for {path}: {exc}. A vision-language model directory "
            "needs a preprocessor_config.json (Qwen2-VL image processor) next to its tokenizer files."
        ) from exc
    if not _has_image_processor(processor):
        raise ValueError(f"cannot build an image processor for {path}")
    return processor


def load_vlm(
    path: str | os.PathLike[str], *, dtype: Any = None, device: Any = None
) -> tuple[Any, ProcessorMixin]:
    """Load ``(model, processor)`` from a tiny pebr model or a Qwen2/2.5-VL checkpoint.

    ``dtype`` defaults to the checkpoint's own (``"auto"``); ``device`` to CPU. The model is
    returned in eval mode. Local directories (and everything under ``HF_HUB_OFFLINE=1``) are
    read with ``local_files_only``.
    """
    check_model_path(path)
    hub = _hub_kwargs(path)
    model = AutoModelForImageTextToText.from_pretrained(path, dtype="auto" if dtype is None else dtype, **hub)
    if device is not None:
        model.to(device)
    model.eval()
    return model, load_processor(path, **hub)


def chat_messages(question: str, n_images: int, system: str | None = None) -> list[dict[str, Any]]:
    """A one-turn chat: ``n_images`` image parts, then the question (Qwen2-VL's layout).

    ``question`` is plain text, without ``<image>`` tags (the canonical record's ``question``).
    Without ``system`` the chat template adds its default system prompt.
    """
    if n_images < 0:
        raise ValueError(f"n_images must be >= 0, got {n_images}")
    messages: list[dict[str, Any]] = []
    if system is not None:
        messages.append({"role": "system", "content": [{"type": "text", "text": system}]})
    content: list[dict[str, Any]] = [{"type": "image"} for _ in range(n_images)]
    content.append({"type": "text", "text": question})
    messages.append({"role": "user", "content": content})
    return messages


@dataclass(frozen=True)
class GenerationOut:
    """One sampled completion."""

    #: Decoded text up to (not including) the stop token, special tokens removed.
    text: str
    #: Tokens the model produced, the stop token included.
    n_tokens: int
    #: "stop" when an end-of-sequence token was produced, "length" when max_new_tokens ran out.
    finish_reason: Literal["stop", "length"]
    #: The produced token ids (same span as ``n_tokens``).
    token_ids: tuple[int, ...] = ()


def _eos_ids(model: Any, processor: Any) -> set[int]:
    eos = getattr(model.generation_config, "eos_token_id", None)
    if eos is None:
        eos = processor.tokenizer.eos_token_id
    return set(eos if isinstance(eos, (list, tuple)) else [eos]) - {None}


def prepare_inputs(
    processor: Any,
    prompts: Sequence[tuple[Sequence[Image.Image], str]],
    *,
    system: str | None = None,
) -> Any:
    """Tokenised, left-padded model inputs for ``(images, question)`` prompts."""
    texts, images = [], []
    for i, (prompt_images, question) in enumerate(prompts):
        if not isinstance(question, str):
            raise ValueError(f"prompt {i}: question must be a string, got {type(question).__name__}")
        messages = chat_messages(question, len(prompt_images), system)
        texts.append(processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
        images.extend(prompt_images)
    return processor(
        text=texts, images=images or None, padding=True, padding_side="left", return_tensors="pt"
    )


def generate_batch(
    model: Any,
    processor: Any,
    prompts: Sequence[tuple[Sequence[Image.Image], str]],
    *,
    n: int = 1,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    temperature: float = DEFAULT_TEMPERATURE,
    top_p: float = DEFAULT_TOP_P,
    seed: int | None = 0,
    system: str | None = None,
    batch_size: int | None = None,
    **generate_kwargs: Any,
) -> list[list[GenerationOut]]:
    """``n`` completions for each ``(images, question)`` prompt, batched with left padding.

    ``temperature`` 0 decodes greedily; otherwise it samples with ``top_p``. ``seed`` makes
    sampling reproducible for the same prompts and ``batch_size`` (prompts per forward batch,
    all at once when None) without touching the caller's random state. Other keyword
    arguments (``repetition_penalty``, ``min_new_tokens``, ...) go to ``model.generate``.
    Returns one list of ``n`` :class:`GenerationOut` per prompt, in prompt order.
    """
    import torch

    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")

    sampling: dict[str, Any] = (
        {"do_sample": True, "temperature": temperature, "top_p": top_p}
        if temperature > 0
        else {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
    )
    eos_ids = _eos_ids(model, processor)
    pad_id = processor.tokenizer.pad_token_id
    step = batch_size or max(len(prompts), 1)
    device = next(model.parameters()).device
    results: list[list[GenerationOut]] = []
    # Fork the generator of the device the model runs on (CPU's is always forked), so seeding
    # here leaves the caller's random streams as they were.
    accelerator = device.type != "cpu"
    with torch.random.fork_rng(
        devices=[device] if accelerator else [], device_type=device.type if accelerator else "cuda"
    ):
        if seed is not None:
            torch.manual_seed(seed)
        for start in range(0, len(prompts), step):
            chunk = prompts[start : start + step]
            inputs = prepare_inputs(processor, chunk, system=system).to(device)
            with torch.inference_mode():
                sequences = model.generate(
                    **inputs,
                    max_new_tokens=max_new_tokens,
                    num_return_sequences=n,
                    eos_token_id=sorted(eos_ids),
                    pad_token_id=pad_id,
                    **sampling,
                    **generate_kwargs,
                )
            produced = sequences[:, inputs["input_ids"].shape[1] :].tolist()
            for i in range(len(chunk)):
                results.append([_completion(processor, produced[i * n + j], eos_ids) for j in range(n)])
    return results


def _completion(processor: Any, tokens: list[int], eos_ids: set[int]) -> GenerationOut:
    stop = next((k for k, t in enumerate(tokens) if t in eos_ids), None)
    kept = tokens if stop is None else tokens[: stop + 1]
    body = kept if stop is None else kept[:-1]
    return GenerationOut(
        text=processor.tokenizer.decode(body, skip_special_tokens=True),
        n_tokens=len(kept),
        finish_reason="length" if stop is None else "stop",
        token_ids=tuple(kept),
    )


def generate(
    model: Any,
    processor: Any,
    images: Sequence[Image.Image],
    question: str,
    *,
    system: str | None = None,
    **gen_kwargs: Any,
) -> str:
    """The completion text for one image(s) + question chat.

    ``gen_kwargs`` are :func:`generate_batch`'s options (``max_new_tokens``, ``temperature``,
    ``top_p``, ``seed``, or anything ``model.generate`` takes).
    """
    return generate_batch(model, processor, [(images, question)], system=system, **gen_kwargs)[0][0].text


def describe_model(path: str | os.PathLike[str]) -> dict[str, Any]:
    """What ``pebr model info`` shows: architecture, parameter counts (counted on the meta
    device, without loading weights), vocabulary, image pixel bounds and processor class."""
    import torch
    from transformers import AutoConfig

    from trainer.tiny import count_parameters, read_manifest

    check_model_path(path)
    hub = _hub_kwargs(path)
    config = AutoConfig.from_pretrained(path, **hub)
    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(config)
    processor = load_processor(path, **hub)
    size = dict(getattr(processor.image_processor, "size", {}) or {})
    info: dict[str, Any] = {
        "path": str(path),
        "architecture": type(model).__name__,
        "model_type": config.model_type,
        "parameters": count_parameters(model),
        "vocab_size": len(processor.tokenizer),
        "embedding_rows": int(model.get_input_embeddings().weight.shape[0]),
        "min_pixels": size.get("shortest_edge"),
        "max_pixels": size.get("longest_edge"),
        "processor_class": type(processor).__name__,
        "image_processor_class": type(processor.image_processor).__name__,
    }
    manifest = read_manifest(path) if Path(path).is_dir() else None
    if manifest is not None:
        info["tiny_preset"] = manifest.get("preset")
        info["tiny_seed"] = manifest.get("seed")
    return info
