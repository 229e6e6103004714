"""pebr trainer: TRL-based SFT warm-up and two-stage GRPO, tiny local vision-language models,
and the ``pebr`` command line.

Importing this package does not import torch or transformers; :mod:`trainer.vlm` does.
"""

__all__: list[str] = []
