"""Image checks for the filter: safe paths under an image root, header probing, a metadata cache.

Three pieces, each usable on its own:

- :class:`PathResolver` turns a record's relative image path into a file path under the
  image root, or says why it is unsafe (absolute, ``..``, a symlink out of the root). Unsafe
  paths are never opened.
- :func:`probe_bytes` answers the question the PeBR-R1 filter asks of every image, "does
  ``PIL.Image.open`` accept it and what size does it report?", and with ``verify=True`` also
  decodes the pixels. Baseline/progressive JPEG and PNG headers are walked by a small parser
  that only ever *confirms* success where Pillow's own parser is certain to succeed with the
  same size; every other file (other formats, truncations, unusual segments) goes to Pillow
  itself, so the decision is always Pillow's. Tests check this on every truncation of a set of
  headers.
- :class:`ImageCache` is a Parquet sidecar of probe results keyed by path, size and mtime, so
  a rerun or a changed threshold reopens no image.

Example::

    >>> info = probe_file("/data/images", "chartqa/0001.png")   # doctest: +SKIP
    >>> info.status, info.width, info.height, info.format
    ('ok', 640, 480, 'PNG')
"""

from __future__ import annotations

import collections
import errno
import hashlib
import io
import logging
import os
import re
import stat
import warnings
import zlib
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

logger = logging.getLogger(__name__)

#: Bump when the probe's decisions change, so cached results from older code are ignored.
PROBE_VERSION = 1

# Status of one image, in the order the filter reports them.
OK = "ok"
UNSAFE = "unsafe"
MISSING = "missing"
CORRUPT = "corrupt"  # Pillow cannot open it (or it is not a regular file)


class ImageInfo(NamedTuple):
    """What the filter knows about one image file.

    ``status`` is ``ok`` (Pillow opens it), ``unsafe``, ``missing`` or ``corrupt``;
    ``detail`` says why for the last three. ``decode_error`` is set when a full decode was
    attempted (``decoded``) and failed. ``sha256`` is :func:`curation.schema.image_digest`
    of the file's bytes; ``size`` and ``mtime_ns`` are the cache key.
    """

    status: str
    width: int | None = None
    height: int | None = None
    format: str | None = None
    sha256: str | None = None
    size: int | None = None
    mtime_ns: int | None = None
    detail: str | None = None
    decoded: bool = False
    decode_error: str | None = None


# --------------------------------------------------------------------------- safe paths


_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)
_DIR_FD_OK = os.open in os.supports_dir_fd and os.stat in os.supports_dir_fd


def _dir_fd_budget() -> int:
    """How many directory handles to keep open: a quarter of the file limit, raised if allowed."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY or hard > soft:
            want = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
            if want > soft:
                resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
                soft = want
        return max(16, min(soft // 4, 16384))
    except (ImportError, ValueError, OSError):
        return 256


class PathResolver:
    """Resolves relative image paths under one root, rejecting any that could escape it.

    A path is unsafe when it is empty, absolute (POSIX, Windows drive or UNC), contains a NUL
    byte or a ``..`` component, or when a directory on the way or the file itself is a
    symlink that resolves outside the root. Each directory's real location is worked out
    once (from its parent's, so one ``lstat`` per directory), and usable directories are
    held open, so files are opened relative to them (``openat``): faster than walking the
    whole path for every file, and the directory that was checked is the one that is used.
    """

    def __init__(self, image_root: str | os.PathLike[str]) -> None:
        self.root = os.path.realpath(os.fspath(image_root))
        self._prefix = self.root.rstrip(os.sep) + os.sep
        # relative dir -> (real path or None, status, why); never evicted (small)
        self._real: dict[str, tuple[str | None, str | None, str | None]] = {"": (self.root, None, None)}
        self._fds: dict[str, int] = {}
        self._max_fds = _dir_fd_budget() if _DIR_FD_OK else 0

    def inside(self, real: str) -> bool:
        return real == self.root or real.startswith(self._prefix)

    @staticmethod
    def lexical(rel: str) -> str | None:
        """Why ``rel`` is unsafe by its spelling alone, or ``None``."""
        if not rel:
            return "empty image path"
        if "\x00" in rel:
            return "image path contains a NUL byte"
        if rel.startswith(("/", "\\")) or (len(rel) > 1 and rel[1] == ":" and rel[0].isalpha()):
            return f"absolute image path {rel!r}"
        if ".." in rel and ".." in rel.replace("\\", "/").split("/"):
            return f"image path {rel!r} goes up with '..'"
        return None

    def _resolve_dir(self, rel_dir: str) -> tuple[str | None, str | None, str | None]:
        hit = self._real.get(rel_dir)
        if hit is not None:
            return hit
        parent, _, name = rel_dir.rpartition("/")
        preal, status, why = self._resolve_dir(parent)
        if preal is None:
            hit = (None, status, why)
        else:
            child = os.path.join(preal, name)
            try:
                st = os.lstat(child)
            except FileNotFoundError:
                hit = (None, MISSING, f"no directory {rel_dir!r}")
            except OSError as exc:
                hit = (None, CORRUPT, f"cannot reach directory {rel_dir!r}: {_describe(exc)}")
            else:
                real = os.path.realpath(child) if stat.S_ISLNK(st.st_mode) else child
                if not self.inside(real):
                    hit = (None, UNSAFE, f"directory {rel_dir!r} is a symlink out of the image root")
                elif not os.path.isdir(real):
                    hit = (None, CORRUPT, f"{rel_dir!r} is not a directory")
                else:
                    hit = (real, None, None)
        self._real[rel_dir] = hit
        return hit

    def directory(self, rel_dir: str) -> tuple[int | None, str | None, str | None]:
        """``(dir fd or None, None, None)`` for a usable directory, else ``(None, status, why)``.

        The fd is ``None`` (use the full path) where ``openat`` is not available.
        """
        fd = self._fds.get(rel_dir)
        if fd is not None:
            return fd, None, None
        real, status, why = self._resolve_dir(rel_dir)
        if real is None:
            return None, status, why
        if not self._max_fds:
            return None, None, None
        try:
            fd = os.open(real, _DIR_FLAGS)
        except OSError as exc:
            return None, CORRUPT, f"cannot open directory {rel_dir!r}: {_describe(exc)}"
        if len(self._fds) >= self._max_fds:
            self.close()  # more directories than handles: start over (rare, cheap)
        self._fds[rel_dir] = fd
        return fd, None, None

    def full_path(self, rel: str) -> str:
        rel_dir, _, name = rel.rpartition("/")
        real = self._real.get(rel_dir, (None,))[0]
        return os.path.join(real, name) if real else os.path.join(self.root, rel)

    def check_link(self, rel: str) -> str | None:
        """For a path whose last component is a symlink: why it is unsafe, or ``None``."""
        if self.inside(os.path.realpath(os.path.join(self.root, rel))):
            return None
        return f"image path {rel!r} is a symlink out of the image root"

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()


# --------------------------------------------------------------------------- header probe

# JPEG markers whose segment the fast path reads (everything else goes to Pillow): SOF0-2,
# DHT, SOS, DQT, DRI, APP0-15, COM.
_JPEG_SOF = frozenset((0xC0, 0xC1, 0xC2))
_JPEG_FAST = frozenset((0xC0, 0xC1, 0xC2, 0xC4, 0xDA, 0xDB, 0xDD, 0xFE, *range(0xE0, 0xF0)))
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_PNG_IHDR = b"\x00\x00\x00\x0dIHDR"
# (bit depth, colour type) pairs Pillow opens (PngImagePlugin._MODES, stable since Pillow 2)
_PNG_MODES = frozenset(
    {
        (1, 0), (2, 0), (4, 0), (8, 0), (16, 0),  # grey
        (8, 2), (16, 2),  # RGB
        (1, 3), (2, 3), (4, 3), (8, 3),  # palette
        (8, 4), (16, 4), (8, 6), (16, 6),  # with alpha
    }
)  # fmt: skip
_PNG_FAST_CHUNKS = frozenset((b"PLTE", b"tEXt"))
_PNG_MAX_FAST_CHUNK = 1 << 20  # Pillow caps total text memory; large chunks go to Pillow


def _exif_would_parse(exif: bytes, xmp: bytes | None) -> bool:
    """Whether Pillow's ``JpegImageFile._read_dpi_from_exif`` gets through this EXIF block.

    Runs the same steps (``Image.getexif`` for a JPEG, then the DPI lookups) and reports
    ``False`` only for an exception that Pillow does not catch there, i.e. one that makes
    ``Image.open`` fail; the caller then asks Pillow itself.
    """
    import math
    import re
    import struct

    from PIL import ExifTags, Image

    try:
        data = Image.Exif()
        data._loaded = True
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Corrupt EXIF data" and the like: not a verdict
            data.load(exif)
        if ExifTags.Base.Orientation not in data and xmp:
            match = re.search(rb'tiff:Orientation(="|>)([0-9])', xmp)
            if match:
                data[ExifTags.Base.Orientation] = int(match[2])
        resolution_unit = data[0x0128]
        x_resolution = data[0x011A]
        try:
            dpi = float(x_resolution[0]) / x_resolution[1]
        except TypeError:
            dpi = x_resolution
        if math.isnan(dpi):
            raise ValueError("DPI is not a number")
        if resolution_unit == 3:
            dpi *= 2.54
    except (struct.error, KeyError, SyntaxError, TypeError, ValueError, ZeroDivisionError):
        return True  # Pillow catches these and falls back to 72 dpi
    except Exception:  # noqa: BLE001 - anything else makes Image.open fail: let Pillow say so
        return False
    return True


def _fast_jpeg(data: bytes) -> tuple[int, int] | None:
    """Size of a JPEG whose header Pillow certainly parses, else ``None`` (ask Pillow).

    Mirrors ``JpegImagePlugin.JpegImageFile._open``: every segment up to SOS must be complete,
    the SOF must be 8-bit with 1, 3 or 4 components, DQT tables must be whole, an EXIF block
    must get through the DPI lookup as in Pillow, and APP segments whose handlers can fail
    (JFIF too short, ICC, MPF, Photoshop, Adobe) are left to Pillow.
    """
    n = len(data)
    pos = 2
    size = None
    exif = None
    xmp = None
    has_dpi = False
    while True:
        if pos + 4 > n or data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker not in _JPEG_FAST:
            return None
        length = (data[pos + 2] << 8) | data[pos + 3]
        end = pos + 2 + length
        if length < 2 or end > n:
            return None
        body = pos + 4
        if marker == 0xDA:
            if size is not None and exif is not None and not has_dpi and not _exif_would_parse(exif, xmp):
                return None
            return size
        if marker >= 0xE0 and marker != 0xFE:
            if marker == 0xE0:
                if data.startswith(b"JFIF", body):
                    if length - 2 < 7:
                        return None
                    if length - 2 >= 12 and data[body + 7] in (1, 2):
                        has_dpi = True
            elif marker == 0xE1:
                if data.startswith(b"Exif\x00\x00", body):
                    # Pillow keeps the first block whole and appends later ones without the header
                    exif = data[body:end] if exif is None else exif + data[body + 6 : end]
                elif data.startswith(b"http://ns.adobe.com/xap/1.0/\x00", body):
                    xmp = data[body:end].split(b"\x00", 1)[1]
            elif marker == 0xE2:
                if data.startswith(b"ICC_PROFILE\x00", body) or data.startswith(b"MPF\x00", body):
                    return None
            elif marker == 0xED:
                if data.startswith(b"Photoshop 3.0\x00", body):
                    return None
            elif marker == 0xEE and data.startswith(b"Adobe", body):
                return None
        elif marker in _JPEG_SOF:
            seg = length - 2
            if seg < 6 or (seg - 6) % 3 or data[body] != 8 or data[body + 5] not in (1, 3, 4):
                return None
            height = (data[body + 1] << 8) | data[body + 2]
            width = (data[body + 3] << 8) | data[body + 4]
            if not width or not height:
                return None
            size = (width, height)
        elif marker == 0xDB:
            i = body
            while i < end:
                i += 65 if data[i] < 16 else 129
            if i != end:
                return None
        pos = end


def _fast_png(data: bytes) -> tuple[int, int] | None:
    """Size of a PNG whose header Pillow certainly parses, else ``None`` (ask Pillow).

    Mirrors ``PngImagePlugin.PngImageFile._open`` up to the first IDAT: a 13-byte IHDR with a
    known bit depth/colour type, filter method 0 and a good CRC, then only PLTE/tEXt chunks
    with good CRCs.
    """
    n = len(data)
    if n < 41 or not data.startswith(_PNG_IHDR, 8):
        return None
    if zlib.crc32(data[12:29]) != int.from_bytes(data[29:33], "big"):
        return None
    if (data[24], data[25]) not in _PNG_MODES or data[27]:
        return None
    width = int.from_bytes(data[16:20], "big")
    height = int.from_bytes(data[20:24], "big")
    if not width or not height:
        return None
    pos = 33
    while True:
        if pos + 8 > n:
            return None
        cid = data[pos + 4 : pos + 8]
        if cid == b"IDAT":
            return width, height
        length = int.from_bytes(data[pos : pos + 4], "big")
        end = pos + 8 + length
        if cid not in _PNG_FAST_CHUNKS or length > _PNG_MAX_FAST_CHUNK or end + 4 > n:
            return None
        if zlib.crc32(data[pos + 4 : end]) != int.from_bytes(data[end : end + 4], "big"):
            return None
        pos = end + 4


def fast_probe(data: bytes) -> tuple[int, int, str] | None:
    """``(width, height, format)`` when the fast parsers are certain Pillow agrees, else ``None``."""
    if data[:3] == b"\xff\xd8\xff":
        size = _fast_jpeg(data)
        return (size[0], size[1], "JPEG") if size else None
    if data[:8] == _PNG_MAGIC:
        size = _fast_png(data)
        return (size[0], size[1], "PNG") if size else None
    return None


_OBJECT_REPR = re.compile(r" ?<[\w.]+ object at 0x[0-9a-fA-F]+>")


def _describe(exc: BaseException) -> str:
    # Pillow names the in-memory file it was given ("<_io.BytesIO object at 0x...>"): drop
    # that, so the same file always gets the same detail
    text = _OBJECT_REPR.sub("", str(exc))
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def pillow_probe(data: bytes) -> tuple[int | None, int | None, str | None, str | None]:
    """``(width, height, format, error)`` from ``PIL.Image.open`` on the bytes.

    Pillow's decompression-bomb check is switched off for the call so that the size of a
    huge image is reported; the filter's own pixel cap decides about it.
    """
    from PIL import Image

    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        with warnings.catch_warnings():
            # e.g. "malformed MPO file, interpreted as a base JPEG": not a reason to drop
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as im:
                width, height = im.size
                return width, height, im.format, None
    except Exception as exc:  # noqa: BLE001 - any failure of Image.open is the "corrupt" verdict; recorded
        return None, None, None, _describe(exc)
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def decode_check(data: bytes) -> str | None:
    """Decode the whole image; the error text when that fails, else ``None``."""
    from PIL import Image

    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None  # the caller only decodes images under its pixel cap
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as im:
                im.load()
        return None
    except Exception as exc:  # noqa: BLE001 - a failed decode is the verdict; recorded
        return _describe(exc)
    finally:
        Image.MAX_IMAGE_PIXELS = saved


class ProbeStats(NamedTuple):
    """Counters of image checks (summed into the report)."""

    checked: int = 0
    cache_hits: int = 0
    opened: int = 0
    pillow_fallbacks: int = 0
    decoded: int = 0


def probe_bytes(
    data: bytes,
    *,
    verify: bool = False,
    decode_max_pixels: int | None = None,
    size: int | None = None,
    mtime_ns: int | None = None,
) -> tuple[ImageInfo, bool]:
    """Probe an image held in memory; returns the info and whether Pillow had to be asked.

    With ``verify=True`` the pixels are decoded too, but only when the reported size is at
    most ``decode_max_pixels`` (bigger images are dropped by the pixel cap anyway, and
    decoding them is exactly what a decompression bomb wants).
    """
    fast = fast_probe(data)
    fallback = fast is None
    if fast is not None:
        width, height, fmt = fast
        error = None
    else:
        width, height, fmt, error = pillow_probe(data)
    digest = hashlib.sha256(data).hexdigest()
    if size is None:
        size = len(data)
    if error is not None:
        return ImageInfo(CORRUPT, None, None, None, digest, size, mtime_ns, error), fallback
    decoded, decode_error = False, None
    if verify and (decode_max_pixels is None or width * height <= decode_max_pixels):
        decoded, decode_error = True, decode_check(data)
    return ImageInfo(OK, width, height, fmt, digest, size, mtime_ns, None, decoded, decode_error), fallback


_RECENT = 4096  # files remembered within a run (beyond the cache read at the start)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
# O_NONBLOCK: opening a FIFO planted among the images must not hang the run
_OPEN_FLAGS = os.O_RDONLY | _NOFOLLOW | getattr(os, "O_NONBLOCK", 0)
_OPEN_FLAGS |= getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)


def _read_all(fd: int, size: int) -> bytes:
    # One read of size + 1 bytes: getting exactly ``size`` back means end of file, so the usual
    # case is a single system call; a file that changed meanwhile (or a read cut short for a
    # huge file) is read to its end.
    data = os.read(fd, size + 1)
    if len(data) == size:
        return data
    chunks = [data]
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


class ImageChecker:
    """Checks images under one root, with an optional cache of earlier results.

    One instance lives in each worker process. ``cache`` maps a relative path to an
    :class:`ImageInfo` from an earlier run; it is reused when the file's size and mtime are
    unchanged (and, with ``verify``, when the earlier run decoded it too).
    """

    def __init__(
        self,
        image_root: str | os.PathLike[str],
        *,
        verify: bool = False,
        decode_max_pixels: int | None = None,
        cache: Mapping[str, ImageInfo] | CachedInfos | None = None,
    ) -> None:
        self.resolver = PathResolver(image_root)
        self.verify = verify
        self.decode_max_pixels = decode_max_pixels
        self.cache: Any = cache if cache is not None else {}
        # files read in this run, so an image shared by several records is read once
        self._recent: collections.OrderedDict[str, ImageInfo] = collections.OrderedDict()
        self.checked = self.cache_hits = self.opened = self.fallbacks = self.decoded = 0

    def stats(self) -> ProbeStats:
        return ProbeStats(self.checked, self.cache_hits, self.opened, self.fallbacks, self.decoded)

    def close(self) -> None:
        self.resolver.close()

    def __enter__(self) -> ImageChecker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _still_valid(self, hit: ImageInfo, st: os.stat_result) -> bool:
        if hit.size != st.st_size or hit.mtime_ns != st.st_mtime_ns:
            return False
        if self.verify and hit.status == OK and not hit.decoded:
            # decoding was not asked for when this was cached (or the image was over the cap)
            limit = self.decode_max_pixels
            return limit is not None and (hit.width or 0) * (hit.height or 0) > limit
        return True

    def check(self, rel: str) -> tuple[ImageInfo, bool]:
        """Check one image; returns its info and whether the file was read (not cached)."""
        self.checked += 1
        why = self.resolver.lexical(rel)
        if why is not None:
            return ImageInfo(UNSAFE, detail=why), False
        rel_dir, _, name = rel.rpartition("/")
        dfd, status, why = self.resolver.directory(rel_dir)
        if status is not None:
            if status == MISSING:
                why = f"no file at {rel!r} ({why})"
            return ImageInfo(status, detail=why), False
        target = name if dfd is not None else self.resolver.full_path(rel)
        hit = self._recent.get(rel) or self.cache.get(rel)
        if hit is not None:
            # a cheap stat decides whether the cached answer still holds
            try:
                st = os.stat(target, dir_fd=dfd, follow_symlinks=False)
                if stat.S_ISLNK(st.st_mode) and self.resolver.check_link(rel) is None:
                    st = os.stat(target, dir_fd=dfd)  # a link inside the root: key by its target
            except FileNotFoundError:
                return ImageInfo(MISSING, detail=f"no file at {rel!r}"), False
            except OSError as exc:
                return ImageInfo(CORRUPT, detail=f"cannot stat {rel!r}: {_describe(exc)}"), False
            if stat.S_ISREG(st.st_mode) and self._still_valid(hit, st):
                self.cache_hits += 1
                return hit, False
        info = self._open_and_probe(target, dfd, rel)
        if info.mtime_ns is not None:
            self._recent[rel] = info
            if len(self._recent) > _RECENT:
                self._recent.popitem(last=False)
        return info, True

    def _open_and_probe(self, target: str, dfd: int | None, rel: str) -> ImageInfo:
        try:
            fd = os.open(target, _OPEN_FLAGS, dir_fd=dfd)
        except FileNotFoundError:
            return ImageInfo(MISSING, detail=f"no file at {rel!r}")
        except OSError as exc:
            if exc.errno != errno.ELOOP:
                return ImageInfo(CORRUPT, detail=f"cannot open {rel!r}: {_describe(exc)}")
            # the last component is a symlink: follow it only when it stays under the root
            why = self.resolver.check_link(rel)
            if why is not None:
                return ImageInfo(UNSAFE, detail=why)
            try:
                fd = os.open(target, _OPEN_FLAGS & ~_NOFOLLOW, dir_fd=dfd)
            except FileNotFoundError:
                return ImageInfo(MISSING, detail=f"{rel!r} is a broken symlink")
            except OSError as exc2:
                return ImageInfo(CORRUPT, detail=f"cannot open {rel!r}: {_describe(exc2)}")
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return ImageInfo(CORRUPT, detail=f"{rel!r} is not a regular file")
            data = _read_all(fd, st.st_size)
        finally:
            os.close(fd)
        self.opened += 1
        info, fallback = probe_bytes(
            data,
            verify=self.verify,
            decode_max_pixels=self.decode_max_pixels,
            size=st.st_size,
            mtime_ns=st.st_mtime_ns,
        )
        self.fallbacks += fallback
        self.decoded += info.decoded
        return info


def probe_file(image_root: str | os.PathLike[str], rel: str, *, verify: bool = False) -> ImageInfo:
    """Check one image under ``image_root`` (no cache): status, size, format, digest."""
    with ImageChecker(image_root, verify=verify) as checker:
        return checker.check(rel)[0]


# --------------------------------------------------------------------------- Parquet sidecar

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


def cache_rows(items: Iterable[tuple[str, ImageInfo]]) -> dict[str, Any]:
    """Probe results of files that were read, packed for the trip between processes.

    A handful of flat buffers instead of a tuple per file (pickling tuples costs a few
    microseconds per file); :func:`cache_table` unpacks them into the sidecar's columns.
    """
    import array

    rows = [(rel, info) for rel, info in items if info.mtime_ns is not None]
    formats: list[str | None] = [None]
    fmt_codes = bytearray()
    for _rel, info in rows:
        if info.format not in formats:
            formats.append(info.format)
        fmt_codes.append(formats.index(info.format))
    return {
        "path": "\x00".join(rel for rel, _ in rows),
        "n": len(rows),
        "size": array.array("q", [i.size for _, i in rows]),
        "mtime_ns": array.array("q", [i.mtime_ns for _, i in rows]),
        "status": bytes(_STATUSES.index(i.status) for _, i in rows),
        "width": array.array("q", [-1 if i.width is None else i.width for _, i in rows]),
        "height": array.array("q", [-1 if i.height is None else i.height for _, i in rows]),
        "format": bytes(fmt_codes),
        "formats": formats,
        "sha256": [i.sha256 for _, i in rows],
        "detail": {k: i.detail for k, (_, i) in enumerate(rows) if i.detail is not None},
        "decoded": bytes(i.decoded for _, i in rows),
        "decode_error": {k: i.decode_error for k, (_, i) in enumerate(rows) if i.decode_error is not None},
    }


def cache_table(rows: dict[str, Any]) -> Any:
    """Rows from :func:`cache_rows` as a sidecar table."""
    import numpy as np
    import pyarrow as pa

    schema = _cache_schema()
    n = rows["n"]
    if not n:
        return schema.empty_table()

    def ints(name: str) -> Any:
        values = np.frombuffer(rows[name], dtype=np.int64)
        return pa.array(values, pa.int64(), mask=values < 0)

    def sparse(name: str) -> Any:
        values: list[str | None] = [None] * n
        for k, v in rows[name].items():
            values[k] = v
        return pa.array(values, pa.string())

    status = np.frombuffer(rows["status"], dtype=np.uint8)
    fmt = np.frombuffer(rows["format"], dtype=np.uint8)
    cols = {
        "path": pa.array(rows["path"].split("\x00"), pa.string()),
        "size": pa.array(np.frombuffer(rows["size"], dtype=np.int64)),
        "mtime_ns": pa.array(np.frombuffer(rows["mtime_ns"], dtype=np.int64)),
        "status": pa.array(_STATUSES, pa.string()).take(pa.array(status)),
        "width": ints("width"),
        "height": ints("height"),
        "format": pa.array(rows["formats"], pa.string()).take(pa.array(fmt)),
        "sha256": pa.array(rows["sha256"], pa.string()),
        "detail": sparse("detail"),
        "decoded": pa.array(np.frombuffer(rows["decoded"], dtype=np.uint8).astype(bool)),
        "decode_error": sparse("decode_error"),
    }
    return pa.table(cols, schema=schema)


class CachedInfos:
    """Probe results read from a sidecar, held compactly: ``get(path) -> ImageInfo | None``.

    A dict from path to row plus packed columns (the SHA-256 digests as one byte string)
    take a fraction of the memory of an ``ImageInfo`` per file; each worker holds one.
    """

    def __init__(self, table: Any) -> None:
        import array

        col = table.column

        def ints(name: str) -> array.array:
            values = col(name).to_pylist()
            if col(name).null_count:
                values = [-1 if v is None else v for v in values]
            return array.array("q", values)

        def codes(name: str) -> tuple[bytes, list[str | None]]:
            # dictionary-encoded in the sidecar: small integer codes plus the distinct values
            chunks = col(name).chunks
            names: list[str | None] = [None]
            out = bytearray()
            for chunk in chunks:
                if hasattr(chunk, "indices"):
                    local = chunk.dictionary.to_pylist()
                    remap = []
                    for v in local:
                        if v not in names:
                            names.append(v)
                        remap.append(names.index(v))
                    out += bytes(0 if i is None else remap[i] for i in chunk.indices.to_pylist())
                else:
                    for v in chunk.to_pylist():
                        if v not in names:
                            names.append(v)
                        out.append(names.index(v))
            return bytes(out), names

        def sparse(name: str) -> dict[int, str]:
            c = col(name)
            if c.null_count == len(c):
                return {}
            return {i: v for i, v in enumerate(c.to_pylist()) if v is not None}

        self.row = {p: i for i, p in enumerate(col("path").to_pylist())}
        self.size = ints("size")
        self.mtime = ints("mtime_ns")
        self.width = ints("width")
        self.height = ints("height")
        self.decoded = bytes(col("decoded").to_pylist())
        self.status, self.status_names = codes("status")
        self.format, self.format_names = codes("format")
        # raw 32-byte digests, half the size of their hex text
        self.digests = bytes.fromhex("".join(d or "0" * 64 for d in col("sha256").to_pylist()))
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


def _read_sidecar(path: str) -> Any:
    import pyarrow.parquet as pq

    # ParquetFile.read, unlike read_table, does not import pyarrow.compute (~50 MB per process)
    return pq.ParquetFile(path, read_dictionary=["status", "format"]).read(use_threads=False)


def load_cache(path: str | os.PathLike[str], image_root: str | os.PathLike[str]) -> CachedInfos | None:
    """Read a sidecar; ``None`` when it is absent or stale.

    A sidecar written by another probe version, another Pillow version (which may open
    different files) or for another image root is ignored, with a log message.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        return None
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
    return CachedInfos(table)


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
    pq.write_table(merged, tmp, compression="zstd", use_dictionary=["status", "format"])
    os.replace(tmp, path)
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
        self.writer: Any = None
        self.rows = 0

    def write(self, table: Any) -> None:
        if not table.num_rows:
            return
        if self.writer is None:
            import pyarrow.parquet as pq

            schema = _cache_schema().with_metadata(_cache_identity(self.image_root))
            self.writer = pq.ParquetWriter(
                self.tmp, schema, compression="zstd", use_dictionary=["status", "format"]
            )
        self.writer.write_table(table)
        self.rows += table.num_rows

    def commit(self) -> int:
        """Publish the rows written; returns how many there were."""
        if self.writer is None:
            return 0
        self.writer.close()
        self.writer = None
        if os.path.exists(self.path):
            save_cache(self.path, self.image_root, [_read_sidecar(self.tmp)])
            os.unlink(self.tmp)
        else:
            os.replace(self.tmp, self.path)
        return self.rows

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        if os.path.exists(self.tmp):
            os.unlink(self.tmp)
