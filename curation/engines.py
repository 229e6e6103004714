"""Rollout engines: one interface, three backends that produce responses to score.

==============  ==============================================================================
backend         what it does
==============  ==============================================================================
transformers    batched ``generate`` with :func:`trainer.vlm.generate_batch` (CPU or GPU)
vllm            ``LLM.generate`` with images as multi-modal data and ``n`` samples per prompt
                (optional extra: ``pip install 'pebr[vllm]'``; imported lazily)
replay          responses produced elsewhere: PeBR/EasyR1 ``rollout_results.jsonl`` lines
                (``qid``, ``response``, ``score``), or any JSONL/Parquet with an id and a
                response column
==============  ==============================================================================

An engine turns :class:`RolloutRequest` s into :class:`GeneratedSample` s; it never scores
them (the scoring loop in :mod:`curation.difficulty` does, with a reward preset).

Example::

    engine = ReplayEngine("rollout_results.jsonl")
    samples = engine.generate([RolloutRequest("uid1", "How many?", qid="q1", sample_indices=(0, 1))],
                              SamplingParams(n=2))
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

log = logging.getLogger(__name__)

BACKENDS = ("transformers", "vllm", "replay")
#: PeBR-R1's sampling for difficulty buckets: 8 rollouts at temperature 1.2, top-p 0.99;
#: responses of up to 2048 tokens (the RL response budget).
DEFAULT_N = 8
DEFAULT_TEMPERATURE = 1.2
DEFAULT_TOP_P = 0.99
DEFAULT_MAX_NEW_TOKENS = 2048
VLLM_INSTALL_HINT = "pip install 'pebr[vllm]'"


@dataclass(frozen=True)
class SamplingParams:
    """How responses are sampled; ``n`` is the number of samples per question."""

    n: int = DEFAULT_N
    temperature: float = DEFAULT_TEMPERATURE
    top_p: float = DEFAULT_TOP_P
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")

    def with_n(self, n: int) -> SamplingParams:
        return replace(self, n=n)


@dataclass(frozen=True)
class RolloutRequest:
    """One question to answer ``len(sample_indices)`` times.

    ``images`` are image structs (``{"bytes", "path"}``, paths relative to ``image_root``);
    ``qid`` is the record's id in its source layout (PeBR's ``qid``), which replay matches
    before the uid.
    """

    uid: str
    question: str
    images: tuple[Mapping[str, Any], ...] = ()
    sample_indices: tuple[int, ...] = (0,)
    qid: str | None = None
    image_root: str | None = None


@dataclass(frozen=True)
class GeneratedSample:
    """One response. ``replayed_score`` is the score a replayed file carried, if any."""

    text: str
    n_tokens: int | None = None
    finish_reason: str | None = None
    sample_index: int | None = None
    replayed_score: Any = None


@runtime_checkable
class RolloutEngine(Protocol):
    """Anything that answers requests: ``generate`` returns one list per request with
    ``sampling.n`` samples each (a replay engine returns fewer when its file has fewer)."""

    model_id: str
    backend: str

    def generate(
        self, requests: Sequence[RolloutRequest], sampling: SamplingParams
    ) -> list[list[GeneratedSample]]: ...


# ---------------------------------------------------------------------------- helpers


def model_fingerprint(path: str | os.PathLike[str], *, chunk: int = 1 << 20) -> str:
    """``name@hash``: a model id from the directory's config and weights.

    Small files are hashed whole; large ones (weights) by size plus their first and last
    megabyte, so a 15 GB checkpoint is identified in milliseconds.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"model path {p} does not exist")
    h = hashlib.blake2b(digest_size=8)
    files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
    for f in files:
        rel = f.relative_to(p).as_posix() if p.is_dir() else f.name
        size = f.stat().st_size
        h.update(f"{rel}\0{size}\0".encode())
        with open(f, "rb") as fh:
            if size <= 4 * chunk:
                h.update(fh.read())
            else:
                h.update(fh.read(chunk))
                fh.seek(size - chunk)
                h.update(fh.read(chunk))
    return f"{p.resolve().name}@{h.hexdigest()[:12]}"


def load_images(request: RolloutRequest) -> list[Any]:
    """The request's images as RGB PIL images (bytes, or paths under ``image_root``)."""
    from PIL import Image

    out = []
    for i, img in enumerate(request.images):
        if img.get("bytes") is not None:
            source: Any = io.BytesIO(img["bytes"])
        elif img.get("path"):
            source = os.path.join(request.image_root or "", img["path"])
            if not os.path.isfile(source):
                raise FileNotFoundError(
                    f"record {request.uid!r}: image {i} not found at {source} (image root {request.image_root!r})"
                )
        else:
            raise ValueError(f"record {request.uid!r}: image {i} has neither bytes nor a path")
        with Image.open(source) as im:
            out.append(im.convert("RGB"))
    return out


def _batch_seed(seed: int, requests: Sequence[RolloutRequest]) -> int:
    """A seed that depends on the base seed and the exact questions and sample indices."""
    h = hashlib.blake2b(digest_size=8)
    h.update(str(seed).encode())
    for r in requests:
        h.update(f"\0{r.uid}\0{','.join(map(str, r.sample_indices))}".encode())
    return int.from_bytes(h.digest(), "little") % (2**31 - 1)


def _check_requests(requests: Sequence[RolloutRequest], sampling: SamplingParams) -> None:
    for r in requests:
        if len(r.sample_indices) != sampling.n:
            raise ValueError(
                f"request {r.uid!r} asks for {len(r.sample_indices)} samples but sampling.n is {sampling.n}"
            )


# ---------------------------------------------------------------------------- transformers


class TransformersEngine:
    """Batched sampling with Hugging Face ``generate`` through :func:`trainer.vlm.generate_batch`.

    The model loads on the first :meth:`generate`. Sampling is reproducible for the same
    questions, sample indices, batch size and seed.
    """

    backend = "transformers"

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        batch_size: int = 8,
        device: str | None = None,
        *,
        dtype: Any = None,
        model_id: str | None = None,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model_path = str(model_path)
        self.batch_size = batch_size
        self.device = device
        self.dtype = dtype
        self.model_id = model_id or model_fingerprint(model_path)
        self._loaded: tuple[Any, Any] | None = None

    def _load(self) -> tuple[Any, Any]:
        if self._loaded is None:
            from trainer.vlm import load_vlm

            log.info("loading %s (%s)", self.model_path, self.device or "cpu")
            self._loaded = load_vlm(self.model_path, dtype=self.dtype, device=self.device)
        return self._loaded

    def generate(
        self, requests: Sequence[RolloutRequest], sampling: SamplingParams
    ) -> list[list[GeneratedSample]]:
        from trainer.vlm import generate_batch

        _check_requests(requests, sampling)
        if not requests:
            return []
        model, processor = self._load()
        prompts = [(load_images(r), r.question) for r in requests]
        outs = generate_batch(
            model,
            processor,
            prompts,
            n=sampling.n,
            max_new_tokens=sampling.max_new_tokens,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            seed=_batch_seed(sampling.seed, requests),
            batch_size=self.batch_size,
        )
        return [
            [
                GeneratedSample(o.text, o.n_tokens, o.finish_reason, idx)
                for o, idx in zip(samples, r.sample_indices, strict=True)
            ]
            for samples, r in zip(outs, requests, strict=True)
        ]


# ---------------------------------------------------------------------------- vLLM


def require_vllm() -> None:
    """Raise a clear ``ImportError`` when the optional vLLM extra is not installed."""
    if importlib.util.find_spec("vllm") is None:
        raise ImportError(
            f"the vllm backend needs vLLM, an optional extra: {VLLM_INSTALL_HINT} (on a CUDA machine)"
        )


def vllm_prompts(
    processor: Any, requests: Sequence[RolloutRequest], *, system: str | None = None
) -> list[dict[str, Any]]:
    """vLLM inputs: the chat-templated prompt and, when the question has images,
    ``multi_modal_data={"image": [PIL images]}`` (Qwen2-VL's layout, as in training)."""
    from trainer.vlm import chat_messages

    out = []
    for r in requests:
        images = load_images(r)
        text = processor.apply_chat_template(
            chat_messages(r.question, len(images), system), tokenize=False, add_generation_prompt=True
        )
        item: dict[str, Any] = {"prompt": text}
        if images:
            item["multi_modal_data"] = {"image": images}
        out.append(item)
    return out


class VLLMEngine:
    """Sampling with vLLM (GPU). ``llm_kwargs`` go to ``vllm.LLM`` (``tensor_parallel_size``,
    ``gpu_memory_utilization``, ``limit_mm_per_prompt``, ...). Untested here: no GPU; the
    prompt construction and the missing-extra error are tested."""

    backend = "vllm"

    def __init__(self, model_path: str | os.PathLike[str], *, model_id: str | None = None, **llm_kwargs: Any):
        require_vllm()
        self.model_path = str(model_path)
        self.model_id = model_id or model_fingerprint(model_path)
        self.llm_kwargs = llm_kwargs
        self._llm: Any = None
        self._processor: Any = None

    def _load(self) -> tuple[Any, Any]:
        if self._llm is None:
            import vllm

            from trainer.vlm import load_processor

            self._processor = load_processor(self.model_path)
            self._llm = vllm.LLM(model=self.model_path, **self.llm_kwargs)
        return self._llm, self._processor

    def generate(
        self, requests: Sequence[RolloutRequest], sampling: SamplingParams
    ) -> list[list[GeneratedSample]]:
        import vllm

        _check_requests(requests, sampling)
        if not requests:
            return []
        llm, processor = self._load()
        params = vllm.SamplingParams(
            n=sampling.n,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            max_tokens=sampling.max_new_tokens,
            seed=_batch_seed(sampling.seed, requests),
        )
        outputs = llm.generate(vllm_prompts(processor, requests), params)
        return [
            [
                GeneratedSample(c.text, len(c.token_ids), c.finish_reason, idx)
                for c, idx in zip(out.outputs, r.sample_indices, strict=True)
            ]
            for out, r in zip(outputs, requests, strict=True)
        ]


# ---------------------------------------------------------------------------- replay


@dataclass(frozen=True)
class ReplayColumns:
    """Where a replayed file keeps its fields (PeBR's ``rollout_results.jsonl`` by default).

    ``id`` is matched to the record's source id (PeBR ``qid``) or uid; ``sample_index`` is
    optional (samples are numbered in file order per id otherwise); ``score`` is optional.
    """

    id: str = "qid"
    response: str = "response"
    sample_index: str | None = None
    score: str | None = "score"
    n_tokens: str | None = None
    finish_reason: str | None = None


@dataclass
class ReplayLoad:
    """What reading a replay file found."""

    lines: int = 0
    samples: int = 0
    malformed: list[tuple[int, str]] = field(default_factory=list)
    duplicates: int = 0


class ReplayEngine:
    """Responses from a file produced elsewhere, served as if sampled.

    A request gets the stored samples at its ``sample_indices`` (fewer when the file has
    fewer: the scoring loop records the shortfall). ``replayed_score`` carries the file's
    score (PeBR's ``score`` dict), which the scoring loop can trust instead of rescoring.
    """

    backend = "replay"

    def __init__(
        self,
        path: str | os.PathLike[str],
        columns: ReplayColumns = ReplayColumns(),
        *,
        model_id: str | None = None,
    ):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"replay file {self.path} does not exist")
        self.columns = columns
        self.model_id = model_id or f"replay:{model_fingerprint(self.path)}"
        self._by_id: dict[str, dict[int, GeneratedSample]] = {}
        self.load = self._read()

    def _rows(self, report: ReplayLoad):
        """Yield (line number, row dict) for every readable row."""
        suffix = self.path.suffix.lower()
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            for i, row in enumerate(pq.read_table(self.path).to_pylist(), start=1):
                report.lines += 1
                yield i, row
            return
        if suffix == ".json":
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if not isinstance(data, list):
                raise ValueError(f"replay file {self.path}: a .json file must hold a list of objects")
            for i, row in enumerate(data, start=1):
                report.lines += 1
                yield i, row
            return
        import orjson

        with open(self.path, "rb") as fh:
            for i, raw in enumerate(fh, start=1):
                report.lines += 1
                try:
                    row = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    try:
                        row = json.loads(raw.decode("utf-8"))
                    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                        report.malformed.append((i, f"not JSON: {exc}"))
                        continue
                yield i, row

    def _read(self) -> ReplayLoad:
        cols = self.columns
        report = ReplayLoad()
        next_index: dict[str, int] = {}
        for line, row in self._rows(report):
            if not isinstance(row, Mapping):
                report.malformed.append((line, f"a {type(row).__name__}, not an object"))
                continue
            key, text = row.get(cols.id), row.get(cols.response)
            if key is None or not isinstance(text, str):
                missing = cols.id if key is None else cols.response
                report.malformed.append((line, f"no {missing!r} (or not a string response)"))
                continue
            key = str(key)
            if cols.sample_index is not None:
                idx = row.get(cols.sample_index)
                if not isinstance(idx, int) or idx < 0:
                    report.malformed.append((line, f"{cols.sample_index!r} must be a non-negative integer"))
                    continue
            else:
                idx = next_index.get(key, 0)
                next_index[key] = idx + 1
            samples = self._by_id.setdefault(key, {})
            if idx in samples:
                report.duplicates += 1
                continue
            samples[idx] = GeneratedSample(
                text=text,
                n_tokens=row.get(cols.n_tokens) if cols.n_tokens else None,
                finish_reason=row.get(cols.finish_reason) if cols.finish_reason else None,
                sample_index=idx,
                replayed_score=row.get(cols.score) if cols.score else None,
            )
            report.samples += 1
        if report.malformed:
            first = "; ".join(f"line {ln}: {why}" for ln, why in report.malformed[:3])
            log.warning("replay file %s: %d unusable lines (%s)", self.path, len(report.malformed), first)
        if report.duplicates:
            log.warning(
                "replay file %s: %d duplicate (id, sample index) rows ignored", self.path, report.duplicates
            )
        return report

    def samples_for(self, request: RolloutRequest) -> dict[int, GeneratedSample]:
        """All stored samples of a request's question (matched by qid, then uid)."""
        for key in (request.qid, request.uid):
            if key is not None and str(key) in self._by_id:
                return self._by_id[str(key)]
        return {}

    def ids(self) -> list[str]:
        return list(self._by_id)

    def generate(
        self, requests: Sequence[RolloutRequest], sampling: SamplingParams
    ) -> list[list[GeneratedSample]]:
        _check_requests(requests, sampling)
        out = []
        for r in requests:
            stored = self.samples_for(r)
            out.append([stored[i] for i in r.sample_indices if i in stored])
        return out


def make_engine(
    backend: str,
    model: str | os.PathLike[str],
    *,
    batch_size: int = 8,
    device: str | None = None,
    model_id: str | None = None,
    replay_columns: ReplayColumns = ReplayColumns(),
    **kwargs: Any,
) -> RolloutEngine:
    """An engine by backend name (the CLI's ``--backend``)."""
    if backend == "transformers":
        return TransformersEngine(model, batch_size=batch_size, device=device, model_id=model_id)
    if backend == "vllm":
        return VLLMEngine(model, model_id=model_id, **kwargs)
    if backend == "replay":
        return ReplayEngine(model, replay_columns, model_id=model_id)
    raise ValueError(f"backend must be one of {list(BACKENDS)}, got {backend!r}")
