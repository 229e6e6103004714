from __future__ import annotations

import subprocess
import sys

import pytest

from trainer.cli import run

GROUPS = ["data", "model", "curate", "rewards", "train", "eval", "explore", "review"]


def test_root_help_lists_every_group(capsys):
    assert run(["--help"]) == 0
    out = capsys.readouterr().out
    for group in [*GROUPS, "demo"]:
        assert group in out


@pytest.mark.parametrize("group", [*GROUPS, "demo"])
def test_group_help_works(group, capsys):
    assert run([group, "--help"]) == 0
    assert "Usage: pebr " + group in capsys.readouterr().out


def test_console_script_help_does_not_import_torch():
    code = (
        "import sys; from trainer.cli import run; rc = run(['--help']); "
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'heavy import'; sys.exit(rc)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_importing_packages_is_side_effect_free():
    code = (
        "import sys, threading; import curation, rewards, trainer, explorer, data_cards, "
        "curation.schema, curation.convert, rewards.sections, trainer.cli; "
        "assert threading.active_count() == 1, threading.enumerate(); "
        "assert 'torch' not in sys.modules"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_unknown_command_fails():
    assert run(["no-such-group"]) != 0
