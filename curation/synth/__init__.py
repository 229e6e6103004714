"""The embedded default data: a deterministic, synthetic, Mulberry-shaped visual reasoning set.

Scenes of coloured shapes (with their scene graphs) are drawn with Pillow; questions with
verifiable answers are derived from the graphs. :func:`generate_dataset` writes an SFT set in
the Mulberry/LLaMA-Factory layout (with Mulberry's kinds of defects at exact rates), an RL
question pool in PeBR's GRPO layout and the canonical schema, and a held-out test split.

Modules: :mod:`~curation.synth.config` (options), :mod:`~curation.synth.scene` (scene graphs),
:mod:`~curation.synth.render` (drawing), :mod:`~curation.synth.describe` (words),
:mod:`~curation.synth.questions` with :mod:`~curation.synth.perception` and
:mod:`~curation.synth.reasoning` (question templates), :mod:`~curation.synth.answers` (SFT
conversations), :mod:`~curation.synth.defects`, :mod:`~curation.synth.records` (one record)
and :mod:`~curation.synth.build` (the whole dataset).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from curation.synth.config import GENERATOR_VERSION, SynthConfig

if TYPE_CHECKING:
    from curation.synth.build import generate_dataset

__all__ = ["GENERATOR_VERSION", "SynthConfig", "generate_dataset"]


def __getattr__(name: str) -> Any:
    # generate_dataset pulls in Pillow and pyarrow; load it on first use only
    if name == "generate_dataset":
        from curation.synth.build import generate_dataset

        return generate_dataset
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
