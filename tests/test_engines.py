"""Rollout engines (curation.engines): replay formats, vLLM prompts and missing extra, model ids,
and tiny-model rollouts end to end on CPU with the transformers backend."""

from __future__ import annotations

import json
import time

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from curation.engines import (
    GeneratedSample,
    ReplayColumns,
    ReplayEngine,
    RolloutEngine,
    RolloutRequest,
    SamplingParams,
    TransformersEngine,
    VLLMEngine,
    make_engine,
    model_fingerprint,
    vllm_prompts,
)
from curation.rollouts import RolloutStore
from curation.schema import make_record, write_parquet
from trainer.cli import run


def _req(uid="u1", qid="q1", idx=(0, 1)) -> RolloutRequest:
    return RolloutRequest(uid=uid, question="How many?", qid=qid, sample_indices=idx)


def test_replay_pebr_file(tmp_path):
    path = tmp_path / "rollout_results.jsonl"
    lines = [
        {"qid": "q1", "response": "first", "ground_truth": "3", "score": {"accuracy": 1.0}},
        {"qid": "q2", "response": "other", "ground_truth": "4", "score": {"accuracy": 0.0}},
        {"qid": "q1", "response": "second", "ground_truth": "3", "score": {"accuracy": 0.0}},
    ]
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n{broken\n[1, 2]\n")
    engine = ReplayEngine(path)
    assert isinstance(engine, RolloutEngine)
    assert engine.load.samples == 3
    assert [ln for ln, _ in engine.load.malformed] == [4, 5]
    (samples,) = engine.generate([_req()], SamplingParams(n=2))
    assert [s.text for s in samples] == ["first", "second"]  # file order per qid
    assert [s.sample_index for s in samples] == [0, 1]
    assert samples[0].replayed_score == {"accuracy": 1.0}
    # only what the file has: index 2 does not exist for q1
    (short,) = engine.generate([_req(idx=(1, 2))], SamplingParams(n=2))
    assert [s.text for s in short] == ["second"]
    assert engine.model_id.startswith("replay:rollout_results.jsonl@")


def test_replay_matches_qid_then_uid(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps({"qid": "uid-7", "response": "by uid"}) + "\n")
    engine = ReplayEngine(path)
    (by_uid,) = engine.generate([_req(uid="uid-7", qid="unknown", idx=(0,))], SamplingParams(n=1))
    assert by_uid[0].text == "by uid"
    (none,) = engine.generate([_req(uid="x", qid="y", idx=(0,))], SamplingParams(n=1))
    assert none == []


def test_replay_parquet_with_column_mapping(tmp_path):
    path = tmp_path / "samples.parquet"
    pq.write_table(
        pa.table(
            {
                "id": ["a", "a", "b", "a"],
                "k": [1, 0, 0, 1],
                "text": ["a1", "a0", "b0", "a1 again"],
                "tokens": [5, 6, 7, 8],
            }
        ),
        path,
    )
    cols = ReplayColumns(id="id", response="text", sample_index="k", score=None, n_tokens="tokens")
    engine = ReplayEngine(path, cols, model_id="my-model")
    assert engine.model_id == "my-model"
    assert engine.load.duplicates == 1  # (a, 1) twice: the first one is kept
    (samples,) = engine.generate([_req(uid="a", qid=None)], SamplingParams(n=2))
    assert [(s.text, s.n_tokens) for s in samples] == [("a0", 6), ("a1", 5)]


def test_generate_checks_sample_counts(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps({"qid": "q1", "response": "x"}))
    with pytest.raises(ValueError, match=r"asks for 2 samples but sampling\.n is 3"):
        ReplayEngine(path).generate([_req()], SamplingParams(n=3))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n": 0}, "n must be"),  # no samples
        ({"temperature": -1}, "temperature"),  # negative temperature
        ({"top_p": 0}, "top_p"),  # empty nucleus
        ({"max_new_tokens": 0}, "max_new_tokens"),  # nothing to generate
    ],
)
def test_sampling_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SamplingParams(**kwargs)


def test_unknown_backend(tmp_path):
    with pytest.raises(ValueError, match="backend must be one of"):
        make_engine("tensorrt", tmp_path)


def test_vllm_missing_extra_names_the_install(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "vllm" else real(name, *a)
    )
    with pytest.raises(ImportError, match=r"pip install 'pebr\[vllm\]'"):
        VLLMEngine(tmp_path)
    with pytest.raises(ImportError, match="pebr\\[vllm\\]"):
        make_engine("vllm", tmp_path)


def test_vllm_prompts_use_the_chat_template_and_images(tiny_nano_dir, tmp_path):
    from trainer.vlm import load_processor

    Image.new("RGB", (64, 48), "red").save(tmp_path / "a.png")
    processor = load_processor(tiny_nano_dir)
    with_image = RolloutRequest(
        "u1", "How many circles?", ({"bytes": None, "path": "a.png"},), image_root=str(tmp_path)
    )
    text_only = RolloutRequest("u2", "What is 2 + 3?")
    first, second = vllm_prompts(processor, [with_image, text_only])
    assert "<|vision_start|><|image_pad|><|vision_end|>How many circles?" in first["prompt"]
    assert first["prompt"].rstrip().endswith("<|im_start|>assistant")
    (image,) = first["multi_modal_data"]["image"]
    assert image.size == (64, 48)
    assert image.mode == "RGB"
    assert "multi_modal_data" not in second
    assert "<|image_pad|>" not in second["prompt"]


def test_missing_image_names_the_record(tmp_path):
    from curation.engines import load_images

    req = RolloutRequest("uid-9", "q", ({"bytes": None, "path": "gone.png"},), image_root=str(tmp_path))
    with pytest.raises(FileNotFoundError, match="uid-9"):
        load_images(req)


def test_model_fingerprint(tmp_path):
    model = tmp_path / "my-model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "weights.bin").write_bytes(b"\x00" * (5 << 20))
    first = model_fingerprint(model)
    assert first.startswith("my-model@")
    assert first == model_fingerprint(model)
    with open(model / "weights.bin", "r+b") as fh:  # a change in the last megabyte of a large file
        fh.seek((5 << 20) - 10)
        fh.write(b"\x01")
    assert model_fingerprint(model) != first
    with pytest.raises(FileNotFoundError):
        model_fingerprint(tmp_path / "nope")


def _tiny_questions(tmp_path, k: int = 3):
    for i, color in enumerate(["red", "blue", "green"][:k]):
        Image.new("RGB", (56, 56), color).save(tmp_path / f"img{i}.png")
    records = [
        make_record(
            question=f"What color is the square? ({i})",
            answer=c,
            images=[f"img{i}.png"],
            task="color",
            source="test",
        )
        for i, c in enumerate(["red", "blue", "green"][:k])
    ]
    write_parquet(records, str(tmp_path / "rl.parquet"))
    return records


def test_transformers_engine_is_reproducible(tiny_nano_dir, tmp_path):
    records = _tiny_questions(tmp_path, 2)
    engine = TransformersEngine(tiny_nano_dir, batch_size=2)
    reqs = [
        RolloutRequest(r["uid"], r["question"], tuple(r["images"]), (0, 1), image_root=str(tmp_path))
        for r in records
    ]
    sampling = SamplingParams(n=2, max_new_tokens=6)
    a = engine.generate(reqs, sampling)
    b = engine.generate(reqs, sampling)
    assert a == b
    assert all(isinstance(s, GeneratedSample) and 1 <= s.n_tokens <= 6 for ss in a for s in ss)
    assert [[s.sample_index for s in ss] for ss in a] == [[0, 1], [0, 1]]
    assert engine.model_id == model_fingerprint(tiny_nano_dir)


def test_tiny_model_rollouts_end_to_end(tiny_nano_dir, tmp_path, capsys):
    _tiny_questions(tmp_path)
    t0 = time.perf_counter()
    args = [
        "curate",
        "score",
        "--data",
        str(tmp_path / "rl.parquet"),
        "--model",
        str(tiny_nano_dir),
        "--backend",
        "transformers",
        "--n",
        "2",
        "--max-new-tokens",
        "8",
        "--batch-size",
        "2",
        "--out",
        str(tmp_path / "run"),
    ]
    assert run(args) == 0
    out = capsys.readouterr().out
    assert "3 questions, 6 new rollouts" in out
    frame = RolloutStore(tmp_path / "run").read()
    assert frame.height == 6
    assert frame.unique(["uid", "sample_index"]).height == 6
    assert frame["n_tokens"].max() <= 8
    assert set(frame["finish_reason"]) <= {"stop", "length"}
    assert frame["correct"].null_count() == 0  # every rollout scored by pebr_sample
    assert frame["preset"].unique().to_list() == ["pebr_sample"]
    assert frame["backend"].unique().to_list() == ["transformers"]
    assert run(args) == 0  # rerun: everything is stored
    assert "0 new rollouts" in capsys.readouterr().out
    assert (
        run(
            ["curate", "split", "--run", str(tmp_path / "run"), "--out", str(tmp_path / "splits"), "--n", "2"]
        )
        == 0
    )
    difficulty = pl.read_parquet(tmp_path / "splits" / "difficulty.parquet")
    assert difficulty.height == 3
    assert set(difficulty["n"]) == {2}
    assert time.perf_counter() - t0 < 60
