"""PeBR-compatible buckets (curation.pebr_compat, curation.fastjsonl): byte-identical files to the
reference script, exact json.loads semantics line by line, and the irregularity report."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from benchmarks.reference_buckets import reference_split
from curation.fastjsonl import derive_skeleton, scan_jsonl
from curation.pebr_compat import FILE_NAMES, REPORT_NAME, PebrCompatConfig, split_pebr, tally_rollouts
from trainer.cli import run

# Texts with what JSON writers escape differently: quotes, backslashes, control characters,
# non-ASCII (raw or \u-escaped), astral characters (surrogate pairs when escaped), U+2028.
TEXTS = [
    "plain answer",
    'a "quoted" word',
    "back\\slash and \\\\ double",
    "line\nbreak\tand tab",
    "caf\u00e9 \u00d7 30\u00b0",
    "emoji \U0001f600 and \u2028 separator",
    "\\u0041 looks like an escape",
    "ends with a backslash \\",
    "\x7f delete and \x1f unit separator",
]


def _line(r: random.Random, qid, acc, *, ascii_=None, layout="pebr") -> str:
    item = {
        "response": r.choice(TEXTS) * r.randint(1, 3),
        "ground_truth": str(r.randint(1, 99)),
        "qid": qid,
        "score": {"accuracy": acc},
    }
    if layout == "easyr1":  # another key order and more score components
        item = {"qid": qid, "response": item["response"], "score": {"overall": acc * 0.9, "accuracy": acc}}
    return json.dumps(item, ensure_ascii=r.random() < 0.5 if ascii_ is None else ascii_)


def _write_case(
    tmp: Path, seed: int, *, questions: int = 60, n: int = 8, layout: str = "pebr"
) -> tuple[Path, Path]:
    """A dataset + rollout file with every irregularity the reference meets."""
    r = random.Random(seed)
    qids = [f"q{i:04d}" for i in range(questions)]
    records = []
    for i, q in enumerate(qids):
        rec = {
            "qid": q,
            "problem": f"<image>{r.choice(TEXTS)} #{i}",
            "answer": str(i),
            "images": [f"img/{q}.png"],
        }
        if i % 7 == 0:
            rec["key_words"] = ["red circle", "\u00e9t\u00e9"]
        if i % 11 == 0:
            rec["weight"] = r.choice([0.5, 1e-05, 1e16, 2.5e-300, -0.0])  # floats json writes its own way
        if i % 13 == 0:
            rec["big"] = 2**70  # beyond 64 bits: orjson would read a float
        records.append(rec)
    records.append({**records[3], "problem": "duplicate qid, other text"})
    records.append({"problem": "no qid at all", "answer": "1"})
    r.shuffle(records)
    unrolled = set(r.sample(qids, 3))
    lines = []
    for q in qids:
        if q in unrolled:
            continue
        p = r.choice([0.0, 1.0, r.random()])
        count = n + r.choice([0] * 12 + [-1, 1])  # a few irregular counts
        for _ in range(count):
            lines.append(_line(r, q, 1.0 if r.random() < p else 0.0, layout=layout))
    lines.append(_line(r, "not-in-dataset", 1.0, layout=layout))
    r.shuffle(lines)
    lines.insert(5, '{"response": "truncated line, run was interrupt')
    lines.insert(9, "")
    lines.insert(12, '{"qid": "q0001", "score": {"accuracy": null}}')  # skipped: accuracy None
    lines.insert(14, '{"response": "no qid", "score": {"accuracy": 1.0}}')
    lines.insert(16, '{"qid": "q0002", "score": {"accuracy": true}, "response": "bool counts as 1.0"}')
    lines.insert(18, '{"qid": "q0002", "score": {"accuracy": 1}, "response": "int 1 == 1.0"}')
    ds = tmp / "pebr_grpo_dataset.json"
    ds.write_text(json.dumps(records, ensure_ascii=False, indent=2), encoding="utf-8")
    ro = tmp / "rollout_results.jsonl"
    ro.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return ro, ds


def _assert_same_files(ours: Path, ref: Path) -> None:
    for name in FILE_NAMES.values():
        assert (ours / name).read_bytes() == (ref / name).read_bytes(), name


@pytest.mark.parametrize(
    ("seed", "layout", "chunk"),
    [
        (0, "pebr", None),  # PeBR's own line layout
        (1, "easyr1", None),  # another key order, several score components
        (2, "pebr", 700),  # chunks of a few lines: chunk boundaries everywhere
    ],
)
def test_byte_identical_to_reference(tmp_path, seed, layout, chunk):
    ro, ds = _write_case(tmp_path, seed, layout=layout)
    config = PebrCompatConfig(chunk_bytes=chunk) if chunk else PebrCompatConfig()
    reference_split(str(ro), str(ds), str(tmp_path / "ref"))
    report = split_pebr(ro, ds, tmp_path / "ours", config)
    _assert_same_files(tmp_path / "ours", tmp_path / "ref")
    # most lines took the fast path; the odd ones were decoded one by one
    assert report.fast_lines > 0.8 * report.lines
    assert report.python_encoded_records > 0  # floats and huge integers went through json


def test_small_chunks_match_reference(tmp_path):
    ro, _ = _write_case(tmp_path, 3)
    whole = scan_jsonl(ro)
    pieces = scan_jsonl(ro, chunk_bytes=500, workers=2)
    assert pieces.n_lines == whole.n_lines
    assert sorted(pieces.slow_lines) == sorted(whole.slow_lines)
    key = lambda s: sorted(zip(s.key_line.tolist(), (s.keys[i] for i in s.key_index), strict=True))  # noqa: E731
    assert key(pieces) == key(whole)


def test_report_lists_every_irregularity(tmp_path):
    ro, ds = _write_case(tmp_path, 0)
    report = split_pebr(ro, ds, tmp_path / "out")
    saved = json.loads((tmp_path / "out" / REPORT_NAME).read_text())
    assert saved["malformed_count"] == 2
    assert [m["line"] for m in saved["malformed_lines"]] == [6, 10]  # 1-based line numbers
    assert {s["reason"] for s in saved["skipped_lines"]} == {"no qid", "no score.accuracy"}
    assert saved["unrolled_count"] == 3
    assert saved["duplicate_count"] == 1
    assert saved["orphan_qids"] == ["not-in-dataset"]
    assert saved["records_without_qid_count"] == 1
    for item in saved["irregular"]:
        assert item["rollouts"] != 8
        assert item["bucket"] in ("easy", "medium", "hard")
    assert report.irregular_count == len(saved["irregular"]) > 0


def _ref_counts(lines: list[str]) -> dict:
    """The reference loop's per-qid accuracies."""
    out: dict = {}
    for line in lines:
        try:
            data = json.loads(line)
        except json.JSONDecodeError:
            continue
        qid, acc = data.get("qid"), data.get("score", {}).get("accuracy")
        if qid is not None and acc is not None:
            out.setdefault(qid, []).append(acc)
    return {q: [len(a), sum(1 for x in a if x == 1.0)] for q, a in out.items()}


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('{"qid": "a", "score": {"accuracy": 1.0}}', {"a": [1, 1]}),  # plain
        ('{"qid": "a", "score": {"accuracy": 1.00}}', {"a": [1, 1]}),  # another spelling of 1.0
        ('{"qid": "a", "score": {"accuracy": 1e0}}', {"a": [1, 1]}),  # exponent form
        ('{"qid": "a", "score": {"accuracy": 0.5}}', {"a": [1, 0]}),  # partial credit is not correct
        ('{"qid": "a", "score": {"accuracy": "1.0"}}', {"a": [1, 0]}),  # a string is counted, never correct
        ('{"qid": "a", "score": {"accuracy": NaN}}', {"a": [1, 0]}),  # json.loads accepts NaN
        ('{"qid": "a", "score": {"accuracy": null}}', {}),  # None: skipped
        ('{"qid": "a", "score": {}}', {}),  # no accuracy: skipped
        ('{"qid": "a"}', {}),  # no score: skipped
        ('{"qid": null, "score": {"accuracy": 1.0}}', {}),  # no qid: skipped
        ('{"qid": 7, "score": {"accuracy": 1.0}}', {7: [1, 1]}),  # integer qid stays an integer
        ('{"qid": "a\\"b", "score": {"accuracy": 1.0}}', {'a"b': [1, 1]}),  # escaped qid (slow path)
        ('{"qid": "\\u00e9", "score": {"accuracy": 1.0}}', {"\u00e9": [1, 1]}),  # \u escape in the qid
        ('{"qid": "a", "score": {"accuracy": 1.0}, "qid": "b"}', {"b": [1, 1]}),  # duplicate key: last wins
        ('{"qid": "a", "score": {"accuracy": 1.0}}  ', {"a": [1, 1]}),  # trailing whitespace is fine
        ('{"qid": "a", "score": {"accuracy": 1.0}}x', {}),  # trailing garbage: not JSON
        ('{"qid": "a", "response": "raw\ttab", "score": {"accuracy": 1.0}}', {}),  # raw control char
        ('{"qid": "a", "response": "bad \\x escape", "score": {"accuracy": 1.0}}', {}),  # invalid escape
        ('{"qid": "a", "response": "\\u12G4", "score": {"accuracy": 1.0}}', {}),  # bad \u escape
        (
            '{"qid": "a", "response": "ok \\\\", "score": {"accuracy": 1.0}}',
            {"a": [1, 1]},
        ),  # escaped backslash
        ('{"qid": "a", "score": {"accuracy": 1.0}}\r', {"a": [1, 1]}),  # CRLF line ending
        (
            '{"qid": "a", "score": {"accuracy": 1.0}}\r{"qid": "b", "score": {"accuracy": 0.0}}',
            {"a": [1, 1], "b": [1, 0]},
        ),  # a lone CR splits the line, as text mode does
        ("", {}),  # blank line
    ],
)
def test_single_lines_follow_json_loads(tmp_path, line, expected):
    # a valid first line fixes the fast layout; the case line follows it
    first = '{"qid": "z", "score": {"accuracy": 0.0}}'
    path = tmp_path / "r.jsonl"
    path.write_bytes((first + "\n" + line + "\n").encode())
    got = tally_rollouts(path).counts
    got.pop("z")
    assert got == expected
    text_lines = path.read_text(encoding="utf-8").splitlines()
    ref = _ref_counts([ln for ln in (first, line) for ln in ln.replace("\r\n", "\n").split("\r")])
    ref.pop("z")
    assert ref == expected, text_lines


@pytest.mark.parametrize("seed", range(4))
def test_random_corruptions_match_json_loads(tmp_path, seed):
    """Mutated lines (bytes inserted, deleted, replaced) are counted exactly as json.loads does."""
    r = random.Random(seed)
    lines = [_line(r, f"q{r.randint(0, 9)}", r.choice([0.0, 1.0]), ascii_=True) for _ in range(400)]
    alphabet = ['"', "\\", "{", "}", ",", ":", " ", "u", "0", "x", "\n", "\u00e9", "1"]
    mutated = []
    for k, line in enumerate(lines):
        if k and r.random() < 0.5:
            pos = r.randrange(len(line))
            op = r.choice(["insert", "delete", "replace"])
            ch = r.choice(alphabet)
            if op == "insert":
                line = line[:pos] + ch + line[pos:]
            elif op == "delete":
                line = line[:pos] + line[pos + 1 :]
            else:
                line = line[:pos] + ch + line[pos + 1 :]
        mutated.append(line)
    path = tmp_path / "r.jsonl"
    path.write_text("\n".join(mutated) + "\n", encoding="utf-8")
    physical = path.read_text(encoding="utf-8").split("\n")[:-1]
    ours = tally_rollouts(path, PebrCompatConfig(workers=1)).counts
    assert ours == _ref_counts(physical)


def test_invalid_utf8_is_reported_not_counted(tmp_path):
    path = tmp_path / "r.jsonl"
    good = b'{"qid": "a", "score": {"accuracy": 1.0}}'
    path.write_bytes(
        good + b"\n" + b'{"qid": "b", "response": "\xff\xfe", "score": {"accuracy": 1.0}}\n' + good
    )
    tally = tally_rollouts(path)
    assert tally.counts == {"a": [2, 2]}
    assert tally.malformed[0][0] == 2
    assert "invalid UTF-8" in tally.malformed[0][1]


@pytest.mark.parametrize(
    ("policy", "bucket_of_9_of_9", "bucket_of_7_of_7"),
    [
        ("reference", "medium", "medium"),  # the reference needs exactly 8 correct for easy
        ("rate", "easy", "easy"),  # all correct is easy whatever the count
        ("exclude", None, None),  # irregular counts go nowhere
    ],
)
def test_irregular_policies(tmp_path, policy, bucket_of_9_of_9, bucket_of_7_of_7):
    lines = ['{"qid": "nine", "score": {"accuracy": 1.0}}'] * 9 + [
        '{"qid": "seven", "score": {"accuracy": 1.0}}'
    ] * 7
    lines += ['{"qid": "eight", "score": {"accuracy": 0.0}}'] * 8
    (tmp_path / "r.jsonl").write_text("\n".join(lines))
    records = [{"qid": q, "problem": q, "answer": "1"} for q in ("nine", "seven", "eight")]
    (tmp_path / "d.json").write_text(json.dumps(records))
    split_pebr(
        tmp_path / "r.jsonl", tmp_path / "d.json", tmp_path / "out", PebrCompatConfig(irregular=policy)
    )
    where = {}
    for b, name in FILE_NAMES.items():
        for rec in json.loads((tmp_path / "out" / name).read_text()):
            where[rec["qid"]] = b
    assert where.get("nine") == bucket_of_9_of_9
    assert where.get("seven") == bucket_of_7_of_7
    assert where["eight"] == "hard"
    if policy == "reference":
        reference_split(str(tmp_path / "r.jsonl"), str(tmp_path / "d.json"), str(tmp_path / "ref"))
        _assert_same_files(tmp_path / "out", tmp_path / "ref")


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ('{"qid": "a", "score": {"accuracy": 1.0}}', None),  # PeBR's layout
        ('{"qid":"a","score":{"accuracy":1.0}}', None),  # compact separators
        ('{"score": {"format": 1.0, "accuracy": 1.0}, "qid": "a", "n": 3}', None),  # other order, more slots
        ('{"qid": 5, "score": {"accuracy": 1.0}}', "is not a string"),  # numeric qids: slow path
        ('{"qid": "a", "score": [1.0]}', "is not a number"),  # no scalar accuracy
        ('{"qid": "a", "score": {"accuracy": 1.0}, "x": [1, 2]}', "two scalars"),  # list of numbers
        ('{"qid": "a", "qid": "b", "score": {"accuracy": 1.0}}', "duplicate key"),  # duplicate key
    ],
)
def test_skeleton_derivation(line, reason):
    skel = derive_skeleton(line.encode(), ("qid",), ("score", "accuracy"))
    if reason is None:
        assert not isinstance(skel, str), skel
    else:
        assert isinstance(skel, str)
        assert reason in skel


def test_file_without_skeleton_is_read_line_by_line(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"qid": 1, "score": {"accuracy": 1.0}}\n{"qid": 1, "score": {"accuracy": 0.0}}')
    tally = tally_rollouts(path)
    assert tally.fast_unavailable is not None
    assert tally.counts == {1: [2, 1]}


def test_empty_and_missing_files(tmp_path):
    (tmp_path / "r.jsonl").write_text("")
    (tmp_path / "d.json").write_text("[]")
    report = split_pebr(tmp_path / "r.jsonl", tmp_path / "d.json", tmp_path / "out")
    assert report.lines == 0
    assert (tmp_path / "out" / "easycase.json").read_text() == "[]"
    with pytest.raises(FileNotFoundError, match="rollout file"):
        split_pebr(tmp_path / "nope.jsonl", tmp_path / "d.json", tmp_path / "out")
    (tmp_path / "bad.json").write_text('{"not": "a list"}')
    with pytest.raises(ValueError, match="JSON list"):
        split_pebr(tmp_path / "r.jsonl", tmp_path / "bad.json", tmp_path / "out")


def test_cli_pebr_format(tmp_path, capsys):
    ro, ds = _write_case(tmp_path, 5)
    rc = run(
        [
            "curate",
            "split",
            "--rollouts",
            str(ro),
            "--dataset",
            str(ds),
            "--format",
            "pebr",
            "--out",
            str(tmp_path / "out"),
        ]
    )
    assert rc == 0
    out = capsys.readouterr().out
    assert "malformed lines (skipped): 2" in out
    reference_split(str(ro), str(ds), str(tmp_path / "ref"))
    _assert_same_files(tmp_path / "out", tmp_path / "ref")
    assert run(["curate", "split", "--rollouts", str(ro), "--out", str(tmp_path / "x")]) == 2


@pytest.mark.parametrize(
    ("text", "has_numbers"),
    [
        ('[{"a": "x: 3.5"}]', False),  # a colon and a number inside a string
        ('[{"a": 1}]', True),  # an object member
        ("[1]", True),  # an array item
        ("[\n  -2\n]", True),  # negative, after indentation
        ('["a", 1e5]', True),  # exponent form after a comma
        ('["ratio 3:2 and [4, 5]"]', False),  # looks like tokens, but in a string
        ('{"k": "\\\\", "n": 7}', True),  # an escaped backslash closes the string before the number
        ('{"k": "\\"", "n": "7"}', False),  # an escaped quote does not close the string
        ('["' + " " * 40 + '", 3]', True),  # long whitespace inside a string before a real token
    ],
)
def test_numbers_outside_strings(text, has_numbers):
    from curation.pebr_compat import numbers_outside_strings

    json.loads(text)
    assert numbers_outside_strings(text.encode()) is has_numbers
