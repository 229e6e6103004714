"""``filter_dataset`` end to end: every stage and reason, accounting, outputs, inputs, the cache."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from _filter_fixtures import build_dataset, image_bytes, record, tabular, write_json, write_jsonl

from curation.convert import from_pebr, from_sharegpt, to_sharegpt
from curation.filter_config import FilterConfig
from curation.filter_pipeline import AccountingError, filter_dataset
from curation.images import probe_file
from curation.schema import RECORD_SCHEMA, to_arrow

CFG = FilterConfig(workers=0, chunk_records=7)  # small chunks: many tasks even on small data


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("ds")
    records, expected, images = build_dataset(root)
    return root, records, expected, images


def _reasons(out) -> dict[int, str]:
    t = pq.read_table(out / "dropped.parquet")
    return dict(zip(t.column("index").to_pylist(), t.column("reason").to_pylist(), strict=True))


def _expected(expected) -> dict[int, str]:
    return {i: r for i, r in enumerate(expected) if r is not None}


def test_every_record_gets_its_expected_verdict(dataset, tmp_path):
    _root, records, expected, images = dataset
    src = write_json(records, tmp_path / "in.json")
    report = filter_dataset(src, images, tmp_path / "out", CFG.replace(cache=False))
    assert _reasons(tmp_path / "out") == _expected(expected)
    assert report.records == len(records)
    assert report.kept == sum(e is None for e in expected)
    assert report.kept + report.dropped_total == report.records
    for reason in set(filter(None, expected)):
        assert report.dropped[reason] == expected.count(reason)


def test_dropped_rows_carry_reason_detail_position_and_original_text(dataset, tmp_path):
    _root, records, _expected, images = dataset
    src = write_json(records, tmp_path / "in.json")
    filter_dataset(src, images, tmp_path / "out", CFG.replace(cache=False))
    rows = pq.read_table(tmp_path / "out" / "dropped.parquet").to_pylist()
    text = src.read_bytes()
    for row in rows:
        assert row["reason"]
        assert row["detail"]
        raw = row["raw"].encode()
        assert text[row["offset"] : row["offset"] + len(raw)] == raw  # the record's own bytes
        assert text[: row["offset"]].count(b"\n") + 1 == row["line"]
        assert orjson.loads(raw) == records[row["index"]]
    dup = next(r for r in rows if r["index"] == 19)
    assert dup["detail"] == "same images and question as record 1"


def test_kept_json_holds_the_input_records_byte_for_byte(dataset, tmp_path):
    _root, records, expected, images = dataset
    src = write_json(records, tmp_path / "in.json")
    filter_dataset(src, images, tmp_path / "out", CFG.replace(cache=False))
    kept = orjson.loads((tmp_path / "out" / "kept.json").read_bytes())
    assert kept == [r for r, e in zip(records, expected, strict=True) if e is None]
    text = src.read_text(encoding="utf-8")
    out_text = (tmp_path / "out" / "kept.json").read_text(encoding="utf-8")
    for rec in kept:  # each record's indented text appears unchanged
        block = json.dumps(rec, indent=2, ensure_ascii=False).replace("\n", "\n  ")
        assert block in text
        assert block in out_text


def test_a_clean_file_comes_back_byte_identical(dataset, tmp_path):
    _root, records, expected, images = dataset
    clean = [r for r, e in zip(records, expected, strict=True) if e is None and r is not records[20]]
    clean = [r for r in clean if r is not records[37]]  # keep one record per image for no duplicates
    src = write_json(clean, tmp_path / "clean.json")
    filter_dataset(src, images, tmp_path / "out", CFG.replace(cache=False))
    assert (tmp_path / "out" / "kept.json").read_bytes() == src.read_bytes() + b"\n"


def test_kept_parquet_equals_the_per_record_converter(dataset, tmp_path):
    """The fast canonical columns are what from_sharegpt gives with content digests and sizes."""
    _root, records, expected, images = dataset
    src = write_json(records, tmp_path / "in.json")
    filter_dataset(src, images, tmp_path / "out", CFG.replace(cache=False))
    got = pq.read_table(tmp_path / "out" / "kept.parquet")
    assert got.schema.equals(RECORD_SCHEMA, check_metadata=False)
    want = []
    for rec, e in zip(records, expected, strict=True):
        if e is not None:
            continue
        paths = [rec["images"]] if isinstance(rec["images"], str) else rec["images"]
        infos = [probe_file(images, p) for p in paths]
        want.append(
            from_sharegpt(
                rec, image_keys=[i.sha256 for i in infos], image_sizes=[(i.width, i.height) for i in infos]
            )
        )
    assert got.to_pylist() == to_arrow(want).to_pylist()
    # and they convert back to the input records (loss-free), key order included
    for row, rec in zip(
        got.to_pylist(), [r for r, e in zip(records, expected, strict=True) if e is None], strict=True
    ):
        assert json.dumps(to_sharegpt(row)) == json.dumps(rec)


def test_dataset_info_entry_for_llama_factory(dataset, tmp_path):
    _root, records, _expected, images = dataset
    src = write_json(records, tmp_path / "mulberry.json")
    out = tmp_path / "out"
    out.mkdir()
    (out / "dataset_info.json").write_text(json.dumps({"other": {"file_name": "o.json"}}))
    filter_dataset(src, images, out, CFG.replace(cache=False))
    info = json.loads((out / "dataset_info.json").read_text())
    assert info["other"] == {"file_name": "o.json"}  # existing entries are kept
    assert info["mulberry_kept"] == {
        "file_name": "kept.json",
        "formatting": "sharegpt",
        "columns": {"messages": "messages", "images": "images"},
        "tags": {
            "role_tag": "role",
            "content_tag": "content",
            "user_tag": "user",
            "assistant_tag": "assistant",
            "system_tag": "system",
        },
    }
    report = json.loads((out / "report.json").read_text())
    assert report["kept"] + report["dropped_total"] == report["records"] == len(records)


def test_verify_images_drops_files_that_fail_a_full_decode(dataset, tmp_path):
    _root, records, expected, images = dataset
    src = write_json(records, tmp_path / "in.json")
    filter_dataset(src, images, tmp_path / "out", CFG.replace(cache=False, verify_images=True))
    want = _expected(expected)
    want[13] = "undecodable_image"  # the JPEG cut inside its pixel data
    assert _reasons(tmp_path / "out") == want


def test_thresholds_and_switches(dataset, tmp_path):
    _root, records, _expected, images = dataset
    src = write_json(records, tmp_path / "in.json")
    cfg = CFG.replace(cache=False, min_side=45, max_pixels=10**12, drop_duplicates=False)
    filter_dataset(src, images, tmp_path / "out", cfg)
    got = _reasons(tmp_path / "out")
    assert 17 not in got  # the "bomb" is under this cap (and opens: only its header is read)
    assert 18 not in got
    assert 19 not in got
    assert got[16] == "small_image"
    assert got[4] == "small_image"


def test_cache_second_run_opens_no_image_and_a_changed_file_is_rechecked(dataset, tmp_path):
    _root, records, _expected, images = dataset
    imgs = tmp_path / "images"
    shutil.copytree(images, imgs, symlinks=True)
    src = write_json(records, tmp_path / "in.json")
    first = filter_dataset(src, imgs, tmp_path / "o1", CFG)
    # each file is read once, even when several records share it
    assert first.images["opened"] == 20
    assert (imgs / ".pebr-image-cache.parquet").exists()
    second = filter_dataset(src, imgs, tmp_path / "o2", CFG)
    assert second.images["opened"] == 0
    assert second.images["cache_hits"] == first.images["opened"] + first.images["cache_hits"]
    assert (tmp_path / "o1" / "kept.json").read_bytes() == (tmp_path / "o2" / "kept.json").read_bytes()
    # a changed threshold reopens nothing either
    third = filter_dataset(src, imgs, tmp_path / "o3", CFG.replace(min_side=45))
    assert third.images["opened"] == 0
    assert third.dropped["small_image"] > first.dropped["small_image"]
    # an image replaced by a tiny one is re-checked and now dropped
    (imgs / "clean.png").write_bytes(image_bytes((10, 10)))
    fourth = filter_dataset(src, imgs, tmp_path / "o4", CFG)
    assert fourth.images["opened"] == 1
    assert _reasons(tmp_path / "o4")[0] == "small_image"


@pytest.mark.parametrize("fmt", ["jsonl", "parquet", "hf"])
def test_jsonl_parquet_and_saved_dataset_inputs_give_the_same_verdicts(dataset, tmp_path, fmt):
    _root, records, expected, images = dataset
    if fmt == "jsonl":
        src, want = write_jsonl(records, tmp_path / "in.jsonl"), expected
    else:
        recs, want = tabular(records, expected)
        if fmt == "parquet":
            src = tmp_path / "in.parquet"
            pq.write_table(pa.Table.from_pylist(recs), src)
        else:
            import datasets

            src = tmp_path / "saved"
            datasets.Dataset.from_list(recs).save_to_disk(str(src))
    report = filter_dataset(src, images, tmp_path / "out", CFG.replace(cache=False))
    assert report.format == fmt
    assert _reasons(tmp_path / "out") == _expected(want)
    kept = orjson.loads((tmp_path / "out" / "kept.json").read_bytes())
    assert len(kept) == report.kept
    if fmt != "jsonl":
        assert kept == [r for r, e in zip(*tabular(records, expected), strict=True) if e is None]


def test_pebr_grpo_json(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    (images / "a.png").write_bytes(image_bytes((60, 60)))
    (images / "s.png").write_bytes(image_bytes((10, 60)))
    recs = [
        {
            "qid": "q1",
            "problem": "<image>How many?",
            "answer": "3",
            "images": ["a.png"],
            "key_words": ["red"],
        },
        {"qid": "q2", "problem": "<image>Tiny?", "answer": 4, "images": ["s.png"], "key_words": []},
        {"qid": "q3", "problem": "<image>Gone?", "answer": "1", "images": ["nope.png"], "key_words": []},
        {"qid": "q4", "problem": "No answer", "images": []},
        {"qid": "q5", "problem": "<image>How many?", "answer": "3", "images": ["a.png"], "key_words": ["x"]},
    ]
    src = write_json(recs, tmp_path / "grpo.json")
    report = filter_dataset(src, images, tmp_path / "out", CFG.replace(cache=False))
    assert report.layout == "pebr"
    assert _reasons(tmp_path / "out") == {
        1: "small_image",
        2: "missing_image",
        3: "malformed",
        4: "duplicate",
    }
    assert not (tmp_path / "out" / "dataset_info.json").exists()  # LLaMA-Factory reads sharegpt only
    row = pq.read_table(tmp_path / "out" / "kept.parquet").to_pylist()[0]
    info = probe_file(images, "a.png")
    want = from_pebr(recs[0], image_keys=[info.sha256])
    want["image_sizes"] = [{"width": 60, "height": 60}]
    assert row == to_arrow([want]).to_pylist()[0]


def test_conversations_layout_and_column_mapping(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    (images / "a.png").write_bytes(image_bytes((60, 60)))
    conv = [
        {
            "conversations": [{"from": "human", "value": "<image>Q"}, {"from": "gpt", "value": "A"}],
            "images": ["a.png"],
        }
    ]
    report = filter_dataset(
        write_json(conv, tmp_path / "c.json"), images, tmp_path / "o1", CFG.replace(cache=False)
    )
    assert report.kept == 1
    info = json.loads((tmp_path / "o1" / "dataset_info.json").read_text())["c_kept"]
    assert info["columns"]["messages"] == "conversations"
    assert info["tags"]["user_tag"] == "human"
    mapped = [{"dialog": [{"who": "q", "text": "<image>Q"}, {"who": "a", "text": "A"}], "pics": ["a.png"]}]
    cols = {
        "messages": "dialog",
        "role": "who",
        "content": "text",
        "user": "q",
        "assistant": "a",
        "images": "pics",
    }
    report = filter_dataset(
        write_json(mapped, tmp_path / "m.json"),
        images,
        tmp_path / "o2",
        CFG.replace(cache=False, columns=cols),
    )
    assert report.kept == 1
    row = pq.read_table(tmp_path / "o2" / "kept.parquet").to_pylist()[0]
    assert row["question"] == "Q"
    assert row["answer"] == "A"
    assert row["images"][0]["path"] == "a.png"


def test_bad_json_stops_with_file_and_line_unless_skipped(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    (images / "a.png").write_bytes(image_bytes((60, 60)))
    good = json.dumps(record("Q", ["a.png"]))
    path = tmp_path / "d.jsonl"
    path.write_bytes(
        good.encode() + b"\n{not json}\n" + good.replace("Q", "R").encode() + b'\n{"x": "\xff"}\n'
    )
    with pytest.raises(ValueError, match=r"d\.jsonl: line 2 \(byte \d+\): invalid JSON"):
        filter_dataset(path, images, tmp_path / "out", CFG.replace(cache=False))
    assert not (tmp_path / "out" / "kept.json").exists()  # nothing half-written is published
    report = filter_dataset(path, images, tmp_path / "out", CFG.replace(cache=False, skip_bad_lines=True))
    assert report.records == 4
    assert report.kept == 2
    assert report.dropped["bad_json"] == 2
    rows = pq.read_table(tmp_path / "out" / "dropped.parquet").to_pylist()
    assert [r["line"] for r in rows] == [2, 4]
    assert "not valid UTF-8" in rows[1]["detail"]
    # the records' own text, the byte that is not UTF-8 shown as U+FFFD
    assert [r["raw"] for r in rows] == ["{not json}", '{"x": "\ufffd"}']


def test_truncated_json_list_is_an_error_or_a_dropped_tail(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    (images / "a.png").write_bytes(image_bytes((60, 60)))
    text = json.dumps([record("Q1", ["a.png"]), record("Q2", ["a.png"])], indent=2)
    path = tmp_path / "t.json"
    path.write_text(text[: len(text) - 40])
    with pytest.raises(ValueError, match=r"t\.json: line \d+ \(byte \d+\): truncated JSON"):
        filter_dataset(path, images, tmp_path / "out", CFG.replace(cache=False))
    report = filter_dataset(path, images, tmp_path / "out", CFG.replace(cache=False, skip_bad_lines=True))
    assert (report.records, report.kept, report.dropped["bad_json"]) == (2, 1, 1)


def test_accounting_is_checked_in_code(dataset, tmp_path, monkeypatch):
    import curation.filter_pipeline as fp

    _root, records, _expected, images = dataset
    src = write_json(records, tmp_path / "in.json")
    real = fp._absorb

    def lose_one_record(task, res, *args):
        real(task, res, *args)
        if task.number == 0:
            args[-1].kept -= 1  # a record that vanished without a reason

    monkeypatch.setattr(fp, "_absorb", lose_one_record)
    with pytest.raises(AccountingError, match="kept"):
        filter_dataset(src, images, tmp_path / "out", CFG.replace(cache=False))
    assert os.listdir(tmp_path / "out") == []  # nothing published, no temporary files left


def _spill_dirs() -> list[str]:
    shm = "/dev/shm"
    mine = f"pebr-filter-{os.getpid()}-"
    return [n for n in os.listdir(shm) if n.startswith(mine)] if os.path.isdir(shm) else []


@pytest.mark.parametrize("start", ["fork", "spawn"])
@pytest.mark.parametrize("cached", [False, True], ids=["no-cache", "cache"])
def test_worker_processes_give_the_same_outputs(dataset, tmp_path, monkeypatch, start, cached):
    import curation.filter_pipeline as fp

    monkeypatch.setenv(fp.START_METHOD_ENV, start)
    _root, records, _expected, images = dataset
    imgs = tmp_path / "images"
    shutil.copytree(images, imgs, symlinks=True)
    src = write_json(records, tmp_path / "in.json")
    cfg = CFG.replace(cache=cached)
    filter_dataset(src, imgs, tmp_path / "a", cfg)
    # with the cache: the workers read the sidecar the first run wrote
    report = filter_dataset(src, imgs, tmp_path / "b", cfg.replace(workers=2))
    for name in ("kept.json", "kept.parquet", "dropped.parquet"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    if cached:
        assert report.images["opened"] == 0
        assert report.images["cache_hits"] > 0
    assert _spill_dirs() == []  # the shared-memory hand-over left nothing behind


def test_results_come_back_pickled_where_there_is_no_shared_memory(dataset, tmp_path, monkeypatch):
    import curation.spill as spill

    _root, records, _expected, images = dataset
    src = write_json(records, tmp_path / "in.json")
    filter_dataset(src, images, tmp_path / "a", CFG.replace(cache=False))
    real = spill.spill_dir
    monkeypatch.setattr(spill, "spill_dir", lambda: real(str(tmp_path / "no-such-dir")))
    filter_dataset(src, images, tmp_path / "b", CFG.replace(cache=False, workers=2))
    for name in ("kept.json", "kept.parquet", "dropped.parquet"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_start_method_is_fork_only_while_this_process_has_one_thread(monkeypatch):
    import sys
    import threading

    import curation.filter_pipeline as fp

    monkeypatch.delenv(fp.START_METHOD_ENV, raising=False)
    if sys.platform.startswith("linux") and threading.active_count() == 1:
        assert fp._start_method() == "fork"
    stop = threading.Event()
    t = threading.Thread(target=stop.wait)
    t.start()
    try:
        assert fp._start_method() == "spawn"  # forking a threaded process can deadlock the child
    finally:
        stop.set()
        t.join()
    monkeypatch.setenv(fp.START_METHOD_ENV, "spawn")
    assert fp._start_method() == "spawn"
    monkeypatch.setenv(fp.START_METHOD_ENV, "teleport")
    with pytest.raises(ValueError, match="teleport"):
        fp._start_method()


def test_outputs_replace_an_earlier_run(dataset, tmp_path):
    _root, records, _expected, images = dataset
    src = write_json(records, tmp_path / "in.json")
    out = tmp_path / "out"
    filter_dataset(src, images, out, CFG.replace(cache=False))
    first = (out / "kept.json").read_bytes()
    filter_dataset(src, images, out, CFG.replace(cache=False))
    assert (out / "kept.json").read_bytes() == first
    assert not [p for p in os.listdir(out) if ".tmp-" in p or ".old-" in p]


def test_a_rerun_removes_what_a_killed_run_left_and_nothing_else(dataset, tmp_path):
    """A run killed mid-write leaves ``.kept.json.tmp-PID`` files (and, killed between the two
    renames of the swap, ``.kept.json.old-PID``); the next run into the directory removes
    those of dead PIDs. The files of a live run and the user's own files stay."""
    _root, records, _expected, images = dataset
    src = write_json(records, tmp_path / "in.json")
    out = tmp_path / "out"
    out.mkdir()
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead_pid, live_pid = int(dead.stdout), os.getppid()
    left = [f".kept.json.tmp-{dead_pid}", f".kept.parquet.old-{dead_pid}", f".dropped.parquet.tmp-{dead_pid}"]
    kept = [f".kept.json.tmp-{live_pid}", ".kept.json.tmp-mine", "notes.txt"]
    for name in left + kept:
        (out / name).write_bytes(b"x" * 10)
    cache = tmp_path / "cache" / "sidecar.parquet"
    cache.parent.mkdir()
    (cache.parent / f"sidecar.parquet.new-{dead_pid}").write_bytes(b"x")
    (cache.parent / f"sidecar.parquet.index.arrow.tmp-{dead_pid}").write_bytes(b"x")
    (cache.parent / f"sidecar.parquet.tmp-{live_pid}").write_bytes(b"x")

    report = filter_dataset(src, images, out, CFG.replace(cache_path=str(cache)))
    assert report.kept > 0
    names = set(os.listdir(out))
    assert not names & set(left)
    assert set(kept) <= names
    assert sorted(os.listdir(cache.parent)) == [
        "sidecar.parquet",
        "sidecar.parquet.index.arrow",
        f"sidecar.parquet.tmp-{live_pid}",
    ]


def test_replacing_an_output_keeps_the_old_one_when_the_new_one_cannot_be_moved(tmp_path):
    from curation.filter_pipeline import _replace

    old, new = tmp_path / "kept.json", tmp_path / ".kept.json.tmp"
    old.write_text("old")
    with pytest.raises(FileNotFoundError):
        _replace(new, old)
    assert old.read_text() == "old"
    new.write_text("new")
    _replace(new, old)
    assert old.read_text() == "new"
    assert os.listdir(tmp_path) == ["kept.json"]
    _replace(old, tmp_path / "fresh.json")  # nothing to move aside
    assert os.listdir(tmp_path) == ["fresh.json"]


def test_missing_image_root_and_input(tmp_path):
    (tmp_path / "d.json").write_text("[]")
    with pytest.raises(FileNotFoundError, match="image root"):
        filter_dataset(tmp_path / "d.json", tmp_path / "nope", tmp_path / "out", CFG)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        filter_dataset(tmp_path / "nope.json", tmp_path, tmp_path / "out", CFG)


@pytest.mark.parametrize("fmt", ["json", "parquet"])
def test_progress_reaches_every_record(dataset, tmp_path, fmt):
    _root, records, expected, images = dataset
    if fmt == "json":
        src = write_json(records, tmp_path / "in.json")
        n = len(records)
    else:
        recs, _ = tabular(records, expected)
        src = tmp_path / "in.parquet"
        pq.write_table(pa.Table.from_pylist(recs), src)
        n = len(recs)
    seen = []
    filter_dataset(
        src, images, tmp_path / "out", CFG.replace(cache=False), progress=lambda r, f: seen.append((r, f))
    )
    assert seen == sorted(seen)
    assert seen[-1][0] == n
    assert seen[-1][1] == pytest.approx(1.0, abs=0.01)


def test_canonical_parquet_is_filtered_and_kept_rows_come_back_unchanged(tmp_path):
    """pebr's own Parquet (an RL pool, an SFT set) goes through the same stages; its kept rows
    keep every canonical column (task, boxes, captions...), not a converted copy."""
    imgs = tmp_path / "images"
    imgs.mkdir()
    (imgs / "a.png").write_bytes(image_bytes((64, 48)))
    (imgs / "b.png").write_bytes(image_bytes((80, 80), color=(10, 200, 10)))
    (imgs / "tiny.png").write_bytes(image_bytes((20, 64)))
    base = from_pebr(
        {"problem": "How many circles?", "answer": "3", "images": ["a.png"], "key_words": ["circle"]},
        source="synthetic",
    )
    base.update(
        task="count", stage_hint="perception", boxes=[[1.0, 2.0, 30.0, 40.0]], reference_caption="3 dots"
    )
    sft = dict(
        base,
        question="What colour is it?",
        answer="green",
        images=[{"bytes": None, "path": "b.png"}],
        messages=[
            {"role": "user", "content": "<image>What colour is it?"},
            {"role": "assistant", "content": "It is green. Let me rethink it. Green."},
        ],
    )
    rows = [
        base,  # 0 kept
        dict(base, images=[{"bytes": None, "path": "gone.png"}]),  # 1 missing_image
        dict(base, images=[{"bytes": None, "path": "tiny.png"}]),  # 2 small_image
        dict(base, uid="other"),  # 3 duplicate of 0: same image bytes and question
        dict(base, answer="  "),  # 4 empty_answer
        sft,  # 5 reflective: the assistant turn of its SFT conversation
        dict(
            base, question="How many squares?", images=[{"bytes": None, "path": "../a.png"}]
        ),  # 6 unsafe_path
        dict(base, question="How many triangles?", answer="1"),  # 7 kept
    ]
    src = tmp_path / "pool.parquet"
    pq.write_table(to_arrow(rows, validate=False), src)
    report = filter_dataset(src, imgs, tmp_path / "out", CFG.replace(cache=False))
    assert report.layout == "canonical"
    assert _reasons(tmp_path / "out") == {
        1: "missing_image",
        2: "small_image",
        3: "duplicate",
        4: "empty_answer",
        5: "reflective",
        6: "unsafe_path",
    }
    kept = pq.read_table(tmp_path / "out" / "kept.parquet")
    assert kept.schema.equals(RECORD_SCHEMA)
    want = to_arrow([rows[0], rows[7]], validate=False).to_pylist()
    for w in want:  # sizes the input lacked are the measured ones
        w["image_sizes"] = [{"width": 64, "height": 48}]
    assert kept.to_pylist() == want
    assert [r["task"] for r in orjson.loads((tmp_path / "out" / "kept.json").read_bytes())] == [
        "count",
        "count",
    ]


def test_a_filter_run_never_loads_pandas_into_the_main_process(dataset, tmp_path):
    """pyarrow imports pandas (0.4 s, 50 MB) the first time it converts a Python or numpy
    value; the main process builds its columns from buffers, and a run with drops of every
    kind (duplicates, bad text, bad images), from a JSON list and JSON Lines, with a new image
    cache and then with it, never loads it.
    (Worker processes keep it out by an import hook; with ``workers=0`` it is loaded.)"""
    workers = 2
    _root, records, expected, images = dataset
    assert {"duplicate", "missing_image", "reflective"} <= set(expected)
    src = write_jsonl(records, tmp_path / "in.jsonl")
    lst = write_json(records, tmp_path / "in.json")
    script = (
        "import sys\n"
        "from curation.filter_config import FilterConfig\n"
        "from curation.filter_pipeline import filter_dataset\n"
        f"for src in ({str(src)!r}, {str(lst)!r}):\n"
        f"    cfg = FilterConfig(workers={workers}, cache_path={str(tmp_path / 'c.parquet')!r})\n"
        f"    r = filter_dataset(src, {str(images)!r}, {str(tmp_path / 'out')!r}, cfg)\n"
        "    assert r.dropped_total > 0\n"
        "print('pandas' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("chunk", [3, 100])
@pytest.mark.parametrize("workers", [0, 2])
def test_duplicates_are_settled_in_input_order_within_and_across_chunks(tmp_path, chunk, workers):
    """One image asked about three ways, each question repeated: the first record of each
    (image, question) pair is kept and every repeat names it, whether the repeats fall in the
    same chunk of work or in later ones. Another copy of the image's bytes counts as the same
    image."""
    images = tmp_path / "images"
    images.mkdir()
    png = image_bytes((50, 40))
    (images / "x.png").write_bytes(png)
    (images / "x_copy.png").write_bytes(png)
    (images / "y.png").write_bytes(image_bytes((51, 40)))
    plan = [  # (question, image, the record it repeats)
        ("How many?", "x.png", None),  # 0
        ("What colour?", "x.png", None),  # 1: same image, another question
        ("how   MANY?", "x.png", 0),  # 2: the same question, normalised
        ("How many?", "y.png", None),  # 3: same question, another image
        ("What colour?", "x_copy.png", 1),  # 4: the same bytes under another name
        ("Where?", "x.png", None),  # 5
        ("How many?", "x.png", 0),  # 6
        ("Where?", "x.png", 5),  # 7
        ("How many?", "y.png", 3),  # 8
        ("What colour?", "x.png", 1),  # 9
    ]
    records = [record(q, [img]) for q, img, _ in plan]
    src = write_json(records, tmp_path / "in.json")
    cfg = FilterConfig(workers=workers, chunk_records=chunk, cache=False)
    report = filter_dataset(src, images, tmp_path / "out", cfg)
    dropped = pq.read_table(tmp_path / "out" / "dropped.parquet").to_pylist()
    assert {r["index"]: r["detail"] for r in dropped} == {
        i: f"same images and question as record {first}"
        for i, (_q, _img, first) in enumerate(plan)
        if first is not None
    }
    assert report.dropped["duplicate"] == 6
    kept = orjson.loads((tmp_path / "out" / "kept.json").read_bytes())
    assert kept == [r for r, (_q, _img, first) in zip(records, plan, strict=True) if first is None]
