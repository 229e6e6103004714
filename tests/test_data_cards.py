"""The dataset card renderer, the pass-rate histogram and the splits-directory reader."""

from __future__ import annotations

import json
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image
from splits_fixture import make_splits_dir

from curation.export import ExportReport, SplitExport
from curation.splits_dir import read_filter_funnel, read_splits_dir
from data_cards.render import (
    CardOptions,
    difficulty_stats,
    parse_card,
    pass_rate_histogram,
    render_card,
    size_category,
)


@pytest.mark.parametrize(
    ("n", "label"),
    [
        (0, "n<1K"),  # empty
        (999, "n<1K"),  # just under the first bound
        (1_000, "1K<n<10K"),  # a bound belongs to the next category
        (260_000, "100K<n<1M"),  # Mulberry-SFT's size
        (10**13, "n>1T"),  # beyond the largest bound
    ],
)
def test_size_category(n, label):
    assert size_category(n) == label


@pytest.mark.parametrize(
    ("report", "expected"),
    [
        ({"input": 10, "dropped": {"rethink": 3}, "kept": 7}, (10, {"rethink": 3}, 7)),  # the documented keys
        ({"n_input": 5, "drops": {"a": 1, "b": 1}, "n_kept": 3}, (5, {"a": 1, "b": 1}, 3)),  # n_* spellings
        (  # drops as a list of objects
            {"total": 4, "drop_reasons": [{"reason": "small", "count": 2}], "kept": 2},
            (4, {"small": 2}, 2),
        ),
        ({"input": 3, "dropped": {}, "kept": 3}, (3, {}, 3)),  # nothing dropped
    ],
)
def test_filter_funnel_reads_common_layouts(tmp_path, report, expected):
    path = tmp_path / "report.json"
    path.write_text(json.dumps(report))
    funnel = read_filter_funnel(path)
    assert (funnel.input, funnel.drops, funnel.kept) == expected


def test_filter_funnel_reads_the_filters_own_report(tmp_path):
    """`pebr curate filter`'s report.json, where `input` is the file's path and `records` the count."""
    from _filter_fixtures import image_bytes, record, write_json

    from curation.filter_config import FilterConfig
    from curation.filter_pipeline import filter_dataset

    (tmp_path / "a.png").write_bytes(image_bytes((64, 64)))
    recs = [record("How many?", "a.png"), record("How many?", "a.png", extra="Let me rethink it."), {}]
    filter_dataset(
        write_json(recs, tmp_path / "in.json"), tmp_path, tmp_path / "out", FilterConfig(workers=0)
    )
    funnel = read_filter_funnel(tmp_path / "out" / "report.json")
    assert (funnel.input, funnel.drops, funnel.kept) == (3, {"reflective": 1, "malformed": 1}, 1)


@pytest.mark.parametrize(
    "report",
    [
        {"records": 10},  # no drops and no kept count
        {"input": 10, "dropped": {"rethink": -1}, "kept": 11},  # a negative count
        {"input": "10", "dropped": {}, "kept": 10},  # a count as a string
        [1, 2],  # not an object
    ],
)
def test_filter_funnel_rejects_other_shapes_naming_the_file(tmp_path, report):
    path = tmp_path / "report.json"
    path.write_text(json.dumps(report))
    with pytest.raises(ValueError, match=r"report\.json"):
        read_filter_funnel(path)


def _difficulty(rows):
    return pa.Table.from_pylist(
        [
            {"uid": f"u{i}", "model_id": "m", "n": n, "n_correct": k, "pass_rate": k / n, "bucket": b}
            for i, (n, k, b) in enumerate(rows)
        ]
    )


def test_histogram_bins_mixed_rollout_counts(tmp_path):
    # questions scored with 4 and 16 rollouts: no common k/n grid, so equal-width bins
    table = _difficulty(
        [(4, 4, "easy"), (16, 8, "medium"), (16, 0, "hard"), (4, 1, "medium"), (16, 16, "easy")]
    )
    stats = difficulty_stats(table)
    assert len(stats.bars) == 10
    assert sum(b.count for b in stats.bars) == 5
    assert [b.count for b in stats.bars if b.count] == [1, 1, 1, 2]  # 0.0, 0.25, 0.5, 1.0 (last bin closed)
    assert stats.bars[-1].bucket == "easy"
    path = pass_rate_histogram(stats, tmp_path / "h.png")
    with Image.open(path) as img:
        assert img.format == "PNG"
        assert img.size == (760, 440)


def test_histogram_has_one_bar_per_k_of_n():
    stats = difficulty_stats(_difficulty([(8, 8, "easy"), (8, 3, "medium"), (8, 3, "medium")]))
    assert [b.label for b in stats.bars] == [f"{k}/8" for k in range(9)]
    assert stats.bars[3].count == 2
    assert stats.bars[3].bucket == "medium"


def test_unknown_bucket_is_an_error():
    with pytest.raises(ValueError, match=r"buckets \['trivial'\]"):
        difficulty_stats(_difficulty([(8, 8, "trivial")]))


def _report(**kwargs):
    return ExportReport(
        format="hf",
        location="/data/out",
        splits=(SplitExport("perception", 3, ("data/perception-00000-of-00001.parquet",)),),
        **kwargs,
    )


def test_card_with_a_bare_splits_report_says_what_is_missing():
    stats = difficulty_stats(_difficulty([(8, 8, "easy")] * 3))
    card = render_card({}, _report(), None, stats=stats, funnel_note="no filter report was given")
    meta, body = parse_card(card)
    assert meta["size_categories"] == ["n<1K"]
    assert meta["license"] == "other"
    assert "Not recorded: no filter report was given." in body
    assert "### Sampling\n\nNot recorded in the splits report." in body
    assert "## Reward preset\n\nNot recorded in the splits report." in body
    assert "The commands were not recorded." in body
    assert "| easy | 3 | 100.0% |" in body


def test_card_escapes_table_cells_and_keeps_preset_names():
    stats = difficulty_stats(_difficulty([(8, 0, "hard")]))
    card = render_card(
        {
            "preset": "stage|2",
            "sampling": {"temperature": 1.2},
            "commands": [["pebr", "curate", "split", "--out", "a b"]],
        },
        _report(),
        stats=stats,
        options=CardOptions(license="mit", pretty_name="Tiny", tags=("x",)),
    )
    meta, body = parse_card(card)
    assert (meta["license"], meta["pretty_name"], meta["tags"]) == ("mit", "Tiny", ["x"])
    assert body.startswith("\n# Tiny\n")
    assert "Preset: `stage|2`." in body
    assert "Its weights are not recorded" in body
    assert "| temperature | 1.2 |" in body
    assert "pebr curate split --out 'a b'" in body  # argv lists are shell-quoted


@pytest.mark.parametrize(
    ("damage", "error", "message"),
    [
        ("no_report", FileNotFoundError, "splits_report.json not found"),  # not a splits directory
        ("no_reasoning", FileNotFoundError, "reasoning.parquet not found"),  # a bucket file is missing
        ("dup_difficulty", ValueError, "has more than one row"),  # two scores of one question
        (
            "missing_test",
            FileNotFoundError,
            "held-out test split",
        ),  # the report names a test file that is gone
    ],
)
def test_splits_dir_problems_are_named(tmp_path, damage, error, message):
    fx = make_splits_dir(tmp_path)
    if damage == "no_report":
        (fx.splits_dir / "splits_report.json").unlink()
    elif damage == "no_reasoning":
        (fx.splits_dir / "reasoning.parquet").unlink()
    elif damage == "dup_difficulty":
        table = pq.read_table(fx.splits_dir / "difficulty.parquet")
        pq.write_table(pa.concat_tables([table, table.slice(0, 1)]), fx.splits_dir / "difficulty.parquet")
    elif damage == "missing_test":
        (tmp_path / "test.parquet").unlink()
    with pytest.raises(error, match=message):
        read_splits_dir(fx.splits_dir).read_difficulty()


def test_card_from_the_report_alone_uses_its_counts():
    report = {"model_id": "m", "counts": {"easy": 5, "medium": 3, "hard": 2}, "sampling": {"n": 8}}
    _, body = parse_card(render_card(report, _report()))
    assert "| medium | 3 | 30.0% |" in body
    assert "Rollout model: `m`, 8 rollouts per question" in body


class _FakePreset:
    weights = {"accuracy": 0.9, "format": 0.1}


def _fake_get_preset(name):
    if name != "pebr_stage2":
        raise ValueError(f"unknown reward preset {name!r}")
    return _FakePreset()


@pytest.mark.parametrize(
    ("preset", "expected"),
    [
        ("pebr_stage2", "| accuracy | 0.9 |"),  # a name only: weights of the installed preset
        ("no_such_preset", "Its weights are not recorded"),  # an unknown name: said, not invented
        (
            {"name": "pebr_stage2", "weights": {"accuracy": 1.0}},
            "| accuracy | 1 |",
        ),  # the report's own weights win
    ],
)
def test_preset_weights_come_from_the_report_or_the_installed_presets(monkeypatch, preset, expected):
    import types

    # stand-in for rewards.presets (its get_preset(name).weights contract), so the test does not
    # depend on which presets a build ships
    monkeypatch.setitem(sys.modules, "rewards.presets", types.SimpleNamespace(get_preset=_fake_get_preset))
    _, body = parse_card(render_card({"preset": preset, "counts": {"easy": 1}}, _report()))
    assert expected in body
