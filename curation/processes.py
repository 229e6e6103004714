"""Small helpers about processes, shared by modules that leave files named after a PID."""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

logger = logging.getLogger(__name__)


def pid_alive(pid: int) -> bool:
    """Whether a process with this PID exists (one of another user's counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale(directory: str | os.PathLike[str], prefixes: Iterable[str]) -> list[Path]:
    """Remove the files (and directories) of ``directory`` named ``<prefix><PID>`` or
    ``<prefix><PID>-<more>`` whose process is gone: what runs that were killed left behind.

    A PID that is alive (this process, or another run writing now) keeps its files; so does a
    file whose PID was reused by an unrelated process, until that one exits. A leftover that
    cannot be removed (another user's, in a shared directory such as ``/dev/shm``) is logged
    and left: it is not this run's to fail on. Returns the paths removed.
    """
    prefixes = tuple(prefixes)
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    removed = []
    for name in names:
        prefix = next((p for p in prefixes if name.startswith(p)), None)
        if prefix is None:
            continue
        pid = name[len(prefix) :].split("-", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid() or pid_alive(int(pid)):
            continue
        path = Path(directory, name)
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
        except FileNotFoundError:  # another run removed it first
            continue
        except OSError as exc:
            logger.warning("could not remove %s, left by a run that is gone: %s", path, exc)
            continue
        removed.append(path)
    return removed
