"""Perception templates: count, color, shape, position, grounding and caption questions."""

from __future__ import annotations

import random

from curation.synth.config import SynthConfig
from curation.synth.describe import (
    box_text,
    boxes_text,
    capitalize,
    caption,
    color_count_phrases,
    count_phrase,
    join,
    left_to_right,
    object_key_words,
    object_phrase,
    plural,
    refer,
    shape_count_phrases,
    unique,
)
from curation.synth.questions import Question, largest, leader, template, yes_no
from curation.synth.scene import Scene, SceneObject

#: name -> (phrase, centre coordinate growing that way, leading edge growing that way)
DIRECTIONS = {
    "left": ("furthest to the left", lambda o: -o.center[0], lambda o: -o.bbox[0]),
    "right": ("furthest to the right", lambda o: o.center[0], lambda o: o.bbox[2]),
    "top": ("closest to the top", lambda o: -o.center[1], lambda o: -o.bbox[1]),
    "bottom": ("closest to the bottom", lambda o: o.center[1], lambda o: o.bbox[3]),
}


def _listing(objs: list[SceneObject], scene: Scene) -> str:
    return join([object_phrase(o, scene) for o in left_to_right(objs)])


def _other(rng: random.Random, value: str, pool: list[str]) -> str:
    return rng.choice([p for p in pool if p != value] or [value])


def _colors(cfg: SynthConfig) -> list[str]:
    return [c for c, _ in cfg.colors]


def _count_question(
    scene: Scene, targets: list[SceneObject], what: str, question: str, rationale: str, key: str
) -> Question:
    k = len(targets)
    if targets:
        found = (
            f"The {what} are {_listing(targets, scene)}."
            if k > 1
            else f"The only one is {_listing(targets, scene)}."
        )
    else:
        found = f"None of the shapes are {what}."
    steps = [
        f"I look at all {count_phrase(len(scene.objects), 'shape')} in the image and pick out the {what}.",
        found,
        f"Counting them gives {k}.",
    ]
    words = unique([key, *object_key_words(targets, digits=False)])
    return Question("count", question, str(k), rationale, steps, targets, words, wrong=str(k + 1))


# ------------------------------------------------------------------------------ count


@template("count", levels=(1, 2))
def count_total(scene: Scene, rng: random.Random, cfg: SynthConfig) -> Question | None:
    objs = list(scene.objects)
    if len(objs) < 2:
        return None
    q = _count_question(
        scene,
        objs,
        "shapes",
        rng.choice(["How many shapes are there in the image?", "How many objects are in the picture?"]),
        "The question asks for the total number of shapes, so every shape in the image has to be counted once.",
        count_phrase(len(objs), "shape"),
    )
    q.steps[0] = "I scan the image from left to right and list every shape."
    return q


@template("count", levels=(1, 2, 3))
def count_shape(scene: Scene, rng: random.Random, cfg: SynthConfig) -> Question | None:
    shape = rng.choice(sorted({o.shape for o in scene.objects}))
    targets = [o for o in scene.objects if o.shape == shape]
    return _count_question(
        scene,
        targets,
        plural(shape),
        f"How many {plural(shape)} are there in the image?",
        f"The question asks for the number of {plural(shape)}; other shapes do not count, whatever their colour.",
        count_phrase(len(targets), shape),
    )


@template("count", levels=(2, 3))
def count_color(scene: Scene, rng: random.Random, cfg: SynthConfig) -> Question | None:
    color = rng.choice(sorted({o.color for o in scene.objects}))
    targets = [o for o in scene.objects if o.color == color]
    return _count_question(
        scene,
        targets,
        f"{color} shapes",
        f"How many {color} shapes are there?",
        f"The question asks how many shapes are {color}, of any kind.",
        count_phrase(len(targets), f"{color} shape"),
    )


@template("count", levels=(2, 3))
def count_color_shape(scene: Scene, rng: random.Random, cfg: SynthConfig) -> Question | None:
    color, shape = rng.choice(sorted({(o.color, o.shape) for o in scene.objects}))
    targets = [o for o in scene.objects if o.color == color and o.shape == shape]
    return _count_question(
        scene,
        targets,
        f"{color} {plural(shape)}",
        f"How many {color} {plural(shape)} are in the image?",
        f"Only shapes that are both {color} and {plural(shape)} count; shapes matching one of the two do not.",
        f"{color} {shape}",
    )


@template("count", levels=(3,))
def count_union(scene: Scene, rng: random.Random, cfg: SynthConfig) -> Question | None:
    color = rng.choice(sorted({o.color for o in scene.objects}))
    shape = rng.choice(sorted({o.shape for o in scene.objects}))
    by_color = [o for o in scene.objects if o.color == color]
    by_shape = [o for o in scene.objects if o.shape == shape]
    both = [o for o in by_color if o.shape == shape]
    targets = [o for o in scene.objects if o.color == color or o.shape == shape]
    if len(targets) == len(by_color) or len(targets) == len(by_shape):
        return None  # one condition implies the other: not a union question
    steps = [
        f"The {color} shapes are {_listing(by_color, scene)}: that is {len(by_color)}.",
        f"The {plural(shape)} are {_listing(by_shape, scene)}: that is {len(by_shape)}.",
        f"{len(both)} of them {'is' if len(both) == 1 else 'are'} both {color} and a {shape}, and must be counted once.",
        f"So the total is {len(by_color)} + {len(by_shape)} - {len(both)} = {len(targets)}.",
    ]
    words = unique(
        [
            count_phrase(len(by_color), f"{color} shape"),
            count_phrase(len(by_shape), shape),
            *object_key_words(targets, digits=False),
        ]
    )
    return Question(
        "count",
        f"How many shapes are {color} or are {plural(shape)}?",
        str(len(targets)),
        "A shape counts if it has either property; shapes with both must not be counted twice.",
        steps,
        targets,
        words,
        wrong=str(len(by_color) + len(by_shape)),
    )


@template("count", levels=(3,))
def count_not(scene: Scene, rng: random.Random, cfg: SynthConfig) -> Question | None:
    color = rng.choice(sorted({o.color for o in scene.objects}))
    excluded = [o for o in scene.objects if o.color == color]
    targets = [o for o in scene.objects if o.color != color]
    n = len(scene.objects)
    steps = [
        f"There are {count_phrase(n, 'shape')} in total.",
        f"The {color} ones are {_listing(excluded, scene)}: {len(excluded)} of them.",
        f"So {n} - {len(excluded)} = {len(targets)} shapes are not {color}.",
    ]
    words = unique(
        [
            count_phrase(n, "shape"),
            count_phrase(len(excluded), f"{color} shape"),
            *object_key_words(excluded, digits=False),
        ]
    )
    return Question(
        "count",
        f"How many shapes are not {color}?",
        str(len(targets)),
        f"Count all shapes, then take away the {color} ones.",
        steps,
        targets,
        words,
        wrong=str(len(excluded)),
    )


# ------------------------------------------------------------------------------ color


@template("color", levels=(1, 2, 3))
def color_of(scene: Scene, rng: random.Random, cfg: SynthConfig) -> Question | None:
    options = [(o, refer(o, scene, allowed=("shape", "size", "digit"))) for o in scene.objects]
    options = [(o, r) for o, r in options if r]
    if not options:
        return None
    obj, ref = rng.choice(options)
    return Question(
        "color",
        rng.choice([f"What color is {ref}?", f"What is the color of {ref}?"]),
        obj.color,
        f"Exactly one object in the image is {ref}, so its colour answers the question.",
        [f"{capitalize(ref)} is {object_phrase(obj, scene)}.", f"Its colour is {obj.color}."],
        [obj],
        object_key_words([obj]),
        wrong=_other(rng, obj.color, _colors(cfg)),
    )


@template("color", levels=(2, 3))
def color_of_largest(scene: Scene, rng: random.Random, cfg: SynthConfig) -> Question | None:
    shape = rng.choice(sorted({o.shape for o in scene.objects}))
    group = [o for o in scene.objects if o.shape == shape]
    top = largest(cfg, group)
    if len(group) < 2 or top is None:
        return None
    return Question(
        "color",
        f"What color is the largest {shape}?",
        top.color,
        f"Compare the sizes of the {plural(shape)} and report the colour of the biggest one.",
        [
            f"The {plural(shape)} are {_listing(group, scene)}.",
            f"The largest of them is the {top.size} one, {object_phrase(top, scene, article='the')}.",
            f"Its colour is {top.color}.",
        ],
        [top],
        object_key_words(group, digits=False),
        wrong=_other(rng, top.color, [o.color for o in group] + _colors(cfg)),
    )


# ------------------------------------------------------------------------------ shape


@template("shape", levels=(1, 2, 3))
def shape_of(scene: Scene, rng: random.Random, cfg: SynthConfig) -> Question | None:
    options = [(o, refer(o, scene, allowed=("color", "size", "digit"), noun="object")) for o in scene.objects]
    options = [(o, r) for o, r in options if r]
    if not options:
        return None
    obj, ref = rng.choice(options)
    return Question(
        "shape",
        rng.choice([f"What shape is {ref}?", f"Which shape is {ref}?"]),
        obj.shape,
        f"Exactly one object in the image is {ref}; the question asks for its kind of shape.",
        [f"{capitalize(ref)} is {object_phrase(obj, scene)}.", f"So it is a {obj.shape}."],
        [obj],
        object_key_words([obj]),
        wrong=_other(rng, obj.shape, list(cfg.shapes)),
    )


@template("shape", levels=(2, 3))
def shape_of_largest(scene: Scene, rng: random.Random, cfg: SynthConfig) -> Question | None:
    color = rng.choice(sorted({o.color for o in scene.objects}))
    group = [o for o in scene.objects if o.color == color]
    top = largest(cfg, group)
    if len(group) < 2 or top is None:
        return None
    return Question(
        "shape",
        f"What shape is the largest {color} object?",
        top.shape,
        f"Compare the sizes of the {color} shapes and name the kind of the biggest one.",
        [
            f"The {color} shapes are {_listing(group, scene)}.",
            f"The largest of them is {object_phrase(top, scene, article='the')}.",
            f"It is a {top.shape}.",
        ],
        [top],
        object_key_words(group, digits=False),
        wrong=_other(rng, top.shape, [o.shape for o in group] + list(cfg.shapes)),
    )


# ------------------------------------------------------------------------------ position


def _extreme(
    scene: Scene,
    group: list[SceneObject],
    rng: random.Random,
    cfg: SynthConfig,
    ask: str,
    question: str,
    direction: str,
) -> Question | None:
    phrase, key, edge = DIRECTIONS[direction]
    # ahead by the margin both by centre and by leading edge: a big shape whose edge sticks out
    # past a small shape's centre is not clearly "furthest"
    winner = leader(group, key, cfg.position_margin)
    if winner is None or len(group) < 2 or leader(group, edge, cfg.position_margin) is not winner:
        return None
    ranked = sorted(group, key=key, reverse=True)
    answer = getattr(winner, ask)
    pool = [getattr(o, ask) for o in group] + (list(cfg.shapes) if ask == "shape" else _colors(cfg))
    return Question(
        "position",
        question,
        answer,
        f"Compare where the candidate shapes sit and pick the one {phrase}.",
        [
            f"The candidates are {_listing(group, scene)}.",
            f"{capitalize(object_phrase(winner, scene, article='the'))} is {phrase}, clearly ahead of "
            f"{object_phrase(ranked[1], scene, article='the')}.",
            f"Its {ask} is {answer}.",
        ],
        [winner],
        object_key_words([winner], digits=False),
        wrong=_other(rng, answer, pool),
    )


def _directions(rng: random.Random) -> list[str]:
    """All four directions in a random order: a scene without a clear leftmost shape may
    still have a clear topmost one."""
    order = sorted(DIRECTIONS)
    rng.shuffle(order)
    return order


@template("position", levels=(1, 2, 3))
def position_extreme(scene: Scene, rng: random.Random, cfg: SynthConfig) -> Question | None:
    ask = rng.choice(["shape", "color"])
    for direction in _directions(rng):
        phrase = DIRECTIONS[direction][0]
        question = f"Which shape is {phrase}?" if ask == "shape" else f"What color is the shape {phrase}?"
        q = _extreme(scene, list(scene.objects), rng, cfg, ask, question, direction)
        if q is not None:
            return q
    return None


@template("position", levels=(3,))
def position_extreme_among(scene: Scene, rng: random.Random, cfg: SynthConfig) -> Question | None:
    by_color = rng.random() < 0.5
    if by_color:
        color = rng.choice(sorted({o.color for o in scene.objects}))
        group = [o for o in scene.objects if o.color == color]
    else:
        shape = rng.choice(sorted({o.shape for o in scene.objects}))
        group = [o for o in scene.objects if o.shape == shape]
    if len(group) < 2:
        return None
    for direction in _directions(rng):
        phrase = DIRECTIONS[direction][0]
        if by_color:
            question = f"Among the {color} shapes, which one is {phrase}? Answer with its shape."
            q = _extreme(scene, group, rng, cfg, "shape", question, direction)
        else:
            question = f"Among the {plural(shape)}, what color is the one {phrase}?"
            q = _extreme(scene, group, rng, cfg, "color", question, direction)
        if q is not None:
            return q
    return None


@template("position", levels=(1, 2), yes_no=True)
def position_relation(scene: Scene, rng: random.Random, cfg: SynthConfig) -> Question | None:
    named = [(o, refer(o, scene)) for o in scene.objects]
    named = [(o, r) for o, r in named if r]
    m = cfg.position_margin
    # pairs separated along x (a left of b) or along y (a above b), with a clear gap
    pairs = [
        (a, ra, b, rb, axis)
        for a, ra in named
        for b, rb in named
        for axis in (0, 1)
        if a is not b and a.bbox[axis + 2] + m <= b.bbox[axis]
    ]
    if not pairs:
        return None
    a, ra, b, rb, axis = rng.choice(pairs)
    true_rel, false_rel = ("to the left of", "to the right of") if axis == 0 else ("above", "below")
    asked_true = rng.random() < 0.5
    rel = true_rel if asked_true else false_rel
    return Question(
        "position",
        f"Is {ra} {rel} {rb}?",
        yes_no(asked_true),
        "Find both shapes and compare their positions.",
        [
            f"{capitalize(ra)} is {object_phrase(a, scene)}; {rb} is {object_phrase(b, scene)}.",
            f"{capitalize(ra)} lies entirely {true_rel} {rb}.",
            f"So {ra} is {'' if asked_true else 'not '}{rel} {rb}: the answer is {yes_no(asked_true)}.",
        ],
        [a, b],
        object_key_words([a, b], digits=False),
        wrong=yes_no(not asked_true),
    )


# ------------------------------------------------------------------------------ grounding


@template("grounding", levels=(1, 2, 3))
def grounding_one(scene: Scene, rng: random.Random, cfg: SynthConfig) -> Question | None:
    named = [(o, refer(o, scene)) for o in scene.objects]
    named = [(o, r) for o, r in named if r]
    if not named:
        return None
    obj, ref = rng.choice(named)
    x1, y1, x2, y2 = obj.bbox
    shifted = [x1 + 7, y1, x2 + 7, y2]
    return Question(
        "grounding",
        f"Find {ref} and give its bounding box as [x1, y1, x2, y2] in pixel coordinates.",
        box_text(obj.bbox),
        "Locate the one object that matches the description and read off its extent in pixels.",
        [
            f"The image is {scene.width} by {scene.height} pixels.",
            f"{capitalize(ref)} is {object_phrase(obj, scene)}.",
            f"Its left edge is at x = {x1}, its top edge at y = {y1}, its right edge at x = {x2} "
            f"and its bottom edge at y = {y2}.",
        ],
        [obj],
        object_key_words([obj]),
        wrong=box_text(shifted),
    )


@template("grounding", levels=(3,))
def grounding_all(scene: Scene, rng: random.Random, cfg: SynthConfig) -> Question | None:
    shape = rng.choice(sorted({o.shape for o in scene.objects}))
    group = left_to_right([o for o in scene.objects if o.shape == shape])
    if len(group) < 2:
        return None
    steps = [f"The image is {scene.width} by {scene.height} pixels."]
    steps += [f"{capitalize(object_phrase(o, scene))} spans {box_text(o.bbox)}." for o in group]
    return Question(
        "grounding",
        f"Find every {shape} and give their bounding boxes as a list [[x1, y1, x2, y2], ...] "
        "in pixel coordinates, from left to right.",
        boxes_text([o.bbox for o in group]),
        f"Every {shape} needs its own box; shapes of other kinds must be left out.",
        steps,
        group,
        unique([count_phrase(len(group), shape), *object_key_words(group, digits=False)]),
        wrong=boxes_text([o.bbox for o in group[:-1]]),
    )


# ------------------------------------------------------------------------------ caption


@template("caption", levels=(1, 2, 3))
def caption_scene(scene: Scene, rng: random.Random, cfg: SynthConfig) -> Question | None:
    if not scene.objects:
        return None
    text = caption(scene)
    n = len(scene.objects)
    digits = [o for o in left_to_right(scene.objects) if o.digit is not None]
    steps = [
        f"The background is {scene.background} and there are {count_phrase(n, 'shape')}.",
        f"By kind there are {join(shape_count_phrases(scene))}; by colour there are "
        f"{join(color_count_phrases(scene))}.",
    ]
    if digits:
        steps.append(f"Digits appear on {join([f'the {o.name} ({o.digit})' for o in digits])}.")
    steps.append("Putting these facts into at most three sentences gives the caption.")
    return Question(
        "caption",
        rng.choice(
            [
                "Describe the image in one to three sentences.",
                "Write a short caption (one to three sentences) for this image.",
                "Briefly describe what the picture shows.",
            ]
        ),
        text,
        "A good caption names the background, how many shapes there are, their colours and kinds, "
        "and any digits written on them.",
        steps,
        list(scene.objects),
        unique([count_phrase(n, "shape"), *object_key_words(scene.objects, digits=False)]),
        wrong=None,
    )
