from __future__ import annotations

import copy

import pytest

from curation import convert, schema

MULBERRY = {
    "messages": [
        {"role": "user", "content": "<image>Question: How many red circles are there?"},
        {
            "role": "assistant",
            "content": "### Image Description:\nTwo red circles.\n\n### Rationales:\nCount them.\n\n"
            "### Let's think step by step.\n\n### Step 1:\nThere are 2.\n\n### The final answer is: 2",
        },
    ],
    "images": ["geoqa/0001/img_1.jpg"],
}

SHAREGPT_CASES = [
    MULBERRY,  # Mulberry's own layout
    {**MULBERRY, "images": "geoqa/0001/img_1.jpg"},  # images as a plain string (the reference accepts it)
    {"images": ["a.png", "b.png"], "messages": MULBERRY["messages"]},  # key order swapped
    {**MULBERRY, "system": "You are a tutor.", "id": 17},  # extra top-level keys
    {  # the classic sharegpt spelling
        "conversations": [{"from": "human", "value": "<image>What colour?"}, {"from": "gpt", "value": "red"}],
        "images": ["x.jpg"],
    },
    {"messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]},  # text-only
    {  # tag after the text, two images, an extra per-turn key
        "messages": [
            {"role": "user", "content": "Compare <image> and <image>", "loss": False},
            {"role": "assistant", "content": "same"},
        ],
        "images": ["1.jpg", "2.jpg"],
    },
]


@pytest.mark.parametrize("record", SHAREGPT_CASES)
def test_sharegpt_round_trip_is_exact(record):
    original = copy.deepcopy(record)
    canonical = convert.from_sharegpt(record, source="mulberry")
    assert schema.validate_record(canonical) == []
    back = convert.to_sharegpt(canonical)
    assert back == original
    assert list(back) == list(original)  # key order too
    # and through Arrow
    (via_arrow,) = schema.from_arrow(schema.to_arrow([canonical]))
    assert convert.to_sharegpt(via_arrow) == original


def test_sharegpt_fields():
    rec = convert.from_sharegpt(MULBERRY, source="mulberry")
    assert rec["question"] == "Question: How many red circles are there?"
    assert rec["answer"] == "2"
    assert schema.image_paths(rec) == ["geoqa/0001/img_1.jpg"]
    assert rec["messages"][1]["role"] == "assistant"


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"images": ["a.jpg"]}, "needs 'messages' or 'conversations'"),
        ({"messages": []}, "non-empty list"),
        ({"messages": [{"role": "user"}]}, "string 'content'"),
        ({"messages": [{"role": "user", "content": "hi"}], "images": [1]}, "'images' must be"),
        ({"messages": [{"role": "assistant", "content": "hi"}]}, "needs a user turn"),
        ([1, 2], "JSON object"),
    ],
)
def test_sharegpt_bad_records_raise_with_reason(record, message):
    with pytest.raises(convert.ConversionError, match=message):
        convert.from_sharegpt(record)


PEBR_CASES = [
    {
        "qid": "q-0001",
        "problem": "<image>How many squares are there?",
        "answer": "4",
        "images": ["imgs/1.jpg"],
        "key_words": ["blue square", "red circle"],
    },
    {
        "qid": 7,
        "problem": "<image>Sum?",
        "answer": 12,
        "images": ["a.jpg"],
        "key_words": [],
    },  # int qid, int answer
    {"qid": "x", "problem": "<image>q", "answer": "1.5", "images": ["a.jpg"], "key_words": ["k"], "level": 3},
    {
        "answer": "B",
        "qid": "y",
        "problem": "<image><image>Which?",
        "images": ["a.jpg", "b.jpg"],
        "key_words": [],
    },
]


@pytest.mark.parametrize(
    ("record", "layout"),
    [
        *[(r, "pebr") for r in PEBR_CASES],
        ({"problem": "How many? <image>", "answer": "3", "images": "a.jpg"}, "easyr1"),  # tag at the end
        ({"problem": "<image>Sum?", "answer": "3", "images": ["a.jpg"]}, "easyr1"),
    ],
)
def test_pebr_round_trip_is_exact(record, layout):
    original = copy.deepcopy(record)
    canonical = convert.from_pebr(record)
    assert schema.validate_record(canonical) == []
    back = convert.to_pebr(canonical, layout=layout)
    assert back == original
    assert list(back) == list(original)


def test_pebr_from_canonical_and_easyr1_layout():
    rec = schema.make_record(question="How many?", answer="3", images=["a.jpg"], key_words=["red"])
    assert convert.to_pebr(rec) == {
        "qid": rec["uid"],
        "problem": "<image>How many?",
        "answer": "3",
        "images": ["a.jpg"],
        "key_words": ["red"],
    }
    assert convert.to_pebr(rec, layout="easyr1") == {
        "problem": "<image>How many?",
        "answer": "3",
        "images": ["a.jpg"],
    }


def test_trl_prompt_round_trip_and_shape():
    rec = convert.from_pebr(PEBR_CASES[0], task="count", stage_hint="perception")
    ex = convert.to_trl(rec, kind="prompt")
    assert ex["prompt"] == [
        {
            "role": "user",
            "content": [{"type": "image"}, {"type": "text", "text": "How many squares are there?"}],
        }
    ]
    assert ex["images"] == ["imgs/1.jpg"]
    assert ex["answer"] == "4"
    assert ex["key_words"] == ["blue square", "red circle"]
    assert convert.from_trl(ex) == rec


def test_trl_messages_round_trip():
    rec = convert.from_sharegpt(SHAREGPT_CASES[-1])
    ex = convert.to_trl(rec, kind="messages", image_root="/data")
    assert ex["messages"][0]["content"] == [
        {"type": "text", "text": "Compare "},
        {"type": "image"},
        {"type": "text", "text": " and "},
        {"type": "image"},
    ]
    assert ex["messages"][1]["content"] == [{"type": "text", "text": "same"}]
    assert ex["images"] == ["/data/1.jpg", "/data/2.jpg"]
    back = convert.from_trl(ex, image_root="/data")
    assert back == rec
    assert convert.to_sharegpt(back) == SHAREGPT_CASES[-1]


def test_trl_messages_needs_a_conversation():
    rec = schema.make_record(question="q", answer="a")
    with pytest.raises(convert.ConversionError, match="no SFT conversation"):
        convert.to_trl(rec, kind="messages")
