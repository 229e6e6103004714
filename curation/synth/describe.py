"""Words for scenes: object phrases, referring expressions, descriptions and captions.

Key words use the same phrases the texts use ("red circle", "3 circles", "2 red shapes",
"digit 7"), so a description written from the scene graph mentions every key word of every
question about that scene (the keyword-recall reward can be satisfied by looking).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

from curation.synth.scene import Scene, SceneObject

_REGION_PHRASES = {
    "center": "in the center",
    "top": "at the top",
    "bottom": "at the bottom",
    "left": "on the left",
    "right": "on the right",
}

#: Attribute combinations tried, in order, to single out one object.
_REFERRING = (
    ("shape",),
    ("color", "shape"),
    ("color",),
    ("size", "shape"),
    ("size", "color"),
    ("size", "color", "shape"),
    ("digit",),
)


def plural(noun: str) -> str:
    return noun + "s"


def a(word: str) -> str:
    """``"a red circle"``, ``"an orange circle"``."""
    return ("an " if word[:1] in "aeiou" else "a ") + word


def count_phrase(n: int, noun: str) -> str:
    """``"1 circle"``, ``"3 circles"`` (digits, so key words match exactly)."""
    return f"{n} {noun if n == 1 else plural(noun)}"


def join(items: Sequence[str]) -> str:
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def region_phrase(region: str) -> str:
    return _REGION_PHRASES.get(region, f"in the {region} corner")


def object_phrase(obj: SceneObject, scene: Scene, *, article: str = "a", where: bool = True) -> str:
    """``"a large red circle with the digit 3 in the top left corner"``."""
    text = f"{obj.size} {obj.color} {obj.shape}"
    text = a(text) if article == "a" else f"{article} {text}"
    if obj.digit is not None:
        text += f" with the digit {obj.digit}"
    if where:
        text += " " + region_phrase(scene.region(obj))
    return text


def left_to_right(objects: Iterable[SceneObject]) -> list[SceneObject]:
    return sorted(objects, key=lambda o: (o.center[0], o.center[1], o.id))


def _matches(obj: SceneObject, other: SceneObject, attrs: Sequence[str]) -> bool:
    return all(getattr(obj, a) == getattr(other, a) for a in attrs)


def refer(
    obj: SceneObject,
    scene: Scene,
    *,
    allowed: Sequence[str] = ("shape", "color", "size", "digit"),
    noun: str = "shape",
) -> str | None:
    """The shortest phrase that picks out ``obj`` alone ("the red triangle"), or ``None``.

    ``allowed`` limits the attributes used, so that a question about an object's colour never
    names that colour; ``noun`` stands in for the shape when the shape is not used.
    """
    for attrs in _REFERRING:
        if not set(attrs) <= set(allowed):
            continue
        if "digit" in attrs and obj.digit is None:
            continue
        if sum(_matches(obj, o, attrs) for o in scene.objects) != 1:
            continue
        if attrs == ("digit",):
            return f"the {noun} with the digit {obj.digit}"
        words = [getattr(obj, a) for a in attrs if a != "shape"]
        return "the " + " ".join([*words, obj.shape if "shape" in attrs else noun])
    return None


def shape_counts(scene: Scene) -> Counter[str]:
    return Counter(o.shape for o in scene.objects)


def color_counts(scene: Scene) -> Counter[str]:
    return Counter(o.color for o in scene.objects)


def _in_order(counter: Counter[str], scene: Scene, attr: str) -> list[tuple[str, int]]:
    order = []
    for o in left_to_right(scene.objects):
        if getattr(o, attr) not in order:
            order.append(getattr(o, attr))
    return [(k, counter[k]) for k in order]


def shape_count_phrases(scene: Scene) -> list[str]:
    return [count_phrase(n, s) for s, n in _in_order(shape_counts(scene), scene, "shape")]


def color_count_phrases(scene: Scene) -> list[str]:
    return [count_phrase(n, f"{c} shape") for c, n in _in_order(color_counts(scene), scene, "color")]


def describe(scene: Scene) -> str:
    """The ``### Image Description:`` text: every object, where it is, and the counts."""
    n = len(scene.objects)
    parts = [
        f"The image is {scene.width} by {scene.height} pixels and shows "
        f"{count_phrase(n, 'shape')} on a {scene.background} background."
    ]
    objs = [object_phrase(o, scene) for o in left_to_right(scene.objects)]
    if objs:
        parts.append(f"From left to right, there is {join(objs)}.")
    parts.append(f"In total there are {join(shape_count_phrases(scene))}.")
    parts.append(f"By colour there are {join(color_count_phrases(scene))}.")
    return " ".join(parts)


def caption(scene: Scene) -> str:
    """A one-to-three sentence reference caption built from the scene graph."""
    groups: Counter[tuple[str, str]] = Counter((o.color, o.shape) for o in scene.objects)
    seen: list[tuple[str, str]] = []
    for o in left_to_right(scene.objects):
        if (o.color, o.shape) not in seen:
            seen.append((o.color, o.shape))
    items = [a(f"{c} {s}") if groups[(c, s)] == 1 else f"{groups[(c, s)]} {c} {plural(s)}" for c, s in seen]
    n = len(scene.objects)
    sentences = [f"A {scene.background} picture with {count_phrase(n, 'shape')}: {join(items)}."]
    with_digits = [o for o in left_to_right(scene.objects) if o.digit is not None]
    if with_digits:
        on = [
            f"{o.digit} on {'the' if groups[(o.color, o.shape)] == 1 else 'a'} {o.name}" for o in with_digits
        ]
        sentences.append(f"Digits are written on {count_phrase(len(with_digits), 'shape')}: {join(on)}.")
    if len(shape_counts(scene)) < n:
        sentences.append(f"Altogether there are {join(shape_count_phrases(scene))}.")
    return " ".join(sentences)


def object_key_words(objs: Iterable[SceneObject], *, digits: bool = True) -> list[str]:
    """Key words for the objects a question is about: ``"red circle"``, ``"digit 7"``."""
    words: list[str] = []
    for o in objs:
        for w in (o.name, f"digit {o.digit}" if digits and o.digit is not None else None):
            if w and w not in words:
                words.append(w)
    return words


def unique(words: Iterable[str]) -> list[str]:
    out: list[str] = []
    for w in words:
        if w not in out:
            out.append(w)
    return out


def box_text(bbox: Sequence[int]) -> str:
    """``"[x1, y1, x2, y2]"``: the grounding answer format (integers, JSON)."""
    return "[" + ", ".join(str(int(v)) for v in bbox) + "]"


def boxes_text(boxes: Sequence[Sequence[int]]) -> str:
    return "[" + ", ".join(box_text(b) for b in boxes) + "]"


def capitalize(text: str) -> str:
    return text[:1].upper() + text[1:]
