from __future__ import annotations

import pickle

import pytest

from rewards.alignment import CLIP_ENV
from rewards.presets import NotApplicableError, RewardResult, ScoreError, get_preset, list_presets
from rewards.samples import sample_records
from rewards.sections import render_sections


@pytest.fixture(autouse=True)
def _no_clip_env(monkeypatch):
    monkeypatch.delenv(CLIP_ENV, raising=False)


def _lexical(name: str, **more):
    """A preset with the lexical similarity, so results do not depend on the optional embedder."""
    return get_preset(
        name, {"alignment.similarity": "lexical", "accuracy.caption_similarity": "lexical", **more}
    )


CAPTION = "A red circle in the upper left and a blue square in the lower right."
RECORD = {
    "uid": "cap-1",
    "task": "caption",
    "answer": "",
    "key_words": ["red circle", "blue square"],
    "reference_caption": CAPTION,
    "images": [],
}
GOOD = render_sections(CAPTION, "Describe what is seen.", ["Look at the image."], "done")


@pytest.mark.parametrize(
    ("name", "weights"),
    [
        # PeBR's stage-1 weights
        ("pebr_stage1", {"alignment": 0.4, "keywords": 0.4, "format": 0.1, "length": 0.1}),
        # PeBR's stage-2 weights
        ("pebr_stage2", {"accuracy": 0.9, "format": 0.1}),
        # difficulty sampling: accuracy only
        ("pebr_sample", {"accuracy": 1.0}),
    ],
)
def test_weights_come_from_yaml(name, weights):
    assert get_preset(name).weights == weights


def test_list_presets():
    assert {"pebr_stage1", "pebr_stage2", "pebr_sample", "pebr_stage1_guarded"} <= set(list_presets())


def test_stage1_total_and_components():
    preset = _lexical("pebr_stage1")
    result = preset.score(GOOD, RECORD, n_tokens=100)
    assert isinstance(result, RewardResult)
    assert result.components == {"alignment": 1.0, "keywords": 1.0, "format": 1.0, "length": 1.0}
    assert result.total == pytest.approx(1.0)
    assert result.details["alignment_backend"] == "caption:lexical"
    # stage 1 logs correctness (caption vs reference) although accuracy has no weight
    assert result.correct is True
    assert result.details["accuracy"]["method"] == "caption:lexical+keywords:normalized"


def test_total_is_the_weighted_sum():
    preset = _lexical("pebr_stage1")
    response = render_sections(CAPTION, "r", ["s"], "x").replace("### Rationales:", "")  # format fails
    result = preset.score(response, RECORD, n_tokens=1024)  # length 0.5
    c = result.components
    assert c["format"] == 0.0
    assert c["length"] == 0.5
    expected = 0.4 * c["alignment"] + 0.4 * c["keywords"] + 0.1 * 0.0 + 0.1 * 0.5
    assert result.total == pytest.approx(expected)
    assert result.details["renormalised"] is False


def test_not_applicable_component_renormalises():
    preset = _lexical("pebr_stage1")
    record = {**RECORD, "key_words": []}
    result = preset.score(GOOD, record, n_tokens=10)
    assert result.components["keywords"] is None
    assert result.details["components"]["keywords"]["skipped"] == "record has no key_words"
    # 0.4 + 0.1 + 0.1 applicable, all scoring 1.0: total stays 1.0, not 0.6
    assert result.total == pytest.approx(1.0)
    assert result.details["applicable_weight"] == pytest.approx(0.6)
    assert result.details["renormalised"] is True
    bad = preset.score(
        render_sections(CAPTION, "r", ["s"], "x").replace("### Step 1:", ""), record, n_tokens=10
    )
    assert bad.total == pytest.approx((0.4 * 1.0 + 0.1 * 0.0 + 0.1 * 1.0) / 0.6)


def test_record_without_content_components_is_not_applicable():
    preset = get_preset("pebr_sample")
    with pytest.raises(
        NotApplicableError, match=r"'x'.*needs one of \['accuracy'\].*record has no gold answer"
    ):
        preset.score("anything", {"uid": "x", "task": "count", "answer": ""})
    # stage 1 on a record with neither key words nor a reference caption: format and length alone
    # would renormalise an empty response to 0.5, so the record is not scored
    stage1 = _lexical("pebr_stage1")
    with pytest.raises(NotApplicableError, match=r"needs one of \['alignment', 'keywords'\]"):
        stage1.score("", {"uid": "y", "task": "count", "answer": "3"})
    (res,) = stage1.score_batch([""], [{"uid": "y", "task": "count", "answer": "3"}], on_error="collect")
    assert isinstance(res, ScoreError)
    assert res.not_applicable is True


def test_no_applicable_component_without_requirement_is_an_error(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("p:\n  components:\n    keywords: {weight: 1.0}\n")
    with pytest.raises(ValueError, match=r"'z'.*no component.*keywords: record has no key_words"):
        get_preset("p", path=path).score("x", {"uid": "z"})


def test_require_one_of_must_name_components(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("p:\n  require_one_of: [accuracy]\n  components:\n    format: {weight: 1.0}\n")
    with pytest.raises(ValueError, match=r"require_one_of names \['accuracy'\]"):
        get_preset("p", path=path)


def test_length_uses_caller_tokens_or_documented_approximation():
    preset = _lexical("pebr_stage1")
    long = GOOD + " word" * 1000
    with_tokens = preset.score(long, RECORD, n_tokens=256)
    approx = preset.score(long, RECORD)
    assert with_tokens.components["length"] == 1.0
    assert with_tokens.details["components"]["length"]["n_tokens_source"] == "caller"
    assert approx.details["components"]["length"]["n_tokens_source"] == "approx"
    assert approx.components["length"] < 0.6


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        # unknown component key: the error lists the allowed ones
        ({"keywords.fuzzy": True}, r"unknown keys \['fuzzy'\]; allowed keys: \['weight', 'mode'"),
        # unknown component
        ({"components": {"beauty": {"weight": 1}}}, r"unknown reward component 'beauty'"),
        # bad value
        ({"keywords.mode": "fuzzy"}, r"keywords mode must be one of"),
        # negative weight
        ({"format.weight": -1}, r"weight must be a non-negative number"),
        # unknown accuracy option
        ({"accuracy": {"iou": 0.5}}, r"unknown accuracy keys \['iou'\]; allowed keys"),
        # unknown top-level key (nested form)
        ({"description": "x", "components": {"format": {"weight": 1, "style": "xml"}}}, r"format style"),
        # unknown alignment backend
        ({"alignment.backend": "dino"}, r"alignment backend must be one of"),
    ],
)
def test_bad_config_is_an_error_naming_what_is_allowed(overrides, message):
    with pytest.raises(ValueError, match=message):
        get_preset("pebr_stage1", overrides)


def test_unknown_preset_lists_the_available_ones():
    with pytest.raises(ValueError, match="available presets"):
        get_preset("pebr_stage3")


def test_presets_file_missing_weight(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("mine:\n  components:\n    format: {style: sections}\n  colour: red\n")
    with pytest.raises(ValueError, match=r"unknown keys \['colour'\]"):
        get_preset("mine", path=path)
    path.write_text("mine:\n  components:\n    format: {style: sections}\n")
    with pytest.raises(ValueError, match="needs a 'weight'"):
        get_preset("mine", path=path)
    path.write_text(
        "mine:\n  components:\n    format: {weight: 2.0}\n    length: {weight: 1.0, max_tokens: 4}\n"
    )
    preset = get_preset("mine", path=path)
    # weights need not sum to 1: the total keeps their scale
    assert preset.score("### Image Description: x", {"uid": "u"}, n_tokens=8).total == pytest.approx(0.5)


def test_presets_pickle():
    preset = _lexical("pebr_stage1")
    clone = pickle.loads(pickle.dumps(preset))
    assert clone == preset
    assert clone.score(GOOD, RECORD, n_tokens=5).total == preset.score(GOOD, RECORD, n_tokens=5).total


def test_grounding_preset_and_accuracy():
    record = {
        "uid": "g",
        "task": "grounding",
        "answer": "[10, 10, 50, 50]",
        "boxes": [[10, 10, 50, 50]],
        "image_sizes": [{"width": 100, "height": 100}],
    }
    preset = get_preset("grounding_iou")
    exact = preset.score("### The final answer is: [10, 10, 50, 50]", record)
    assert exact.correct is True
    assert exact.components["grounding"] == 1.0
    # whole-image box: IoU 0.16, below the 0.5 accuracy threshold
    whole = preset.score("[0, 0, 100, 100]", record)
    assert whole.correct is False
    assert whole.components["grounding"] == pytest.approx(0.16)
    # stage 2's accuracy of a grounding record is the IoU reward, correct at best IoU >= 0.5
    shifted = get_preset("pebr_stage2").score("<answer>[20, 10, 60, 50]</answer>", record)
    assert shifted.components["accuracy"] == pytest.approx(30 * 40 / (2 * 1600 - 1200))
    assert shifted.correct is True


def test_grounding_record_without_sizes_names_the_record():
    record = {"uid": "g2", "task": "grounding", "answer": "x", "boxes": [[1, 1, 5, 5]]}
    with pytest.raises(ValueError, match=r"'g2'.*image_sizes"):
        get_preset("pebr_stage2").score("[1, 1, 5, 5]", record)


def test_score_batch_collects_errors_and_keeps_order():
    preset = get_preset("grounding_iou")
    good = {"uid": "ok", "task": "grounding", "boxes": [[0, 0, 10, 10]], "image_sizes": [[20, 20]]}
    bad = {"uid": "bad", "task": "grounding", "boxes": [[0, 0, 10, 10]]}  # no image size
    results = preset.score_batch(["[0, 0, 10, 10]"] * 3, [good, bad, good], on_error="collect")
    assert isinstance(results[0], RewardResult)
    assert isinstance(results[1], ScoreError)
    assert isinstance(results[2], RewardResult)
    assert results[1].uid == "bad"
    assert results[1].index == 1
    assert "image_sizes" in results[1].error
    with pytest.raises(ValueError, match="'bad'"):
        preset.score_batch(["[0, 0, 10, 10]"] * 2, [good, bad])


@pytest.mark.slow
def test_score_batch_in_worker_processes_matches_serial():
    preset = get_preset("grounding_iou")
    rec = {"uid": "g", "task": "grounding", "boxes": [[0, 0, 10, 10]], "image_sizes": [[20, 20]]}
    responses = [f"[0, 0, {k}, 10]" for k in range(1, 21)]
    serial = preset.score_batch(responses, [rec] * 20)
    done = []
    parallel = preset.score_batch(responses, [rec] * 20, workers=2, chunk_size=5, progress=done.append)
    assert [r.total for r in parallel] == [r.total for r in serial]
    assert sum(done) == 20


def test_stage1_on_the_builtin_records_covers_every_task():
    from curation.schema import TASKS

    records = sample_records()
    assert {r["task"] for r in records} == set(TASKS)
    preset = _lexical("pebr_stage1")
    results = preset.score_batch([GOOD] * len(records), records)
    assert all(r.components["keywords"] == 1.0 for r in results)
    assert all(r.correct is not None for r in results)  # every sample record has a gold answer


def test_stage2_accuracy_math():
    preset = get_preset("pebr_stage2")
    rec = {"uid": "m", "task": "count", "answer": "3"}
    right = preset.score(render_sections("d", "r", ["s"], "3"), rec)
    assert right.correct is True
    assert right.total == pytest.approx(1.0)
    wrong = preset.score(render_sections("d", "r", ["s"], "4"), rec)
    assert wrong.correct is False
    assert wrong.total == pytest.approx(0.1)
    assert wrong.details["accuracy"]["extracted"] == "4"


def test_multiple_choice_uses_the_choices():
    preset = get_preset("pebr_sample")
    rec = {"uid": "mc", "task": "multiple_choice", "answer": "B", "choices": ["red", "blue", "green"]}
    assert preset.score("### The final answer is: B", rec).correct is True
    # hedging over every option is not an answer
    assert preset.score("### The final answer is: A, B, C", rec).correct is False
