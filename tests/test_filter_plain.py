"""The vectorised path for plain sharegpt records must decide exactly as the per-record path.

Every comparison runs the same task through :class:`FilterWorker` twice: as is, and with the
vectorised path switched off (``worker.plain = None``), and asserts equal verdicts, details,
canonical rows, duplicate keys, image counters and cache rows.
"""

from __future__ import annotations

import json
import random

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from _filter_fixtures import DOTTED_I, KELVIN, answer, build_dataset, image_bytes, record, write_json

from curation import speedups
from curation.filter_config import FilterConfig
from curation.filter_worker import FilterWorker
from curation.filters import fast_final_answer
from curation.images import ImageChecker, cache_table, load_cache
from curation.io import InputSource
from curation.plain_parse import CONVERSATIONS, MESSAGES, MIN_SPLIT, _parse_arrow, _parse_native
from curation.plain_stages import PY_WHITESPACE, _final_answers, reflective_matches

CFG = FilterConfig(workers=0)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("plain")
    records, _expected, images = build_dataset(root)
    for name, size in (("p1.png", (60, 60)), ("p2.png", (61, 60)), ("p3.png", (62, 60))):
        (images / name).write_bytes(image_bytes(size))
    return records, images


def _turns(*pairs: tuple[str, str]) -> list[dict]:
    return [{"role": r, "content": c} for r, c in pairs]


def tricky_records() -> list:
    """Plain and nearly plain records, each with the reason it is here."""
    a = answer()
    return [
        record("Q plain", ["p1.png"]),  # plain
        {"images": ["p1.png"], "messages": record("Q order", [1])["messages"]},  # key order
        {
            "messages": [{"content": "<image>Q", "role": "user"}, {"content": a, "role": "assistant"}],
            "images": ["p2.png"],
        },  # turn key order
        {"messages": record("Q extra", [1])["messages"], "images": ["p2.png"], "id": 7},  # an extra key
        {"messages": record("Q str", [1])["messages"], "images": "p3.png"},  # images as a string
        {"messages": record("Q null", [0])["messages"], "images": None},  # images null
        {"messages": record("Q none", [0])["messages"]},  # no images key
        {
            "messages": _turns(("human", "<image>Q"), ("gpt", a)),
            "images": ["p1.png"],
        },  # sharegpt roles in messages
        {
            "messages": _turns(("system", "be brief"), ("user", "<image>Q sys"), ("assistant", a)),
            "images": ["p2.png"],
        },  # a system turn
        {
            "messages": _turns(("user", "<image>Q1"), ("assistant", "x"), ("user", "Q2"), ("assistant", a)),
            "images": ["p3.png"],
        },  # two rounds
        {
            "messages": _turns(
                ("user", "<image>Q"), ("assistant", "Let me rethink it."), ("user", "ok"), ("assistant", a)
            ),
            "images": ["p1.png"],
        },  # reflective in an earlier turn
        {
            "messages": _turns(("user", "<image>Q"), ("tool", "let me rethink it"), ("assistant", a)),
            "images": ["p1.png"],
        },  # phrase in another role
        record("Q kelvin", ["p2.png"], extra=f" LET ME RETHIN{KELVIN} IT"),  # KELVIN SIGN
        record("Q dotted", ["p3.png"], extra=f" let me reth{DOTTED_I}nk it"),  # dotted I: a near miss
        record("Q hash", ["p1.png"], final="C# and F#"),  # '#' after the header
        {
            "messages": _turns(("user", "<image>Q"), ("assistant", "### The final answer is: 4")),
            "images": ["p2.png"],
        },  # header at the start
        {
            "messages": _turns(("user", "<image>Q"), ("assistant", "  just text  ")),
            "images": ["p3.png"],
        },  # no header
        {
            "messages": _turns(
                ("user", "<image>Q"), ("assistant", "### The final answer is: 5\n### Step 9: late")
            ),
            "images": ["p1.png"],
        },  # a header after the answer
        {
            "messages": _turns(("user", "<image>Q"), ("assistant", "### The final answer is:\u3000\u2003")),
            "images": ["p2.png"],
        },  # Unicode-blank answer
        {
            "messages": _turns(("user", "<image>Q\x1c"), ("assistant", a + "\x1f")),
            "images": ["p3.png"],
        },  # separators str.strip removes
        {
            "messages": _turns(("user", "Q no tag"), ("assistant", a)),
            "images": ["p1.png"],
        },  # tag count mismatch
        {
            "messages": _turns(("user", "<image><image>Q"), ("assistant", a)),
            "images": ["p1.png", "p2.png"],
        },  # two images
        {
            "messages": _turns(("user", "<image><image>Q"), ("assistant", a)),
            "images": ["gone.png", "p2.png"],
        },  # first of two missing
        {
            "messages": _turns(("user", "<image><image>Q"), ("assistant", a)),
            "images": ["p2.png", "small_w.png"],
        },  # second of two small
        {"messages": _turns(("user", "Q text only"), ("assistant", a)), "images": []},  # no images
        {"messages": _turns(("user", "Q text only"), ("assistant", a)), "images": []},  # its duplicate
        {
            "messages": _turns(
                ("user", "<image>Q"),
            ),
            "images": ["p1.png"],
        },  # no assistant turn
        {
            "messages": _turns(
                ("assistant", a),
            ),
            "images": [],
        },  # no user turn
        {"messages": [], "images": []},  # no turns
        {"messages": [None, {"role": "user", "content": "<image>Q"}], "images": ["p1.png"]},  # a null turn
        {
            "messages": _turns(("user", '<image>∠ABC 日本 \\ "q"'), ("assistant", a)),
            "images": ["p1.png"],
        },  # escapes, non-ASCII
        {
            "messages": _turns(("user", "<image>Q ../x"), ("assistant", a)),
            "images": ["../outside.png"],
        },  # unsafe path
        record("Q plain", ["p1.png"]),  # a duplicate of the first record
        ["not", "a", "record"],  # not an object
        # the reflective stage, decided in bulk when the first flagged assistant turn is ASCII
        record("Q both", ["p2.png"], extra=" Let me rethink it. Step 1 again."),  # two patterns
        {
            "messages": _turns(
                ("user", "<image>Q"),
                ("assistant", f"LET ME RETHIN{KELVIN} IT"),
                ("user", "ok"),
                ("assistant", "let me rethink it"),
            ),
            "images": ["p3.png"],
        },  # the first match is not ASCII
        {
            "messages": _turns(
                ("user", "<image>Q"),
                ("assistant", f"let me reth{DOTTED_I}nk it"),
                ("user", "ok"),
                ("assistant", "x LET ME RETHINK IT"),
            ),
            "images": ["p1.png"],
        },  # a non-ASCII near miss, then an ASCII match
        {"messages": _turns(("user", "Q no tag"), ("assistant", "let me rethink it")), "images": ["p1.png"]},
        {
            "messages": _turns(("user", "<image>Q"), ("assistant", "Let me rethink it.")),
            "images": ["gone.png"],
        },  # reflective and its image missing
        {
            "messages": _turns(("user", "<image>Q"), ("assistant", a), ("assistant", "let me rethink it")),
            "images": ["p2.png"],
        },  # the second of two assistant turns
    ]


def _compare(path, images, cfg=CFG, chunk=7, messages_key="messages", cache=None) -> int:
    """Run every task both ways; returns how many records the vectorised path decided."""
    source = InputSource(path)
    decided = 0
    for task in source.tasks(chunk):
        fast = FilterWorker(cfg, "sharegpt", str(images), cache, messages_key)
        slow = FilterWorker(cfg, "sharegpt", str(images), cache, messages_key)
        slow.plain = None
        a, b = fast.run(task), slow.run(task)
        assert b.plain == 0
        decided += a.plain
        where = f"task {task.number} (records {task.first}..)"
        assert a.codes == b.codes, where
        assert a.details == b.details, where
        assert a.dup_keys == b.dup_keys, where
        rows_a = pa.Table.from_batches(a.batches).to_pylist() if a.batches else []
        rows_b = pa.Table.from_batches(b.batches).to_pylist() if b.batches else []
        assert rows_a == rows_b, where
        assert a.stats == b.stats, where
        assert sorted(map(str, cache_table(a.cache).to_pylist())) == sorted(
            map(str, cache_table(b.cache).to_pylist())
        )
    return decided


@pytest.mark.parametrize("chunk", [1, 5, 7, 64])  # odd records at every place in a chunk
def test_tricky_records_get_the_same_verdicts_both_ways(dataset, tmp_path, chunk):
    _records, images = dataset
    recs = tricky_records()
    path = write_json(recs, tmp_path / "t.json")
    decided = _compare(path, images, chunk=chunk)
    assert decided >= 10  # the plain ones did take the vectorised path


def test_fixture_dataset_both_ways_and_with_a_cache(dataset, tmp_path):
    records, images = dataset
    path = write_json(records + tricky_records(), tmp_path / "d.json")
    assert _compare(path, images, chunk=9) > len(records) // 2
    # with a sidecar from a first run: cache hits settle most images
    from curation.filter_pipeline import filter_dataset

    sidecar = tmp_path / "cache.parquet"
    filter_dataset(path, images, tmp_path / "o", CFG.replace(cache_path=str(sidecar)))
    cache = load_cache(sidecar, images)
    assert cache is not None
    assert _compare(path, images, chunk=9, cache=cache) > len(records) // 2


@pytest.mark.parametrize(
    "cfg",
    [
        CFG.replace(verify_images=True),  # decode errors drop
        CFG.replace(min_side=45, max_pixels=10**5),  # other thresholds
        CFG.replace(check_image_tags=False, drop_empty_answers=False, drop_duplicates=False),  # switches off
        CFG.replace(reflective_patterns=("step 1", "rethi")),  # patterns; one ends in "i"
        CFG.replace(reflective_patterns=("ünsure",)),  # a non-ASCII pattern
    ],
)
def test_options_both_ways(dataset, tmp_path, cfg):
    records, images = dataset
    path = write_json(records + tricky_records(), tmp_path / "d.json")
    _compare(path, images, cfg=cfg, chunk=16)


def test_bad_json_in_the_middle_of_a_chunk_falls_back_around_it(dataset, tmp_path):
    _records, images = dataset
    good = [record(f"Q{i}", ["p1.png"]) for i in range(150)]
    text = json.dumps(good, indent=2)
    cut = text.index('Q75"') + 3
    path = tmp_path / "bad.json"
    path.write_text(text[:cut] + "\\x" + text[cut:])  # an invalid escape in record 75
    cfg = CFG.replace(skip_bad_lines=True, drop_duplicates=False)
    decided = _compare(path, images, cfg=cfg, chunk=150)
    assert 150 - decided <= MIN_SPLIT  # only the refused piece went record by record
    res = FilterWorker(cfg, "sharegpt", str(images), None, "messages").run(next(InputSource(path).tasks(150)))
    assert [i for i, c in enumerate(res.codes) if c] == [75]


def test_jsonl_both_ways(dataset, tmp_path):
    records, images = dataset
    recs = records + tricky_records()
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs) + "\n\n")
    assert _compare(path, images, chunk=11) > len(records) // 2


def test_conversations_spelling_both_ways(dataset, tmp_path):
    _records, images = dataset
    a = answer()

    def conv(*pairs, imgs=("p1.png",)):
        return {"conversations": [{"from": f, "value": v} for f, v in pairs], "images": list(imgs)}

    recs = [
        conv(("human", "<image>Q1"), ("gpt", a)),  # plain
        conv(("system", "s"), ("human", "<image>Q2"), ("gpt", a), imgs=["p2.png"]),  # with a system turn
        conv(("user", "<image>Q3"), ("assistant", a), imgs=["p3.png"]),  # roles needing meta
        conv(("human", "<image>Q4"), ("gpt", "Let me rethink it. " + a)),  # reflective
        record("Q5", ["p2.png"]),  # the other spelling
    ]
    path = write_json(recs, tmp_path / "c.json")
    # decided in bulk: the plain one, the one with a system turn, and the reflective one
    assert _compare(path, images, chunk=5, messages_key="conversations") == 3
    worker = FilterWorker(CFG, "sharegpt", str(images), None, "conversations")
    res = worker.run(next(InputSource(path).tasks(5)))
    rows = pa.Table.from_batches(res.batches).to_pylist()
    assert rows[0]["meta"] == '{"sharegpt": {"messages_key": "conversations"}}'
    assert [m["role"] for m in rows[0]["messages"]] == ["user", "assistant"]


def test_parquet_rows_both_ways(dataset, tmp_path):
    records, images = dataset
    recs = [
        r for r in records + tricky_records() if isinstance(r, dict) and list(r) == ["messages", "images"]
    ]
    recs = [
        r
        for r in recs
        if isinstance(r["images"], list)
        and all(isinstance(t, dict) and list(t) == ["role", "content"] for t in r["messages"])
        and all(isinstance(t["content"], str) for t in r["messages"])
    ]
    path = tmp_path / "d.parquet"
    pq.write_table(pa.Table.from_pylist(recs), path)
    assert _compare(path, images, chunk=8) > len(recs) // 2


# --------------------------------------------------------------------------- the parser


GOOD = b'{"messages":[{"role":"user","content":"<image>Q"},{"role":"assistant","content":"A"}],"images":["a.png"]}'
ODD = [
    (b'{"messages":[{"role":"user","content":"<image>Q\\ud800"}],"images":["a.png"]}', "lone surrogate"),
    (b'{"messages":[{"role":"user","content":"<image>Q\xff"}],"images":["a.png"]}', "bad UTF-8"),
    (b'{"messages":[{"role":"user","content":"Q\xc0\x80"}],"images":["a.png"]}', "overlong UTF-8"),
    (b'{"messages":[{"role":"user","content":"Q\xed\xa0\x80"}],"images":["a.png"]}', "UTF-8 of a surrogate"),
    (b'{"messages":[{"role":"user","content":"Q"}],"images":["a\xf4\x90\x80\x80"]}', "above U+10FFFF"),
    (b'{"messages":[{"role":"user","content":"<image>Q\x01"}],"images":["a.png"]}', "control character"),
    (b'{"messages":[{"role":"user","role":"x","content":"Q"}],"images":["a.png"]}', "repeated key"),
    (b'{"messages":[{"role":"user","content":5}],"images":["a.png"]}', "a number for a string"),
    (b'{"messages":[{"role":"user","content":"Q"}],"images":["a.png"],"id":3}', "extra key"),
    (b'{"messages":[{"role":"user","content":"Q","x":1}],"images":["a.png"]}', "extra turn key"),
    (b'{"messages":[{"role":"user","content":"Q"}],"images":"a.png"}', "images a string"),
    (b'{"messages":[{"role":"user","content":"Q"}],"images":[null]}', "a null image"),
    (b'{"messages":[{"role":"user","content":"Q"}],"images":null}', "images null"),
    (b'{"messages":[{"role":"user","content":"Q"}]}', "images missing"),
    (b'{"messages":[{"content":"Q"}],"images":["a.png"]}', "role missing"),
    (b'{"images":["a.png"],"messages":[{"role":"user","content":"Q"}]}', "key order"),
    (b'{"messages":[{"content":"Q","role":"user"}],"images":["a.png"]}', "turn key order"),
    (b'{"mess\\u0061ges":[{"role":"user","content":"Q"}],"images":["a.png"]}', "an escaped key"),
    (b'\xef\xbb\xbf{"messages":[{"role":"user","content":"Q"}],"images":["a.png"]}', "a byte-order mark"),
    (b'{"messages":[{"role":"user","content":"Q"}],"images":["a.png"]} {"a":1}', "two objects"),
    (b'{"messages":[{"role":"user","content":"Q"}],"images":["a.png"],}', "trailing comma"),
    (b"[1, 2]", "a list"),
    (b"  ", "blank"),
]


def _native(buf, starts, ends, fmt, keys):
    if speedups.native is None:
        pytest.skip("the C extension is not built")
    return _parse_native(buf, starts, ends, keys)


#: both parsers: pyarrow.json with the byte checks, and the compiled one
PARSERS = pytest.mark.parametrize("parse_plain", [_parse_arrow, _native], ids=["arrow", "native"])


@PARSERS
@pytest.mark.parametrize(("odd", "why"), ODD, ids=[w for _o, w in ODD])
def test_parser_leaves_anything_not_plain_to_the_per_record_path(odd, why, parse_plain):
    parts = [GOOD] * 8 + [odd] + [GOOD] * 8
    buf = b",\n  ".join(parts)
    starts, ends, at = [], [], 0
    for p in parts:
        starts.append(at)
        ends.append(at + len(p))
        at += len(p) + 4
    parsed = parse_plain(buf, np.array(starts), np.array(ends), "json", MESSAGES)
    assert 8 in parsed.slow.tolist(), why
    assert sorted(parsed.rows.tolist() + parsed.slow.tolist()) == list(range(17))
    assert len(parsed.rows) >= 16 - MIN_SPLIT  # the others parsed in bulk
    assert parsed.table.num_rows == len(parsed.rows)


@PARSERS
def test_plain_records_parse_to_the_values_orjson_gives(parse_plain):
    recs = [orjson.loads(GOOD), record('∠A \\ "b" \u2028 \U0001f600', ["x y.png"])]
    buf = json.dumps(recs, indent=2, ensure_ascii=True).encode()  # \u escapes, surrogate pairs
    path_starts = [buf.index(b"{", 1), buf.index(b"\n  {", 10) + 3]
    ends = [buf.rindex(b"}", 0, path_starts[1]) + 1, buf.rindex(b"}") + 1]
    parsed = parse_plain(buf, np.array(path_starts), np.array(ends), "json", MESSAGES)
    assert parsed.rows.tolist() == [0, 1]
    assert parsed.table.to_pylist() == recs
    assert CONVERSATIONS.schema().names == ["conversations", "images"]


def _mutants(seed: bytes, rng: random.Random, n: int) -> list[bytes]:
    """``seed`` with one to three random edits: JSON punctuation, escapes (good, bad, lone
    surrogates), bad UTF-8, control characters, cuts."""
    pieces = [b'"', b"\\", b"{", b"}", b"[", b"]", b",", b":", b" ", b"\n", b"\\u", b"\\ud83d", b"\\ude00"]
    pieces += [b"\\u0000", b"\\n", b"\\x", b"\xff", b"\xc3", b"\xa9", b"\xed\xa0\x80", b"\x01", b"null", b"1"]
    pieces += [b"\xef\xbb\xbf", b"\xf0\x9f\x98\x80", b"\xf4\x90\x80\x80", b"\xc0\x80"]
    out = []
    for _ in range(n):
        s = bytearray(seed)
        for _edit in range(rng.randint(1, 3)):
            i = rng.randrange(len(s) + 1)
            if rng.random() < 0.6:
                s[i:i] = rng.choice(pieces)
            else:
                del s[i : i + rng.randint(1, 4)]
        out.append(bytes(s))
    return out


@pytest.mark.parametrize("keys", [MESSAGES, CONVERSATIONS], ids=["messages", "conversations"])
def test_the_compiled_parser_takes_exactly_the_records_pyarrow_and_the_checks_take(keys):
    """Thousands of edited records, one per span: the compiled parser calls the same ones
    plain as ``pyarrow.json`` plus the byte checks, with the same values, which are what
    ``orjson`` reads."""
    if speedups.native is None:
        pytest.skip("the C extension is not built")
    rng = random.Random(7)
    role, content = (keys.role, keys.content)
    seeds = [
        {
            keys.messages: [{role: "user", content: "<image>Q"}, {role: "assistant", content: "A"}],
            "images": ["a.png"],
        },
        {
            keys.messages: [
                {role: "user", content: '<image>\u00e9 \\ " \n\t x \U0001f600 \u2028'},
                {role: "assistant", content: "ok"},
            ],
            "images": ["d/x y.png", "b.jpg"],
        },
        {keys.messages: [{role: "user", content: "caf\u00e9 \U0001f600"}], "images": []},
    ]
    spans = []
    for i, rec in enumerate(seeds):
        seed = json.dumps(rec, ensure_ascii=i % 2 == 0, indent=2 if i == 2 else None).encode()
        spans += [seed, *_mutants(seed, rng, 1500)]
    plain = 0
    for span in spans:
        starts, ends = np.array([0]), np.array([len(span)])
        a = _parse_native(span, starts, ends, keys)
        b = _parse_arrow(span, starts, ends, "jsonl", keys)
        assert a.rows.tolist() == b.rows.tolist(), span
        assert a.slow.tolist() == b.slow.tolist(), span
        if len(a.rows):
            plain += 1
            a.table.validate(full=True)
            assert a.table.to_pylist() == b.table.to_pylist() == [orjson.loads(span)], span
    assert 200 < plain < len(spans) - 1000  # both kinds are well represented


def test_the_compiled_parser_refuses_spans_outside_the_buffer():
    if speedups.native is None:
        pytest.skip("the C extension is not built")
    with pytest.raises(ValueError, match="outside the buffer"):
        _parse_native(GOOD, np.array([0]), np.array([len(GOOD) + 1]), MESSAGES)


# --------------------------------------------------------------------------- the text stages


def test_lower_maps_only_two_non_ascii_characters_into_ascii_or_to_several():
    """The premise of ``reflective_matches``, on every code point of this Python."""
    special = [
        chr(c)
        for c in range(0x80, 0x110000)
        if not 0xD800 <= c < 0xE000
        and (len(chr(c).lower()) != 1 or any(ord(x) < 0x80 for x in chr(c).lower()))
    ]
    assert special == [DOTTED_I, KELVIN]
    assert DOTTED_I.lower() == "i\u0307"
    assert KELVIN.lower() == "k"


@pytest.mark.parametrize("pattern", ["let me rethink it", "rethi", "wait, k", "a.b*c", "step 1:"])
def test_reflective_matches_are_a_superset_of_python_lower_and_exact_on_ascii(pattern):
    rng = random.Random(0)
    variants = {c: {c, c.upper()} for c in pattern}
    variants["k"] = {"k", "K", KELVIN}
    texts = []
    for _ in range(400):
        chars = [rng.choice(sorted(variants[c])) for c in pattern]
        if pattern.endswith("i") and rng.random() < 0.3:
            chars[-1] = DOTTED_I
        if rng.random() < 0.2:
            chars[rng.randrange(len(chars))] = rng.choice(["ſ", "ı", "x", "\u0307"])
        texts.append(rng.choice(["", "∠ ", "x\n"]) + "".join(chars) + rng.choice(["", ".", " ok"]))
    (flags,) = reflective_matches(pa.array(texts), (pattern,))
    for text, flag in zip(texts, flags.tolist(), strict=True):
        if pattern in text.lower():
            assert flag, repr(text)
        if text.isascii():  # the reflective stage drops on these flags alone
            assert flag == (pattern in text.lower()), repr(text)
    assert any(t.isascii() and not f for t, f in zip(texts, flags.tolist(), strict=True))


def test_python_whitespace_set():
    assert "".join(c for c in map(chr, range(0x110000)) if c.isspace()) == PY_WHITESPACE


FA_TEXTS = [
    answer(),  # the usual layout
    "### The final answer is: 5",  # the header at the start
    "x\n  ###\tThe final answer is:\t8  ",  # blanks around ###
    "x\n#### The final answer is: 9",  # four hashes: no header
    "x\n### The final answer is: C#",  # a '#' in the answer
    "x\n### The final answer is: 1\n### Step 2: y",  # a later header
    "x\n### The final answer is: 1\nThe final answer is: 2",  # a later non-header literal
    "x\n### The final answer is:\u3000",  # a Unicode blank answer
    "no header at all \x1c",  # the whole text, stripped
    "x\r\n### The final answer is: r\r\n",  # CRLF
]


def test_final_answers_equal_the_per_record_function():
    rng = random.Random(1)
    pieces = [
        "### The final answer is:",
        "The final answer is:",
        "### Step 1:",
        "\n",
        "\r\n",
        " ",
        "#",
        "x",
        "∠",
    ]
    texts = FA_TEXTS + ["".join(rng.choice(pieces) for _ in range(rng.randint(1, 10))) for _ in range(2000)]
    got = _final_answers(pa.array(texts), np.arange(len(texts))).to_pylist()
    want = [fast_final_answer(t) if fast_final_answer(t) is not None else t.strip() for t in texts]
    assert got == want


# --------------------------------------------------------------------------- the image checks


def test_check_many_equals_check_one_by_one(dataset, tmp_path):
    records, images = dataset
    path = write_json(records, tmp_path / "d.json")
    from curation.filter_pipeline import filter_dataset

    sidecar = tmp_path / "cache.parquet"
    filter_dataset(path, images, tmp_path / "o", CFG.replace(cache_path=str(sidecar)))
    rels = []
    for r in records:
        imgs = r.get("images") if isinstance(r, dict) else None
        rels += (
            [imgs]
            if isinstance(imgs, str)
            else [p for p in imgs or [] if isinstance(p, str)]
            if isinstance(imgs, list)
            else []
        )
    rels += ["gone.png", "sub/", "", "/abs.png", "nodir/x.png", rels[0]]
    for cache in (None, load_cache(sidecar, images)):
        one, many = ImageChecker(images, cache=cache), ImageChecker(images, cache=cache)
        singles = [one.check(r)[0] for r in rels]
        batch = many.check_many(rels)
        assert [batch.info(i) for i in range(len(rels))] == singles
        assert one.stats() == many.stats()
