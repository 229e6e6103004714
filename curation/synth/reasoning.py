"""Reasoning templates: multi-step arithmetic, comparisons and multiple choice."""

from __future__ import annotations

import random
from collections import Counter

from curation.synth.config import SynthConfig
from curation.synth.describe import (
    capitalize,
    count_phrase,
    join,
    object_key_words,
    object_phrase,
    plural,
    refer,
    unique,
)
from curation.synth.questions import (
    Question,
    clearly_larger,
    generate_question,
    template,
    yes_no,
)
from curation.synth.scene import Scene, SceneObject

LETTERS = "ABCDEF"
#: Tasks a multiple-choice question can wrap (their answers are single words or numbers).
MC_INNER_TASKS = ("count", "color", "shape", "position", "arithmetic", "comparison")


def _digits_text(objs: list[SceneObject]) -> str:
    return join([f"{o.digit} on the {o.name}" for o in objs])


def _sum_text(values: list[int]) -> str:
    return " + ".join(str(v) for v in values) + f" = {sum(values)}" if len(values) > 1 else str(sum(values))


def _named(scene: Scene) -> list[tuple[SceneObject, str]]:
    pairs = [(o, refer(o, scene)) for o in scene.objects]
    return [(o, r) for o, r in pairs if r]


def _two_shapes(scene: Scene, rng: random.Random) -> tuple[str, str] | None:
    shapes = sorted({o.shape for o in scene.objects})
    if len(shapes) < 2:
        return None
    a, b = rng.sample(shapes, 2)
    return a, b


def _count(scene: Scene, **attrs: str) -> list[SceneObject]:
    return [o for o in scene.objects if all(getattr(o, k) == v for k, v in attrs.items())]


# ------------------------------------------------------------------------------ arithmetic


@template("arithmetic", levels=(1,))
def count_sum(scene: Scene, rng: random.Random, cfg: SynthConfig) -> Question | None:
    pair = _two_shapes(scene, rng)
    if pair is None:
        return None
    a, b = pair
    na, nb = len(_count(scene, shape=a)), len(_count(scene, shape=b))
    return Question(
        "arithmetic",
        f"How many {plural(a)} and {plural(b)} are there altogether?",
        str(na + nb),
        f"Count the {plural(a)} and the {plural(b)} separately, then add the two counts.",
        [
            f"There {'is' if na == 1 else 'are'} {count_phrase(na, a)}.",
            f"There {'is' if nb == 1 else 'are'} {count_phrase(nb, b)}.",
            f"Altogether {na} + {nb} = {na + nb}.",
        ],
        _count(scene, shape=a) + _count(scene, shape=b),
        [count_phrase(na, a), count_phrase(nb, b)],
        wrong=str(na + nb + 1),
    )


@template("arithmetic", levels=(1, 2))
def count_difference(scene: Scene, rng: random.Random, cfg: SynthConfig) -> Question | None:
    pair = _two_shapes(scene, rng)
    if pair is None:
        return None
    a, b = pair
    na, nb = len(_count(scene, shape=a)), len(_count(scene, shape=b))
    if na == nb:
        return None
    if na < nb:
        a, b, na, nb = b, a, nb, na
    return Question(
        "arithmetic",
        f"How many more {plural(a)} than {plural(b)} are there?",
        str(na - nb),
        f"Count both kinds and subtract the number of {plural(b)} from the number of {plural(a)}.",
        [
            f"There {'is' if na == 1 else 'are'} {count_phrase(na, a)}.",
            f"There {'is' if nb == 1 else 'are'} {count_phrase(nb, b)}.",
            f"The difference is {na} - {nb} = {na - nb}.",
        ],
        _count(scene, shape=a) + _count(scene, shape=b),
        [count_phrase(na, a), count_phrase(nb, b)],
        wrong=str(na + nb),
    )


@template("arithmetic", levels=(1, 2))
def digit_sum(scene: Scene, rng: random.Random, cfg: SynthConfig) -> Question | None:
    with_digit = [o for o in scene.objects if o.digit is not None]
    if len(with_digit) < 2:
        return None
    values = [o.digit for o in with_digit]
    return Question(
        "arithmetic",
        "What is the sum of all the digits written on the shapes?",
        str(sum(values)),
        "Read every digit in the image and add them up.",
        [
            f"The digits are {_digits_text(with_digit)}.",
            f"Adding them: {_sum_text(values)}.",
        ],
        with_digit,
        object_key_words(with_digit),
        wrong=str(sum(values) - values[-1]),
    )


@template("arithmetic", levels=(2, 3))
def digits_minus_count(scene: Scene, rng: random.Random, cfg: SynthConfig) -> Question | None:
    colors = sorted({o.color for o in scene.objects if o.digit is not None})
    if not colors:
        return None
    color = rng.choice(colors)
    shape = rng.choice(sorted({o.shape for o in scene.objects}))
    colored = _count(scene, color=color)
    with_digit = [o for o in colored if o.digit is not None]
    values = [o.digit for o in with_digit]
    shapes = _count(scene, shape=shape)
    result = sum(values) - len(shapes)
    steps = [
        f"The {color} shapes are {join([object_phrase(o, scene, where=False) for o in colored])}.",
        f"The digits on them are {join([str(v) for v in values])}, which sum to {_sum_text(values)}."
        if len(values) > 1
        else f"The only digit on them is {values[0]}.",
        f"There {'is' if len(shapes) == 1 else 'are'} {count_phrase(len(shapes), shape)}.",
        f"So the result is {sum(values)} - {len(shapes)} = {result}.",
    ]
    return Question(
        "arithmetic",
        f"What is the sum of the digits on the {color} shapes minus the number of {plural(shape)}?",
        str(result),
        f"First add the digits written on {color} shapes, then count the {plural(shape)} and subtract.",
        steps,
        unique([*with_digit, *shapes]),
        unique([*object_key_words(with_digit), count_phrase(len(shapes), shape)]),
        wrong=str(sum(values) + len(shapes)),
    )


@template("arithmetic", levels=(2,))
def digit_product(scene: Scene, rng: random.Random, cfg: SynthConfig) -> Question | None:
    named = [(o, r) for o, r in _named(scene) if o.digit is not None and "digit" not in r]
    if len(named) < 2:
        return None
    (a, ra), (b, rb) = rng.sample(named, 2)
    return Question(
        "arithmetic",
        f"What is the product of the digits on {ra} and {rb}?",
        str(a.digit * b.digit),
        "Read the two digits and multiply them.",
        [
            f"{capitalize(ra)} carries the digit {a.digit}.",
            f"{capitalize(rb)} carries the digit {b.digit}.",
            f"Their product is {a.digit} × {b.digit} = {a.digit * b.digit}.",
        ],
        [a, b],
        object_key_words([a, b]),
        wrong=str(a.digit + b.digit),
    )


@template("arithmetic", levels=(3,))
def three_steps(scene: Scene, rng: random.Random, cfg: SynthConfig) -> Question | None:
    shapes = sorted({o.shape for o in scene.objects if o.digit is not None})
    if not shapes:
        return None
    shape = rng.choice(shapes)
    color = rng.choice(sorted({o.color for o in scene.objects}))
    group = [o for o in _count(scene, shape=shape) if o.digit is not None]
    values = [o.digit for o in group]
    colored = _count(scene, color=color)
    all_digits = [o for o in scene.objects if o.digit is not None]
    top = max(o.digit for o in all_digits)
    result = sum(values) * len(colored) - top
    return Question(
        "arithmetic",
        f"Add up the digits on all the {plural(shape)}, multiply the result by the number of "
        f"{color} shapes, then subtract the largest digit in the image. What is the result?",
        str(result),
        "Three quantities are needed: the digit sum over one kind of shape, a colour count, "
        "and the largest digit; then combine them in the stated order.",
        [
            f"The digits on the {plural(shape)} are {join([str(v) for v in values])}; their sum is "
            f"{_sum_text(values)}.",
            f"There {'is' if len(colored) == 1 else 'are'} {count_phrase(len(colored), f'{color} shape')}.",
            f"The digits in the image are {join([str(o.digit) for o in all_digits])}; the largest is {top}.",
            f"So the result is {sum(values)} × {len(colored)} - {top} = {result}.",
        ],
        unique([*group, *colored]),
        unique([*object_key_words(group), count_phrase(len(colored), f"{color} shape"), f"digit {top}"]),
        wrong=str(sum(values) * len(colored)),
    )


@template("arithmetic", levels=(3,))
def digit_range_times(scene: Scene, rng: random.Random, cfg: SynthConfig) -> Question | None:
    with_digit = [o for o in scene.objects if o.digit is not None]
    if len({o.digit for o in with_digit}) < 2:
        return None
    shape = rng.choice(sorted({o.shape for o in scene.objects}))
    n = len(_count(scene, shape=shape))
    hi, lo = max(o.digit for o in with_digit), min(o.digit for o in with_digit)
    result = (hi - lo) * n
    return Question(
        "arithmetic",
        f"Subtract the smallest digit in the image from the largest one, then multiply by the "
        f"number of {plural(shape)}. What do you get?",
        str(result),
        "Find the largest and smallest digits, take their difference, then scale it by a count.",
        [
            f"The digits are {_digits_text(with_digit)}.",
            f"The largest is {hi} and the smallest is {lo}, so the difference is {hi} - {lo} = {hi - lo}.",
            f"There {'is' if n == 1 else 'are'} {count_phrase(n, shape)}.",
            f"So the result is {hi - lo} × {n} = {result}.",
        ],
        with_digit,
        unique([f"digit {hi}", f"digit {lo}", count_phrase(n, shape)]),
        wrong=str(hi - lo + n),
    )


# ------------------------------------------------------------------------------ comparison


@template("comparison", levels=(1, 2), yes_no=True)
def more_than(scene: Scene, rng: random.Random, cfg: SynthConfig) -> Question | None:
    pair = _two_shapes(scene, rng)
    if pair is None:
        return None
    a, b = pair
    na, nb = len(_count(scene, shape=a)), len(_count(scene, shape=b))
    if na == nb:
        return None
    return Question(
        "comparison",
        f"Are there more {plural(a)} than {plural(b)}?",
        yes_no(na > nb),
        "Count both kinds of shape and compare the two numbers.",
        [
            f"There {'is' if na == 1 else 'are'} {count_phrase(na, a)} and "
            f"{'is' if nb == 1 else 'are'} {count_phrase(nb, b)}.",
            f"{na} is {'greater' if na > nb else 'less'} than {nb}, so the answer is {yes_no(na > nb)}.",
        ],
        _count(scene, shape=a) + _count(scene, shape=b),
        [count_phrase(na, a), count_phrase(nb, b)],
        wrong=yes_no(na <= nb),
    )


@template("comparison", levels=(1, 2))
def bigger_of_two(scene: Scene, rng: random.Random, cfg: SynthConfig) -> Question | None:
    named = _named(scene)
    pairs = [
        (a, ra, b, rb)
        for a, ra in named
        for b, rb in named
        if clearly_larger(cfg, a, b) and (a.color != b.color or a.shape != b.shape)
    ]
    if not pairs:
        return None
    big, rbig, small, rsmall = rng.choice(pairs)
    ask = "color" if big.color != small.color else "shape"
    first, second = (rbig, rsmall) if rng.random() < 0.5 else (rsmall, rbig)
    return Question(
        "comparison",
        f"Which is larger, {first} or {second}? Answer with its {ask}.",
        getattr(big, ask),
        "Find both shapes and compare their sizes.",
        [
            f"{capitalize(rbig)} is {object_phrase(big, scene)}.",
            f"{capitalize(rsmall)} is {object_phrase(small, scene)}.",
            f"The {big.size} one is larger, and its {ask} is {getattr(big, ask)}.",
        ],
        [big, small],
        object_key_words([big, small], digits=False),
        wrong=getattr(small, ask),
    )


@template("comparison", levels=(2, 3))
def larger_digit(scene: Scene, rng: random.Random, cfg: SynthConfig) -> Question | None:
    named = [(o, r) for o, r in _named(scene) if o.digit is not None and "digit" not in r]
    pairs = [
        (a, ra, b, rb) for a, ra in named for b, rb in named if a.digit is not None and b.digit is not None
    ]
    pairs = [p for p in pairs if p[0].digit != p[2].digit and p[0].id < p[2].id]
    if not pairs:
        return None
    a, ra, b, rb = rng.choice(pairs)
    hi = max(a.digit, b.digit)
    return Question(
        "comparison",
        f"Which number is larger: the digit on {ra} or the digit on {rb}?",
        str(hi),
        "Read both digits and keep the larger one.",
        [
            f"{capitalize(ra)} carries {a.digit}; {rb} carries {b.digit}.",
            f"The larger of {a.digit} and {b.digit} is {hi}.",
        ],
        [a, b],
        object_key_words([a, b]),
        wrong=str(min(a.digit, b.digit)),
    )


def _most_common(scene: Scene, attr: str) -> tuple[str, Counter[str]] | None:
    counts = Counter(getattr(o, attr) for o in scene.objects)
    ranked = counts.most_common()
    if ranked[0][1] < 2 or (len(ranked) > 1 and ranked[1][1] == ranked[0][1]):
        return None
    return ranked[0][0], counts


@template("comparison", levels=(2, 3))
def most_common_color(scene: Scene, rng: random.Random, cfg: SynthConfig) -> Question | None:
    found = _most_common(scene, "color")
    if found is None:
        return None
    color, counts = found
    listing = join([count_phrase(n, f"{c} shape") for c, n in sorted(counts.items(), key=lambda kv: -kv[1])])
    return Question(
        "comparison",
        "Which color appears most often among the shapes?",
        color,
        "Count the shapes of each colour and find the colour with the highest count.",
        [f"By colour there are {listing}.", f"The largest count belongs to {color}."],
        _count(scene, color=color),
        [count_phrase(counts[color], f"{color} shape")],
        wrong=sorted(counts, key=lambda c: (-counts[c], c))[1] if len(counts) > 1 else None,
    )


@template("comparison", levels=(2, 3))
def most_common_shape(scene: Scene, rng: random.Random, cfg: SynthConfig) -> Question | None:
    found = _most_common(scene, "shape")
    if found is None:
        return None
    shape, counts = found
    listing = join([count_phrase(n, s) for s, n in sorted(counts.items(), key=lambda kv: -kv[1])])
    return Question(
        "comparison",
        "Which kind of shape appears most often? Answer with the shape name.",
        shape,
        "Count the shapes of each kind and find the kind with the highest count.",
        [f"By kind there are {listing}.", f"The largest count belongs to the {plural(shape)}."],
        _count(scene, shape=shape),
        [count_phrase(counts[shape], shape)],
        wrong=sorted(counts, key=lambda s: (-counts[s], s))[1] if len(counts) > 1 else None,
    )


@template("comparison", levels=(3,), yes_no=True)
def digit_sum_vs_count(scene: Scene, rng: random.Random, cfg: SynthConfig) -> Question | None:
    shapes = sorted({o.shape for o in scene.objects if o.digit is not None})
    if not shapes:
        return None
    shape = rng.choice(shapes)
    group = [o for o in _count(scene, shape=shape) if o.digit is not None]
    total, n = sum(o.digit for o in group), len(scene.objects)
    if total == n:
        return None
    return Question(
        "comparison",
        f"Is the sum of the digits on the {plural(shape)} greater than the number of shapes in the image?",
        yes_no(total > n),
        "Compute the digit sum over one kind of shape, count all shapes, and compare.",
        [
            f"The digits on the {plural(shape)} are {join([str(o.digit) for o in group])}; their sum is "
            f"{_sum_text([o.digit for o in group])}.",
            f"There are {count_phrase(n, 'shape')} in total.",
            f"{total} is {'greater' if total > n else 'less'} than {n}, so the answer is {yes_no(total > n)}.",
        ],
        group,
        unique([*object_key_words(group), count_phrase(n, "shape")]),
        wrong=yes_no(total <= n),
    )


# ------------------------------------------------------------------------------ multiple choice


def _numeric_options(
    answer: int, rng: random.Random, n: int, wrong: str | None, non_negative: bool
) -> list[str]:
    pool = {answer + d for d in range(-4, 5) if d} | (
        {int(wrong)} if wrong and wrong.lstrip("-").isdigit() else set()
    )
    pool = {v for v in pool if v != answer and (v >= 0 or not non_negative)}
    picked = rng.sample(sorted(pool), n - 1)
    return [str(v) for v in sorted([answer, *picked])]


def _word_options(
    answer: str, rng: random.Random, n: int, preferred: list[str], every: list[str]
) -> list[str] | None:
    distractors: list[str] = []
    for group in (preferred, every):
        rest = sorted({w for w in group if w != answer and w not in distractors})
        rng.shuffle(rest)
        distractors += rest[: n - 1 - len(distractors)]
    if len(distractors) < n - 1:
        return None
    options = [answer, *distractors]
    rng.shuffle(options)
    return options


@template("multiple_choice", levels=(1, 2, 3), needs_level=True)
def multiple_choice(scene: Scene, rng: random.Random, cfg: SynthConfig, level: int) -> Question | None:
    """Wrap a count/colour/shape/position/arithmetic/comparison question in lettered options."""
    inner_tasks = list(MC_INNER_TASKS)
    rng.shuffle(inner_tasks)
    for task in inner_tasks:
        inner = generate_question(task, scene, rng, cfg, level)
        if inner is None or inner.answer in ("yes", "no"):
            continue
        n = cfg.n_choices
        if inner.answer.lstrip("-").isdigit():
            # negative options only where the answer itself is negative (a count never is)
            options = _numeric_options(int(inner.answer), rng, n, inner.wrong, int(inner.answer) >= 0)
        else:
            every = list(cfg.shapes) if inner.answer in cfg.shapes else [c for c, _ in cfg.colors]
            attr = "shape" if inner.answer in cfg.shapes else "color"
            preferred = [w for w in (inner.wrong,) if w] + [getattr(o, attr) for o in scene.objects]
            options = _word_options(inner.answer, rng, n, preferred, every)
        if options is None:
            continue
        letter = LETTERS[options.index(inner.answer)]
        listed = "\n".join(f"{LETTERS[i]}. {opt}" for i, opt in enumerate(options))
        wrong_letter = rng.choice([LETTERS[i] for i in range(n) if LETTERS[i] != letter])
        return Question(
            "multiple_choice",
            f"{inner.question}\nChoices:\n{listed}\nAnswer with the letter of the correct option.",
            letter,
            inner.rationale + " Then match the result to one of the options.",
            [*inner.steps, f"The result {inner.answer} is option {letter}."],
            inner.targets,
            inner.key_words,
            choices=options,
            template=f"multiple_choice/{inner.template}",
            wrong=wrong_letter,
        )
    return None
