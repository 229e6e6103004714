"""Loading a model for training, and freezing its vision tower and projector.

Qwen2/2.5-VL keep the vision tower in ``model.visual`` and the projector (the patch merger)
in ``model.visual.merger``; LLaVA-style models use ``vision_tower`` and
``multi_modal_projector``. :func:`freeze_vision` knows both layouts and raises when asked to
freeze a part it cannot find, rather than training it silently.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from trainer.config import ModelConfig

log = logging.getLogger(__name__)

#: Attribute names of the vision tower (searched on the model and on ``model.model``).
VISION_TOWER_NAMES = ("visual", "vision_tower", "vision_model")
#: Attribute names of the projector: inside the vision tower (Qwen) or beside it (LLaVA).
PROJECTOR_NAMES = ("merger", "multi_modal_projector", "mm_projector")


def _dtype(name: str) -> Any:
    import torch

    return {"auto": "auto", "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[
        name
    ]


def load_for_training(config: ModelConfig) -> tuple[Any, Any]:
    """``(model, processor)`` for a stage: the model on the CPU (the trainer moves it), the
    processor with ``config``'s pixel bounds (saved with the model, so later stages inherit
    them)."""
    from transformers import AutoModelForImageTextToText

    from trainer.vlm import _hub_kwargs

    _check_path(config)
    kwargs: dict[str, Any] = {"dtype": _dtype(config.dtype), **_hub_kwargs(config.path)}
    if config.attn_implementation:
        kwargs["attn_implementation"] = config.attn_implementation
    model = AutoModelForImageTextToText.from_pretrained(config.path, **kwargs)
    return model, load_processor_for(config)


def load_processor_for(config: ModelConfig) -> Any:
    """The processor of ``config.path`` with ``config``'s pixel bounds."""
    from trainer.vlm import _hub_kwargs, load_processor

    _check_path(config)
    bounds = (("min_pixels", config.min_pixels), ("max_pixels", config.max_pixels))
    pixels = {k: v for k, v in bounds if v is not None}
    return load_processor(config.path, **_hub_kwargs(config.path), **pixels)


def _check_path(config: ModelConfig) -> None:
    from trainer.vlm import check_model_path

    if not config.path:
        raise ValueError("model.path is required: set it in the recipe or with --set model.path=DIR")
    if config.path.startswith("tiny:"):
        raise ValueError(
            f"model.path {config.path!r}: tiny:<preset> models are built by `pebr train pipeline`; for a "
            "single stage build one with `pebr model tiny --out DIR --preset nano` and set model.path=DIR"
        )
    check_model_path(config.path)


def _find(module: Any, names: tuple[str, ...]) -> tuple[str, Any] | None:
    for owner_name, owner in (("", module), ("model.", getattr(module, "model", None))):
        if owner is None:
            continue
        for name in names:
            child = getattr(owner, name, None)
            if child is not None and hasattr(child, "parameters"):
                return owner_name + name, child
    return None


def freeze_vision(model: torch.nn.Module, *, vision_tower: bool, projector: bool) -> dict[str, int]:
    """Freeze the vision tower (without its projector) and/or the projector.

    Returns parameter counts: ``frozen``, ``trainable``, ``total``.
    """
    if vision_tower or projector:
        tower = _find(model, VISION_TOWER_NAMES)
        proj = None
        if tower is not None:
            proj_inner = _find(tower[1], PROJECTOR_NAMES)
            if proj_inner is not None:
                proj = (f"{tower[0]}.{proj_inner[0]}", proj_inner[1])
        if proj is None:
            proj = _find(model, PROJECTOR_NAMES)
        if vision_tower:
            if tower is None:
                raise ValueError(
                    f"freeze_vision_tower: {type(model).__name__} has no vision tower named one of "
                    f"{list(VISION_TOWER_NAMES)}"
                )
            proj_params = {id(p) for p in proj[1].parameters()} if proj is not None else set()
            for p in tower[1].parameters():
                if id(p) not in proj_params:
                    p.requires_grad_(False)
            log.info("froze the vision tower (%s)", tower[0])
        if projector:
            if proj is None:
                raise ValueError(
                    f"freeze_projector: {type(model).__name__} has no projector named one of {list(PROJECTOR_NAMES)}"
                )
            proj[1].requires_grad_(False)
            log.info("froze the projector (%s)", proj[0])
    return parameter_counts(model)


def parameter_counts(model: torch.nn.Module) -> dict[str, int]:
    """``frozen``, ``trainable`` and ``total`` parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"frozen": total - trainable, "trainable": trainable, "total": total}
