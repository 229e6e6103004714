"""The rollout store (curation.rollouts): atomic shards, no duplicate keys, crash-safe compaction."""

from __future__ import annotations

import os

import pyarrow.parquet as pq
import pytest

from curation.rollouts import KEY, ROLLOUT_SCHEMA, RolloutStore


def _rows(model: str, uids: list[str], n: int, text: str = "answer") -> list[dict]:
    return [
        {"model_id": model, "uid": u, "sample_index": j, "response": f"{text} {u}/{j}", "correct": j % 2 == 0}
        for u in uids
        for j in range(n)
    ]


def _all_rows_on_disk(store: RolloutStore) -> list[tuple]:
    rows = []
    for shard in store.dir.glob("*.parquet"):
        t = pq.read_table(shard, columns=list(KEY))
        rows += list(zip(*(t.column(c).to_pylist() for c in KEY), strict=True))
    return rows


def test_append_skips_stored_keys(tmp_path):
    store = RolloutStore(tmp_path)
    first = store.append(_rows("m", ["a", "b"], 2))
    assert first is not None
    assert first.name == "part-00000.parquet"
    # the same rows again, plus new ones and a duplicate inside the batch
    again = _rows("m", ["a", "b", "c"], 2) + _rows("m", ["c"], 1, text="second copy")
    second = store.append(again)
    assert second.name == "part-00001.parquet"
    assert pq.read_table(second).num_rows == 2  # only c/0 and c/1
    assert store.append(_rows("m", ["a"], 2)) is None  # nothing new, no shard
    on_disk = _all_rows_on_disk(store)
    assert len(on_disk) == len(set(on_disk)) == 6
    frame = store.read("m")
    assert frame.height == 6
    assert frame.filter(frame["uid"] == "c")["response"].to_list() == ["answer c/0", "answer c/1"]


def test_keys_are_per_model(tmp_path):
    store = RolloutStore(tmp_path)
    store.append(_rows("m1", ["a"], 2))
    store.append(_rows("m2", ["a"], 2))
    assert store.done_keys("m1") == {("m1", "a", 0), ("m1", "a", 1)}
    assert len(store.done_keys()) == 4
    assert store.model_ids() == ["m1", "m2"]
    # a fresh store object reads the keys back from the shards
    assert RolloutStore(tmp_path).done_keys("m2") == {("m2", "a", 0), ("m2", "a", 1)}


def test_shards_have_the_schema(tmp_path):
    store = RolloutStore(tmp_path)
    path = store.append(_rows("m", ["a"], 1))
    schema = pq.read_schema(path)
    assert schema.names == ROLLOUT_SCHEMA.names
    frame = store.read()
    assert frame["created_at"].null_count() == 0
    assert frame["round"].to_list() == [0]


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"uid": "a", "sample_index": 0}, "'model_id' is required"),  # missing key column
        ({"uid": "a", "sample_index": 0, "model_id": "m", "colour": 1}, "unknown columns"),  # typo'd column
    ],
)
def test_bad_rows_are_refused(tmp_path, row, message):
    with pytest.raises(ValueError, match=message):
        RolloutStore(tmp_path).append([row])


def test_two_writers_never_overwrite_a_shard(tmp_path):
    a, b = RolloutStore(tmp_path), RolloutStore(tmp_path)
    a.done_keys()
    b.done_keys()  # both think the next shard is part-00000
    pa_ = a.append(_rows("m", ["x"], 1))
    pb = b.append(_rows("m", ["y"], 1))
    assert pa_ != pb
    assert {p.name for p in tmp_path.joinpath("rollouts").glob("*.parquet")} == {
        "part-00000.parquet",
        "part-00001.parquet",
    }


def test_compaction_is_crash_safe(tmp_path):
    store = RolloutStore(tmp_path)
    for u in "abcd":
        store.append(_rows("m", [u], 2))
    saved = {p.name: p.read_bytes() for p in store.shards()}
    assert len(saved) == 4
    merged = store.compact()
    assert merged is not None
    assert merged.name.startswith("compact-")
    assert [p.name for p in store.shards()] == [merged.name]
    # a crash between writing the merged shard and removing the old ones leaves both on disk
    for name, data in saved.items():
        (store.dir / name).write_bytes(data)
    fresh = RolloutStore(tmp_path)
    assert fresh.read("m").height == 8  # no row twice
    assert [p.name for p in fresh.shards()] == [merged.name]  # the superseded shards are removed
    on_disk = _all_rows_on_disk(fresh)
    assert len(on_disk) == len(set(on_disk)) == 8


def test_temporary_files_of_dead_writers_are_cleaned(tmp_path):
    store = RolloutStore(tmp_path)
    store.append(_rows("m", ["a"], 1))
    dead = store.dir / ".part.tmp-999999999-abcd1234"
    dead.write_bytes(b"half a parquet file")
    mine = store.dir / f".part.tmp-{os.getpid()}-abcd1234"
    mine.write_bytes(b"being written")
    assert store.clean_temporary() == 1
    assert not dead.exists()
    assert mine.exists()
    assert store.read().height == 1
