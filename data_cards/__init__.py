"""Hugging Face dataset card templates and the code that fills them from run reports."""

__all__: list[str] = []
