"""The compiled inner loops of the filter (``curation/_speedups.c``), when they are built.

``pip install`` compiles the extension where a C compiler is present; it is optional, and
each caller keeps a numpy or Python version of the same loop, used when :data:`native` is
``None``. Setting ``PEBR_NO_SPEEDUPS=1`` forces those (the tests run both and compare).

- :func:`real_quotes`: offsets of the unescaped quotes of a block of JSON text;
- :func:`scan_list_block`: the element delimiters of one block of a top-level JSON list,
  or ``None`` where the block needs the numpy scanner (the list's end, errors);
- ``native.parse_plain``: plain sharegpt records straight into Arrow buffers
  (:func:`curation.plain_parse.parse_plain`; ``pyarrow.json`` and byte checks without it);
- :func:`stat_in_dirs`: ``fstatat`` of many paths relative to open directory fds;
- :func:`read_in_dirs`: open, ``fstat`` and read many such paths (the cold image check);
- ``native.build_path_index`` / ``native.lookup_paths``: the sidecar's path lookup
  (:class:`curation.image_cache.PathIndex`);
- ``native.fast_probe``: the JPEG/PNG header parser (:func:`curation.image_header.fast_probe`).
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)


def _load() -> Any:
    if os.environ.get("PEBR_NO_SPEEDUPS", "").strip() not in ("", "0"):
        return None
    try:
        from curation import _speedups
    except ImportError:
        logger.debug("curation._speedups is not built; using the numpy loops")
        return None
    return _speedups


native = _load()

# negative ``modes`` of stat_in_dirs (kept in step with the C file)
NEED_DIR = -1
NEED_GENERAL = -2
NOT_READ = -3
NOT_REGULAR = -4
STAT_FAILED = -1000


def real_quotes(block: Any, bs_carry: int) -> tuple[np.ndarray, int]:
    """(offsets of the unescaped quotes, backslash run ending the block); needs :data:`native`."""
    raw, run = native.real_quotes(block, bs_carry)
    return np.frombuffer(raw, dtype=np.int64), run


def scan_list_block(
    block: Any, in_string: int, bs_carry: int, depth: int, first: bool
) -> tuple[np.ndarray, int, int, int, int] | None:
    """``(delimiter offsets, commas, in_string, bs_carry, depth)`` or ``None``; needs :data:`native`."""
    res = native.scan_list_block(block, in_string, bs_carry, depth, first)
    if res is None:
        return None
    raw, commas, in_string, bs_carry, depth = res
    return np.frombuffer(raw, dtype=np.int64), commas, in_string, bs_carry, depth


def _outputs(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The per-path sizes, mtimes and modes the C loops fill."""
    return np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64)


def stat_in_dirs(names: list[str], fds: dict[str, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(sizes, mtimes_ns, modes)`` of each path; a negative mode is one of the codes above."""
    sizes, mtimes, modes = _outputs(len(names))
    native.stat_in_dirs(names, fds, sizes, mtimes, modes)
    return sizes, mtimes, modes


def read_in_dirs(
    names: list[str], fds: dict[str, int], budget: int
) -> tuple[list[bytes | None], np.ndarray, np.ndarray, np.ndarray]:
    """``(contents, sizes, mtimes_ns, modes)``: each path opened without following a final
    symlink, checked to be a regular file and read whole, until ``budget`` bytes are read
    (the rest get ``NOT_READ``). Sizes and mtimes are ``fstat``'s; failures leave ``None``."""
    sizes, mtimes, modes = _outputs(len(names))
    data = native.read_in_dirs(names, fds, budget, sizes, mtimes, modes)
    return data, sizes, mtimes, modes
