from __future__ import annotations

import json

import pyarrow as pa
import pytest

from curation import schema


def _rec(**kw):
    base = dict(
        question="How many circles?", answer="3", images=["a/1.jpg"], task="count", source="synthetic"
    )
    base.update(kw)
    return schema.make_record(**base)


def test_uid_is_stable_and_content_sensitive():
    a = _rec()
    assert a["uid"] == _rec()["uid"]
    # each of images, question and answer changes the uid
    assert _rec(images=["a/2.jpg"])["uid"] != a["uid"]
    assert _rec(question="How many squares?")["uid"] != a["uid"]
    assert _rec(answer="4")["uid"] != a["uid"]
    # no concatenation collisions: moving text between question and answer changes the uid
    assert schema.compute_uid("ab", "c", []) != schema.compute_uid("a", "bc", [])


def test_uid_hashes_bytes_not_paths_when_bytes_are_known():
    by_bytes = schema.make_record(question="q", answer="a", images=[b"\x89PNG..."])
    same_bytes = schema.make_record(
        question="q", answer="a", images=[{"bytes": b"\x89PNG...", "path": "x.png"}]
    )
    assert by_bytes["uid"] == same_bytes["uid"]


def test_arrow_round_trip_keeps_every_column():
    rec = _rec(
        image_sizes=[(640, 480)],
        choices=["1", "2", "3"],
        key_words=["red circle"],
        boxes=[[1, 2, 30, 40.5]],
        reference_caption="A red circle.",
        messages=[{"role": "user", "content": "<image>How many?"}, {"role": "assistant", "content": "3"}],
        meta={"scene": {"objects": 3}},
        stage_hint="perception",
    )
    table = schema.to_arrow([rec])
    assert table.schema.equals(schema.RECORD_SCHEMA)
    (back,) = schema.from_arrow(table)
    assert back == rec
    assert back["image_sizes"] == [{"width": 640, "height": 480}]


def test_parquet_round_trip(tmp_path):
    recs = [_rec(answer=str(i)) for i in range(5)]
    schema.write_parquet(recs, str(tmp_path / "x.parquet"))
    assert schema.from_arrow(schema.read_parquet(str(tmp_path / "x.parquet"))) == recs


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"task": "painting"}, "task 'painting'"),  # unknown task
        ({"stage_hint": "both"}, "stage_hint 'both'"),  # unknown stage
        ({"boxes": [[1, 2, 3]]}, "4 coordinates"),  # box with 3 numbers
        ({"answer": 3}, "answer must be a string"),  # non-string gold
        ({"image_sizes": [{"width": 1, "height": 1}] * 2}, "2 entries for 1 images"),  # size count mismatch
        ({"meta": "[1, 2]"}, "meta"),  # meta must be an object
        ({"images": [{"bytes": None, "path": None}]}, "neither bytes nor a path"),  # empty image
    ],
)
def test_validation_names_the_problem(change, problem):
    rec = _rec()
    rec.update(change)
    problems = schema.validate_record(rec)
    assert any(problem in p for p in problems), problems
    with pytest.raises(ValueError, match="record 0"):
        schema.to_arrow([rec])


def test_conform_rejects_unknown_columns_and_fills_missing():
    table = pa.table({"uid": ["x"], "question": ["q"], "answer": ["a"]})
    conformed = schema.conform(table)
    assert conformed.column_names == list(schema.COLUMNS)
    assert conformed.column("task").null_count == 1
    with pytest.raises(ValueError, match="not in the canonical schema"):
        schema.conform(table.append_column("surprise", pa.array([1])))


def test_meta_is_json_text():
    rec = _rec(meta={"b": 1, "a": [1, 2]})
    assert json.loads(rec["meta"]) == {"a": [1, 2], "b": 1}
    assert schema.meta_of(rec) == {"a": [1, 2], "b": 1}
