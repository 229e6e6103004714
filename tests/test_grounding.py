from __future__ import annotations

import itertools
import random

import pytest

from rewards.grounding import (
    _max_weight_assignment,
    clip_box,
    convention_for_model,
    f1_at,
    f1_reward,
    grounding_text,
    iou,
    iou_reward,
    match,
    parse_boxes,
    score_grounding,
)

W, H = 200, 100  # a non-square image, so x and y scaling mistakes show


def _flat(boxes):
    return [float(v) for b in boxes for v in b]


PARSE_CASES = [
    # Qwen2-VL box tokens: 0-1000 grid scaled by W/1000, H/1000
    ("<|box_start|>(100,200),(500,600)<|box_end|>", [(20, 20, 100, 60)]),
    # the same with an object label before it
    (
        "<|object_ref_start|>the cat<|object_ref_end|><|box_start|>(0,0),(1000,1000)<|box_end|>",
        [(0, 0, 200, 100)],
    ),
    # Qwen2.5-VL JSON: absolute pixels
    ('```json\n[{"bbox_2d": [10, 20, 30, 40], "label": "cat"}]\n```', [(10, 20, 30, 40)]),
    # a bare list of integers: absolute pixels
    ("The box is [10, 20, 30, 40].", [(10, 20, 30, 40)]),
    # a list of lists: every inner list is a box
    ("[[1, 2, 3, 4], [5, 6, 7, 8]]", [(1, 2, 3, 4), (5, 6, 7, 8)]),
    # floats in [0, 1] with a decimal point: normalised, times W and H
    ("[0.1, 0.2, 0.5, 0.6]", [(20, 20, 100, 60)]),
    # 0 and 1 written as integers: no decimal point, so absolute pixels (a 1x1 box)
    ("[0, 0, 1, 1]", [(0, 0, 1, 1)]),
    # floats above 1: absolute pixels with decimals
    ("[10.5, 20.5, 30.5, 40.5]", [(10.5, 20.5, 30.5, 40.5)]),
    # NaN, Infinity, strings and null are not numbers: not boxes
    ("[NaN, 1, 2, 3] [Infinity, 1, 2, 3] ['a', 1, 2, 3] [null, 1, 2, 3]", []),
    # an exponent that overflows to inf is not a coordinate
    ("[1e999, 1, 2, 3]", []),
    # three or five numbers: not a box
    ("[1, 2, 3] [1, 2, 3, 4, 5]", []),
    # a point_2d is two numbers: not a box
    ('{"point_2d": [10, 20]}', []),
    # reversed box: parsed (it counts as a prediction) but invalid
    ("[30, 40, 10, 20]", [(30, 40, 10, 20)]),
    # negative coordinates are numbers; clipping happens at scoring
    ("[-10, -10, 50, 50]", [(-10, -10, 50, 50)]),
    # token boxes and lists in one text, in order of appearance
    ("[1, 2, 3, 4] then <|box_start|>(0,0),(500,500)<|box_end|>", [(1, 2, 3, 4), (0, 0, 100, 50)]),
]


@pytest.mark.parametrize(("text", "expected"), PARSE_CASES)
def test_parse_boxes_auto(text, expected):
    got = [b.coords for b in parse_boxes(text, (W, H))]
    assert _flat(got) == pytest.approx(_flat(expected))
    assert len(got) == len(expected)


@pytest.mark.parametrize(
    ("convention", "expected"),
    [
        # an explicit convention applies to every list, overriding detection
        ("absolute", (100, 200, 500, 600)),
        ("qwen2vl_1000", (20, 20, 100, 60)),
        ("normalized", (20000, 20000, 100000, 60000)),
    ],
)
def test_explicit_convention_overrides_auto(convention, expected):
    (box,) = parse_boxes("[100, 200, 500, 600]", (W, H), convention)
    assert box.coords == pytest.approx(expected)
    assert box.convention == convention


def test_unknown_convention_is_an_error():
    with pytest.raises(ValueError, match="convention must be one of"):
        parse_boxes("[1, 2, 3, 4]", (W, H), "pixels")


@pytest.mark.parametrize(
    ("model", "convention"),
    [
        ("Qwen/Qwen2-VL-7B-Instruct", "qwen2vl_1000"),  # 0-1000 box tokens
        ("Qwen/Qwen2.5-VL-3B-Instruct", "absolute"),  # pixels in bbox_2d JSON
        ("/models/qwen2_5_vl_tiny", "absolute"),  # local directory names work too
        ("llava-hf/llava-1.5-7b-hf", "normalized"),
    ],
)
def test_model_preset_table(model, convention):
    assert convention_for_model(model) == convention


def test_unknown_model_names_known_families():
    with pytest.raises(ValueError, match="known families"):
        convention_for_model("gpt-2")


@pytest.mark.parametrize(
    ("response", "scope", "expected"),
    [
        # only the last <answer> block is read
        ("<answer>[0, 0, 10, 10]</answer> <answer>[5, 5, 9, 9]</answer>", "answer_block", [(5, 5, 9, 9)]),
        # PeBR layout: boxes in the description do not count, the final answer does
        (
            "### Image Description:\nA cat at [0, 0, 50, 50].\n### The final answer is: [60, 0, 90, 40]",
            "final_answer",
            [(60, 0, 90, 40)],
        ),
        # no tags or sections: the whole response
        ("it is at [1, 1, 9, 9]", "response", [(1, 1, 9, 9)]),
    ],
)
def test_where_boxes_are_read(response, scope, expected):
    text, where = grounding_text(response)
    assert where == scope
    assert _flat([b.coords for b in parse_boxes(text, (W, H))]) == pytest.approx(_flat(expected))


def test_invalid_boxes_are_not_repaired():
    reversed_box, zero_area = parse_boxes("[30, 40, 10, 20] [10, 10, 10, 20]", (W, H))
    assert not reversed_box.valid
    assert not zero_area.valid
    # a reversed copy of the gold box earns nothing, and it dilutes a right box next to it
    assert iou_reward("[30, 40, 10, 20]", [[10, 20, 30, 40]], (W, H)) == 0.0
    assert iou_reward("[10, 20, 30, 40] [30, 40, 10, 20]", [[10, 20, 30, 40]], (W, H)) == pytest.approx(0.5)


def test_clipping_uses_the_image():
    assert clip_box((-10, -5, 250, 50), (W, H)) == (0, 0, 200, 50)
    # a box sticking out of the image is clipped before IoU: it matches the gold exactly
    assert iou_reward("[-50, -50, 100, 50]", [[0, 0, 100, 50]], (W, H)) == pytest.approx(1.0)


def test_iou_uses_continuous_areas():
    # half-pixel overlaps count: no +1 pixel convention
    assert iou((0, 0, 1, 1), (0.5, 0, 1.5, 1)) == pytest.approx(0.5 / 1.5)
    assert iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0


GOLD = [[20, 20, 60, 60]]
SCORE_CASES = [
    # exact box
    ("[20, 20, 60, 60]", GOLD, 1.0),
    # shifted by 10 px: IoU = 30*40 / (2*1600 - 1200)
    ("[30, 20, 70, 60]", GOLD, 1200 / 2000),
    # 50 boxes, one of them exact: 1/50
    (" ".join(["[20, 20, 60, 60]"] + ["[0, 0, 5, 5]"] * 49), GOLD, 1 / 50),
    # one whole-image box: IoU = 1600 / 20000
    ("[0, 0, 200, 100]", GOLD, 1600 / 20000),
    # the right box repeated 5 times: one match, divided by 5
    (" ".join(["[20, 20, 60, 60]"] * 5), GOLD, 1 / 5),
    # no box at all
    ("I cannot find it.", GOLD, 0.0),
    # two gold boxes, one found: 1/2
    ("[20, 20, 60, 60]", [[20, 20, 60, 60], [100, 0, 150, 50]], 0.5),
    # the same box in Qwen2-VL tokens: 100/1000*200=20, 200/1000*100=20, 300->60, 600->60
    ("<|box_start|>(100,200),(300,600)<|box_end|>", GOLD, 1.0),
]


@pytest.mark.parametrize(("response", "gold", "expected"), SCORE_CASES)
def test_iou_reward_table(response, gold, expected):
    assert iou_reward(response, gold, (W, H)) == pytest.approx(expected)


def test_optimal_matching_beats_greedy():
    # Greedy takes the best single pair first (pred0-gold1, IoU 0.353), which leaves pred1 with
    # gold0 (IoU 0): 0.353. The optimal matching pairs pred0-gold0 and pred1-gold1: 0.638.
    pred = [[10, 5, 18, 12], [15, 7, 23, 16]]
    gold = [[8, 2, 15, 11], [14, 6, 20, 12]]
    ious = [[iou(p, g) for g in gold] for p in pred]
    greedy = ious[0][1] + ious[1][0]
    optimal = ious[0][0] + ious[1][1]
    assert ious[0][1] == max(max(row) for row in ious)  # greedy's first pick
    assert optimal > greedy + 0.25
    result = match(pred, gold)
    assert result.total_iou == pytest.approx(optimal)
    assert [(i, j) for i, j, _ in result.pairs] == [(0, 0), (1, 1)]
    response = "[10, 5, 18, 12] [15, 7, 23, 16]"
    assert iou_reward(response, gold, (W, H)) == pytest.approx(optimal / 2)
    # the same on a bare weight matrix: [[0.9, 0.8], [0.8, 0.0]] -> 1.6, not greedy's 0.9
    assert sorted(_max_weight_assignment([[0.9, 0.8], [0.8, 0.0]])) == [(0, 1), (1, 0)]


def test_hungarian_matches_brute_force_on_random_matrices():
    rng = random.Random(0)
    for _ in range(100):
        n, m = rng.randint(1, 5), rng.randint(1, 5)
        w = [[rng.random() for _ in range(m)] for _ in range(n)]
        got = sum(w[i][j] for i, j in _max_weight_assignment(w))
        k = min(n, m)
        best = max(
            sum(w[i][j] for i, j in zip(rows, cols, strict=True))
            for rows in itertools.permutations(range(n), k)
            for cols in itertools.permutations(range(m), k)
        )
        assert got == pytest.approx(best)


@pytest.mark.parametrize(
    ("pred", "gold", "expected"),
    [
        # one hit out of one
        ([[0, 0, 10, 10]], [[0, 0, 10, 10]], 1.0),
        # one hit, one extra prediction: P=1/2, R=1 -> 2/3
        ([[0, 0, 10, 10], [50, 50, 60, 60]], [[0, 0, 10, 10]], 2 / 3),
        # IoU 0.6 is a hit at 0.5, a miss at 0.7 (below)
        ([[0, 0, 10, 10]], [[0, 0, 10, 6]], 1.0),
        # nothing predicted, nothing to find
        ([], [], 1.0),
        # nothing predicted, one to find
        ([], [[0, 0, 10, 10]], 0.0),
    ],
)
def test_f1_at_half(pred, gold, expected):
    assert f1_at(pred, gold, 0.5) == pytest.approx(expected)


def test_f1_threshold_and_count_first():
    assert f1_at([[0, 0, 10, 10]], [[0, 0, 10, 6]], 0.7) == 0.0
    # matching maximises hits: pred0 could take gold0 at IoU 1 but then pred1 misses; both hit otherwise
    gold = [[0, 0, 10, 10], [0, 0, 10, 5]]
    pred = [[0, 0, 10, 9], [0, 0, 10, 10]]
    assert f1_at(pred, gold, 0.5) == 1.0
    assert f1_reward("[0, 0, 10, 10] [90, 90, 95, 95]", [[0, 0, 10, 10]], (W, H)) == pytest.approx(2 / 3)


def test_score_grounding_explains_itself():
    res = score_grounding(
        "<answer>[20, 20, 60, 60] [30, 40, 10, 20]</answer>", GOLD, {"width": W, "height": H}
    )
    assert (res.n_pred, res.n_gold, res.n_invalid) == (2, 1, 1)
    assert res.ious == pytest.approx((1.0, 0.0))
    assert res.best_iou == 1.0
    assert res.scope == "answer_block"
    assert res.reward == pytest.approx(0.5)


def test_no_gold_and_no_prediction_is_full_credit():
    assert iou_reward("there is no such object", [], (W, H)) == 1.0
    assert iou_reward("[0, 0, 5, 5]", [], (W, H)) == 0.0


@pytest.mark.parametrize("size", [(0, 10), (10, -1), {"width": float("nan"), "height": 3}])
def test_bad_image_size_is_an_error(size):
    with pytest.raises(ValueError, match="image size"):
        iou_reward("[1, 2, 3, 4]", GOLD, size)


# Adversarial inputs: each must finish fast (a quadratic parser would take minutes here).
ADVERSARIAL = [
    # thousands of label openings with no box: the label lookup must not rescan the text
    "<|object_ref_start|>" * 20000,
    # one opening, then thousands of labelled-looking boxes
    "<|object_ref_start|>" + "<|object_ref_end|><|box_start|>(1,2),(3,4)<|box_end|>" * 5000,
    # unclosed brackets
    "[" * 100000,
    # a list that never ends
    "[1, " * 50000,
]


@pytest.mark.timeout(30)
@pytest.mark.parametrize("text", ADVERSARIAL, ids=["labels", "labelled-boxes", "brackets", "open-list"])
def test_adversarial_responses_parse_in_linear_time(text):
    boxes = parse_boxes(text, (W, H))
    assert len(boxes) == text.count("<|box_start|>")


@pytest.mark.timeout(30)
def test_thousands_of_boxes_score_cheaply_and_never_pay():
    spam = " ".join(f"[{i % 180}, {i % 90}, {i % 180 + 20}, {i % 90 + 10}]" for i in range(3000))
    assert iou_reward(spam + " [20, 20, 60, 60]", GOLD, (W, H)) < 1 / 3000
    # the right box 3000 times with two gold boxes: one match per gold box at most
    assert iou_reward("[20, 20, 60, 60] " * 3000, [*GOLD, [100, 0, 150, 50]], (W, H)) == pytest.approx(
        1 / 3000
    )


def test_label_is_read_from_just_before_the_box():
    text = "<|object_ref_start|>cat<|object_ref_end|> <|box_start|>(0,0),(10,10)<|box_end|> <|box_start|>(0,0),(5,5)<|box_end|>"
    first, second = parse_boxes(text, (W, H))
    assert first.label == "cat"
    assert second.label is None  # the label belongs to the first box only
