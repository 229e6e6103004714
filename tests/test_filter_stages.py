"""The filter's text stages and the helpers that must equal the project's per-record code."""

from __future__ import annotations

import random

import numpy as np
import pyarrow as pa
import pytest
from _filter_fixtures import DOTTED_I, KELVIN, answer

from curation.filter_config import FilterConfig, config_from_mapping, load_filter_config
from curation.filter_worker import fast_final_answer
from curation.filters import (
    REASONS,
    STAGES,
    Drop,
    check_image_tags,
    check_reflective,
    duplicate_key,
    normalise_question,
    parse_pebr,
    parse_sharegpt,
)
from curation.plain_stages import uids
from curation.record_columns import string_array
from curation.schema import compute_uid
from rewards.sections import final_answer

PATTERNS = FilterConfig().patterns_lower


def _sharegpt(assistant: str, user: str = "<image>Q") -> dict:
    return {
        "messages": [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}],
        "images": ["a.png"],
    }


@pytest.mark.parametrize(
    ("text", "dropped"),
    [
        ("Wait. Let me rethink it.", True),  # Mulberry's sentence
        ("LET ME RETHINK IT", True),  # upper case
        ("let me RETHINK it carefully", True),  # mixed case
        ("Hold on, let me rethink items first.", True),  # a substring, as the reference matches
        (f"LET ME RETHIN{KELVIN} IT.", True),  # KELVIN SIGN: str.lower() gives "k"
        ("Let me rethink this step.", False),  # near miss
        ("Let me re-think it.", False),  # hyphen
        ("Let me  rethink it.", False),  # double space
        ("Let me\nrethink it.", False),  # newline
        (f"LET ME RETH{DOTTED_I}NK IT.", False),  # dotted I lowers to "i" + a combining dot
        ("Let me reconsider it.", False),  # another verb
    ],
)
def test_reflective_matches_python_lower(text, dropped):
    parsed = parse_sharegpt(_sharegpt(answer(extra=" " + text)), {})
    drop = check_reflective(parsed, PATTERNS)
    assert (drop is not None) == dropped
    assert (drop is not None) == ("let me rethink it" in parsed.answer_text.lower())


def test_reflective_ignores_the_user_turn_and_takes_custom_patterns():
    parsed = parse_sharegpt(_sharegpt(answer(), user="<image>Say 'let me rethink it'."), {})
    assert check_reflective(parsed, PATTERNS) is None
    custom = FilterConfig(reflective_patterns=("Step 1",)).patterns_lower
    assert check_reflective(parsed, custom).reason == "reflective"


@pytest.mark.parametrize(
    ("record", "detail"),
    [
        (["a", "list"], "JSON object"),  # not an object
        ({"images": []}, "missing key 'messages'"),  # no conversation
        ({"messages": "hi", "images": []}, "non-empty list"),  # wrong type
        ({"messages": [], "images": []}, "non-empty list"),  # empty conversation
        ({"messages": ["hi"], "images": []}, "must be an object"),  # a turn that is not an object
        ({"messages": [{"role": "user"}], "images": []}, "string 'content'"),  # no content
        ({"messages": [{"role": 3, "content": "x"}], "images": []}, "string 'role'"),  # role not a string
        ({"messages": [{"role": "assistant", "content": "x"}], "images": []}, "no user turn"),  # no user turn
        (
            {"messages": [{"role": "user", "content": "x"}], "images": 5},
            "'images' must be a path",
        ),  # images type
        (
            {"messages": [{"role": "user", "content": "x"}], "images": [1]},
            "'images'[0] must be a path",
        ),  # item type
        (
            {"messages": [{"role": "user", "content": "x"}], "images": [{"bytes": b"x", "path": None}]},
            "embeds image bytes",
        ),  # embedded bytes
    ],
)
def test_malformed_sharegpt_records_name_the_problem(record, detail):
    drop = parse_sharegpt(record, {})
    assert isinstance(drop, Drop)
    assert drop.reason == "malformed"
    assert detail in drop.detail


@pytest.mark.parametrize(
    ("record", "detail"),
    [
        ({"answer": "1"}, "missing key 'problem'"),  # no problem
        ({"problem": 3, "answer": "1"}, "'problem' must be a string"),  # wrong type
        ({"problem": "p", "answer": [1]}, "'answer' must be a string or a number"),  # a list answer
        ({"problem": "p", "answer": "1", "key_words": "red"}, "'key_words'"),  # key words not a list
    ],
)
def test_malformed_pebr_records_name_the_problem(record, detail):
    drop = parse_pebr(record, {})
    assert isinstance(drop, Drop)
    assert detail in drop.detail


def test_conversations_layout_and_a_column_mapping_are_read():
    conv = {
        "conversations": [{"from": "human", "value": "<image>Q"}, {"from": "gpt", "value": "A"}],
        "images": "x.png",
    }
    parsed = parse_sharegpt(conv, {})
    assert parsed.turns == (("user", "<image>Q"), ("assistant", "A"))
    assert parsed.images == ("x.png",)
    mapped = {"dialog": [{"who": "q", "text": "<image>Q"}, {"who": "a", "text": "A"}], "pics": ["y.png"]}
    cols = {
        "messages": "dialog",
        "role": "who",
        "content": "text",
        "user": "q",
        "assistant": "a",
        "images": "pics",
    }
    parsed = parse_sharegpt(mapped, cols)
    assert parsed.turns == (("user", "<image>Q"), ("assistant", "A"))
    assert parsed.images == ("y.png",)


@pytest.mark.parametrize(
    ("user", "images", "ok"),
    [
        ("<image>Q", ["a"], True),  # one tag, one image
        ("<image><image>Q", ["a", "b"], True),  # two and two
        ("Q", [], True),  # text only
        ("<image>Q", [], False),  # a tag without an image
        ("Q", ["a"], False),  # an image without a tag
    ],
)
def test_image_tags_must_match_images(user, images, ok):
    rec = {
        "messages": [{"role": "user", "content": user}, {"role": "assistant", "content": "A"}],
        "images": images,
    }
    assert (check_image_tags(parse_sharegpt(rec, {})) is None) == ok


FA_CASES = [
    "### The final answer is: 42",  # the usual
    "no header at all",  # None
    "### The final answer is: A\n\n### The final answer is: B",  # the last one wins
    "### The final answer is: A\n### Step 2:\nmore",  # runs to the next header
    "text The final answer is: 7",  # the literal mid-line is no header
    "  ###\tThe final answer is:\t8  ",  # spaces and tabs around ###
    "#### The final answer is: 9",  # four hashes: no header
    "### The final answer is: 1\ntrailing The final answer is: 2",  # a later non-header literal
    "### The final answer is:",  # empty
    "### The final answer is: x\r\n### Rationales:\nr",  # CRLF
    "### The final answer is: a ### Step 3: b",  # a header must start its line
    "### The final answer is: 5\n### Step ٣:\n",  # Arabic-Indic digit: still a step header
    "### Let's think step by step\n### The final answer is: yes",  # without the period
]


@pytest.mark.parametrize("text", FA_CASES)
def test_fast_final_answer_equals_the_shared_parser(text):
    assert fast_final_answer(text) == final_answer(text)


def test_fast_final_answer_equals_the_shared_parser_on_random_texts():
    rng = random.Random(0)
    pieces = [
        "### The final answer is:",
        "The final answer is:",
        "### Step 1:",
        "### Image Description:",
        "### Rationales:",
        "### Let's think step by step.",
        "\n",
        "\r\n",
        " ",
        "\t",
        "#",
        "x",
        "42",
        "∠",
        "###",
    ]
    for _ in range(3000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 12)))
        assert fast_final_answer(text) == final_answer(text), repr(text)


UID_CASES = [
    ("q", "a", []),  # no images
    ("∠ABC = ?", "", ["ab" * 32]),  # non-ASCII, empty answer
    ("q", "a", ["ab" * 32, "cd" * 32]),  # two images
    ("", "日本語", ["ef" * 32]),  # empty question, multi-byte answer
]


@pytest.mark.parametrize(("question", "ans", "digests"), UID_CASES)
def test_vectorised_uid_equals_compute_uid(question, ans, digests):
    hexes = np.frombuffer("".join(digests).encode(), dtype=np.uint8).reshape(-1, 64)
    got = uids(pa.array([question]), pa.array([ans]), hexes, np.array([0, len(digests)]))
    assert got == [compute_uid(question, ans, digests)]


def test_vectorised_uids_of_many_rows_at_once():
    hexes = np.frombuffer("".join(d for _q, _a, ds in UID_CASES for d in ds).encode(), dtype=np.uint8)
    offsets = np.cumsum([0] + [len(ds) for _q, _a, ds in UID_CASES])
    got = uids(
        pa.array([q for q, _a, _d in UID_CASES]),
        pa.array([a for _q, a, _d in UID_CASES]),
        hexes.reshape(-1, 64),
        offsets,
    )
    assert got == [compute_uid(q, a, d) for q, a, d in UID_CASES]


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("What colour is it?", "  what COLOUR  is it?", True),  # case and spaces
        ("What colour\nis it?", "What colour is it?", True),  # a newline is whitespace
        ("Straße?", "STRASSE?", True),  # casefold, not lower
        ("What colour is it?", "What color is it?", False),  # a different word
    ],
)
def test_duplicate_keys_compare_normalised_questions(a, b, same):
    d = ["ab" * 32]
    assert (duplicate_key(d, a) == duplicate_key(d, b)) == same
    assert (normalise_question(a) == normalise_question(b)) == same


def test_lazy_duplicate_keys_depend_on_images_only():
    d = ["ab" * 32]
    assert duplicate_key(d, "q1", lazy=True) == duplicate_key(d, "q2", lazy=True)
    assert duplicate_key([], "q1", lazy=True) != duplicate_key([], "q2", lazy=True)  # text only: final


@pytest.mark.parametrize(
    "values",
    [
        ["a", "bc", ""],  # ASCII
        ["∠ABC", "x", "日本語", ""],  # multi-byte
        ["a", None, "é", None],  # nulls
        [None, None],  # all null
        [],  # empty
    ],
)
def test_string_arrays_from_buffers_equal_pa_array(values):
    assert string_array(list(values)).equals(pa.array(values, pa.string()))


def test_stage_table_lists_every_reason_once():
    assert len(set(REASONS)) == len(STAGES) == 11
    assert REASONS[0] == "bad_json"
    assert REASONS[-1] == "duplicate"


def test_config_refuses_unknown_keys_and_bad_values(tmp_path):
    with pytest.raises(ValueError, match="unknown keys \\['min_sid'\\]"):
        config_from_mapping({"min_sid": 3})
    with pytest.raises(ValueError, match="layout"):
        FilterConfig(layout="alpaca")
    with pytest.raises(ValueError, match="not one string"):
        FilterConfig(reflective_patterns="let me rethink it")
    with pytest.raises(ValueError, match="columns: unknown keys"):
        FilterConfig(columns={"msgs": "x"})
    path = tmp_path / "c.yaml"
    path.write_text("filter:\n  min_side: 32\nother_stage:\n  k: 1\n")
    assert load_filter_config(path).min_side == 32
    path.write_text("min_side: 32\nbogus: 1\n")
    with pytest.raises(ValueError, match="bogus"):
        load_filter_config(path)
