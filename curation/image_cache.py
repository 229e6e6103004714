"""The image metadata sidecar: probe results in Parquet, keyed by path, size and mtime.

A rerun, or a run with another threshold, reads the sidecar instead of reopening images;
a file whose size or mtime changed is probed again. The sidecar remembers the probe
version, the Pillow version and the image root it was made with, and is ignored when any
of them differs.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from typing import Any

from curation import speedups
from curation.image_header import CORRUPT, MISSING, OK, PROBE_VERSION, UNSAFE, ImageInfo
from curation.processes import remove_stale

logger = logging.getLogger(__name__)

CACHE_FILENAME = ".pebr-image-cache.parquet"
_CACHE_COLUMNS = (
    "path",
    "size",
    "mtime_ns",
    "status",
    "width",
    "height",
    "format",
    "sha256",
    "detail",
    "decoded",
    "decode_error",
)


def _cache_schema():
    import pyarrow as pa

    return pa.schema(
        [
            ("path", pa.string()),
            ("size", pa.int64()),
            ("mtime_ns", pa.int64()),
            ("status", pa.string()),
            ("width", pa.int64()),
            ("height", pa.int64()),
            ("format", pa.string()),
            ("sha256", pa.string()),
            ("detail", pa.string()),
            ("decoded", pa.bool_()),
            ("decode_error", pa.string()),
        ]
    )


def _cache_identity(image_root: str | os.PathLike[str]) -> dict[bytes, bytes]:
    import PIL

    return {
        b"pebr_probe_version": str(PROBE_VERSION).encode(),
        b"pillow_version": PIL.__version__.encode(),
        b"image_root": os.path.realpath(os.fspath(image_root)).encode(),
    }


_STATUSES = (OK, CORRUPT, MISSING, UNSAFE)
_STATUS_CODE = {s: k for k, s in enumerate(_STATUSES)}
# every worker reads the whole sidecar when it starts: snappy reads it about 3x faster than
# zstd (0.06 s against 0.21 s for 253K images), and the SHA-256 digits, most of it, hardly compress
_COMPRESSION = "snappy"
_CACHE_ROWS_PER_GROUP = 1 << 16


def cache_rows(items: Iterable[tuple[str, ImageInfo]]) -> dict[str, Any]:
    """Probe results of files that were read, packed for the trip between processes.

    A handful of flat buffers instead of a tuple per file (pickling tuples costs a few
    microseconds per file); :func:`cache_table` unpacks them into the sidecar's columns.
    Each column is one ``map`` over the infos (this runs once per image of a cold run).
    """
    import array
    from operator import attrgetter

    rows = [(rel, info) for rel, info in items if info.mtime_ns is not None]
    infos = [info for _, info in rows]
    formats: list[str | None] = [None]
    code_of: dict[str | None, int] = {None: 0}
    for fmt in dict.fromkeys(map(attrgetter("format"), infos)):  # first-seen order
        if fmt not in code_of:
            code_of[fmt] = len(formats)
            formats.append(fmt)
    return {
        "path": "\x00".join(rel for rel, _ in rows),
        "n": len(rows),
        "size": array.array("q", map(attrgetter("size"), infos)),
        "mtime_ns": array.array("q", map(attrgetter("mtime_ns"), infos)),
        "status": bytes(map(_STATUS_CODE.__getitem__, map(attrgetter("status"), infos))),
        "width": array.array("q", [-1 if w is None else w for w in map(attrgetter("width"), infos)]),
        "height": array.array("q", [-1 if h is None else h for h in map(attrgetter("height"), infos)]),
        "format": bytes(map(code_of.__getitem__, map(attrgetter("format"), infos))),
        "formats": formats,
        "sha256": list(map(attrgetter("sha256"), infos)),
        "detail": {k: i.detail for k, i in enumerate(infos) if i.detail is not None},
        "decoded": bytes(map(attrgetter("decoded"), infos)),
        "decode_error": {k: i.decode_error for k, i in enumerate(infos) if i.decode_error is not None},
    }


def cache_table(rows: dict[str, Any]) -> Any:
    """Rows from :func:`cache_rows` as a sidecar table (built from buffers: this runs in the
    main process, which must not load pandas, see :mod:`curation.record_columns`)."""
    import numpy as np
    import pyarrow as pa

    from curation.record_columns import bool_of, integers_of, pick_strings, string_array

    schema = _cache_schema()
    n = rows["n"]
    if not n:
        return schema.empty_table()

    def ints(name: str) -> Any:
        values = np.frombuffer(rows[name], dtype=np.int64)
        return integers_of(values, null=values < 0)

    def sparse(name: str) -> Any:
        values: list[str | None] = [None] * n
        for k, v in rows[name].items():
            values[k] = v
        return string_array(values)

    cols = {
        "path": string_array(rows["path"].split("\x00")),
        "size": integers_of(np.frombuffer(rows["size"], dtype=np.int64)),
        "mtime_ns": integers_of(np.frombuffer(rows["mtime_ns"], dtype=np.int64)),
        "status": pick_strings(list(_STATUSES), np.frombuffer(rows["status"], dtype=np.uint8)),
        "width": ints("width"),
        "height": ints("height"),
        "format": pick_strings(rows["formats"], np.frombuffer(rows["format"], dtype=np.uint8)),
        "sha256": string_array(rows["sha256"]),
        "detail": sparse("detail"),
        "decoded": bool_of(np.frombuffer(rows["decoded"], dtype=np.uint8).astype(bool)),
        "decode_error": sparse("decode_error"),
    }
    return pa.table(cols, schema=schema)


class PathIndex:
    """The row of each path of a sidecar's ``path`` column; a path listed twice gets its last row.

    With the compiled loops it is a hash table of row numbers over the column's own Arrow
    buffers (a few bytes per path, built in C); otherwise a dict from each path to its row.
    """

    def __init__(self, paths: Any) -> None:
        import numpy as np

        if paths.null_count:
            raise ValueError("image cache has rows without a path")
        n = len(paths)
        self._native = speedups.native
        if self._native is None:
            self._dict = dict(zip(paths.to_pylist(), range(n), strict=True))
            self._len = len(self._dict)
            return
        _validity, offsets, data = paths.buffers()
        self._offsets = np.frombuffer(offsets, dtype=np.int32)[paths.offset : paths.offset + n + 1].astype(
            np.int64
        )
        self._data = data if data is not None else b""
        self._table = np.empty(1 << max(4, (2 * n).bit_length()), dtype=np.int32)
        self._len = self._native.build_path_index(self._offsets, self._data, self._table)

    def __len__(self) -> int:
        return self._len

    def __contains__(self, rel: object) -> bool:
        return self.get(rel, -1) >= 0

    def get(self, rel: object, default: Any = None) -> Any:
        if self._native is None:
            return self._dict.get(rel, default)
        row = int(self.lookup([rel])[0])
        return default if row < 0 else row

    def lookup(self, rels: list[Any]) -> Any:
        """The rows of ``rels`` as an int64 numpy array, -1 for paths not in the sidecar."""
        import numpy as np

        if self._native is None:
            get = self._dict.get
            return np.fromiter((get(r, -1) for r in rels), dtype=np.int64, count=len(rels))
        rows = np.empty(len(rels), dtype=np.int64)
        self._native.lookup_paths(
            rels if type(rels) is list else list(rels), self._offsets, self._data, self._table, rows
        )
        return rows


class CachedInfos:
    """Probe results read from a sidecar, held compactly: ``get(path) -> ImageInfo | None``.

    Built over a batch in the index layout (:func:`index_batch`): fixed-width columns (the
    SHA-256 digests as 32 raw bytes) that are viewed in place, never copied into Python
    objects. The batch is either converted from the Parquet sidecar or memory-mapped from
    its index file (:func:`write_index`), which every worker process then shares.
    """

    def __init__(self, batch: Any) -> None:
        import pyarrow.compute as pc

        col = batch.column
        n = batch.num_rows
        self.status_names, self.format_names = check_index_batch(batch)

        def view(name: str, fmt: str, width: int) -> memoryview:
            arr = col(name)
            raw = memoryview(arr.buffers()[1]).cast("B")
            return raw[arr.offset * width : (arr.offset + n) * width].cast(fmt)

        def sparse(name: str) -> dict[int, str]:
            c = col(name)
            if c.null_count == len(c):
                return {}
            valid = pc.is_valid(c)
            rows = pc.indices_nonzero(valid).to_pylist()
            return dict(zip(rows, c.filter(valid).to_pylist(), strict=True))

        self.batch = batch  # the buffers viewed below live in it (or in its mapped file)
        self.row = PathIndex(col("path"))  # a path twice: the last row wins
        self.size = view("size", "q", 8)
        self.mtime = view("mtime_ns", "q", 8)
        self.width = view("width", "q", 8)
        self.height = view("height", "q", 8)
        self.decoded = view("decoded", "B", 1)
        self.status = view("status", "B", 1)
        self.format = view("format", "B", 1)
        self.digests = view("sha256", "B", 32)
        # details and decode errors exist only for the few bad files
        self.detail = sparse("detail")
        self.decode_error = sparse("decode_error")

    def __len__(self) -> int:
        return len(self.row)

    def __contains__(self, rel: object) -> bool:
        return rel in self.row

    def get(self, rel: str) -> ImageInfo | None:
        i = self.row.get(rel)
        if i is None:
            return None
        return self.info_at(i)

    def still_valid(
        self, i: int, size: int, mtime_ns: int, verify: bool, decode_max_pixels: int | None
    ) -> bool:
        """Whether row ``i`` holds for a file of this size and mtime (see ``ImageChecker``)."""
        if self.size[i] != size or self.mtime[i] != mtime_ns:
            return False
        if verify and self.status_names[self.status[i]] == OK and not self.decoded[i]:
            pixels = max(self.width[i], 0) * max(self.height[i], 0)
            return decode_max_pixels is not None and pixels > decode_max_pixels
        return True

    def hex_digests(self, rows: Any) -> Any:
        """The SHA-256 hex digests of ``rows`` as an ``(n, 64)`` array of ASCII bytes."""
        import numpy as np

        hexdigits = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
        raw = np.frombuffer(self.digests, dtype=np.uint8).reshape(-1, 32)[rows]
        out = np.empty((len(raw), 64), dtype=np.uint8)
        out[:, 0::2] = hexdigits[raw >> 4]
        out[:, 1::2] = hexdigits[raw & 15]
        return out

    def info_at(self, i: int) -> ImageInfo:
        w, h = self.width[i], self.height[i]
        return ImageInfo(
            self.status_names[self.status[i]],
            None if w < 0 else w,
            None if h < 0 else h,
            self.format_names[self.format[i]],
            self.digests[32 * i : 32 * i + 32].hex(),
            self.size[i],
            self.mtime[i],
            self.detail.get(i),
            bool(self.decoded[i]),
            self.decode_error.get(i),
        )


# --------------------------------------------------------------------------- the index file
#
# Every worker of a run needs the whole sidecar. Decoding the Parquet file (zstd or snappy
# pages, hex digests to raw bytes, nulls to -1) took each worker 0.2-0.5 s of CPU at 253K
# images, and each held its own copy. The index is the same rows in the layout CachedInfos
# views, as an uncompressed Arrow IPC file: a worker maps it and reads nothing it does not
# touch, and the workers share its pages. It is derived data: it names the size, mtime and
# inode of the Parquet file it was made from, and is rebuilt when they differ.

INDEX_SUFFIX = ".index.arrow"
_INDEX_VERSION = b"1"
_DENSE = ("path", "size", "mtime_ns", "width", "height", "decoded", "status", "format", "sha256")


def index_path(path: str | os.PathLike[str]) -> str:
    """Where the index of the sidecar at ``path`` lives."""
    return os.fspath(path) + INDEX_SUFFIX


def check_index_batch(batch: Any) -> tuple[list[str | None], list[str | None]]:
    """Raise ``ValueError`` unless ``batch`` has the index layout (columns, types, no nulls
    where there must be none, every status and format code named); returns the status and
    format names."""
    import json

    import numpy as np

    want = _index_schema_fields()
    if batch.schema.names != [name for name, _ in want]:
        raise ValueError(f"image cache index has columns {batch.schema.names}")
    for name, type_ in want:
        if batch.schema.field(name).type != type_:
            raise ValueError(f"image cache index column {name!r} is not {type_}")
        if name in _DENSE and batch.column(name).null_count:
            raise ValueError(f"image cache index column {name!r} has nulls")
    meta = batch.schema.metadata or {}
    names = []
    for name in ("status", "format"):
        try:
            listed = json.loads(meta.get(f"pebr_{name}_names".encode(), b"[null]"))
        except ValueError:
            raise ValueError(f"image cache index: its {name} names are not JSON") from None
        if not isinstance(listed, list) or not all(v is None or isinstance(v, str) for v in listed):
            raise ValueError(f"image cache index: its {name} names are not a list of names")
        arr = batch.column(name)
        codes = np.frombuffer(arr.buffers()[1], dtype=np.uint8)[arr.offset : arr.offset + len(arr)]
        if len(codes) and int(codes.max()) >= len(listed):
            raise ValueError(f"image cache index column {name!r} holds a code with no name")
        names.append(listed)
    return names[0], names[1]


def _index_schema_fields() -> list[tuple[str, Any]]:
    import pyarrow as pa

    return [
        ("path", pa.string()),
        ("size", pa.int64()),
        ("mtime_ns", pa.int64()),
        ("width", pa.int64()),
        ("height", pa.int64()),
        ("decoded", pa.uint8()),
        ("status", pa.uint8()),
        ("format", pa.uint8()),
        ("sha256", pa.binary(32)),
        ("detail", pa.string()),
        ("decode_error", pa.string()),
    ]


def index_batch(table: Any) -> Any:
    """A sidecar table (its Parquet schema) in the index layout, as one record batch.

    Width and height -1 stand for unknown; status and format are codes into the name lists
    kept in the schema's metadata, 0 standing for null. The sidecar's own metadata (its
    identity, see ``_cache_identity``) is carried over.
    """
    import json

    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from curation.record_columns import integers_of, one_array, string_array

    n = table.num_rows

    # numpy and Arrow buffers only: no Python value is converted, which would load pandas
    # (this also runs in the main process, see curation.record_columns)
    def whole(name: str) -> Any:
        return one_array(table.column(name))

    def values(arr: Any, dtype: Any) -> Any:
        return np.frombuffer(arr.buffers()[1], dtype=dtype)[arr.offset : arr.offset + len(arr)].copy()

    def bits(buf: Any, arr: Any) -> Any:
        flat = np.unpackbits(np.frombuffer(buf, dtype=np.uint8), bitorder="little")
        return flat[arr.offset : arr.offset + len(arr)].astype(bool)

    def invalid(arr: Any) -> Any:
        validity = arr.buffers()[0]
        return np.zeros(len(arr), dtype=bool) if validity is None else ~bits(validity, arr)

    def ints(name: str) -> Any:
        arr = whole(name)
        out = values(arr, np.int64)
        if arr.null_count:
            out[invalid(arr)] = -1
        return integers_of(out)

    def codes(name: str) -> tuple[Any, list[str | None]]:
        encoded = whole(name)
        if not pa.types.is_dictionary(encoded.type):
            encoded = pc.dictionary_encode(encoded)
        names = [None, *encoded.dictionary.to_pylist()]
        if len(names) > 256:
            raise ValueError(f"image cache column {name!r} has {len(names) - 1} distinct values")
        indices = encoded.indices.cast(pa.int32())
        shifted = values(indices, np.int32) + 1
        if indices.null_count:
            shifted[invalid(indices)] = 0
        return integers_of(shifted, pa.uint8()), names

    paths = whole("path")
    if paths.null_count:
        raise ValueError("image cache has rows without a path")
    status, status_names = codes("status")
    fmt, format_names = codes("format")
    sha = whole("sha256")
    if sha.null_count:
        sha = pc.coalesce(sha, string_array(["0" * 64])[0])
    digests = _unhex(sha, n)
    decoded = whole("decoded")
    decoded_values = bits(decoded.buffers()[1], decoded) & ~invalid(decoded)
    columns = {
        "path": paths,
        "size": ints("size"),
        "mtime_ns": ints("mtime_ns"),
        "width": ints("width"),
        "height": ints("height"),
        "decoded": integers_of(decoded_values, pa.uint8()),
        "status": status,
        "format": fmt,
        "sha256": pa.FixedSizeBinaryArray.from_buffers(pa.binary(32), n, [None, pa.py_buffer(digests)]),
        "detail": whole("detail"),
        "decode_error": whole("decode_error"),
    }
    meta = dict(table.schema.metadata or {})
    meta[b"pebr_status_names"] = json.dumps(status_names).encode()
    meta[b"pebr_format_names"] = json.dumps(format_names).encode()
    schema = pa.schema(_index_schema_fields(), metadata=meta)
    return pa.RecordBatch.from_arrays([columns[name] for name, _ in _index_schema_fields()], schema=schema)


def _stamp(path: str) -> bytes:
    """What identifies one version of the sidecar file: its size, mtime and inode (each
    rewrite by pebr is a new file renamed into place) and a checksum of its last 64 KB,
    the Parquet footer, which holds every column chunk's offsets and statistics (a file
    rewritten in place within the file system's clock tick, at the same size)."""
    import zlib

    with open(path, "rb") as f:
        st = os.fstat(f.fileno())
        f.seek(max(0, st.st_size - (64 << 10)))
        tail = zlib.crc32(f.read())
    return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}:{tail:08x}".encode()


def _open_index(path: str, image_root: str | os.PathLike[str]) -> Any:
    """The mapped index batch of the sidecar at ``path``; ``None`` when absent or stale."""
    import pyarrow as pa
    import pyarrow.ipc

    ipath = index_path(path)
    try:
        reader = pa.ipc.open_file(pa.memory_map(ipath))
    except FileNotFoundError:
        return None
    meta = reader.schema.metadata or {}
    if (
        meta.get(b"pebr_index_version") != _INDEX_VERSION
        or meta.get(b"pebr_index_of") != _stamp(path)
        or any(meta.get(k) != v for k, v in _cache_identity(image_root).items())
    ):
        logger.info("image cache index %s is out of date; reading the sidecar", ipath)
        return None
    if reader.num_record_batches != 1:
        raise ValueError(f"{reader.num_record_batches} record batches, expected 1")
    batch = reader.get_batch(0)
    batch.validate(full=True)  # offsets in bounds, paths UTF-8: the lookups trust them
    return batch


def write_index(path: str | os.PathLike[str], batch: Any) -> None:
    """Write the index of the sidecar at ``path`` (its rows as :func:`index_batch` gives them)."""
    import pyarrow as pa
    import pyarrow.ipc

    path = os.fspath(path)
    meta = dict(batch.schema.metadata or {})
    meta[b"pebr_index_version"] = _INDEX_VERSION
    meta[b"pebr_index_of"] = _stamp(path)
    batch = batch.replace_schema_metadata(meta)
    ipath = index_path(path)
    tmp = f"{ipath}.tmp-{os.getpid()}"
    try:
        with pa.OSFile(tmp, "wb") as sink, pa.ipc.new_file(sink, batch.schema) as writer:
            writer.write_batch(batch)
        os.replace(tmp, ipath)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


_HEX_VALUE = bytes(int(chr(c), 16) if chr(c) in "0123456789abcdefABCDEF" else 255 for c in range(256))


def raw_digests(hex_digits: Any) -> bytes:
    """Hex digits (a flat numpy ``uint8`` array of ASCII, 64 per SHA-256 digest) as raw bytes.

    Raises ``ValueError`` naming the digest that holds a byte which is not a hex digit.
    """
    import binascii

    import numpy as np

    try:
        return binascii.unhexlify(hex_digits)  # in C, 5x faster than the table below
    except binascii.Error:
        pass  # an odd count or a byte that is not a hex digit: the table below says where
    nibbles = np.frombuffer(_HEX_VALUE, dtype=np.uint8)[hex_digits]
    if (nibbles == 255).any():
        bad = int(np.flatnonzero(nibbles == 255)[0]) // 64
        raise ValueError(f"digest {bad} (row {bad}) holds a byte that is not a hex digit")
    return ((nibbles[0::2] << 4) | nibbles[1::2]).astype(np.uint8).tobytes()


def _unhex(digests: Any, n: int) -> bytes:
    """``n`` hex SHA-256 digests (an Arrow string array, no nulls) as 32 raw bytes each."""
    import numpy as np

    offsets = np.frombuffer(digests.buffers()[1], dtype=np.int32)[digests.offset : digests.offset + n + 1]
    if n and (np.diff(offsets) != 64).any():
        bad = int(np.flatnonzero(np.diff(offsets) != 64)[0])
        raise ValueError(f"image cache row {bad}: sha256 is not 64 hex digits")
    if not n:
        return b""
    text = np.frombuffer(digests.buffers()[2], dtype=np.uint8)[offsets[0] : offsets[0] + 64 * n]
    return raw_digests(text)


def _read_sidecar(path: str) -> Any:
    import pyarrow.parquet as pq

    # ParquetFile.read, unlike read_table, does not import pyarrow.compute (~50 MB per process)
    return pq.ParquetFile(path, read_dictionary=["status", "format"]).read(use_threads=False)


def load_cache(path: str | os.PathLike[str], image_root: str | os.PathLike[str]) -> CachedInfos | None:
    """Read a sidecar; ``None`` when it is absent or stale.

    Its index (see :func:`write_index`) is mapped when it is up to date, otherwise the
    Parquet file is read. A sidecar written by another probe version, another Pillow version
    (which may open different files) or for another image root is ignored, with a log message.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        return None
    batch = _usable_index(path, image_root)
    if batch is None:
        batch = sidecar_batch(path, image_root)
    return None if batch is None else CachedInfos(batch)


def _usable_index(path: str, image_root: str | os.PathLike[str]) -> Any:
    """The mapped index batch of the sidecar at ``path`` when it is up to date and passes
    :func:`check_index_batch`; ``None`` otherwise (a broken one is logged)."""
    import pyarrow as pa

    try:
        batch = _open_index(path, image_root)
        if batch is not None:
            check_index_batch(batch)
        return batch
    except (OSError, ValueError, pa.ArrowException) as exc:
        logger.warning("ignoring broken image cache index %s: %s", index_path(path), exc)
        return None


def sidecar_batch(path: str | os.PathLike[str], image_root: str | os.PathLike[str]) -> Any:
    """The Parquet sidecar at ``path`` as an index batch; ``None`` (logged) when it is
    unreadable, malformed or made for another probe version, Pillow or image root."""
    path = os.fspath(path)
    try:
        table = _read_sidecar(path)
    except (OSError, ValueError) as exc:
        logger.warning("ignoring unreadable image cache %s: %s", path, exc)
        return None
    meta = table.schema.metadata or {}
    want = _cache_identity(image_root)
    stale = [k.decode() for k, v in want.items() if meta.get(k) != v]
    if stale or list(table.column_names) != list(_CACHE_COLUMNS):
        logger.info("image cache %s does not match this run (%s); re-checking images", path, stale)
        return None
    try:
        return index_batch(table)
    except ValueError as exc:
        logger.warning("ignoring malformed image cache %s: %s", path, exc)
        return None


def refresh_index(path: str | os.PathLike[str], image_root: str | os.PathLike[str]) -> bool:
    """(Re)write the index of the sidecar at ``path`` unless it is up to date; returns
    whether it wrote one. A sidecar that would be ignored gets none."""
    path = os.fspath(path)
    if not os.path.exists(path) or _usable_index(path, image_root) is not None:
        return False
    batch = sidecar_batch(path, image_root)
    if batch is None:
        return False
    write_index(path, batch)
    return True


def save_cache(
    path: str | os.PathLike[str],
    image_root: str | os.PathLike[str],
    new_tables: Iterable[Any],
) -> int:
    """Merge new probe results (:func:`cache_table`) into the sidecar at ``path``; newest wins.

    Written to a temporary file and renamed, so a crash never leaves a half-written cache.
    Returns the number of rows in the sidecar.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    schema = _cache_schema()
    tables = [t.replace_schema_metadata(None).cast(schema) for t in new_tables if t.num_rows]
    if not tables:
        return 0
    new = pa.concat_tables(tables)
    # the same file may have been probed twice in one run (two records, one image): keep the last
    if pc.count_distinct(new.column("path")).as_py() != new.num_rows:
        idx = pa.array(range(new.num_rows), pa.int64())
        last = new.select(["path"]).append_column("i", idx).group_by("path").aggregate([("i", "max")])
        rows = last.column("i_max")
        new = new.take(pc.take(rows, pc.sort_indices(rows)))
    path = os.fspath(path)
    if os.path.exists(path):
        try:
            old = _read_sidecar(path)
        except (OSError, ValueError):
            old = None
        same = old is not None and (old.schema.metadata or {}) == _cache_identity(image_root)
        if same and old.column_names == list(_CACHE_COLUMNS):
            keep = pc.invert(pc.is_in(old.column("path"), value_set=new.column("path").combine_chunks()))
            new = pa.concat_tables([old.filter(keep).cast(schema), new])
    merged = new.replace_schema_metadata(_cache_identity(image_root))
    tmp = f"{path}.tmp-{os.getpid()}"
    pq.write_table(merged, tmp, compression=_COMPRESSION, use_dictionary=["status", "format"])
    os.replace(tmp, path)
    write_index(path, index_batch(merged))
    return merged.num_rows


class CacheWriter:
    """Streams the probe results of a run to a temporary file; :meth:`commit` publishes them.

    With no sidecar yet the file is simply renamed into place (an image probed by two
    workers may appear twice: readers keep the last row); otherwise it is merged into the
    existing sidecar with :func:`save_cache`.
    """

    def __init__(self, path: str | os.PathLike[str], image_root: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self.image_root = image_root
        self.tmp = f"{self.path}.new-{os.getpid()}"
        self.out: Any = None
        # a run killed while it wrote the sidecar leaves its temporary files behind
        name = os.path.basename(self.path)
        index = os.path.basename(index_path(self.path))
        remove_stale(os.path.dirname(self.path) or ".", [f"{name}.new-", f"{name}.tmp-", f"{index}.tmp-"])

    def write(self, table: Any) -> None:
        # a few large row groups: the sidecar is read whole by every worker at start-up, and
        # a row group per task (hundreds) made that read twice as slow
        if not table.num_rows:
            return
        if self.out is None:
            from curation.parquet_out import RowGroupWriter

            schema = _cache_schema().with_metadata(_cache_identity(self.image_root))
            self.out = RowGroupWriter(
                self.tmp,
                schema,
                _CACHE_ROWS_PER_GROUP,
                compression=_COMPRESSION,
                use_dictionary=["status", "format"],
            )
        self.out.write([table])

    def commit(self) -> int:
        """Publish the rows written, and bring the sidecar's index up to date; returns how
        many rows there were."""
        if self.out is None:
            # nothing new; a sidecar written by an earlier version, or replaced by hand, may
            # still lack an up-to-date index
            refresh_index(self.path, self.image_root)
            return 0
        self.out.close()
        rows, self.out = self.out.count, None
        if os.path.exists(self.path):
            save_cache(self.path, self.image_root, [_read_sidecar(self.tmp)])
            os.unlink(self.tmp)
        else:
            os.replace(self.tmp, self.path)
            refresh_index(self.path, self.image_root)
        return rows

    def abort(self) -> None:
        if self.out is not None:
            self.out.abort()
            self.out = None
        if os.path.exists(self.tmp):
            os.unlink(self.tmp)
