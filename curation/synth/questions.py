"""Questions with verifiable answers, derived from a scene graph.

Each task has a few templates (functions in :mod:`curation.synth.perception` and
:mod:`curation.synth.reasoning`) registered with :func:`template`. A template inspects the
scene and returns a :class:`Question` only when its answer is unique (a colour question about
"the triangle" needs exactly one triangle, "furthest to the left" needs a winner ahead by a
margin); otherwise it returns ``None`` and the next template, or a new scene, is tried.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from curation.synth.config import SynthConfig
from curation.synth.scene import Scene, SceneObject

PERCEPTION_TASKS = ("count", "color", "shape", "position", "grounding", "caption")
REASONING_TASKS = ("arithmetic", "comparison", "multiple_choice")


@dataclass
class Question:
    """One question about a scene, with what an SFT answer needs to explain it."""

    task: str
    question: str
    answer: str
    rationale: str
    steps: list[str]
    targets: list[SceneObject] = field(default_factory=list)
    key_words: list[str] = field(default_factory=list)
    choices: list[str] | None = None
    template: str = ""
    #: a plausible wrong answer, used by the reflective defect ("... Let me rethink it.")
    wrong: str | None = None

    @property
    def stage_hint(self) -> str:
        return "perception" if self.task in PERCEPTION_TASKS else "reasoning"

    @property
    def boxes(self) -> list[list[int]]:
        return [list(o.bbox) for o in self.targets]


TemplateFn = Callable[..., "Question | None"]


@dataclass(frozen=True)
class Template:
    name: str
    task: str
    levels: tuple[int, ...]
    fn: TemplateFn
    yes_no: bool = False
    #: the template takes the difficulty level as a fourth argument (multiple choice does)
    needs_level: bool = False


_REGISTRY: dict[str, list[Template]] = {}


def template(
    task: str, levels: Sequence[int], *, yes_no: bool = False, needs_level: bool = False
) -> Callable[[TemplateFn], TemplateFn]:
    """Register a question template for ``task`` at difficulty ``levels``."""

    def register(fn: TemplateFn) -> TemplateFn:
        tmpl = Template(fn.__name__, task, tuple(levels), fn, yes_no, needs_level)
        _REGISTRY.setdefault(task, []).append(tmpl)
        return fn

    return register


def templates(task: str) -> list[Template]:
    from curation.synth import perception, reasoning  # noqa: F401 - importing registers the templates

    if task not in _REGISTRY:
        raise ValueError(f"no question templates for task {task!r}; known: {sorted(_REGISTRY)}")
    return _REGISTRY[task]


def generate_question(
    task: str, scene: Scene, rng: random.Random, cfg: SynthConfig, level: int
) -> Question | None:
    """A question of ``task`` about ``scene`` at ``level``, or ``None`` if no template fits.

    Templates of the requested level are tried first, in a random order weighted so that
    yes/no templates stay rare; templates of lower levels are the fallback.
    """
    pool = templates(task)
    exact = [t for t in pool if level in t.levels]
    lower = [t for t in pool if t not in exact and min(t.levels) <= level]
    for group in (exact, lower):
        for tmpl in _weighted_order(group, rng, cfg.yes_no_weight):
            q = tmpl.fn(scene, rng, cfg, level) if tmpl.needs_level else tmpl.fn(scene, rng, cfg)
            if q is not None:
                q.template = q.template or tmpl.name
                return q
    return None


def _weighted_order(group: list[Template], rng: random.Random, yes_no_weight: float) -> list[Template]:
    """Weighted sampling without replacement (Efraimidis-Spirakis keys), deterministic per rng."""
    keyed = []
    for t in group:
        w = yes_no_weight if t.yes_no else 1.0
        if w <= 0:
            continue
        keyed.append((rng.random() ** (1.0 / w), t.name, t))
    keyed.sort(key=lambda k: (-k[0], k[1]))
    return [t for _, _, t in keyed]


# ------------------------------------------------------------------ helpers for templates


def leader(
    objs: Sequence[SceneObject], key: Callable[[SceneObject], float], margin: float
) -> SceneObject | None:
    """The object with the largest ``key`` if it beats the runner-up by ``margin``, else None."""
    if not objs:
        return None
    ranked = sorted(objs, key=key, reverse=True)
    if len(ranked) > 1 and key(ranked[0]) - key(ranked[1]) < margin:
        return None
    return ranked[0]


def size_rank(cfg: SynthConfig, obj: SceneObject) -> int:
    return [name for name, _, _ in cfg.size_classes].index(obj.size)


def clearly_larger(cfg: SynthConfig, a: SceneObject, b: SceneObject) -> bool:
    """``a`` is a size class above ``b`` *and* covers ``cfg.area_ratio`` times its area (a large
    star is not visibly larger than a medium square, though its box is)."""
    return size_rank(cfg, a) > size_rank(cfg, b) and a.area >= cfg.area_ratio * b.area


def largest(cfg: SynthConfig, objs: Sequence[SceneObject]) -> SceneObject | None:
    """The object clearly larger than each of the others, or ``None``."""
    for obj in objs:
        if all(other is obj or clearly_larger(cfg, obj, other) for other in objs):
            return obj
    return None


def yes_no(value: bool) -> str:
    return "yes" if value else "no"
