"""Zero-advantage filtering: which groups drop, how scored batches merge, and the trainer hook
(refill from the split; budget exhausted -> train with what there is, logged)."""

from __future__ import annotations

import math

import pytest
from train_helpers import write_split

from trainer.config import ZeroAdvConfig
from trainer.zero_adv import keep_rows, merge_rows

NAN = math.nan


@pytest.mark.parametrize(
    ("outcomes", "expected"),
    [
        ([1, 0, 0, 1], [True, True]),  # mixed groups carry signal
        ([1, 1, 1, 0], [False, True]),  # all-correct group dropped
        ([0, 0, 0, 1], [False, True]),  # all-wrong group dropped
        ([NAN, NAN, 1, 0], [True, True]),  # no known outcome: nothing says it is uninformative
        ([NAN, 1, 1, 1], [False, False]),  # the known outcomes agree
        ([0.6, 0.4, 1, 1], [True, False]),  # graded values split at the 0.5 threshold
    ],
)
def test_keep_rows_outcome(outcomes, expected):
    import torch

    rewards = torch.tensor([[o, 0.5] for o in outcomes], dtype=torch.float32)
    keep = keep_rows(rewards, 2, criterion="outcome", outcome_index=0)
    assert keep.tolist() == [e for e in expected for _ in range(2)]


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        ([[1.0, 0.2], [1.0, 0.2]], [False]),  # constant weighted total
        ([[1.0, 0.2], [1.0, 0.4]], [True]),  # the shaped part differs
        ([[1.0, NAN], [1.0, NAN]], [False]),  # NaN counts as not applicable (0), like TRL's nansum
    ],
)
def test_keep_rows_reward(rows, expected):
    import torch

    keep = keep_rows(
        torch.tensor(rows),
        2,
        criterion="reward",
        reward_weights=torch.tensor([0.9, 0.1], dtype=torch.float32),
    )
    assert keep.tolist() == [e for e in expected for _ in range(2)]


def test_keep_rows_rejects_broken_groups():
    import torch

    with pytest.raises(ValueError, match="do not form groups of 4"):
        keep_rows(torch.zeros(6, 1), 4, criterion="outcome", outcome_index=0)
    with pytest.raises(ValueError, match="criterion must be"):
        keep_rows(torch.zeros(4, 1), 2, criterion="vibes")


def _part(prompt_width, completion_width, rows, offset):
    import torch

    return {
        "prompt_ids": torch.arange(rows * prompt_width).view(rows, prompt_width) + offset,
        "prompt_mask": torch.ones(rows, prompt_width, dtype=torch.long),
        "completion_ids": torch.arange(rows * completion_width).view(rows, completion_width) + offset,
        "completion_mask": torch.ones(rows, completion_width, dtype=torch.long),
        "ref_per_token_logps": torch.full((rows, completion_width), -1.0),
        "mm_token_type_ids": torch.cat(
            [
                torch.ones(rows, prompt_width, dtype=torch.long),
                torch.zeros(rows, completion_width, dtype=torch.long),
            ],
            1,
        ),
        "advantages": torch.arange(rows, dtype=torch.float32) + offset,
        "num_items_in_batch": torch.tensor(99),
        "pixel_values": [torch.full((4, 3), float(offset + i)) for i in range(rows)],
        "image_grid_thw": [torch.tensor([[1, 2, 2]]) for _ in range(rows)],
        "num_images": [1] * rows,
        "old_per_token_logps": None,
    }


def test_merge_rows_pads_each_side_and_carries_images():
    a, b = _part(3, 2, 2, 0), _part(5, 4, 2, 100)
    merged = merge_rows([a, b], [[1], [0, 1]], pad_token_id=7)
    assert merged["prompt_ids"].tolist() == [
        [7, 7, 3, 4, 5],
        [100, 101, 102, 103, 104],
        [105, 106, 107, 108, 109],
    ]
    assert merged["prompt_mask"].tolist()[0] == [0, 0, 1, 1, 1]  # left padding
    assert merged["completion_ids"].tolist()[0] == [2, 3, 7, 7]  # right padding
    assert merged["completion_mask"].tolist()[0] == [1, 1, 0, 0]
    assert merged["ref_per_token_logps"].tolist()[0] == [-1.0, -1.0, 0.0, 0.0]
    # prompt part padded on the left, completion part on the right
    assert merged["mm_token_type_ids"].tolist()[0] == [0, 0, 1, 1, 1, 0, 0, 0, 0]
    assert merged["advantages"].tolist() == [1.0, 100.0, 101.0]
    assert [p[0, 0].item() for p in merged["pixel_values"]] == [1.0, 100.0, 101.0]
    assert merged["num_images"] == [1, 1, 1]
    assert merged["old_per_token_logps"] is None
    assert "num_items_in_batch" not in merged  # recomputed by the trainer


def test_merge_rows_refuses_what_it_cannot_merge():
    import torch

    a, b = _part(3, 2, 2, 0), _part(3, 2, 2, 0)
    a["mystery"], b["mystery"] = torch.zeros(2, 3), torch.zeros(2, 5)
    with pytest.raises(ValueError, match="cannot merge 'mystery' of different widths"):
        merge_rows([a, b], [[0], [0]], pad_token_id=0)
    del b["mystery"]
    with pytest.raises(ValueError, match="disagree on their keys"):
        merge_rows([a, b], [[0], [0]], pad_token_id=0)


# --- the trainer hook ---------------------------------------------------------------------------


class ScriptedOutcome:
    """A reward whose n-th call returns script[n] for its whole batch: "all" (every completion
    correct) or "mixed" (alternating correct / wrong, so every group of 2 is mixed)."""

    __name__ = "outcome"

    def __init__(self, script):
        self.script = list(script)
        self.calls = 0

    def __call__(self, prompts, completions, **kwargs):
        kind = self.script[min(self.calls, len(self.script) - 1)]
        self.calls += 1
        if kind == "all":
            return [1.0] * len(completions)
        return [float(i % 2) for i in range(len(completions))]


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    return write_split(tmp_path_factory.mktemp("zsplit"), "reasoning.parquet", 8, with_messages=False)


def _train(tiny_nano_dir, split, tmp_path, script, zero_adv):
    from trl import GRPOConfig

    from trainer.config import DataConfig, ModelConfig
    from trainer.data import grpo_dataset
    from trainer.grpo_trainer import PebrGRPOTrainer
    from trainer.modeling import load_for_training

    model, processor = load_for_training(ModelConfig(path=str(tiny_nano_dir)))
    data = grpo_dataset(DataConfig(train=str(split)), processor, 2048)
    reward = ScriptedOutcome(script)
    args = GRPOConfig(
        output_dir=str(tmp_path / "out"),
        use_cpu=True,
        max_steps=1,
        num_generations=2,
        per_device_train_batch_size=4,
        max_completion_length=4,
        beta=0.0,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        seed=0,
    )
    trainer = PebrGRPOTrainer(
        model=model,
        reward_funcs=[reward],
        args=args,
        train_dataset=data.dataset,
        processing_class=processor,
        zero_adv=zero_adv,
        outcome_index=0,
    )
    batches = []
    generate = trainer._generate_and_score_completions

    def capture(inputs):
        out = generate(inputs)
        batches.append(out)
        return out

    trainer._generate_and_score_completions = capture
    trainer.train()
    logs = {k: v for row in trainer.state.log_history for k, v in row.items()}
    return trainer, batches, reward, logs


def test_all_correct_batch_is_refilled(tiny_nano_dir, split, tmp_path):
    trainer, batches, reward, logs = _train(
        tiny_nano_dir, split, tmp_path, ["all", "mixed"], ZeroAdvConfig(enabled=True, max_refill_groups=8)
    )
    assert reward.calls == 2  # the first batch, then one refill round
    assert dict(trainer.zero_adv_totals) == {
        "groups_dropped": 2,
        "refill_draws": 2,
        "refill_rounds": 1,
        "unfilled_rows": 0,
        "generation_batches": 1,
    }
    (batch,) = batches
    assert batch["advantages"].shape == (4,)
    assert (batch["advantages"] != 0).all()  # only groups with signal are trained on
    assert batch["num_items_in_batch"] == batch["completion_mask"].sum()
    assert logs["zero_adv/groups_dropped"] == 2
    assert logs["zero_adv/refill_draws"] == 2


def test_exhausted_budget_trains_with_what_it_has(tiny_nano_dir, split, tmp_path):
    trainer, batches, reward, logs = _train(
        tiny_nano_dir,
        split,
        tmp_path,
        ["all"],
        ZeroAdvConfig(enabled=True, max_refill_groups=3, max_refill_rounds=4),
    )
    # round 1 draws 2 groups (budget 3 -> 1), round 2 the last one, then the budget is spent
    assert reward.calls == 3
    assert trainer.zero_adv_totals["refill_draws"] == 3
    assert trainer.zero_adv_totals["refill_rounds"] == 2
    assert trainer.zero_adv_totals["groups_dropped"] == 5
    assert trainer.zero_adv_totals["unfilled_rows"] == 4
    assert trainer.state.global_step == 1  # it trained anyway
    assert (batches[0]["advantages"] == 0).all()  # the dropped rows, as TRL would have had them
    assert logs["zero_adv/unfilled_rows"] == 4


def test_rounds_bound_the_loop(tiny_nano_dir, split, tmp_path):
    trainer, _, reward, _ = _train(
        tiny_nano_dir,
        split,
        tmp_path,
        ["all"],
        ZeroAdvConfig(enabled=True, max_refill_groups=1000, max_refill_rounds=2),
    )
    assert reward.calls == 3
    assert trainer.zero_adv_totals["refill_rounds"] == 2


def test_filter_off_is_plain_trl(tiny_nano_dir, split, tmp_path):
    trainer, batches, reward, logs = _train(
        tiny_nano_dir, split, tmp_path, ["all"], ZeroAdvConfig(enabled=False)
    )
    assert reward.calls == 1
    assert not trainer.zero_adv_totals
    assert logs["frac_reward_zero_std"] == 1.0
    assert (batches[0]["advantages"] == 0).all()
