"""The main job on the embedded default data: what ``make demo`` / ``pebr demo`` runs.

Each step writes into its own directory under ``out`` and is skipped when its output is
already complete, so a second run is fast. Steps are added here as the platform grows.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: Sizes of the demo: small enough for a 2-core CPU, large enough to show every stage.
DEMO_SFT = 2000
DEMO_RL = 1000
DEMO_TEST = 200


def run_demo(out: Path, *, seed: int = 0) -> dict[str, Any]:
    """Generate the synthetic dataset, build the small tiny model, run every later stage."""
    from curation.synth import generate_dataset
    from trainer.tiny import build_tiny_vlm

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {}

    data_dir = out / "data"
    log.info("step 1: synthetic Mulberry-shaped data -> %s", data_dir)
    summary["data"] = generate_dataset(data_dir, sft=DEMO_SFT, rl=DEMO_RL, test=DEMO_TEST, seed=seed)

    model_dir = out / "model"
    log.info("step 2: tiny Qwen2.5-VL model (preset small) -> %s", model_dir)
    summary["model"] = build_tiny_vlm(model_dir, preset="small", data_dir=data_dir, seed=seed)
    return summary
