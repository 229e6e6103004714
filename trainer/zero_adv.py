"""Online filtering of zero-advantage groups: which groups to drop, and merging scored batches.

GRPO's advantage is a completion's reward minus its group's mean. A group whose completions
all have the same outcome (all correct, all wrong) teaches nothing about correctness; TRL
trains on it anyway and only counts it (``frac_reward_zero_std``). The trainer in
:mod:`trainer.grpo` drops such groups after scoring and refills the batch with groups of
fresh prompts; this module holds the two pure pieces of that:

- :func:`keep_rows`: per completion, whether its group carries signal (``criterion``
  ``"outcome"``: correct/wrong is not the same for the whole group; ``"reward"``: the
  weighted total is not constant);
- :func:`merge_rows`: rows picked from several outputs of TRL's
  ``_generate_and_score_completions`` as one output of the same layout (prompt-side tensors
  padded on the left, completion-side tensors on the right, per-row image tensors carried).

Advantages are computed by TRL inside each scored batch, per group, before any row is
moved, so moving rows between batches does not change what a row trains on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

#: Tensors of shape (rows, prompt length), left-padded by TRL.
PROMPT_SIDE = ("prompt_ids", "prompt_mask")
#: Tensors of shape (rows, completion length), right-padded by TRL.
COMPLETION_SIDE = (
    "completion_ids",
    "completion_mask",
    "old_per_token_logps",
    "ref_per_token_logps",
    "sampling_per_token_logps",
    "importance_sampling_ratio",
    "tool_mask",
)
#: Tensors of shape (rows, prompt + completion length).
FULL_SEQUENCE = ("token_type_ids", "mm_token_type_ids")
#: Recomputed after merging (a global count of loss tokens).
RECOMPUTED = ("num_items_in_batch",)


def keep_rows(
    rewards_per_func: torch.Tensor,
    num_generations: int,
    *,
    criterion: str,
    outcome_index: int | None = None,
    correct_threshold: float = 0.5,
    reward_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """A boolean per completion (rows of ``rewards_per_func``, groups of ``num_generations``
    consecutive rows): True where the completion's group carries signal.

    ``"outcome"``: a group is dropped when every completion whose outcome is known
    (non-NaN value of reward function ``outcome_index``) is correct, or every one is wrong;
    a group with no known outcome is kept (nothing says it is uninformative).
    ``"reward"``: a group is dropped when its weighted total reward has zero spread.
    """
    import torch

    rows = rewards_per_func.shape[0]
    if rows % num_generations:
        raise ValueError(f"{rows} completions do not form groups of {num_generations}")
    if criterion == "outcome":
        if outcome_index is None:
            raise ValueError("criterion 'outcome' needs the index of the outcome reward function")
        values = rewards_per_func[:, outcome_index].view(-1, num_generations)
        known = ~torch.isnan(values)
        correct = (values >= correct_threshold) & known
        wrong = (values < correct_threshold) & known
        all_correct = (correct | ~known).all(dim=1)
        all_wrong = (wrong | ~known).all(dim=1)
        drop = known.any(dim=1) & (all_correct | all_wrong)
    elif criterion == "reward":
        if reward_weights is None:
            raise ValueError("criterion 'reward' needs the reward weights")
        weighted = rewards_per_func * reward_weights.to(rewards_per_func.device).unsqueeze(0)
        total = torch.nan_to_num(weighted, nan=0.0).sum(dim=1).view(-1, num_generations)
        spread = total.max(dim=1).values - total.min(dim=1).values
        drop = torch.isclose(spread, torch.zeros_like(spread))
    else:
        raise ValueError(f"criterion must be 'outcome' or 'reward', got {criterion!r}")
    return (~drop).repeat_interleave(num_generations)


def _pad(tensors: Sequence[torch.Tensor], value: float, side: str) -> torch.Tensor:
    import torch

    width = max(t.shape[1] for t in tensors)
    out = []
    for t in tensors:
        missing = width - t.shape[1]
        if missing:
            filler = torch.full((t.shape[0], missing, *t.shape[2:]), value, dtype=t.dtype, device=t.device)
            t = torch.cat([filler, t] if side == "left" else [t, filler], dim=1)
        out.append(t)
    return torch.cat(out, dim=0)


def merge_rows(
    parts: Sequence[Mapping[str, Any]],
    picks: Sequence[Sequence[int]],
    *,
    pad_token_id: int,
) -> dict[str, Any]:
    """Rows ``picks[k]`` of each ``parts[k]`` as one batch, in part order.

    ``parts`` are outputs of ``_generate_and_score_completions`` after TRL's
    ``split_pixel_values_by_grid`` (per-row image tensors are lists). Keys in
    :data:`RECOMPUTED` are left out; the caller recomputes them. A 2-D tensor of a kind this
    module does not know is merged only when its widths agree; otherwise a ``ValueError``
    names it.
    """
    import torch

    if len(parts) != len(picks) or not parts:
        raise ValueError("merge_rows needs one list of picked rows per part")
    keys = list(parts[0])
    for k, part in enumerate(parts[1:], start=1):
        if set(part) != set(keys):
            raise ValueError(
                f"scored batches disagree on their keys: {sorted(keys)} vs {sorted(part)} (part {k})"
            )
    index = [torch.tensor(list(rows), dtype=torch.long) for rows in picks]
    merged: dict[str, Any] = {}
    for key in keys:
        if key in RECOMPUTED:
            continue
        values = [part[key] for part in parts]
        if all(v is None for v in values):
            merged[key] = None
            continue
        if any(v is None for v in values):
            raise ValueError(f"scored batches disagree on {key!r}: present in some, None in others")
        first = values[0]
        if isinstance(first, list):
            merged[key] = [v[i] for v, rows in zip(values, picks, strict=True) for i in rows]
        elif isinstance(first, torch.Tensor) and first.ndim == 0:
            merged[key] = first
        elif isinstance(first, torch.Tensor) and first.ndim == 1:
            merged[key] = torch.cat([v[ix.to(v.device)] for v, ix in zip(values, index, strict=True)])
        elif isinstance(first, torch.Tensor):
            rows = [v[ix.to(v.device)] for v, ix in zip(values, index, strict=True)]
            if key in PROMPT_SIDE:
                merged[key] = _pad(rows, pad_token_id if key == "prompt_ids" else 0, "left")
            elif key in COMPLETION_SIDE:
                fill = pad_token_id if key == "completion_ids" else (1 if key == "tool_mask" else 0)
                merged[key] = _pad(rows, fill, "right")
            elif key in FULL_SEQUENCE:
                widths = [part["prompt_ids"].shape[1] for part in parts]
                heads = [r[:, :w] for r, w in zip(rows, widths, strict=True)]
                tails = [r[:, w:] for r, w in zip(rows, widths, strict=True)]
                merged[key] = torch.cat([_pad(heads, 0, "left"), _pad(tails, 0, "right")], dim=1)
            elif len({r.shape[1:] for r in rows}) == 1:
                merged[key] = torch.cat(rows)
            else:
                raise ValueError(
                    f"cannot merge {key!r} of different widths across scored batches; "
                    "disable zero_adv filtering for this model"
                )
        else:
            raise ValueError(f"cannot merge {key!r} of type {type(first).__name__} across scored batches")
    return merged
