"""The synthetic default data: determinism, defects, checkable answers, layouts, CLI."""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from curation import convert, schema
from curation.synth import SynthConfig, generate_dataset
from curation.synth.build import REPORT, check_disjoint
from curation.synth.describe import describe
from curation.synth.questions import templates
from curation.synth.render import draw
from curation.synth.scene import Scene
from rewards.sections import final_answer, parse_sections
from trainer.cli import run

CFG = SynthConfig()
SIZES = {"sft": 200, "rl": 300, "test": 100}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("synth") / "data"
    return out, generate_dataset(out, seed=0, **SIZES)


def _load(out: Path):
    sft = json.loads((out / "sft.json").read_text())
    manifest = [json.loads(line) for line in (out / "sft_manifest.jsonl").read_text().splitlines()]
    rl = schema.from_arrow(schema.read_parquet(str(out / "rl.parquet")))
    test = schema.from_arrow(schema.read_parquet(str(out / "test.parquet")))
    return sft, manifest, rl, test


def _file_hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != REPORT
    }


# ------------------------------------------------------------------------------ determinism


def test_same_seed_gives_identical_bytes_whatever_the_worker_count(tmp_path):
    kw = {"sft": 60, "rl": 40, "test": 20, "seed": 3}
    generate_dataset(tmp_path / "a", workers=1, **kw)
    generate_dataset(tmp_path / "b", workers=2, **kw)
    a, b = _file_hashes(tmp_path / "a"), _file_hashes(tmp_path / "b")
    assert len(a) > 100  # sft.json, manifest, rl.json, 2 parquet files and the images
    assert a == b


def test_different_seed_gives_different_data(tmp_path):
    kw = {"sft": 30, "rl": 20, "test": 10}
    generate_dataset(tmp_path / "a", seed=1, **kw)
    generate_dataset(tmp_path / "b", seed=2, **kw)
    a, b = _file_hashes(tmp_path / "a"), _file_hashes(tmp_path / "b")
    assert a["sft.json"] != b["sft.json"]
    assert a["rl.json"] != b["rl.json"]
    assert a["images/rl/0000/000000.jpg"] != b["images/rl/0000/000000.jpg"]


def test_rerun_reuses_a_complete_dataset_and_regenerates_on_new_parameters(tmp_path):
    out = tmp_path / "d"
    first = generate_dataset(out, sft=20, rl=10, test=5, seed=0)
    mtime = (out / "sft.json").stat().st_mtime_ns
    again = generate_dataset(out, sft=20, rl=10, test=5, seed=0)
    assert again == first  # the saved report, seconds included: nothing was regenerated
    assert (out / "sft.json").stat().st_mtime_ns == mtime
    changed = generate_dataset(out, sft=20, rl=12, test=5, seed=0)
    assert changed["counts"]["rl"] == 12
    assert len(json.loads((out / "rl.json").read_text())) == 12
    # a lost file makes the saved dataset incomplete: regenerate
    (out / "rl.parquet").unlink()
    generate_dataset(out, sft=20, rl=12, test=5, seed=0)
    assert (out / "rl.parquet").is_file()


def test_refuses_a_directory_with_foreign_files(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match=r"notes\.txt"):
        generate_dataset(tmp_path, sft=10, rl=5, test=5)
    assert (tmp_path / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sft": -1, "rl": 5, "test": 5}, "sft must be a non-negative integer"),  # negative size
        ({"sft": 5, "rl": 5, "test": 5, "workers": 0}, "workers must be at least 1"),  # no workers
        ({"sft": 5, "rl": 2.5, "test": 5}, "rl must be a non-negative integer"),  # not an integer
    ],
)
def test_bad_arguments_are_named(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        generate_dataset(tmp_path, **kwargs)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"reflective_rate": 1.5}, "reflective_rate must be in"),  # a rate above 1
        ({"duplicate_rate": 0.3, "reflective_rate": 0.3}, "add up to"),  # nothing clean would remain
        ({"canvas_min": 20}, "canvas_min"),  # clean images would look like the small-image defect
        ({"shapes": ("circle", "blob")}, "shapes must be"),  # unknown shape
        ({"task_weights": (("sorting", 1.0),)}, "unknown tasks"),  # task outside the schema
        ({"image_format": "GIF"}, "image_format"),  # unsupported format
    ],
)
def test_bad_config_is_rejected(options, message):
    with pytest.raises(ValueError, match=message):
        SynthConfig(**options)


# ------------------------------------------------------------------------------ defects


def test_defect_counts_are_exact(data):
    out, summary = data
    _, manifest, _, _ = _load(out)
    n = SIZES["sft"]
    counts = Counter(m["defect"] for m in manifest)
    expected = {
        "reflective": round(CFG.reflective_rate * n),
        "small_image": round(CFG.small_image_rate * n),
        "missing_image": round(CFG.missing_image_rate * n),
        "truncated_image": round(CFG.truncated_image_rate * n),
        "duplicate": round(CFG.duplicate_rate * n),
    }
    for kind, k in expected.items():
        assert counts[kind] == k, kind
    assert counts["none"] == n - sum(expected.values())
    assert summary["defects"] == dict(sorted(counts.items()))


def test_defect_rates_follow_the_config(tmp_path):
    cfg = SynthConfig(
        reflective_rate=0.1, small_image_rate=0.05, duplicate_rate=0.08, truncated_image_rate=0.0
    )
    summary = generate_dataset(tmp_path, sft=100, rl=9, test=9, config=cfg)
    assert summary["defects"] == {
        "duplicate": 8,
        "missing_image": 1,
        "none": 76,
        "reflective": 10,
        "small_image": 5,
    }


def test_defects_are_real(data):
    out, _ = data
    sft, manifest, _, _ = _load(out)
    limit = CFG.small_image_limit
    for rec, m in zip(sft, manifest, strict=True):
        answer = rec["messages"][1]["content"]
        path = out / rec["images"][0]
        kind = m["defect"]
        assert ("let me rethink it" in answer.lower()) == (kind == "reflective"), m
        if kind == "missing_image":
            assert not path.exists()
            continue
        with Image.open(path) as im:
            size = im.size
            if kind == "truncated_image":
                with pytest.raises(OSError, match="truncated"):
                    im.load()
            else:
                im.load()
        assert size == (m["width"], m["height"])
        # the scene graph is kept, for the image as drawn (a shrunk image's boxes shrink too)
        assert [m["scene"]["width"], m["scene"]["height"]] == list(size)
        if kind == "small_image":
            assert min(size) < limit
        else:
            assert min(size) >= CFG.canvas_min
        if kind == "duplicate":
            src = m["duplicate_of"]
            assert src < m["index"]
            assert manifest[src]["defect"] == "none"
            assert rec == sft[src]  # verbatim, same image path


def test_reflective_answers_keep_the_layout_and_the_gold_answer(data):
    out, _ = data
    sft, manifest, _, _ = _load(out)
    reflective = [(r, m) for r, m in zip(sft, manifest, strict=True) if m["defect"] == "reflective"]
    assert reflective
    for rec, m in reflective:
        sections = parse_sections(rec["messages"][1]["content"])
        assert any("rethink it" in step.lower() for step in sections.steps)
        assert sections.final_answer == m["answer"]


# ------------------------------------------------------------------------------ layouts


def test_rl_json_is_to_pebr_of_rl_parquet(data):
    out, _ = data
    _, _, rl, _ = _load(out)
    assert json.loads((out / "rl.json").read_text()) == [convert.to_pebr(r) for r in rl]


def test_canonical_records_are_complete(data):
    out, _ = data
    _, _, rl, test = _load(out)
    for rec in rl + test:
        assert schema.validate_record(rec) == []
        assert rec["source"] == "synthetic"
        meta = json.loads(rec["meta"])
        data_bytes = (out / rec["images"][0]["path"]).read_bytes()
        # the uid is a content hash: image bytes, question and answer
        assert rec["uid"] == schema.compute_uid(
            rec["question"], rec["answer"], [schema.image_digest(data_bytes)]
        )
        with Image.open(out / rec["images"][0]["path"]) as im:
            assert [im.width, im.height] == [rec["image_sizes"][0]["width"], rec["image_sizes"][0]["height"]]
        expected_hint = (
            "reasoning" if rec["task"] in ("arithmetic", "comparison", "multiple_choice") else "perception"
        )
        assert rec["stage_hint"] == expected_hint
        assert rec["reference_caption"]
        assert rec["reference_caption"].count(".") <= 3
        assert rec["key_words"] or rec["answer"] in ("yes", "no")
        assert rec["messages"] == []
        assert meta["difficulty"] in (1, 2, 3)
        assert meta["scene"]["objects"]
        if rec["task"] == "multiple_choice":
            listed = [f"{'ABCDEF'[i]}. {c}" for i, c in enumerate(rec["choices"])]
            assert all(line in rec["question"].splitlines() for line in listed)
            assert re.fullmatch(r"[A-F]", rec["answer"])
        else:
            assert rec["choices"] is None
    assert len({r["uid"] for r in rl}) == len(rl)
    assert {json.loads(r["meta"])["difficulty"] for r in rl} == {1, 2, 3}


def test_every_task_is_present_in_rl(data):
    out, summary = data
    _, _, rl, _ = _load(out)
    tasks = {t for t, w in CFG.task_weights if w > 0}
    assert {r["task"] for r in rl} == tasks
    assert set(summary["tasks"]["rl"]) == tasks


def test_key_words_appear_in_the_scene_description(data):
    """A description written from the scene mentions every key word (recall can reach 1.0)."""
    out, _ = data
    _, _, rl, _ = _load(out)
    for rec in rl:
        text = describe(Scene.from_dict(json.loads(rec["meta"])["scene"])).lower()
        missing = [k for k in rec["key_words"] if k.lower() not in text]
        assert not missing, (rec["question"], missing)


def test_sft_records_convert_with_from_sharegpt(data):
    out, _ = data
    sft, manifest, _, _ = _load(out)
    for rec, m in zip(sft, manifest, strict=True):
        keys = [m["image_digest"]] if m["image_digest"] else None
        canon = convert.from_sharegpt(rec, source="synthetic", task=m["task"], image_keys=keys)
        assert schema.validate_record(canon) == []
        assert canon["answer"] == m["answer"] == final_answer(rec["messages"][1]["content"])
        assert canon["question"].endswith("Question: " + canon["question"].split("Question: ", 1)[1])
        assert convert.to_sharegpt(canon) == rec  # loss-free
        assert rec["messages"][0]["content"].startswith("<image>")
        sections = parse_sections(rec["messages"][1]["content"])
        assert sections.description
        assert sections.rationales
        assert sections.steps
        assert rec["images"][0].startswith("images/sft/")


def test_image_folders_stay_small(tmp_path):
    cfg = SynthConfig(files_per_folder=25)
    generate_dataset(tmp_path, sft=60, rl=30, test=10, config=cfg)
    folders = Counter(p.parent for p in (tmp_path / "images").rglob("*.jpg"))
    assert len(folders) > 3
    assert max(folders.values()) <= 25


def test_test_split_is_disjoint_from_training(data):
    out, _ = data
    _, manifest, rl, test = _load(out)
    train_scenes = {m["scene_hash"] for m in manifest} | {json.loads(r["meta"])["scene_hash"] for r in rl}
    train_images = {m["image_digest"] for m in manifest} | {json.loads(r["meta"])["image_digest"] for r in rl}
    for rec in test:
        meta = json.loads(rec["meta"])
        assert meta["scene_hash"] not in train_scenes
        assert meta["image_digest"] not in train_images
        assert meta["split"] == "test"


def test_disjointness_check_catches_an_overlap():
    train = [{"index": 0, "scene_hash": "s1", "image_digest": "d1"}]
    check_disjoint(train, [{"index": 0, "scene_hash": "s2", "image_digest": "d2"}])
    with pytest.raises(RuntimeError, match="test record 3"):
        check_disjoint(train, [{"index": 3, "scene_hash": "s1", "image_digest": "d9"}])
    with pytest.raises(RuntimeError, match="test record 4"):
        check_disjoint(train, [{"index": 4, "scene_hash": "s9", "image_digest": "d1"}])


# ------------------------------------------------------------------------------ scenes and boxes


def test_scenes_are_valid(data):
    out, _ = data
    _, _, rl, test = _load(out)
    for rec in rl + test:
        scene = json.loads(rec["meta"])["scene"]
        assert CFG.canvas_min <= scene["width"] <= CFG.canvas_max
        assert CFG.canvas_min <= scene["height"] <= CFG.canvas_max
        boxes = [o["bbox"] for o in scene["objects"]]
        for x1, y1, x2, y2 in boxes:
            assert 0 <= x1 < x2 < scene["width"]
            assert 0 <= y1 < y2 < scene["height"]
        for i, a in enumerate(boxes):
            for b in boxes[i + 1 :]:  # no two objects overlap
                assert a[2] < b[0] or b[2] < a[0] or a[3] < b[1] or b[3] < a[1]


def test_boxes_match_the_drawn_objects(data):
    out, _ = data
    _, _, rl, test = _load(out)
    grounding = [r for r in rl + test if r["task"] == "grounding"]
    assert grounding
    for rec in grounding:
        scene = Scene.from_dict(json.loads(rec["meta"])["scene"])
        pixels = np.asarray(draw(scene, CFG))
        with Image.open(out / rec["images"][0]["path"]) as im:
            jpeg = np.asarray(im.convert("RGB")).astype(int)
        for box in rec["boxes"]:
            x1, y1, x2, y2 = (int(v) for v in box)
            obj = next(o for o in scene.objects if list(o.bbox) == [x1, y1, x2, y2])
            color = np.array(CFG.rgb(obj.color))
            # look in the box grown by 2 px: other objects keep a larger gap (CFG.object_gap)
            wx, wy = max(0, x1 - 2), max(0, y1 - 2)
            window = pixels[wy : y2 + 3, wx : x2 + 3]
            ys, xs = np.nonzero(np.all(window == color, axis=-1))
            ys, xs = ys + wy, xs + wx
            # the object's own pixels span its box (within a pixel: polygon rasterisation)
            drawn = [int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())]
            assert max(abs(d - b) for d, b in zip(drawn, (x1, y1, x2, y2), strict=True)) <= 1, (
                rec["question"],
                box,
            )
            # and the JPEG shows that colour at the box's centre of mass
            cy, cx = int(ys[len(ys) // 2]), int(xs[len(xs) // 2])
            assert np.abs(jpeg[cy, cx] - color).max() < 60 or obj.digit is not None


def test_box_answers_are_integer_json(data):
    out, _ = data
    _, _, rl, _ = _load(out)
    for rec in rl:
        if rec["task"] != "grounding":
            continue
        value = json.loads(rec["answer"])
        boxes = value if isinstance(value[0], list) else [value]
        assert all(isinstance(v, int) for b in boxes for v in b)
        assert [[float(v) for v in b] for b in boxes] == rec["boxes"]


# ------------------------------------------------------------------------------ answers, re-derived


def _sing(plural: str) -> str:
    assert plural.endswith("s"), plural
    return plural[:-1]


def _resolve(ref: str, objs: list[dict]) -> dict:
    """The one object a referring expression names; fails if it names none or several."""
    m = re.fullmatch(r"the (?:(small|medium|large) )?(?:(\w+) )?(\w+)(?: with the digit (\d))?", ref)
    assert m, ref
    size, color, noun, digit = m.groups()
    found = [
        o
        for o in objs
        if (size is None or o["size"] == size)
        and (color is None or o["color"] == color)
        and (noun in ("shape", "object") or o["shape"] == noun)
        and (digit is None or o["digit"] == int(digit))
    ]
    assert len(found) == 1, (ref, found)
    return found[0]


RANK = {"small": 0, "medium": 1, "large": 2}
# fraction of its box each shape covers (the star: 5 points, inner radius 0.45)
COVER = {"circle": 0.785, "square": 1.0, "triangle": 0.5, "diamond": 0.5, "hexagon": 0.75, "star": 0.384}
# direction -> (centre coordinate, leading edge), both growing that way
DIRS = {
    "furthest to the left": (lambda o: -(o["bbox"][0] + o["bbox"][2]) / 2, lambda o: -o["bbox"][0]),
    "furthest to the right": (lambda o: (o["bbox"][0] + o["bbox"][2]) / 2, lambda o: o["bbox"][2]),
    "closest to the top": (lambda o: -(o["bbox"][1] + o["bbox"][3]) / 2, lambda o: -o["bbox"][1]),
    "closest to the bottom": (lambda o: (o["bbox"][1] + o["bbox"][3]) / 2, lambda o: o["bbox"][3]),
}


def _winner(objs, keys, margin):
    """The object ahead of all others by ``margin`` on centre and on leading edge alike."""
    winners = []
    for key in keys:
        ranked = sorted(objs, key=key, reverse=True)
        assert len(ranked) >= 2
        assert key(ranked[0]) - key(ranked[1]) >= margin
        winners.append(ranked[0])
    assert winners[0] is winners[1]
    return winners[0]


def _area(o):
    return (o["bbox"][2] - o["bbox"][0]) ** 2 * COVER[o["shape"]]


def _bigger(a, b) -> bool:
    """A size class up and visibly more area (CFG.area_ratio)."""
    return RANK[a["size"]] > RANK[b["size"]] and _area(a) >= CFG.area_ratio * _area(b)


def _largest(group):
    found = [o for o in group if all(p is o or _bigger(o, p) for p in group)]
    assert len(group) >= 2
    assert len(found) == 1, group
    return found[0]


def _unique_max(values: dict) -> str:
    top = max(values.values())
    winners = [k for k, v in values.items() if v == top]
    assert len(winners) == 1, values
    return winners[0]


def _box(o):
    return "[" + ", ".join(str(v) for v in o["bbox"]) + "]"


def _oracle(template: str, q: str, objs: list[dict]) -> str:
    """The answer re-derived from the question text and the scene graph alone."""
    n = lambda **kw: sum(all(o[k] == v for k, v in kw.items()) for o in objs)  # noqa: E731
    digits = [o["digit"] for o in objs if o["digit"] is not None]
    if template == "count_total":
        return str(len(objs))
    if m := re.fullmatch(r"How many (\w+) are there in the image\?", q):
        return str(n(shape=_sing(m[1])))
    if m := re.fullmatch(r"How many (\w+) shapes are there\?", q):
        return str(n(color=m[1]))
    if m := re.fullmatch(r"How many (\w+) (\w+) are in the image\?", q):
        return str(n(color=m[1], shape=_sing(m[2])))
    if m := re.fullmatch(r"How many shapes are (\w+) or are (\w+)\?", q):
        return str(sum(o["color"] == m[1] or o["shape"] == _sing(m[2]) for o in objs))
    if m := re.fullmatch(r"How many shapes are not (\w+)\?", q):
        return str(sum(o["color"] != m[1] for o in objs))
    if m := re.fullmatch(r"What color is the largest (\w+)\?", q):
        return _largest([o for o in objs if o["shape"] == m[1]])["color"]
    if m := re.fullmatch(r"What shape is the largest (\w+) object\?", q):
        return _largest([o for o in objs if o["color"] == m[1]])["shape"]
    if m := re.fullmatch(r"What (?:color is|is the color of) (the .+)\?", q):
        if m[1].startswith("the shape ") and m[1][10:] in DIRS:
            return _winner(objs, DIRS[m[1][10:]], CFG.position_margin)["color"]
        return _resolve(m[1], objs)["color"]
    if m := re.fullmatch(r"Which shape is (.+)\?", q):
        if m[1] in DIRS:
            return _winner(objs, DIRS[m[1]], CFG.position_margin)["shape"]
        return _resolve(m[1], objs)["shape"]
    if m := re.fullmatch(r"What shape is (the .+)\?", q):
        return _resolve(m[1], objs)["shape"]
    if m := re.fullmatch(r"Among the (\w+) shapes, which one is (.+)\? Answer with its shape\.", q):
        return _winner([o for o in objs if o["color"] == m[1]], DIRS[m[2]], CFG.position_margin)["shape"]
    if m := re.fullmatch(r"Among the (\w+), what color is the one (.+)\?", q):
        group = [o for o in objs if o["shape"] == _sing(m[1])]
        return _winner(group, DIRS[m[2]], CFG.position_margin)["color"]
    if m := re.fullmatch(r"Is (the .+?) (to the left of|to the right of|above|below) (the .+)\?", q):
        a, b = _resolve(m[1], objs)["bbox"], _resolve(m[3], objs)["bbox"]
        rel = {
            "to the left of": a[2] < b[0],
            "to the right of": b[2] < a[0],
            "above": a[3] < b[1],
            "below": b[3] < a[1],
        }
        opposite = {"to the left of": "to the right of", "above": "below"}
        opposite |= {v: k for k, v in opposite.items()}
        assert rel[m[2]] != rel[opposite[m[2]]]  # clearly one or the other
        return "yes" if rel[m[2]] else "no"
    if m := re.fullmatch(
        r"Find (the .+) and give its bounding box as \[x1, y1, x2, y2\] in pixel coordinates\.", q
    ):
        return _box(_resolve(m[1], objs))
    if m := re.match(r"Find every (\w+) and give their bounding boxes", q):
        group = sorted((o for o in objs if o["shape"] == m[1]), key=lambda o: o["bbox"][0] + o["bbox"][2])
        return "[" + ", ".join(_box(o) for o in group) + "]"
    if m := re.fullmatch(r"How many (\w+) and (\w+) are there altogether\?", q):
        return str(n(shape=_sing(m[1])) + n(shape=_sing(m[2])))
    if m := re.fullmatch(r"How many more (\w+) than (\w+) are there\?", q):
        diff = n(shape=_sing(m[1])) - n(shape=_sing(m[2]))
        assert diff > 0
        return str(diff)
    if q == "What is the sum of all the digits written on the shapes?":
        return str(sum(digits))
    if m := re.fullmatch(r"What is the sum of the digits on the (\w+) shapes minus the number of (\w+)\?", q):
        return str(sum(o["digit"] or 0 for o in objs if o["color"] == m[1]) - n(shape=_sing(m[2])))
    if m := re.fullmatch(r"What is the product of the digits on (the .+?) and (the .+)\?", q):
        return str(_resolve(m[1], objs)["digit"] * _resolve(m[2], objs)["digit"])
    if m := re.match(
        r"Add up the digits on all the (\w+), multiply the result by the number of (\w+) shapes", q
    ):
        s = sum(o["digit"] or 0 for o in objs if o["shape"] == _sing(m[1]))
        return str(s * n(color=m[2]) - max(digits))
    if m := re.match(r"Subtract the smallest digit .* multiply by the number of (\w+)\.", q):
        return str((max(digits) - min(digits)) * n(shape=_sing(m[1])))
    if m := re.fullmatch(r"Are there more (\w+) than (\w+)\?", q):
        a, b = n(shape=_sing(m[1])), n(shape=_sing(m[2]))
        assert a != b
        return "yes" if a > b else "no"
    if m := re.fullmatch(r"Which is larger, (the .+?) or (the .+)\? Answer with its (color|shape)\.", q):
        a, b = _resolve(m[1], objs), _resolve(m[2], objs)
        assert _bigger(a, b) or _bigger(b, a)
        assert a[m[3]] != b[m[3]]
        return (a if _bigger(a, b) else b)[m[3]]
    if m := re.fullmatch(r"Which number is larger: the digit on (the .+?) or the digit on (the .+)\?", q):
        a, b = _resolve(m[1], objs)["digit"], _resolve(m[2], objs)["digit"]
        assert a != b
        return str(max(a, b))
    if q == "Which color appears most often among the shapes?":
        return _unique_max(Counter(o["color"] for o in objs))
    if q == "Which kind of shape appears most often? Answer with the shape name.":
        return _unique_max(Counter(o["shape"] for o in objs))
    if m := re.fullmatch(
        r"Is the sum of the digits on the (\w+) greater than the number of shapes in the image\?", q
    ):
        s = sum(o["digit"] or 0 for o in objs if o["shape"] == _sing(m[1]))
        assert s != len(objs)
        return "yes" if s > len(objs) else "no"
    raise AssertionError(f"no oracle for template {template!r}: {q!r}")


def test_answers_are_rederived_from_the_scene_graph(data):
    out, _ = data
    _, _, rl, test = _load(out)
    seen = set()
    for rec in rl + test:
        meta = json.loads(rec["meta"])
        objs = meta["scene"]["objects"]
        template = meta["template"]
        if rec["task"] == "caption":
            assert rec["answer"] == rec["reference_caption"]
            assert f"{len(objs)} shapes" in rec["answer"]
            continue
        if rec["task"] == "multiple_choice":
            inner, _, options = rec["question"].partition("\nChoices:\n")
            gold = _oracle(template.split("/", 1)[1], inner, objs)
            assert rec["choices"].count(gold) == 1  # exactly one option is right
            assert rec["choices"]["ABCDEF".index(rec["answer"])] == gold
            assert options.endswith("Answer with the letter of the correct option.")
        else:
            assert _oracle(template, rec["question"], objs) == rec["answer"], rec["question"]
        seen.add(template.split("/")[-1])
    registered = {t.name for task, _ in CFG.task_weights for t in templates(task)}
    # the sample is large enough that almost every template occurs
    assert len(seen) >= len(registered) - 4, registered - seen


def test_answer_formats(data):
    out, _ = data
    _, _, rl, test = _load(out)
    colors = {c for c, _ in CFG.colors}
    for rec in rl + test:
        a = rec["answer"]
        assert a == a.strip()
        assert "\n" not in a
        if rec["task"] in ("count", "arithmetic"):
            assert re.fullmatch(r"-?\d+", a), a
        elif rec["task"] == "color":
            assert a in colors
        elif rec["task"] == "shape":
            assert a in CFG.shapes
        elif rec["task"] == "position":
            assert a in colors | set(CFG.shapes) | {"yes", "no"}
    yes_no = sum(r["answer"] in ("yes", "no") for r in rl + test)
    assert yes_no < 0.1 * len(rl + test)  # yes/no questions stay rare


# ------------------------------------------------------------------------------ CLI


def test_cli_generates_and_shows(tmp_path, capsys):
    out = tmp_path / "cli"
    args = ["data", "synth", "--out", str(out), "--sft", "30", "--rl", "20", "--test", "10", "--seed", "5"]
    assert run(args) == 0
    for name in ("sft.json", "sft_manifest.jsonl", "rl.json", "rl.parquet", "test.parquet", REPORT):
        assert (out / name).is_file(), name
    assert "multiple_choice" in capsys.readouterr().out
    assert run(["data", "show", str(out), "--examples", "2"]) == 0
    shown = capsys.readouterr().out
    assert "SFT defects" in shown
    assert json.loads((out / "rl.json").read_text())[0]["answer"] in shown


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert run(["data", "show", str(tmp_path / "nowhere")]) == 2
    assert "not found" in capsys.readouterr().err
    (tmp_path / "x.txt").write_text("x")
    assert run(["data", "synth", "--out", str(tmp_path), "--sft", "5", "--rl", "5", "--test", "5"]) == 2
    assert "did not write" in capsys.readouterr().err
