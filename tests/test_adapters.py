from __future__ import annotations

import importlib.util
import pickle
import sys

import pytest

import rewards.easyr1
from rewards.alignment import CLIP_ENV
from rewards.presets import get_preset
from rewards.sections import render_sections
from rewards.trl import completion_text, reward_functions

CAPTION = "A red circle and a blue square."
GOOD = render_sections(CAPTION, "r", ["s"], "[10, 10, 50, 50]")
LEXICAL = {"alignment.similarity": "lexical", "accuracy.caption_similarity": "lexical"}

# Dataset columns as TRL passes them: one list per column, one entry per completion.
COLUMNS = {
    "uid": ["cap", "grd"],
    "task": ["caption", "grounding"],
    "answer": ["", "[10, 10, 50, 50]"],
    "key_words": [["red circle", "blue square"], []],
    "boxes": [None, [[10, 10, 50, 50]]],
    "image_sizes": [None, [{"width": 100, "height": 100}]],
    "reference_caption": [CAPTION, None],
    "images": [[], []],
}


@pytest.fixture(autouse=True)
def _no_clip_env(monkeypatch):
    monkeypatch.delenv(CLIP_ENV, raising=False)


@pytest.mark.parametrize(
    ("completion", "text"),
    [
        # plain completion
        ("hello", "hello"),
        # conversational completion: the assistant's content
        ([{"role": "assistant", "content": "hello"}], "hello"),
        # structured content parts: the text parts joined
        (
            [
                {
                    "role": "assistant",
                    "content": [{"type": "text", "text": "he"}, {"type": "text", "text": "llo"}],
                }
            ],
            "hello",
        ),
        # tool/user turns inside a completion are not the model's answer
        ([{"role": "tool", "content": "42"}, {"role": "assistant", "content": "hello"}], "hello"),
    ],
)
def test_completion_text(completion, text):
    assert completion_text(completion) == text


def test_stage1_functions_names_and_weights():
    funcs, weights = reward_functions("pebr_stage1", overrides=LEXICAL)
    assert [f.__name__ for f in funcs] == [
        "pebr_stage1/alignment",
        "pebr_stage1/keywords",
        "pebr_stage1/format",
        "pebr_stage1/length",
        "pebr_stage1/accuracy",
    ]
    assert weights == [0.4, 0.4, 0.1, 0.1, 0.0]  # accuracy logged, not trained on


def test_stage2_has_no_extra_accuracy():
    funcs, weights = reward_functions("pebr_stage2")
    assert [f.__name__ for f in funcs] == ["pebr_stage2/accuracy", "pebr_stage2/format"]
    assert weights == [0.9, 0.1]


def test_total_mode_logs_components_at_weight_zero():
    funcs, weights = reward_functions("pebr_stage2", mode="total")
    assert funcs[0].__name__ == "pebr_stage2/total"
    assert weights == [1.0, 0.0, 0.0]


@pytest.mark.parametrize("conversational", [False, True])
def test_functions_score_plain_and_conversational_completions(conversational):
    funcs, _ = reward_functions("pebr_stage1", overrides=LEXICAL)
    completions = [GOOD, "[10, 10, 50, 50]"]
    if conversational:
        completions = [[{"role": "assistant", "content": c}] for c in completions]
    prompts = [[{"role": "user", "content": "q"}]] * 2 if conversational else ["q", "q"]
    by_name = {
        f.__name__.split("/")[1]: f(
            prompts=prompts, completions=completions, completion_ids=[[1] * 600, [1] * 9], **COLUMNS
        )
        for f in funcs
    }
    assert by_name["keywords"][0] == 1.0
    assert by_name["alignment"][0] == 1.0
    assert by_name["format"][0] == 1.0
    assert by_name["length"][0] == pytest.approx(512 / 600)  # from completion_ids
    assert by_name["accuracy"][0] == 1.0  # caption close to its reference
    # stage 1 has nothing to reward on the grounding record (no key words, no reference): None
    # from every function, so TRL ignores the sample instead of paying for format and length
    assert [v[1] for v in by_name.values()] == [None] * 5


def test_stage2_functions_score_grounding():
    funcs, _ = reward_functions("pebr_stage2", overrides={"accuracy.caption_similarity": "lexical"})
    out = [
        f(prompts=["q"] * 2, completions=["x", "<answer>[10, 10, 50, 50]</answer>"], **COLUMNS) for f in funcs
    ]
    assert out[0] == [0.0, 1.0]  # accuracy: a caption that says nothing; the exact box
    assert out[1] == [0.0, 0.0]  # format


def test_functions_pickle_and_keep_their_names():
    funcs, _ = reward_functions("pebr_stage2")
    for f in funcs:
        clone = pickle.loads(pickle.dumps(f))
        assert clone.__name__ == f.__name__
        out = clone(
            prompts=["q"],
            completions=["<answer>[10, 10, 50, 50]</answer>"],
            **{k: v[1:] for k, v in COLUMNS.items()},
        )
        assert out == f(
            prompts=["q"],
            completions=["<answer>[10, 10, 50, 50]</answer>"],
            **{k: v[1:] for k, v in COLUMNS.items()},
        )


def test_column_length_mismatch_is_an_error():
    funcs, _ = reward_functions("pebr_stage2")
    with pytest.raises(ValueError, match="'task' has 2 values for 1 completions"):
        funcs[0](prompts=["q"], completions=["x"], task=["count", "count"])


def test_trl_finds_the_names():
    from trl.trainer.utils import get_callable_name

    funcs, _ = reward_functions("pebr_stage2")
    assert get_callable_name(funcs[1]) == "pebr_stage2/format"


# ----------------------------------------------------------------------------- EasyR1


def _load_from_path():
    """Load rewards/easyr1.py the way EasyR1 does: by file path, under another module name."""
    spec = importlib.util.spec_from_file_location("custom_reward_fn", rewards.easyr1.__file__)
    module = importlib.util.module_from_spec(spec)
    sys.modules["custom_reward_fn"] = module
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules["custom_reward_fn"]
    return module


def test_easyr1_file_path_loading_and_scores():
    module = _load_from_path()
    assert module.REWARD_TYPE == "batch"
    assert module.REWARD_NAME == "pebr"
    inputs = [
        {
            "response": "<answer>[10, 10, 50, 50]</answer>",
            "response_length": 12,
            "ground_truth": "[10, 10, 50, 50]",
            "task": "grounding",
            "boxes": [[10, 10, 50, 50]],
            "image_sizes": [[100, 100]],
        },
        {  # PeBR's fork: key_words and images; ground_truth may be a mapping of record columns
            "response": GOOD,
            "response_length": 1024,
            "ground_truth": {"answer": "", "task": "caption", "reference_caption": CAPTION},
            "key_words": ["red circle", "green cone"],
            "images": [],
        },
    ]
    out = module.compute_score(inputs, preset="pebr_stage1", **LEXICAL)
    # stage 1 has nothing to reward on a grounding record without key words or reference
    assert out[0] == {"overall": 0.0, "not_applicable": 1.0}
    assert out[1]["keywords"] == 0.5
    assert out[1]["length"] == 0.5  # response_length 1024 > 512
    assert out[1]["alignment"] == 1.0
    expected = 0.4 * 1.0 + 0.4 * 0.5 + 0.1 * 1.0 + 0.1 * 0.5
    assert out[1]["overall"] == pytest.approx(expected)
    assert all(isinstance(v, float) for row in out for v in row.values())
    (grounding,) = module.compute_score(inputs[:1], preset="pebr_stage2")
    assert grounding == pytest.approx({"overall": 0.9, "accuracy": 1.0, "format": 0.0, "correct": 1.0})


def test_easyr1_rejects_sequential_use():
    with pytest.raises(ValueError, match="reward_type: batch"):
        rewards.easyr1.compute_score({"response": "x", "ground_truth": "1"})


def test_easyr1_matches_the_preset():
    inputs = [
        {
            "response": "<answer>[0, 0, 10, 10]</answer>",
            "ground_truth": "x",
            "task": "grounding",
            "boxes": [[0, 0, 10, 20]],
            "image_sizes": [[50, 50]],
        }
    ]
    (out,) = rewards.easyr1.compute_score(inputs, preset="grounding_iou")
    ref = get_preset("grounding_iou").score(inputs[0]["response"], rewards.easyr1.to_record(inputs[0]))
    assert out["overall"] == pytest.approx(ref.total)
    assert out["grounding"] == pytest.approx(0.5)
