"""pebr rewards: verifiable reward checkers (math answers, grounding IoU, captions, format,
length), their presets, and adapters for TRL and EasyR1.

Importing this package is cheap: models (CLIP, sentence embedders) load lazily on first use.
"""

__all__: list[str] = []
