"""``curation.spill``: worker batches handed over through shared memory."""

from __future__ import annotations

import os
import subprocess
import sys

import pyarrow as pa

from curation import spill


def _batches():
    a = pa.record_batch({"uid": ["a", "b"], "n": [1, 2]})
    return [a, pa.record_batch({"uid": ["c"], "n": [3]})]


def test_spilled_batches_come_back_equal_and_the_file_is_gone(tmp_path):
    with spill.spill_dir(str(tmp_path)) as d:
        assert d is not None
        assert os.path.isdir(d)
        path = spill.spill(_batches(), d, "7")
        assert path is not None
        assert os.path.exists(path)
        back = spill.load(path)
        assert not os.path.exists(path)  # unlinked once mapped
        assert pa.Table.from_batches(back).equals(pa.Table.from_batches(_batches()))
        # the batches stay readable after the file is closed and unlinked
        assert back[1].column("uid").to_pylist() == ["c"]
    assert not os.path.exists(d)  # the run's directory is removed with everything in it


def test_no_directory_means_no_spilling(tmp_path):
    with spill.spill_dir(str(tmp_path / "absent")) as d:
        assert d is None


def test_a_failed_write_returns_none_so_the_caller_pickles(tmp_path):
    assert spill.spill(_batches(), str(tmp_path / "gone"), "1") is None


def test_directories_of_dead_runs_are_removed_live_ones_kept(tmp_path):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead_pid = int(dead.stdout)
    (tmp_path / f"pebr-filter-{dead_pid}-abc").mkdir()
    (tmp_path / f"pebr-filter-{dead_pid}-abc" / "0.arrow").write_bytes(b"x")
    live = tmp_path / f"pebr-filter-{os.getppid()}-def"
    live.mkdir()
    other = tmp_path / "someone-else"
    other.mkdir()
    with spill.spill_dir(str(tmp_path)) as d:
        assert d is not None
        assert not (tmp_path / f"pebr-filter-{dead_pid}-abc").exists()
        assert live.exists()
        assert other.exists()


def test_a_leftover_that_cannot_be_removed_is_logged_not_fatal(tmp_path, monkeypatch, caplog):
    """Another user's leftover in a shared /dev/shm cannot be removed: the run goes on."""
    import shutil

    from curation.processes import remove_stale

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    theirs = tmp_path / f"pebr-filter-{int(dead.stdout)}-abc"
    theirs.mkdir()

    real_rmtree = shutil.rmtree

    def refuse(path, *a, **k):
        if os.fspath(path) == os.fspath(theirs):
            raise PermissionError(13, "Permission denied", str(path))
        real_rmtree(path, *a, **k)

    monkeypatch.setattr(shutil, "rmtree", refuse)
    with caplog.at_level("WARNING", logger="curation.processes"):
        assert remove_stale(tmp_path, ["pebr-filter-"]) == []
        with spill.spill_dir(str(tmp_path)) as d:
            assert d is not None  # the run still gets its own directory
    assert theirs.exists()
    assert "could not remove" in caplog.text
    assert theirs.name in caplog.text
