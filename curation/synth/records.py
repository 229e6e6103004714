"""One record from its coordinates: (seed, split, index) -> scene, image file, question.

Every record draws from its own random stream, seeded by a hash of (seed, split, index,
attempt), never from a shared generator: any worker can build any record, in any order, and
the bytes are the same. Splits use different stream names, so test scenes come from a stream
disjoint from the training ones (the build still checks for collisions).
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from curation.schema import compute_uid, image_digest, make_record
from curation.synth.answers import conversation
from curation.synth.config import GENERATOR_VERSION, SynthConfig
from curation.synth.defects import NONE, shrink, truncate
from curation.synth.describe import caption
from curation.synth.questions import Question, generate_question
from curation.synth.render import draw, encode, extension
from curation.synth.scene import Scene, sample_scene

SOURCE = "synthetic"
GENERATOR = "pebr-synth"
#: Tasks whose scenes get more digits (their questions read and combine digits).
DIGIT_TASKS = ("arithmetic", "comparison", "multiple_choice")


@dataclass(frozen=True)
class Spec:
    """Where a record sits: split, index, task, defect (SFT only) and retry attempt."""

    split: str
    index: int
    task: str
    defect: str = NONE
    attempt: int = 0


def stream(seed: int, *parts: object) -> random.Random:
    """A random generator for one named stream, independent of every other stream."""
    key = ":".join(str(p) for p in (GENERATOR, seed, *parts)).encode()
    return random.Random(int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big"))


def image_relpath(split: str, index: int, cfg: SynthConfig) -> str:
    """``images/<split>/<folder>/<index>.jpg``, at most ``files_per_folder`` files a folder."""
    return f"images/{split}/{index // cfg.files_per_folder:04d}/{index:06d}.{extension(cfg)}"


def sample_item(seed: int, spec: Spec, cfg: SynthConfig) -> tuple[random.Random, int, Scene, Question]:
    """The scene and question of one record (no image work)."""
    rng = stream(seed, spec.split, spec.index, spec.attempt)
    level = rng.choices(range(1, cfg.levels + 1), weights=cfg.difficulty_weights)[0]
    digit_rate = cfg.digit_rate_reasoning if spec.task in DIGIT_TASKS else cfg.digit_rate
    for _ in range(cfg.scene_attempts):
        scene = sample_scene(rng, cfg, level, digit_rate=digit_rate)
        if not scene.objects:
            continue
        q = generate_question(spec.task, scene, rng, cfg, level)
        if q is not None:
            return rng, level, scene, q
    raise RuntimeError(
        f"{spec.split} record {spec.index}: no {spec.task!r} question fitted {cfg.scene_attempts} "
        f"scenes at difficulty {level}; loosen the config (more objects, more digits)"
    )


def build_item(seed: int, spec: Spec, cfg: SynthConfig, out_dir: str) -> dict[str, Any]:
    """Build one record and write its image file; returns what the build assembles."""
    rng, level, scene, q = sample_item(seed, spec, cfg)
    image = draw(scene, cfg)
    drawn = scene
    if spec.defect == "small_image":
        image = shrink(image, rng, cfg)
        drawn = scene.scaled(*image.size)
    data = encode(image, cfg)
    if spec.defect == "truncated_image":
        data = truncate(data, rng)
    rel = image_relpath(spec.split, spec.index, cfg)
    digest = image_digest(data)
    if spec.defect != "missing_image":
        path = Path(out_dir) / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    meta = {
        "generator": GENERATOR,
        "version": GENERATOR_VERSION,
        "seed": seed,
        "split": spec.split,
        "index": spec.index,
        "attempt": spec.attempt,
        "difficulty": level,
        "template": q.template,
        "scene": drawn.to_dict(),
        "scene_hash": scene.digest(),
        "image_digest": digest,
    }
    item: dict[str, Any] = {
        "split": spec.split,
        "index": spec.index,
        "task": q.task,
        "difficulty": level,
        "scene_hash": meta["scene_hash"],
        "image_digest": digest,
    }
    if spec.split == "sft":
        reflective = rng if spec.defect == "reflective" else None
        item["sharegpt"] = conversation(drawn, q, rel, reflective_rng=reflective)
        item["manifest"] = {
            "index": spec.index,
            "defect": spec.defect,
            "duplicate_of": None,
            "task": q.task,
            "stage_hint": q.stage_hint,
            "difficulty": level,
            "template": q.template,
            "answer": q.answer,
            "image": rel,
            "width": image.width,
            "height": image.height,
            "image_digest": None if spec.defect == "missing_image" else digest,
            "scene_hash": meta["scene_hash"],
            "scene": meta["scene"],
        }
        return item
    item["record"] = canonical_record(q, drawn, rel, digest, meta)
    return item


def canonical_record(
    q: Question, scene: Scene, rel: str, digest: str, meta: dict[str, Any]
) -> dict[str, Any]:
    """The canonical-schema record of an RL or test question; the uid hashes the image bytes."""
    return make_record(
        uid=compute_uid(q.question, q.answer, [digest]),
        question=q.question,
        answer=q.answer,
        images=[rel],
        image_sizes=[(scene.width, scene.height)],
        source=SOURCE,
        task=q.task,
        stage_hint=q.stage_hint,
        choices=q.choices,
        key_words=q.key_words,
        boxes=q.boxes,
        reference_caption=caption(scene),
        messages=(),
        meta=meta,
    )


def build_chunk(seed: int, specs: list[Spec], cfg: SynthConfig, out_dir: str) -> list[dict[str, Any]]:
    """Worker entry point: build a list of records in order."""
    return [build_item(seed, s, cfg, out_dir) for s in specs]
