"""Shared test setup: one thread per process (tiny models on 2 cores are 10-30x slower with
two threads fighting), offline Hugging Face libraries, no telemetry."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["HF_UPDATE_DOWNLOAD_COUNTS"] = "0"
os.environ.setdefault("DO_NOT_TRACK", "1")


# --- tiny models (trainer.tiny) ---------------------------------------------------------------

import pytest


@pytest.fixture(scope="session")
def tiny_nano_dir(tmp_path_factory):
    """A nano tiny Qwen2.5-VL model (built-in corpus, seed 0), built once per test session.

    Tests must not modify it; copy it first (see ``qwen_checkpoint_dir`` in tests/test_vlm.py)."""
    import torch

    from trainer.tiny import build_tiny_vlm

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("tiny") / "nano"
    build_tiny_vlm(out, preset="nano", seed=0)
    return out


@pytest.fixture(scope="session")
def tiny_nano(tiny_nano_dir):
    """``(model, processor)`` of :func:`tiny_nano_dir`, loaded once (eval mode, CPU)."""
    from trainer.vlm import load_vlm

    return load_vlm(tiny_nano_dir)
