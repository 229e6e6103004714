"""The compiled loops (``curation/_speedups.c``) against their numpy and Python twins.

Each test compares the two on the same input, so both paths stay tested on a machine that
builds the extension. ``PEBR_REQUIRE_SPEEDUPS=1`` (set by CI) turns "not built" into a failure.
"""

from __future__ import annotations

import errno
import json
import os
import random
import shutil
import stat
import zlib

import numpy as np
import pytest
from _filter_fixtures import build_dataset, image_bytes, record, write_json

from curation import io as cio
from curation import speedups
from curation.filter_config import FilterConfig
from curation.filter_pipeline import filter_dataset
from curation.images import ImageChecker, cache_rows, cache_table, load_cache, save_cache
from curation.io import BadInputError

native = pytest.mark.skipif(speedups.native is None, reason="curation._speedups is not built")


def test_extension_is_built_where_required():
    if os.environ.get("PEBR_REQUIRE_SPEEDUPS", "") in ("", "0"):
        pytest.skip("PEBR_REQUIRE_SPEEDUPS is not set")
    assert speedups.native is not None, "curation._speedups did not build (is a C compiler installed?)"


@pytest.fixture
def pure(monkeypatch):
    """Run the numpy / Python versions."""

    def use(on: bool) -> None:
        monkeypatch.setattr(speedups, "native", None if on else _NATIVE)

    return use


_NATIVE = speedups.native


# --------------------------------------------------------------------------- quotes


def _noisy(rng: random.Random, n: int) -> bytes:
    return bytes(rng.choice(b'""\\\\\\ab{}[],:\n') for _ in range(n))


@native
def test_real_quotes_match_numpy_across_block_boundaries():
    rng = random.Random(7)
    for _ in range(300):
        text = _noisy(rng, rng.randrange(0, 200))
        cut = rng.randrange(0, len(text) + 1)
        carry = rng.randrange(0, 3)
        for block, c in ((text, carry), (text[:cut], carry)):
            a = np.frombuffer(block, dtype=np.uint8)
            q1, r1 = speedups.real_quotes(a, c)
            q2, r2 = cio._real_quotes_np(a, c)
            assert q1.tolist() == q2.tolist(), (block, c)
            assert r1 == r2
        # split in two, the carry taken over: the same quotes as the whole
        a = np.frombuffer(text, dtype=np.uint8)
        whole, _ = speedups.real_quotes(a, 0)
        left, run = speedups.real_quotes(a[:cut], 0)
        right, _ = speedups.real_quotes(a[cut:], run)
        assert whole.tolist() == left.tolist() + (right + cut).tolist()


# --------------------------------------------------------------------------- list scanning


def _value(rng: random.Random, depth: int = 0):
    kind = rng.randrange(6 if depth < 3 else 3)
    if kind == 0:
        return "".join(rng.choice('ab "\\{}[],:\n\té') for _ in range(rng.randrange(8)))
    if kind == 1:
        return rng.randrange(-5, 500)
    if kind == 2:
        return rng.choice([None, True, False, 1.5])
    if kind == 3:
        return [_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {"k" + '\\"'[i % 2] * i: _value(rng, depth + 1) for i in range(rng.randrange(4))}


def _spans(path, block_size):
    out = []
    for starts, ends, _lines, truncated in cio._ListScanner(str(path), skip_bad=True, block_size=block_size):
        out.append((starts.tolist(), ends.tolist(), truncated))
    return out


def _scan_both(path, block_size, pure):
    results = []
    for on in (False, True):
        pure(on)
        try:
            results.append(("ok", _spans(path, block_size)))
        except BadInputError as exc:
            results.append(("error", str(exc)))
    return results


@native
@pytest.mark.parametrize("block_size", [1, 7, 64, 4096])
def test_list_scanner_matches_numpy_on_random_lists(tmp_path, pure, block_size):
    rng = random.Random(block_size)
    path = tmp_path / "in.json"
    for trial in range(40):
        # and many blocks before the list's end (fewer for the byte-at-a-time numpy scan)
        n = rng.randrange(0, 6) if trial % 2 else rng.randrange(20, 60 if block_size == 1 else 300)
        records = [{"messages": _value(rng), "images": [_value(rng)]} for _ in range(n)]
        path.write_text(json.dumps(records, indent=trial % 3 or None, ensure_ascii=trial % 2 == 0))
        fast, slow = _scan_both(path, block_size, pure)
        assert fast == slow
        assert fast[0] == "ok"
        n = sum(len(s) for s, _e, _t in fast[1])
        assert n == len(records)


@native
@pytest.mark.parametrize(
    "text",
    [
        b"[]",
        b"[ ]\n",
        b'[{"a": 1}, {"b": "]"}]',
        b'[{"a": 1}, {"b": 2}',  # truncated
        b'[{"a": 1}, {"b": "x',  # truncated inside a string
        b'[{"a": 1}}, {"b": 2}]',  # unbalanced
        b'[{"a": 1}, {"b": 2}}',  # '}' closing the list
        b'[{"a": 1}] [2]',  # data after the list
        b'[{"a": 1}],',
        b'[{"a": "\\\\"}, {"b": "\\""}]',
        b'[{"a": [1, [2, {"c": ","}]]}, 3, "s", []]',
    ],
)
def test_list_scanner_matches_numpy_on_edge_cases(tmp_path, pure, text):
    path = tmp_path / "in.json"
    path.write_bytes(text)
    for block_size in (1, 3, 1 << 16):
        fast, slow = _scan_both(path, block_size, pure)
        assert fast == slow, (text, block_size)


# --------------------------------------------------------------------------- stat and read


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "a.png").write_bytes(b"a" * 10)
    (root / "sub" / "b.png").write_bytes(b"b" * 20)
    os.symlink(root / "a.png", root / "link.png")
    os.mkfifo(root / "fifo.png")
    fds = {"": os.open(root, os.O_RDONLY), "sub": os.open(root / "sub", os.O_RDONLY)}
    yield root, fds
    for fd in fds.values():
        os.close(fd)


NAMES = [
    "a.png",
    "sub/b.png",
    "link.png",
    "fifo.png",
    "sub",
    "missing.png",
    "other/c.png",
    "../a.png",
    "/abs.png",
    "c:x.png",
    "",
    "a\udcffb.png",
]


@native
def test_stat_in_dirs(tree):
    root, fds = tree
    sizes, mtimes, modes = speedups.stat_in_dirs(NAMES, fds)
    for k in (0, 1, 2, 3, 4):
        st = os.stat(root / NAMES[k], follow_symlinks=False)
        assert (sizes[k], mtimes[k], modes[k]) == (st.st_size, st.st_mtime_ns, st.st_mode)
    assert stat.S_ISLNK(int(modes[2]))  # not followed
    assert modes[5] == speedups.STAT_FAILED - errno.ENOENT
    assert modes[6] == speedups.NEED_DIR
    assert modes[7:].tolist() == [speedups.NEED_GENERAL] * 5
    with pytest.raises(ValueError, match="int64"):
        speedups.native.stat_in_dirs(NAMES, fds, np.empty(1, np.int64), sizes, modes)
    with pytest.raises(TypeError):
        speedups.native.stat_in_dirs(tuple(NAMES), fds, sizes, mtimes, modes)


@native
def test_read_in_dirs_reads_regular_files_only(tree):
    _root, fds = tree
    data, sizes, _mtimes, modes = speedups.read_in_dirs(NAMES, fds, 1 << 20)
    assert data[:2] == [b"a" * 10, b"b" * 20]
    assert sizes[:2].tolist() == [10, 20]
    assert all(stat.S_ISREG(m) for m in modes[:2].tolist())
    assert data[2:] == [None] * (len(NAMES) - 2)
    assert modes[2] == speedups.STAT_FAILED - errno.ELOOP  # a symlink is not followed
    assert modes[3] == modes[4] == speedups.NOT_REGULAR  # the FIFO did not block
    assert modes[5] == speedups.STAT_FAILED - errno.ENOENT
    assert modes[6] == speedups.NEED_DIR
    # past the byte budget the rest is left for a later call
    data, _s, _t, modes = speedups.read_in_dirs(["a.png", "sub/b.png", "a.png"], fds, 5)
    assert data == [b"a" * 10, None, None]
    assert modes[1:].tolist() == [speedups.NOT_READ] * 2


@native
def test_read_in_dirs_reads_a_big_file_whole(tree):
    root, fds = tree
    big = os.urandom(3 << 20)
    (root / "big.bin").write_bytes(big)
    data, sizes, _t, _m = speedups.read_in_dirs(["big.bin"], fds, 1 << 30)
    assert data == [big]
    assert sizes[0] == len(big)


# --------------------------------------------------------------------------- image checks


def _batch(checker, rels):
    b = checker.check_many(rels)
    infos = [b.infos[i] if b.rows[i] < 0 else b.cache.info_at(int(b.rows[i])) for i in range(len(rels))]
    return [(i.status, i.width, i.height, i.sha256, i.detail) for i in infos], b.opened.tolist()


@native
def test_check_many_is_the_same_with_and_without_the_compiled_loops(tmp_path, pure):
    _records, _expected, images = build_dataset(tmp_path)
    rels = [
        *sorted(str(p.relative_to(images)) for p in images.rglob("*")),
        "sub/missing.png",
        "nodir/x.png",
        "../outside.png",
        "clean.png",  # twice: the second is remembered, not read again
    ]
    results = {}
    for on in (False, True):
        pure(on)
        with ImageChecker(images) as checker:
            results[on] = (_batch(checker, rels), checker.stats())
    assert results[False] == results[True]

    sidecar = tmp_path / "cache.parquet"
    with ImageChecker(images) as checker:
        infos = [checker.check(r)[0] for r in rels]
    save_cache(sidecar, images, [cache_table(cache_rows(zip(rels, infos, strict=True)))])
    for on in (False, True):
        pure(on)
        with ImageChecker(images, cache=load_cache(sidecar, images)) as checker:
            results[on] = (_batch(checker, rels), checker.stats())
    assert results[False] == results[True]
    assert results[True][1].opened == 0

    # a new size with the old mtime, and the old size with a new mtime: both are read again
    before = os.stat(images / "clean.png")
    (images / "clean.png").write_bytes(image_bytes((30, 30)))
    os.utime(images / "clean.png", ns=(before.st_atime_ns, before.st_mtime_ns))
    e1 = images / "e1.png"
    st = os.stat(e1)
    e1.write_bytes(e1.read_bytes())
    os.utime(e1, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    for on in (False, True):
        pure(on)
        with ImageChecker(images, cache=load_cache(sidecar, images)) as checker:
            results[on] = (_batch(checker, rels), checker.stats())
    assert results[False] == results[True]
    assert results[True][1].opened == 3  # clean.png, link_in.png (a link to it) and e1.png
    clean = rels.index("clean.png")
    assert results[True][0][0][clean][1:3] == (30, 30)


@native
@pytest.mark.parametrize("cached", [False, True])
def test_filter_outputs_are_the_same_with_and_without_the_compiled_loops(tmp_path, pure, cached):
    records, _expected, images = build_dataset(tmp_path)
    records = records + [record(f"Q{i}", ["clean.png"]) for i in range(40)]
    src = write_json(records, tmp_path / "in.json")
    cfg = FilterConfig(workers=0, chunk_records=9, cache=cached, cache_path=str(tmp_path / "c.parquet"))
    if cached:
        filter_dataset(src, images, tmp_path / "warm", cfg)
    outs = []
    for on in (False, True):
        pure(on)
        out = tmp_path / f"out{on}"
        filter_dataset(src, images, out, cfg)
        outs.append({n: (out / n).read_bytes() for n in ("kept.json", "kept.parquet", "dropped.parquet")})
        shutil.copy(out / "report.json", tmp_path / f"report{on}.json")
    assert outs[0] == outs[1]


@native
def test_newlines_before_counts_as_bytes_count():
    rng = random.Random(3)
    for _ in range(500):
        buf = bytes(rng.choice(b"ab\n") for _ in range(rng.randint(0, 80)))
        pos = np.sort(np.array([rng.randint(0, len(buf)) for _ in range(rng.randint(0, 8))], dtype=np.int64))
        raw, total = speedups.native.newlines_before(buf, pos)
        assert np.frombuffer(raw, dtype=np.int64).tolist() == [buf[:p].count(b"\n") for p in pos.tolist()]
        assert total == buf.count(b"\n")
    for bad in ([3, 1], [-1], [99]):
        with pytest.raises(ValueError, match="ascending offsets within the buffer"):
            speedups.native.newlines_before(b"a\nb\n", np.array(bad, dtype=np.int64))


# --------------------------------------------------------------------------- sidecar path index


@native
def test_path_index_matches_a_dict_last_row_winning(pure):
    import pyarrow as pa

    from curation.image_cache import PathIndex

    rng = random.Random(3)
    paths = [f"d{rng.randrange(40)}/{rng.randrange(300)}.png" for _ in range(2000)] + ["é/ü.png", ""]
    column = pa.array(["pad", *paths]).slice(1)  # a sliced column: offsets that do not start at 0
    queries = [*paths, "nope.png", "d1/", "a\udcffb.png", 7]
    want = {p: row for row, p in enumerate(paths)}  # a path twice: its last row
    for on in (False, True):
        pure(on)
        index = PathIndex(column)
        assert len(index) == len(want)
        assert index.lookup(queries).tolist() == [
            want.get(q, -1) if isinstance(q, str) else -1 for q in queries
        ]
        assert index.get("nope.png", -1) == -1
        assert index.get(paths[5]) == want[paths[5]]
        assert paths[0] in index
        assert "nope.png" not in index
    with pytest.raises(ValueError, match="without a path"):
        PathIndex(pa.array(["a", None]))


@native
@pytest.mark.parametrize(
    ("offsets", "table_fill", "call"),
    [
        ([0, 3, 1, 4], None, "build"),  # offsets going down: a row with a negative length
        ([0, 3, 99], None, "build"),  # a row past the end of the data
        ([-1, 3, 4], None, "build"),  # a row starting before the data
        ([0, 2, 4], 7, "lookup"),  # a table naming a row the column does not have
        ([0, 2, 4], 0, "lookup"),  # a full table (no empty slot): the probe must stop
    ],
)
def test_path_index_refuses_buffers_that_do_not_match(offsets, table_fill, call):
    """The index reads offsets row by row where they are used; bad ones are an error, never a
    read outside the buffers (a lookup no longer walks the whole column first)."""
    data = b"abcdxyz"
    off = np.array(offsets, dtype=np.int64)
    table = np.full(8, -1, dtype=np.int32)
    if call == "build":
        with pytest.raises(ValueError, match="bad path index"):
            _NATIVE.build_path_index(off, data, table)
        return
    assert _NATIVE.build_path_index(off, data, table) == 2
    table[:] = table_fill
    rows = np.empty(2, dtype=np.int64)
    with pytest.raises(ValueError, match="bad path index"):
        _NATIVE.lookup_paths(["ab", "zz"], off, data, table, rows)


# --------------------------------------------------------------------------- image headers


@native
def test_compiled_header_parser_decides_as_the_python_one():
    import io

    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    from curation.image_header import fast_probe, fast_probe_py

    im = Image.new("RGB", (37, 29), (10, 200, 30))
    exif = b"Exif\x00\x00II*\x00\x08\x00\x00\x00\x01\x00\x12\x01\x03\x00\x01\x00\x00\x00\x06\x00\x00\x00\x00\x00\x00\x00"
    samples = []
    for kw in ({}, {"progressive": True}, {"exif": exif}, {"icc_profile": b"\x00" * 64}, {"dpi": (300, 300)}):
        buf = io.BytesIO()
        im.save(buf, "JPEG", **kw)
        samples.append(buf.getvalue())
    info = PngInfo()
    info.add_text("Comment", "x" * 40)
    for mode in ("1", "L", "LA", "P", "RGB", "RGBA", "I;16"):
        buf = io.BytesIO()
        im.convert(mode).save(buf, "PNG", pnginfo=info if mode == "P" else None)
        samples.append(buf.getvalue())
    rng = random.Random(11)
    checked = answered = 0
    for data in samples:
        variants = [data[:k] for k in range(0, min(len(data), 700))]
        for _ in range(300):  # single-byte changes in the header
            b = bytearray(data)
            b[rng.randrange(min(len(b), 400))] = rng.randrange(256)
            variants.append(bytes(b))
        if data.startswith(b"\x89PNG"):  # IHDR fields changed, with a CRC that still matches
            for at in range(16, 29):
                for value in (0, 1, 2, 3, 4, 5, 6, 8, 16, 255):
                    b = bytearray(data)
                    b[at] = value
                    b[29:33] = zlib.crc32(bytes(b[12:29])).to_bytes(4, "big")
                    variants.append(bytes(b))
        for v in variants:
            got = speedups.native.fast_probe(v)
            want = fast_probe_py(v)
            if got is True:  # a JPEG with EXIF: the Python parser answers
                assert v[:3] == b"\xff\xd8\xff"
                got = fast_probe(v)
            assert got == want, v[:64]
            checked += 1
            answered += want is not None
    assert answered > 500  # the fast path did answer for the intact headers and many variants
    assert checked > 8000


@native
@pytest.mark.parametrize("cached", [False, True])
def test_more_directories_than_directory_handles(tmp_path, pure, cached):
    root = tmp_path / "images"
    rels = []
    for d in range(60):
        (root / f"d{d}").mkdir(parents=True)
        rel = f"d{d}/x.png"
        (root / rel).write_bytes(image_bytes((30 + d, 30)))
        rels.append(rel)
    rels = rels + rels[::-1]  # every directory again, in the other order
    if cached:
        with ImageChecker(root) as checker:
            infos = [checker.check(r)[0] for r in rels[:60]]
        save_cache(
            tmp_path / "c.parquet", root, [cache_table(cache_rows(zip(rels[:60], infos, strict=True)))]
        )
    results = {}
    for on in (False, True):
        pure(on)
        with ImageChecker(
            root, cache=load_cache(tmp_path / "c.parquet", root) if cached else None
        ) as checker:
            checker.resolver._max_fds = 16  # fewer handles than directories
            results[on] = (_batch(checker, rels), checker.stats())
            assert len(checker.resolver._fds) <= 16
    assert results[False] == results[True]
    assert all(r[0] == "ok" for r in results[True][0][0])
    assert results[True][1].opened == (0 if cached else 60)
