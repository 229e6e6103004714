"""``PebrGRPOTrainer``: TRL's ``GRPOTrainer`` plus zero-advantage filtering and reward timing.

Imports TRL at module level (it defines a subclass); import it inside functions only.

**Zero-advantage filtering and TRL's batching.** TRL's dataloader yields one *generation
batch* per process: ``per_device_train_batch_size * steps_per_generation`` rows, each
prompt repeated ``num_generations`` times in consecutive rows; the global generation batch
(``generation_batch_size`` = that times the number of processes) is made of whole groups,
split across processes in order (a group may straddle two processes). TRL scores it once in
``_generate_and_score_completions`` (rewards gathered from every process, advantages per
group), then cuts it into ``steps_per_generation`` slices and reuses it for
``num_iterations`` passes. The filter hooks exactly that method, so it runs once per
generation batch and never changes its size:

1. TRL generates and scores the batch (rewards of every process are known everywhere);
2. groups whose outcome is all-equal are marked dropped, identically on every process;
3. while some process lacks rows and the budget allows, a refill round draws fresh prompts
   from the training split (the same draws on every process: seeded by the run seed, the
   global step and the round), enough whole groups that every process gets as many rows as
   the neediest process lacks, and has TRL generate and score them like any batch;
4. each process keeps its kept rows, the first ones up to its local batch size; when the
   budget ran out (``max_refill_groups`` extra prompts or ``max_refill_rounds`` rounds per
   generation batch) the missing rows are filled with dropped rows, which have zero
   advantage and train only the KL term, exactly what TRL would have done with them.

Advantages are computed by TRL within each scored round, per group, before rows move, so a
row trains on the same advantage wherever it ends up. TRL's own metrics (rewards per
function, ``frac_reward_zero_std``) are logged for every scored round, refills included;
the filter adds ``zero_adv/groups_dropped``, ``zero_adv/refill_draws``,
``zero_adv/refill_rounds`` and ``zero_adv/unfilled_rows`` (each per generation batch,
averaged over the logging window by TRL). The loop ends after at most
``max_refill_rounds`` rounds, each drawing at least one group from a finite budget.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections import Counter
from typing import Any

import torch
from trl import GRPOTrainer
from trl.trainer.utils import split_pixel_values_by_grid, unsplit_pixel_values_by_grid

from trainer.config import ZeroAdvConfig
from trainer.zero_adv import keep_rows, merge_rows

log = logging.getLogger(__name__)


class PebrGRPOTrainer(GRPOTrainer):
    """``GRPOTrainer`` with optional zero-advantage filtering (see the module docstring).

    Extra keyword arguments: ``zero_adv`` (:class:`~trainer.config.ZeroAdvConfig`) and
    ``outcome_index`` (the reward function whose values are the outcome, for
    ``criterion="outcome"``). Every reward computation is timed and logged as
    ``timing/rewards_seconds``.
    """

    def __init__(
        self,
        *args: Any,
        zero_adv: ZeroAdvConfig | None = None,
        outcome_index: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.zero_adv = zero_adv or ZeroAdvConfig()
        self.outcome_index = outcome_index
        self.zero_adv_totals: Counter[str] = Counter()
        self._last_rewards_per_func: torch.Tensor | None = None
        if self.zero_adv.enabled:
            if self.zero_adv.criterion == "outcome" and outcome_index is None:
                raise ValueError("zero_adv criterion 'outcome' needs an outcome reward function")
            if not hasattr(self.train_dataset, "__getitem__") or not hasattr(self.train_dataset, "__len__"):
                raise ValueError("zero_adv filtering refills from the split: it needs a map-style dataset")

    # -- hooks ------------------------------------------------------------------------------

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        start = time.perf_counter()
        rewards = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        mode = "train" if self.model.training else "eval"
        self._metrics[mode]["timing/rewards_seconds"].append(time.perf_counter() - start)
        self._last_rewards_per_func = rewards  # gathered over every process
        return rewards

    def _generate_and_score_completions(self, inputs):
        if not self.zero_adv.enabled or not self.model.training:
            return super()._generate_and_score_completions(inputs)
        return self._generate_filtered(inputs)

    # -- filtering --------------------------------------------------------------------------

    def _keep(self) -> torch.Tensor:
        return keep_rows(
            self._last_rewards_per_func.detach().cpu(),
            self.num_generations,
            criterion=self.zero_adv.criterion,
            outcome_index=self.outcome_index,
            correct_threshold=self.zero_adv.correct_threshold,
            reward_weights=self.reward_weights.detach().cpu(),
        )

    def _draw(self, n_groups: int, round_index: int) -> list[int]:
        # The same draws on every process: seeded by values every process shares.
        rng = random.Random(f"pebr-refill/{self.args.seed}/{self.state.global_step}/{round_index}")
        size = len(self.train_dataset)
        if n_groups <= size:
            return rng.sample(range(size), n_groups)
        return [rng.randrange(size) for _ in range(n_groups)]

    def _generate_filtered(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        cfg = self.zero_adv
        procs, rank = self.accelerator.num_processes, self.accelerator.process_index
        group = self.num_generations
        local = len(inputs)

        first = super()._generate_and_score_completions(inputs)
        keep = self._keep()
        parts = [split_pixel_values_by_grid(first)]
        masks = [keep[rank * local : (rank + 1) * local]]
        have = keep.view(procs, local).sum(dim=1)
        dropped = int((~keep).sum()) // group
        # groups per refill round must split into equal row counts on every process
        unit = procs // math.gcd(procs, group)
        budget, draws, rounds = cfg.max_refill_groups, 0, 0
        while rounds < cfg.max_refill_rounds:
            need = int((local - have).clamp(min=0).max())
            if need == 0:
                break
            n_groups = math.ceil(math.ceil(need * procs / group) / unit) * unit
            n_groups = min(n_groups, budget - budget % unit)
            if n_groups <= 0:
                break
            rows = [i for i in self._draw(n_groups, rounds) for _ in range(group)]
            per_proc = len(rows) // procs
            refill_inputs = [self.train_dataset[i] for i in rows[rank * per_proc : (rank + 1) * per_proc]]
            scored = super()._generate_and_score_completions(refill_inputs)
            keep_r = self._keep()
            parts.append(split_pixel_values_by_grid(scored))
            masks.append(keep_r[rank * per_proc : (rank + 1) * per_proc])
            have = have + keep_r.view(procs, per_proc).sum(dim=1)
            dropped += int((~keep_r).sum()) // group
            budget -= n_groups
            draws += n_groups
            rounds += 1

        picks: list[list[int]] = [[] for _ in parts]
        taken = 0
        for k, mask in enumerate(masks):
            rows_k = mask.nonzero().flatten().tolist()[: local - taken]
            picks[k].extend(rows_k)
            taken += len(rows_k)
        unfilled = local - taken
        if unfilled:
            # Budget spent: train on dropped rows of the first batch (zero advantage), as TRL would.
            picks[0].extend((~masks[0]).nonzero().flatten().tolist()[:unfilled])
        merged = merge_rows(parts, picks, pad_token_id=self._tokenizer.pad_token_id)
        loss_mask = merged["completion_mask"]
        if merged.get("tool_mask") is not None:
            loss_mask = loss_mask * merged["tool_mask"]
        merged["num_items_in_batch"] = self.accelerator.gather(loss_mask.sum()).sum()

        unfilled_all = int(
            self.accelerator.gather(torch.tensor([unfilled], device=self.accelerator.device)).sum()
        )
        stats = {
            "groups_dropped": dropped,
            "refill_draws": draws,
            "refill_rounds": rounds,
            "unfilled_rows": unfilled_all,
        }
        for name, value in stats.items():
            self._metrics["train"][f"zero_adv/{name}"].append(float(value))
            self.zero_adv_totals[name] += value
        self.zero_adv_totals["generation_batches"] += 1
        if unfilled_all and self.accelerator.is_main_process:
            log.info(
                "zero-adv filter: refill budget spent with %d row(s) short; they train with zero advantage",
                unfilled_all,
            )
        return unsplit_pixel_values_by_grid(merged)
