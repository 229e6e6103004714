"""Image-description alignment with a CLIP-family model loaded from a local directory.

PeBR scores the ``### Image Description:`` section of a response against the first image
with FG-CLIP (large, 336 px): the cosine similarity of the two embeddings maps to a reward of
1.0 at ``>= 0.4`` and ``similarity / 0.4`` below (:func:`rewards.caption.threshold_map`).

:class:`ClipAligner` loads any transformers CLIP-style model that has
``get_image_features`` / ``get_text_features`` (CLIP, MetaCLIP, FG-CLIP through
``trust_remote_code``) on first use, scores in batches, and caches image embeddings by
content, since the 8 rollouts of a prompt share one image.

Images may be PIL images, file paths, raw bytes or ``{"bytes", "path"}`` structs (paths
relative to ``image_root``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

#: Environment variable naming a local CLIP/FG-CLIP directory when a preset sets none.
CLIP_ENV = "PEBR_CLIP_MODEL"


@dataclass(frozen=True)
class ClipOptions:
    """How to load and run a CLIP-family model."""

    model_dir: str
    batch_size: int = 16
    device: str = "cpu"
    trust_remote_code: bool = False
    #: transformers auto class that loads the model (FG-CLIP's remote code registers
    #: ``AutoModelForCausalLM``).
    auto_class: str = "AutoModel"
    #: Token limit of the text tower (77 for CLIP; FG-CLIP's long-caption mode takes 248).
    text_max_length: int = 77
    #: Extra keyword arguments for ``get_text_features`` (FG-CLIP: ``{"walk_short_pos": false}``).
    text_kwargs: Mapping[str, Any] = field(default_factory=dict)
    #: Image embeddings kept in memory (least recently used are dropped).
    cache_size: int = 4096


def load_image(image: Any, image_root: str | None = None):
    """A PIL RGB image from a PIL image, a path, bytes or a ``{"bytes", "path"}`` struct."""
    import io

    from PIL import Image

    if isinstance(image, Image.Image):
        return image.convert("RGB")
    if isinstance(image, Mapping):
        if image.get("bytes") is not None:
            return Image.open(io.BytesIO(image["bytes"])).convert("RGB")
        image = image.get("path")
        if not image:
            raise ValueError("an image struct needs 'bytes' or a 'path'")
    if isinstance(image, (bytes, bytearray, memoryview)):
        return Image.open(io.BytesIO(bytes(image))).convert("RGB")
    if isinstance(image, (str, os.PathLike)):
        path = os.fspath(image)
        if image_root and not os.path.isabs(path):
            path = os.path.join(image_root, path)
        if not os.path.exists(path):
            hint = "" if image_root else " (relative paths need an image root)"
            raise FileNotFoundError(f"image not found: {path}{hint}")
        with Image.open(path) as img:
            return img.convert("RGB")
    raise TypeError(f"cannot read an image from {type(image).__name__}")


def _image_key(image: Any, image_root: str | None) -> str | None:
    """A cache key for an image: a digest of its bytes, or its path with size and mtime."""
    if isinstance(image, Mapping):
        if image.get("bytes") is not None:
            image = image["bytes"]
        else:
            image = image.get("path")
    if isinstance(image, (bytes, bytearray, memoryview)):
        return "sha256:" + hashlib.sha256(bytes(image)).hexdigest()
    if isinstance(image, (str, os.PathLike)):
        path = os.fspath(image)
        if image_root and not os.path.isabs(path):
            path = os.path.join(image_root, path)
        try:
            st = os.stat(path)
        except OSError:
            return None
        return f"path:{os.path.abspath(path)}:{st.st_size}:{st.st_mtime_ns}"
    return None  # PIL images in memory: not cached (no cheap stable key)


def _features(output: Any):
    import torch

    if isinstance(output, torch.Tensor):
        return output
    for name in ("pooler_output", "image_embeds", "text_embeds"):
        value = getattr(output, name, None)
        if isinstance(value, torch.Tensor):
            return value
    raise TypeError(f"cannot read embeddings from a {type(output).__name__}")


class ClipAligner:
    """Cosine similarity between texts and images with a local CLIP-family model."""

    def __init__(self, options: ClipOptions):
        if not os.path.isdir(options.model_dir):
            raise FileNotFoundError(
                f"CLIP model directory not found: {options.model_dir!r} (set the preset's "
                f"alignment.clip_model or {CLIP_ENV})"
            )
        self.options = options
        self._model = self._tokenizer = self._processor = None
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, Any] = OrderedDict()
        self.cache_hits = 0
        self.cache_misses = 0
        self.image_batches = 0
        self.text_batches = 0

    def _load(self) -> None:
        with self._lock:
            if self._model is not None:
                return
            import transformers

            opts = self.options
            log.info("loading CLIP-family model from %s", opts.model_dir)
            auto = getattr(transformers, opts.auto_class)
            self._model = (
                auto.from_pretrained(opts.model_dir, trust_remote_code=opts.trust_remote_code)
                .to(opts.device)
                .eval()
            )
            self._tokenizer = transformers.AutoTokenizer.from_pretrained(
                opts.model_dir, trust_remote_code=opts.trust_remote_code
            )
            self._processor = transformers.AutoImageProcessor.from_pretrained(
                opts.model_dir, trust_remote_code=opts.trust_remote_code
            )

    def encode_texts(self, texts: Sequence[str]):
        """L2-normalised text embeddings, in batches."""
        import torch

        self._load()
        opts = self.options
        out = []
        for start in range(0, len(texts), opts.batch_size):
            chunk = [t or "" for t in texts[start : start + opts.batch_size]]
            batch = self._tokenizer(
                chunk,
                padding="max_length",
                truncation=True,
                max_length=opts.text_max_length,
                return_tensors="pt",
            ).to(opts.device)
            with torch.inference_mode():
                feats = _features(
                    self._model.get_text_features(
                        input_ids=batch["input_ids"],
                        attention_mask=batch.get("attention_mask"),
                        **dict(opts.text_kwargs),
                    )
                )
            self.text_batches += 1
            out.append(torch.nn.functional.normalize(feats.float(), dim=-1).cpu())
        return torch.cat(out)

    def encode_images(self, images: Sequence[Any], image_root: str | None = None):
        """L2-normalised image embeddings; cached ones are not recomputed."""
        import torch

        self._load()
        opts = self.options
        keys = [_image_key(img, image_root) for img in images]
        result: list[Any] = [None] * len(images)
        todo: dict[str, list[int]] = {}  # one computation per distinct image in this call
        uncached: list[int] = []
        with self._lock:
            for i, key in enumerate(keys):
                if key is not None and key in self._cache:
                    self._cache.move_to_end(key)
                    result[i] = self._cache[key]
                    self.cache_hits += 1
                elif key is not None and key in todo:
                    todo[key].append(i)
                    self.cache_hits += 1
                else:
                    self.cache_misses += 1
                    uncached.append(i)
                    if key is not None:
                        todo[key] = [i]
        for start in range(0, len(uncached), opts.batch_size):
            idx = uncached[start : start + opts.batch_size]
            pixels = self._processor(
                images=[load_image(images[i], image_root) for i in idx], return_tensors="pt"
            )["pixel_values"].to(opts.device)
            with torch.inference_mode():
                feats = _features(self._model.get_image_features(pixel_values=pixels))
            self.image_batches += 1
            feats = torch.nn.functional.normalize(feats.float(), dim=-1).cpu()
            with self._lock:
                for row, i in enumerate(idx):
                    result[i] = feats[row]
                    key = keys[i]
                    if key is None:
                        continue
                    for j in todo.get(key, []):
                        result[j] = feats[row]
                    self._cache[key] = feats[row]
                    while len(self._cache) > opts.cache_size:
                        self._cache.popitem(last=False)
        return torch.stack(result) if result else torch.zeros(0, 0)

    def similarity(
        self, texts: Sequence[str], images: Sequence[Any], image_root: str | None = None
    ) -> list[float]:
        """Cosine similarity of ``texts[i]`` and ``images[i]`` for each i."""
        if len(texts) != len(images):
            raise ValueError(f"got {len(texts)} texts for {len(images)} images")
        if not texts:
            return []
        t = self.encode_texts(list(texts))
        v = self.encode_images(list(images), image_root)
        return [float(x) for x in (t * v).sum(-1)]


_ALIGNERS: dict[str, ClipAligner] = {}
_ALIGNERS_LOCK = threading.Lock()


def get_aligner(options: ClipOptions) -> ClipAligner:
    """The shared aligner for these options (one model load per process)."""
    key = repr(options)  # text_kwargs is a dict, so the options are keyed by their repr
    with _ALIGNERS_LOCK:
        if key not in _ALIGNERS:
            _ALIGNERS[key] = ClipAligner(options)
        return _ALIGNERS[key]
