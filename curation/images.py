"""Image checks for the filter: safe paths under an image root, probing, a metadata cache.

- :class:`PathResolver` turns a record's relative image path into a file path under the
  image root, or says why it is unsafe (absolute, ``..``, a symlink out of the root). Unsafe
  paths are never opened.
- :class:`ImageChecker` checks one image: safety, then the cached result when the file's
  size and mtime still match (:mod:`curation.image_cache`), else it reads the file, hashes
  it and probes its header (:mod:`curation.image_header`).

Example::

    >>> info = probe_file("/data/images", "chartqa/0001.png")   # doctest: +SKIP
    >>> info.status, info.width, info.height, info.format
    ('ok', 640, 480, 'PNG')
"""

from __future__ import annotations

import collections
import errno
import logging
import os
import stat
from collections.abc import Callable, Mapping
from typing import Any

from curation import speedups
from curation.image_cache import (
    CACHE_FILENAME,
    CachedInfos,
    CacheWriter,
    cache_rows,
    cache_table,
    load_cache,
    save_cache,
)
from curation.image_header import (
    CORRUPT,
    MISSING,
    OK,
    PROBE_VERSION,
    UNSAFE,
    ImageInfo,
    ProbeStats,
    _describe,
    decode_check,
    fast_probe,
    pillow_probe,
    probe_bytes,
)

logger = logging.getLogger(__name__)

__all__ = [
    "CACHE_FILENAME",
    "CORRUPT",
    "MISSING",
    "OK",
    "PROBE_VERSION",
    "UNSAFE",
    "CacheWriter",
    "CachedInfos",
    "ImageBatch",
    "ImageChecker",
    "ImageInfo",
    "PathResolver",
    "ProbeStats",
    "cache_rows",
    "cache_table",
    "decode_check",
    "fast_probe",
    "load_cache",
    "pillow_probe",
    "probe_bytes",
    "probe_file",
    "save_cache",
]

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


_RECENT = 4096  # files remembered within a run (beyond the cache read at the start)
_READ_BUDGET = 64 << 20  # bytes of image files held at once by a batched read
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
        self._rows = cache.row if isinstance(cache, CachedInfos) else None
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
        info, row, was_read = self._check(rel)
        if info is None:
            info = self.cache.info_at(row)
        return info, was_read

    def _check(self, rel: str) -> tuple[ImageInfo | None, int, bool]:
        """``(info, -1, was_read)``, or ``(None, row, False)`` for a valid row of a sidecar cache.

        Sidecar hits stay row numbers so that :meth:`check_many` can gather their columns.
        """
        self.checked += 1
        why = self.resolver.lexical(rel)
        if why is not None:
            return ImageInfo(UNSAFE, detail=why), -1, False
        rel_dir, _, name = rel.rpartition("/")
        dfd, status, why = self.resolver.directory(rel_dir)
        if status is not None:
            if status == MISSING:
                why = f"no file at {rel!r} ({why})"
            return ImageInfo(status, detail=why), -1, False
        target = name if dfd is not None else self.resolver.full_path(rel)
        hit = self._recent.get(rel)
        row = -1
        if hit is None:
            if self._rows is not None:
                row = self._rows.get(rel, -1)
            else:
                hit = self.cache.get(rel)
        if hit is not None or row >= 0:
            # a cheap stat decides whether the cached answer still holds
            try:
                st = os.stat(target, dir_fd=dfd, follow_symlinks=False)
                if stat.S_ISLNK(st.st_mode) and self.resolver.check_link(rel) is None:
                    st = os.stat(target, dir_fd=dfd)  # a link inside the root: key by its target
            except FileNotFoundError:
                return ImageInfo(MISSING, detail=f"no file at {rel!r}"), -1, False
            except OSError as exc:
                return ImageInfo(CORRUPT, detail=f"cannot stat {rel!r}: {_describe(exc)}"), -1, False
            if stat.S_ISREG(st.st_mode):
                if hit is not None and self._still_valid(hit, st):
                    self.cache_hits += 1
                    return hit, -1, False
                if row >= 0 and self.cache.still_valid(
                    row, st.st_size, st.st_mtime_ns, self.verify, self.decode_max_pixels
                ):
                    self.cache_hits += 1
                    return None, row, False
        info = self._open_and_probe(target, dfd, rel)
        if info.mtime_ns is not None:
            self._recent[rel] = info
            if len(self._recent) > _RECENT:
                self._recent.popitem(last=False)
        return info, -1, True

    def check_many(self, rels: list[str]) -> ImageBatch:
        """:meth:`check` of each path in turn, as columns; see :class:`ImageBatch`.

        Paths whose sidecar entry still holds (the common case of a rerun) are settled here
        with one ``stat`` each; anything else (unsafe, missing, changed, symlinks, files read
        earlier in this run) goes through :meth:`_check`, in order, as with :meth:`check`.
        """
        import numpy as np

        n = len(rels)
        infos: list[ImageInfo | None] = [None] * n
        rows = np.full(n, -1, dtype=np.int64)
        opened = np.zeros(n, dtype=bool)
        rest = range(n)
        if self._rows is not None:
            rest = self._sidecar_hits(rels, rows)
        # batched reads where no mapping of earlier results could answer instead (a sidecar's
        # rows are settled above; a plain dict cache goes through _check)
        if rest and self._native_paths and (self._rows is not None or not self.cache):
            self._read_many(rels, rest, infos, rows, opened)
            rest = []
        check = self._check
        for i in rest:
            info, row, was_read = check(rels[i])
            if info is None:
                rows[i] = row
            else:
                infos[i] = info
                opened[i] = was_read
        return ImageBatch(rels, infos, rows, opened, self.cache)

    def _sidecar_hits(self, rels: list[str], rows: Any) -> list[int]:
        """Fill ``rows`` for paths with a valid sidecar row; returns the other positions.

        The loop is kept to the ``stat`` and a few comparisons (it runs once per image of a
        rerun); anything unusual goes to :meth:`_check`, which words the reason. With the
        compiled loop (:mod:`curation.speedups`) the ``stat`` calls run in C, and the
        comparisons in numpy.
        """
        if self._native_paths:
            return self._sidecar_hits_native(rels, rows)
        get = self._rows.get
        recent = self._recent
        lexical = self.resolver.lexical
        directory = self.resolver.directory
        cache = self.cache
        size, mtime = cache.size, cache.mtime
        verify, limit = self.verify, self.decode_max_pixels
        stat_, is_reg = os.stat, stat.S_ISREG
        rest: list[int] = []
        hit_at: list[int] = []
        hit_row: list[int] = []
        for i, rel in enumerate(rels):
            row = get(rel, -1)
            # lexical() only for spellings it could object to (see PathResolver.lexical)
            if (
                row < 0
                or (recent and rel in recent)
                or ((".." in rel or ":" in rel or "\x00" in rel or rel[:1] in "/\\") and lexical(rel))
            ):
                rest.append(i)
                continue
            rel_dir, _, name = rel.rpartition("/")
            dfd = directory(rel_dir)[0]
            if dfd is None:  # a bad directory, or no openat: the general path words it
                rest.append(i)
                continue
            try:
                st = stat_(name, dir_fd=dfd, follow_symlinks=False)
            except OSError:
                rest.append(i)
                continue
            if (
                st.st_size != size[row]
                or st.st_mtime_ns != mtime[row]
                or not is_reg(st.st_mode)
                or (verify and not cache.still_valid(row, st.st_size, st.st_mtime_ns, verify, limit))
            ):
                rest.append(i)
                continue
            hit_at.append(i)
            hit_row.append(row)
        rows[hit_at] = hit_row
        self.checked += len(hit_at)
        self.cache_hits += len(hit_at)
        return rest

    @property
    def _native_paths(self) -> bool:
        """Whether the compiled per-path loops can run: built, and directories held open."""
        return speedups.native is not None and bool(self.resolver._max_fds)

    def _sidecar_hits_native(self, rels: list[str], rows: Any) -> list[int]:
        import numpy as np

        n = len(rels)
        found = self._rows.lookup(rels)
        recent = self._recent
        candidate = found >= 0
        if recent:
            candidate &= ~np.fromiter((rel in recent for rel in rels), dtype=bool, count=n)
        idx = np.flatnonzero(candidate)
        names = rels if len(idx) == n else [rels[i] for i in idx.tolist()]
        _, sizes, mtimes, modes = self._in_dirs(
            lambda part, fds: (None, *speedups.stat_in_dirs(part, fds)), names
        )
        cache = self.cache
        row = found[idx]
        ok = (modes >= 0) & ((modes & 0o170000) == stat.S_IFREG)
        ok &= sizes == np.frombuffer(cache.size, dtype=np.int64)[row]
        ok &= mtimes == np.frombuffer(cache.mtime, dtype=np.int64)[row]
        if self.verify:
            limit = self.decode_max_pixels
            for k in np.flatnonzero(ok).tolist():
                ok[k] = cache.still_valid(int(row[k]), int(sizes[k]), int(mtimes[k]), True, limit)
        hit_at = idx[ok]
        rows[hit_at] = row[ok]
        self.checked += len(hit_at)
        self.cache_hits += len(hit_at)
        rest = np.ones(n, dtype=bool)
        rest[hit_at] = False
        return np.flatnonzero(rest).tolist()

    def _in_dirs(self, call: Callable[..., tuple[Any, Any, Any, Any]], names: list[str]) -> tuple[Any, ...]:
        """``call(names, dir_fds) -> (data or None, sizes, mtimes, modes)`` (a compiled loop of
        :mod:`curation.speedups`), called again for the paths whose directory had no open fd.

        Those directories are opened in rounds of as many as the fd budget holds, so that a
        tree with more directories than handles does not close the ones a round needs.
        """
        import numpy as np

        resolver = self.resolver
        data, sizes, mtimes, modes = call(names, resolver._fds)
        by_dir: dict[str, list[int]] = {}
        for k in np.flatnonzero(modes == speedups.NEED_DIR).tolist():
            by_dir.setdefault(names[k].rpartition("/")[0], []).append(k)
        dirs = list(by_dir)
        while dirs:
            room = resolver._max_fds - len(resolver._fds)
            if room < min(len(dirs), resolver._max_fds):
                resolver.close()  # start over (the paths of earlier rounds are done)
                room = resolver._max_fds
            take, dirs = dirs[:room], dirs[room:]
            for rel_dir in take:
                resolver.directory(rel_dir)
            ks = sorted(k for rel_dir in take for k in by_dir[rel_dir])
            more, sizes[ks], mtimes[ks], modes[ks] = call([names[k] for k in ks], resolver._fds)
            if data is not None:
                for j, k in enumerate(ks):
                    data[k] = more[j]
        return data, sizes, mtimes, modes

    def _read_many(self, rels: list[str], todo: Any, infos: list[Any], rows: Any, opened: Any) -> None:
        """:meth:`_check` of the paths at positions ``todo``, in order, reading files in C batches.

        A path that only needs reading is opened, read and probed by the batch, as
        :meth:`_open_and_probe` would; the others (odd spellings, symlinks, non-regular or
        unreadable files, files seen earlier in this run) go through :meth:`_check` in turn.
        """

        todo = list(todo)
        recent = self._recent
        check = self._check
        while todo:
            names = [rels[i] for i in todo]
            data, sizes, mtimes, modes = self._in_dirs(
                lambda part, fds: speedups.read_in_dirs(part, fds, _READ_BUDGET), names
            )
            codes = modes.tolist()
            # past the byte budget: from the first path not read on, the next batch (in order)
            cut = codes.index(speedups.NOT_READ) if speedups.NOT_READ in codes else len(codes)
            later = todo[cut:]
            for k, i in enumerate(todo[:cut]):
                blob = data[k]
                rel = names[k]
                if blob is None or rel in recent:
                    info, row, was_read = check(rel)
                    if info is None:
                        rows[i] = row
                    else:
                        infos[i] = info
                        opened[i] = was_read
                    continue
                self.checked += 1
                self.opened += 1
                info, fallback = probe_bytes(
                    blob,
                    verify=self.verify,
                    decode_max_pixels=self.decode_max_pixels,
                    size=int(sizes[k]),
                    mtime_ns=int(mtimes[k]),
                )
                self.fallbacks += fallback
                self.decoded += info.decoded
                recent[rel] = info
                if len(recent) > _RECENT:
                    recent.popitem(last=False)
                infos[i] = info
                opened[i] = True
            todo = later

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


class ImageBatch:
    """The results of :meth:`ImageChecker.check_many`, as columns over its paths.

    ``rows[i] >= 0``: path ``i`` is row ``rows[i]`` of the sidecar cache; otherwise
    ``infos[i]`` holds its :class:`ImageInfo`. ``opened[i]``: the file was read for it.
    """

    def __init__(self, rels: list[str], infos: list[ImageInfo | None], rows: Any, opened: Any, cache: Any):
        import numpy as np

        self.rels = rels
        self.infos = infos
        self.rows = rows
        self.opened = opened
        self.cache = cache
        n = len(rels)
        from_cache = rows >= 0
        self.status_ok = np.zeros(n, dtype=bool)
        self.width = np.full(n, -1, dtype=np.int64)
        self.height = np.full(n, -1, dtype=np.int64)
        self.decode_error = np.zeros(n, dtype=bool)
        self.hex = np.zeros((n, 64), dtype=np.uint8)
        if from_cache.any():
            r = rows[from_cache]
            status = np.frombuffer(cache.status, dtype=np.uint8)[r]
            ok_code = cache.status_names.index(OK) if OK in cache.status_names else -1
            self.status_ok[from_cache] = status == ok_code
            self.width[from_cache] = np.frombuffer(cache.width, dtype=np.int64)[r]
            self.height[from_cache] = np.frombuffer(cache.height, dtype=np.int64)[r]
            self.hex[from_cache] = cache.hex_digests(r)
            if cache.decode_error:
                self.decode_error[from_cache] = [int(i) in cache.decode_error for i in r]
        read = np.flatnonzero(~from_cache)
        if len(read):  # columns from the infos, each in one pass
            fresh = [infos[i] for i in read.tolist()]
            good = np.array([info.status == OK for info in fresh], dtype=bool)
            self.status_ok[read] = good
            self.decode_error[read] = [info.decode_error is not None for info in fresh]
            oks = [info for info, g in zip(fresh, good.tolist(), strict=True) if g]
            at = read[good]
            self.width[at] = [info.width for info in oks]
            self.height[at] = [info.height for info in oks]
            digests = "".join([info.sha256 for info in oks]).encode("ascii")
            self.hex[at] = np.frombuffer(digests, dtype=np.uint8).reshape(len(oks), 64)

    def info(self, i: int) -> ImageInfo:
        """The :class:`ImageInfo` of path ``i``."""
        info = self.infos[i]
        return info if info is not None else self.cache.info_at(int(self.rows[i]))


def probe_file(image_root: str | os.PathLike[str], rel: str, *, verify: bool = False) -> ImageInfo:
    """Check one image under ``image_root`` (no cache): status, size, format, digest."""
    with ImageChecker(image_root, verify=verify) as checker:
        return checker.check(rel)[0]
