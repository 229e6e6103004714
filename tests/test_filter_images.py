"""Image checks of the filter: the fast header parser agrees with Pillow, safe paths, the cache."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pyarrow as pa
import pytest
from _filter_fixtures import bomb_png, image_bytes, jpeg_segments
from PIL import Image

from curation import image_cache
from curation.images import (
    CORRUPT,
    MISSING,
    OK,
    UNSAFE,
    CacheWriter,
    ImageChecker,
    PathResolver,
    cache_rows,
    cache_table,
    fast_probe,
    load_cache,
    pillow_probe,
    probe_bytes,
    save_cache,
)


def _exif(orientation: int = 6) -> bytes:
    tiff = b"II*\x00" + (8).to_bytes(4, "little") + (1).to_bytes(2, "little")
    tiff += (0x0112).to_bytes(2, "little") + (3).to_bytes(2, "little") + (1).to_bytes(4, "little")
    tiff += orientation.to_bytes(4, "little") + b"\x00\x00\x00\x00"
    return b"Exif\x00\x00" + tiff


def _samples() -> list[bytes]:
    im = Image.new("RGB", (37, 29), (10, 200, 30))
    out = []
    for kw in (
        {},  # baseline
        {"progressive": True},  # SOF2
        {"exif": _exif()},  # EXIF orientation: the size is reported unrotated
        {"icc_profile": b"\x00" * 128},  # APP2 ICC: left to Pillow
        {"quality": 30, "subsampling": 0},
    ):
        buf = io.BytesIO()
        im.save(buf, "JPEG", **kw)
        out.append(buf.getvalue())
    for mode in ("1", "L", "LA", "P", "RGB", "RGBA", "I;16"):
        buf = io.BytesIO()
        im.convert(mode).save(buf, "PNG", compress_level=1)
        out.append(buf.getvalue())
    buf = io.BytesIO()
    im.save(buf, "PNG", pnginfo=_pnginfo())
    out.append(buf.getvalue())
    gray = io.BytesIO()
    im.convert("L").save(gray, "JPEG", comment=b"a comment")
    out.append(gray.getvalue())
    return out


def _pnginfo():
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("Comment", "rec42")
    return info


def _agrees(data: bytes) -> bool:
    """The fast parser either defers to Pillow or gives exactly what Pillow gives."""
    fast = fast_probe(data)
    if fast is None:
        return True
    w, h, fmt, err = pillow_probe(data)
    return err is None and (w, h, fmt) == fast


@pytest.mark.parametrize("index", range(14))
def test_fast_header_parser_agrees_with_pillow_on_every_truncation(index):
    data = _samples()[index]
    assert fast_probe(data) is not None or index == 3  # ICC JPEGs are Pillow's to parse
    # every cut inside the header and a little into the data, and some byte flips
    header = jpeg_segments(data)[-1][2] + 64 if data[:2] == b"\xff\xd8" else min(len(data), 200)
    for cut in range(0, min(len(data), header)):
        assert _agrees(data[:cut]), cut
    for pos in range(2, min(len(data), 120)):
        for value in (0x00, 0xFF, data[pos] ^ 0x10):
            mutated = data[:pos] + bytes([value]) + data[pos + 1 :]
            assert _agrees(mutated), (pos, value)


@pytest.mark.parametrize(
    ("data", "status", "size"),
    [
        (image_bytes((64, 48)), OK, (64, 48)),  # clean PNG
        (image_bytes((64, 48), "JPEG"), OK, (64, 48)),  # clean JPEG
        (image_bytes((30, 20), "GIF"), OK, (30, 20)),  # Pillow fallback
        (b"", CORRUPT, None),  # empty file
        (b"GIF89a" + b"\x00" * 3, CORRUPT, None),  # a header cut short
        (b"<html>not an image</html>", CORRUPT, None),  # garbage
        (bomb_png(20000, 10000), OK, (20000, 10000)),  # huge header: size reported, no decode
    ],
)
def test_probe_bytes_statuses(data, status, size):
    info, _ = probe_bytes(data)
    assert info.status == status
    assert (info.width, info.height) == (size or (None, None))
    assert info.sha256 is not None
    assert len(info.sha256) == 64


def test_truncated_pixel_data_opens_but_fails_a_full_decode():
    data = image_bytes((96, 64), "JPEG")
    cut = data[: jpeg_segments(data)[-1][2] + 40]
    info, _ = probe_bytes(cut)
    assert info.status == OK
    assert info.decode_error is None
    assert not info.decoded
    verified, _ = probe_bytes(cut, verify=True)
    assert verified.decoded
    assert verified.decode_error is not None


def test_verify_does_not_decode_images_over_the_pixel_cap():
    info, _ = probe_bytes(bomb_png(20000, 10000), verify=True, decode_max_pixels=10_000)
    assert info.status == OK
    assert not info.decoded


@pytest.mark.parametrize(
    ("rel", "why"),
    [
        ("", "empty"),  # empty path
        ("../x.png", "'..'"),  # parent directory
        ("a/../../x.png", "'..'"),  # parent directory deeper down
        ("/etc/passwd", "absolute"),  # POSIX absolute
        ("C:\\images\\x.png", "absolute"),  # Windows drive
        ("\\\\server\\share\\x.png", "absolute"),  # UNC
        ("a\x00b.png", "NUL"),  # NUL byte
    ],
)
def test_lexically_unsafe_paths(rel, why):
    assert why in PathResolver.lexical(rel)


def test_symlinks_out_of_the_root_are_unsafe_and_never_opened(tmp_path):
    root = tmp_path / "root"
    (root / "d").mkdir(parents=True)
    outside = tmp_path / "secret.png"
    outside.write_bytes(image_bytes((40, 40)))
    (root / "d" / "ok.png").write_bytes(image_bytes((40, 40)))
    os.symlink(outside, root / "file_link.png")
    os.symlink(tmp_path, root / "dir_link")
    os.symlink(root / "d" / "ok.png", root / "inside_link.png")
    checker = ImageChecker(root)
    assert checker.check("file_link.png")[0].status == UNSAFE
    assert checker.check("dir_link/secret.png")[0].status == UNSAFE
    assert checker.opened == 0
    assert checker.check("inside_link.png")[0].status == OK
    assert checker.check("d/ok.png")[0].status == OK
    assert checker.check("d/nope.png")[0].status == MISSING
    assert checker.check("nodir/nope.png")[0].status == MISSING


def test_directories_and_fifos_are_not_images(tmp_path):
    (tmp_path / "adir.png").mkdir()
    os.mkfifo(tmp_path / "fifo.png")  # opening it must not block
    checker = ImageChecker(tmp_path)
    assert checker.check("adir.png")[0].status == CORRUPT
    assert checker.check("fifo.png")[0].status == CORRUPT


def _checked(root, rels, cache=None):
    checker = ImageChecker(root, cache=cache)
    results = [checker.check(r) for r in rels]
    return checker, results


def test_cache_round_trip_opens_no_image_and_rechecks_changed_files(tmp_path):
    root = tmp_path / "images"
    root.mkdir()
    rels = []
    for i in range(6):
        (root / f"{i}.png").write_bytes(image_bytes((40 + i, 40)))
        rels.append(f"{i}.png")
    (root / "bad.png").write_bytes(b"junk")
    rels.append("bad.png")
    first, results = _checked(root, rels)
    assert first.opened == 7
    sidecar = tmp_path / "cache.parquet"
    save_cache(
        sidecar,
        root,
        [cache_table(cache_rows((r, info) for r, (info, _) in zip(rels, results, strict=True)))],
    )

    second, again = _checked(root, rels, load_cache(sidecar, root))
    assert second.opened == 0
    assert second.cache_hits == 7
    assert [i for i, _ in again] == [i for i, _ in results]

    # a changed file (new size) and a touched file (same bytes, new mtime) are re-checked
    (root / "0.png").write_bytes(image_bytes((10, 10)))
    st = os.stat(root / "1.png")
    os.utime(root / "1.png", ns=(st.st_atime_ns, st.st_mtime_ns + 10_000_000))
    third, changed = _checked(root, rels, load_cache(sidecar, root))
    assert third.opened == 2
    assert third.cache_hits == 5
    assert (changed[0][0].width, changed[0][0].height) == (10, 10)


def _sidecar_of(root, tmp_path, verify=False):
    """A sidecar for a few good images, a corrupt one and (with ``verify``) decoded ones."""
    rels = []
    for i in range(4):
        (root / f"{i}.png").write_bytes(image_bytes((30 + i, 40)))
        rels.append(f"{i}.png")
    (root / "bad.png").write_bytes(b"junk")
    rels.append("bad.png")
    checker = ImageChecker(root, verify=verify)
    infos = [checker.check(r)[0] for r in rels]
    sidecar = tmp_path / "cache.parquet"
    save_cache(sidecar, root, [cache_table(cache_rows(zip(rels, infos, strict=True)))])
    return sidecar, rels, infos


def _no_parquet(monkeypatch):
    """Reading the Parquet sidecar fails from here on: what loads came from the index."""

    def refuse(path):
        raise AssertionError(f"read the Parquet sidecar {path}")

    monkeypatch.setattr(image_cache, "_read_sidecar", refuse)


@pytest.mark.parametrize("verify", [False, True])
def test_a_rerun_maps_the_sidecar_index_and_gets_the_same_infos(tmp_path, monkeypatch, verify):
    root = tmp_path / "images"
    root.mkdir()
    sidecar, rels, infos = _sidecar_of(root, tmp_path, verify)
    assert os.path.exists(image_cache.index_path(sidecar))
    _no_parquet(monkeypatch)
    cache = load_cache(sidecar, root)
    assert [cache.get(r) for r in rels] == infos
    assert infos[-1].status == CORRUPT
    assert infos[-1].detail
    assert all(i.decoded for i in infos[:-1]) == verify
    checker, again = _checked(root, rels, cache)
    assert checker.opened == 0
    assert [i for i, _ in again] == infos


def test_an_index_that_is_stale_or_broken_is_not_trusted_and_is_rebuilt(tmp_path, monkeypatch, caplog):
    root = tmp_path / "images"
    root.mkdir()
    sidecar, rels, infos = _sidecar_of(root, tmp_path)
    index = Path(image_cache.index_path(sidecar))
    old_index = index.read_bytes()

    # the sidecar changes (an image was re-probed) but an old index is left beside it
    (root / "0.png").write_bytes(image_bytes((90, 20)))
    fresh = ImageChecker(root).check("0.png")[0]
    save_cache(sidecar, root, [cache_table(cache_rows([("0.png", fresh)]))])
    index.write_bytes(old_index)
    assert load_cache(sidecar, root).get("0.png") == fresh
    assert CacheWriter(sidecar, root).commit() == 0  # nothing new: the index is brought up to date

    # a sidecar rewritten in place keeps its inode, and may keep its size and mtime
    st = os.stat(sidecar)
    data = bytearray(sidecar.read_bytes())

    def rewrite_in_place() -> None:
        with open(sidecar, "r+b") as f:
            f.write(data)
        os.utime(sidecar, ns=(st.st_atime_ns, st.st_mtime_ns))

    rewrite_in_place()
    assert image_cache._open_index(str(sidecar), root) is not None  # the same bytes
    data[-100] ^= 0xFF  # in the footer
    rewrite_in_place()
    assert image_cache._open_index(str(sidecar), root) is None
    data[-100] ^= 0xFF
    rewrite_in_place()

    # a damaged index: said so, and the sidecar is read instead
    index.write_bytes(b"ARROW1 and then nonsense")
    with caplog.at_level("WARNING"):
        assert load_cache(sidecar, root).get("0.png") == fresh
    assert "index" in caplog.text

    # an index naming a status code it has no name for
    batch = image_cache.sidecar_batch(sidecar, root)
    meta = dict(batch.schema.metadata)
    meta[b"pebr_status_names"] = b"[null]"
    image_cache.write_index(sidecar, batch.replace_schema_metadata(meta))
    caplog.clear()
    with caplog.at_level("WARNING"):
        assert load_cache(sidecar, root).get("bad.png") == infos[-1]
    assert "no name" in caplog.text

    # the next run's commit writes a good index, which the run after maps
    assert CacheWriter(sidecar, root).commit() == 0
    _no_parquet(monkeypatch)
    assert [load_cache(sidecar, root).get(r) for r in rels] == [fresh, *infos[1:]]


def test_cache_for_another_root_is_ignored(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "x.png").write_bytes(image_bytes((40, 40)))
    _, results = _checked(tmp_path / "a", ["x.png"])
    sidecar = tmp_path / "c.parquet"
    save_cache(sidecar, tmp_path / "a", [cache_table(cache_rows([("x.png", results[0][0])]))])
    assert load_cache(sidecar, tmp_path / "b") is None
    assert len(load_cache(sidecar, tmp_path / "a")) == 1


def test_verify_reprobes_entries_cached_without_a_decode(tmp_path):
    (tmp_path / "x.png").write_bytes(image_bytes((40, 40)))
    _, results = _checked(tmp_path, ["x.png"])
    sidecar = tmp_path / "c.parquet"
    save_cache(sidecar, tmp_path, [cache_table(cache_rows([("x.png", results[0][0])]))])
    checker = ImageChecker(tmp_path, verify=True, cache=load_cache(sidecar, tmp_path))
    info, read = checker.check("x.png")
    assert read
    assert info.decoded
    assert info.decode_error is None


def test_sidecar_with_a_path_twice_uses_its_last_row_and_a_bad_digest_is_ignored(tmp_path, caplog):
    (tmp_path / "x.png").write_bytes(image_bytes((40, 40)))
    (tmp_path / "y.png").write_bytes(image_bytes((50, 30)))
    _, results = _checked(tmp_path, ["x.png", "y.png"])
    x, y = results[0][0], results[1][0]
    stale = x._replace(width=1, height=1)
    rows = cache_table(cache_rows([("x.png", stale), ("y.png", y), ("x.png", x)]))
    sidecar = tmp_path / "c.parquet"
    writer = CacheWriter(sidecar, tmp_path)
    writer.write(rows)
    assert writer.commit() == 3
    cache = load_cache(sidecar, tmp_path)
    assert len(cache) == 2
    assert cache.get("x.png") == x  # two workers probed one image: the last row wins
    assert cache.get("y.png") == y
    assert cache.get("z.png") is None
    # a sidecar whose digests are not hex is ignored (and said so), not trusted
    import pyarrow.parquet as pq

    table = pq.read_table(sidecar)
    bad = table.set_column(7, "sha256", pa.array(["zz" * 32] * 3))
    pq.write_table(bad, sidecar)
    assert load_cache(sidecar, tmp_path) is None
    assert "malformed image cache" in caplog.text


def test_sidecar_is_written_in_few_row_groups(tmp_path):
    import pyarrow.parquet as pq

    (tmp_path / "x.png").write_bytes(image_bytes((40, 40)))
    _, results = _checked(tmp_path, ["x.png"])
    writer = CacheWriter(tmp_path / "c.parquet", tmp_path)
    for i in range(300):  # one small table per task, as the filter writes them
        writer.write(cache_table(cache_rows([(f"{i}/x.png", results[0][0])])))
    assert writer.commit() == 300
    assert pq.ParquetFile(tmp_path / "c.parquet").metadata.num_row_groups == 1
    assert len(load_cache(tmp_path / "c.parquet", tmp_path)) == 300
