"""pebr curation: the canonical record schema, converters, the synthetic dataset and the
Polars/Arrow pipelines that filter data, score difficulty and build training splits.

Importing this package is cheap: it loads no model, starts no server and touches no network.
"""

__all__: list[str] = []
