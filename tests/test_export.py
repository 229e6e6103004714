"""Exports of a splits directory: Hugging Face (Hub layout), LLaMA-Factory, EasyR1/PeBR."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image
from splits_fixture import FUNNEL, MODEL_ID, PRESET, SAMPLING, make_splits_dir

from curation import convert
from curation.export import export_easyr1, export_hf, export_llamafactory
from data_cards.render import CardOptions, parse_card
from trainer.cli import run


def load(out: Path, tmp_path: Path):
    import datasets

    # a private cache per test: nothing read from or left in ~/.cache
    return datasets.load_dataset(str(out), cache_dir=str(tmp_path / "hf_cache"))


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    fx = make_splits_dir(root)
    report = export_hf(fx.splits_dir, root / "hf", card_options=CardOptions(license="cc-by-4.0"))
    return fx, report, root / "hf"


def test_hf_export_loads_back_with_images(exported, tmp_path):
    fx, _report, out = exported
    ds = load(out, tmp_path)
    assert {name: len(ds[name]) for name in ds} == fx.rows
    for split, records in fx.records.items():
        by_uid = {row["uid"]: row for row in ds[split]}
        for rec in records:
            row = by_uid[rec["uid"]]
            assert all(isinstance(img, Image.Image) for img in row["images"])
            assert [img.size for img in row["images"]] == fx.sizes[rec["uid"]]
            assert row["image_paths"] == [img["path"] for img in rec["images"]]
            assert (row["question"], row["answer"], row["key_words"]) == (
                rec["question"],
                rec["answer"],
                rec["key_words"],
            )
            assert row["messages"] == rec["messages"]
    # difficulty columns joined from this run's model, not the other model's rows
    hard = ds["hard"][0]
    assert (hard["rollout_model"], hard["n_rollouts"], hard["n_correct"], hard["bucket"]) == (
        MODEL_ID,
        8,
        0,
        "hard",
    )
    assert {r["bucket"] for r in ds["perception"]} == {"easy"}
    assert {r["pass_rate"] for r in ds["reasoning"]} == {2 / 8, 5 / 8, 7 / 8}
    # the held-out split was never scored
    assert {r["pass_rate"] for r in ds["test"]} == {None}


def test_hf_export_has_the_hub_layout(exported):
    _, report, out = exported
    shards = sorted(p.relative_to(out).as_posix() for p in (out / "data").iterdir())
    assert shards == sorted(
        f"data/{s}-00000-of-00001.parquet" for s in ("perception", "reasoning", "hard", "test")
    )
    assert sorted(f for s in report.splits for f in s.files) == shards
    assert (out / "assets" / "pass_rate_histogram.png").is_file()
    assert json.loads((out / "export_report.json").read_text())["format"] == "hf"
    # the images are in the Parquet files, not next to them
    table = pq.read_table(out / "data" / "perception-00000-of-00001.parquet")
    assert all(img["bytes"] for row in table["images"].to_pylist() for img in row)


def test_card_yaml_parses_and_matches_the_run(exported):
    fx, report, out = exported
    meta, body = parse_card((out / "README.md").read_text())
    assert meta["license"] == "cc-by-4.0"
    assert meta["size_categories"] == ["n<1K"]
    assert "image-text-to-text" in meta["task_categories"]
    info = meta["dataset_info"]
    assert {s["name"]: s["num_examples"] for s in info["splits"]} == fx.rows
    assert info["download_size"] == sum((out / f).stat().st_size for s in report.splits for f in s.files)
    assert {f["name"] for f in info["features"]} >= {"images", "question", "answer", "pass_rate", "bucket"}
    assert meta["configs"] == [
        {
            "config_name": "default",
            "data_files": [
                {"split": s, "path": f"data/{s}-*"} for s in ("perception", "reasoning", "hard", "test")
            ],
        }
    ]
    # funnel, buckets, model, sampling, preset, commands: the run's own numbers
    assert f"| input | {FUNNEL['input']} |" in body
    for reason, count in FUNNEL["dropped"].items():
        assert f"| dropped: {reason} | -{count} |" in body
    assert f"| **kept** | **{FUNNEL['kept']}** |" in body
    for bucket, count in fx.bucket_counts.items():
        assert f"| {bucket} | {count} | {100 * count / sum(fx.bucket_counts.values()):.1f}% |" in body
    assert f"Rollout model: `{MODEL_ID}`, 8 rollouts per question" in body
    for key, value in SAMPLING.items():
        assert f"| {key} | {value:g} |" in body
    for component, weight in PRESET["weights"].items():
        assert f"| {component} | {weight:g} |" in body
    assert f"pebr curate split --scores {fx.splits_dir.parent}/scores --out {fx.splits_dir}" in body
    assert f"pebr curate export --splits {fx.splits_dir} --out {out} --format hf --license cc-by-4.0" in body
    assert "![Pass-rate histogram](assets/pass_rate_histogram.png)" in body
    for split, rows in fx.rows.items():
        assert f"| `{split}` | {rows} |" in body


def test_hf_export_is_deterministic_and_replaces_itself(exported, tmp_path):
    fx, _report, out = exported
    again = tmp_path / "hf"
    shutil.copytree(out, again)
    before = {p.relative_to(again): p.read_bytes() for p in again.rglob("*") if p.is_file()}
    # a second export into an earlier export replaces it; the same input gives the same bytes
    export_hf(fx.splits_dir, again, card_options=CardOptions(license="cc-by-4.0"))
    after = {p.relative_to(again): p.read_bytes() for p in again.rglob("*") if p.is_file()}
    assert before.keys() == after.keys()
    changed = [str(k) for k in before if before[k] != after[k]]
    # the card and report name their own directory; nothing else may differ
    assert set(changed) <= {"README.md", "export_report.json"}
    assert (again / "README.md").read_text().replace(str(again), str(out)) == (out / "README.md").read_text()


def test_small_max_shard_size_cuts_shards_and_stale_shards_go(tmp_path):
    fx = make_splits_dir(tmp_path / "run")
    out = tmp_path / "hf"
    report = export_hf(fx.splits_dir, out, splits=("perception", "reasoning"), max_shard_size=1000)
    files = report.split("perception").files
    assert len(files) > 1
    assert files == tuple(f"data/perception-{i:05d}-of-{len(files):05d}.parquet" for i in range(len(files)))
    ds = load(out, tmp_path)
    # contiguous shards keep the split's order
    assert ds["perception"]["uid"] == [r["uid"] for r in fx.records["perception"]]
    export_hf(fx.splits_dir, out, splits=("perception", "reasoning"))
    assert sorted(p.name for p in (out / "data").iterdir()) == [
        "perception-00000-of-00001.parquet",
        "reasoning-00000-of-00001.parquet",
    ]


def test_empty_split_is_left_out_and_the_card_says_why(tmp_path):
    fx = make_splits_dir(tmp_path / "run", empty_hard=True, with_test=False)
    out = tmp_path / "hf"
    report = export_hf(fx.splits_dir, out)
    assert [s.name for s in report.splits] == ["perception", "reasoning"]
    assert set(report.skipped) == {"hard", "test"}
    _, body = parse_card((out / "README.md").read_text())
    assert "Split `hard` is not in this export: it has no rows" in body
    assert "Split `test` is not in this export: the splits directory has no held-out test split" in body
    assert set(load(out, tmp_path)) == {"perception", "reasoning"}


@pytest.mark.parametrize(
    ("with_filter", "break_file", "note"),
    [
        (False, False, "Not recorded: the splits report records no filter report"),  # key absent
        (True, True, "Not recorded: the filter report recorded at"),  # key present, file gone
    ],
)
def test_card_renders_without_a_filter_report(tmp_path, with_filter, break_file, note):
    fx = make_splits_dir(tmp_path / "run", with_filter_report=with_filter)
    if break_file:
        (tmp_path / "run" / "filter" / "report.json").unlink()
    export_hf(fx.splits_dir, tmp_path / "hf", splits=("perception",))
    meta, body = parse_card((tmp_path / "hf" / "README.md").read_text())
    assert note in body
    assert meta["dataset_info"]["splits"][0]["num_examples"] == fx.rows["perception"]


def test_missing_image_names_the_record(tmp_path):
    fx = make_splits_dir(tmp_path / "run")
    rec = fx.records["reasoning"][0]
    (fx.image_root / rec["images"][0]["path"]).unlink()
    with pytest.raises(FileNotFoundError, match=rec["uid"]):
        export_hf(fx.splits_dir, tmp_path / "hf")


@pytest.mark.parametrize("export", [export_hf, export_llamafactory, export_easyr1])
@pytest.mark.parametrize("escape", ["../outside.png", "sub/../../outside.png"])
def test_image_path_leaving_the_image_root_is_refused_by_every_export(tmp_path, export, escape):
    """A hand-made split must not pull a file from outside the image root into a dataset."""
    fx = make_splits_dir(tmp_path / "run")
    (fx.image_root.parent / "outside.png").write_bytes(b"not for export")
    path = fx.splits_dir / "reasoning.parquet"
    rows = pq.read_table(path).to_pylist()
    rows[0]["images"][0]["path"] = escape
    pq.write_table(pq.read_table(path).from_pylist(rows, schema=pq.read_schema(path)), path)
    with pytest.raises(ValueError, match=f"{rows[0]['uid']}.*without '..'"):
        export(fx.splits_dir, tmp_path / "out")


def test_bucket_record_without_difficulty_row_is_an_error(tmp_path):
    fx = make_splits_dir(tmp_path / "run")
    table = pq.read_table(fx.splits_dir / "difficulty.parquet")
    uid = fx.records["perception"][0]["uid"]
    import pyarrow.compute as pc

    pq.write_table(table.filter(pc.not_equal(table["uid"], uid)), fx.splits_dir / "difficulty.parquet")
    with pytest.raises(ValueError, match=f"uid='{uid}' has no row in difficulty.parquet"):
        export_hf(fx.splits_dir, tmp_path / "hf")


def test_refuses_to_write_into_a_foreign_directory(tmp_path):
    fx = make_splits_dir(tmp_path / "run")
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="no earlier pebr export"):
        export_hf(fx.splits_dir, out)
    assert (out / "notes.txt").read_text() == "keep me"


def test_llamafactory_export_round_trips_through_the_converters(tmp_path):
    fx = make_splits_dir(tmp_path / "run")
    out = tmp_path / "lf"
    report = export_llamafactory(fx.splits_dir, out)
    info = json.loads((out / "dataset_info.json").read_text())
    assert set(info) == {f"pebr_{s}" for s in fx.rows}
    entry = info["pebr_reasoning"]
    assert entry["formatting"] == "sharegpt"
    assert entry["columns"] == {"messages": "messages", "images": "images"}
    assert entry["tags"]["user_tag"] == "user"
    for split, records in fx.records.items():
        rows = json.loads((out / info[f"pebr_{split}"]["file_name"]).read_text())
        assert len(rows) == len(records) == report.split(split).rows
        for row, rec in zip(rows, records, strict=True):
            assert list(row) == ["messages", "images"]
            back = convert.from_sharegpt(row)
            # images are copies of the originals, relative to the export directory
            assert [Image.open(out / p).size for p in row["images"]] == fx.sizes[rec["uid"]]
            assert row["images"] == [f"images/{img['path']}" for img in rec["images"]]
            assert back["question"] == rec["question"]
            assert back["answer"] == rec["answer"]
            if rec["messages"]:  # an SFT record keeps its conversation
                assert back["messages"] == rec["messages"]
            else:  # an RL record gets a user turn and the gold answer
                assert row["messages"][0]["content"].count("<image>") == len(rec["images"])
    assert (out / "README.md").is_file()
    assert (out / "assets" / "pass_rate_histogram.png").is_file()
    meta, _ = parse_card((out / "README.md").read_text())
    assert meta["configs"][0]["data_files"][0] == {"split": "perception", "path": "perception.json"}


def test_easyr1_export_round_trips_through_the_converters(tmp_path):
    fx = make_splits_dir(tmp_path / "run")
    out = tmp_path / "r1"
    export_easyr1(fx.splits_dir, out, splits=("perception", "reasoning"), link_images=False)
    for split in ("perception", "reasoning"):
        rows = json.loads((out / f"{split}.json").read_text())
        for row, rec in zip(rows, fx.records[split], strict=True):
            assert list(row) == ["qid", "problem", "answer", "images", "key_words"]
            back = convert.from_pebr(row)
            assert row["qid"] == rec["uid"]
            assert (back["question"], back["answer"], back["key_words"]) == (
                rec["question"],
                rec["answer"],
                rec["key_words"],
            )
            assert [Image.open(out / p).size for p in row["images"]] == fx.sizes[rec["uid"]]
    # --copy-images: real copies, not links to the source tree
    some = next((out / "images").rglob("*.png"))
    assert some.stat().st_nlink == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--format", "csv"], "--format must be one of"),  # unknown format
        (["--only", "train"], "unknown split(s) ['train']"),  # unknown split name
    ],
)
def test_cli_export_rejects_bad_options(tmp_path, capsys, args, message):
    fx = make_splits_dir(tmp_path / "run")
    assert run(["curate", "export", "--splits", str(fx.splits_dir), "--out", str(tmp_path / "o"), *args]) == 2
    assert message in " ".join(capsys.readouterr().err.split())  # rich wraps long lines


def test_cli_export_writes_the_export(tmp_path, capsys):
    fx = make_splits_dir(tmp_path / "run")
    out = tmp_path / "o"
    rc = run(["curate", "export", "--splits", str(fx.splits_dir), "--out", str(out), "--only", "perception"])
    assert rc == 0
    assert "perception" in capsys.readouterr().out
    assert sorted(p.name for p in (out / "data").iterdir()) == ["perception-00000-of-00001.parquet"]


def test_cli_export_missing_splits_dir_is_a_user_error(tmp_path, capsys):
    assert run(["curate", "export", "--splits", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    assert "does not exist" in " ".join(capsys.readouterr().err.split())
