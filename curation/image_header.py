"""Does ``PIL.Image.open`` accept an image, and what size does it report? Answered fast.

:func:`probe_bytes` answers the question the PeBR-R1 filter asks of every image, and with
``verify=True`` also decodes the pixels. Baseline/progressive JPEG and PNG headers are walked
by a small parser that only ever *confirms* success where Pillow's own parser is certain to
succeed with the same size; every other file (other formats, truncations, unusual segments)
goes to Pillow itself, so the decision is always Pillow's. Tests check this on every
truncation and on byte flips of a set of headers.
"""

from __future__ import annotations

import hashlib
import io
import re
import warnings
import zlib
from typing import NamedTuple

from curation import speedups

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
    """``(width, height, format)`` when the fast parsers are certain Pillow agrees, else ``None``.

    The compiled twin of the parsers below answers first when it is built; it hands a JPEG
    with an EXIF block back (``True``), whose check needs Pillow's own EXIF reader.
    """
    if speedups.native is not None:
        answer = speedups.native.fast_probe(data)
        if answer is not True:
            return answer
    return fast_probe_py(data)


def fast_probe_py(data: bytes) -> tuple[int, int, str] | None:
    """:func:`fast_probe` in Python."""
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
