"""The TRL adapter through a real GRPOTrainer step on a tiny text-only model built in the test."""

from __future__ import annotations

import pytest

from rewards.alignment import CLIP_ENV

CAPTION = "a red circle and a blue square"


def _tiny_lm(out):
    """A 1-layer Qwen2 causal LM with a word-level tokenizer trained on a few strings."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    words = [
        CAPTION,
        "### Image Description: ### Rationales: ### Step 1: ### The final answer is:",
        "describe the image what is the answer 1 2 3",
    ]
    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.train_from_iterator(words, trainers.WordLevelTrainer(special_tokens=["[PAD]", "[UNK]", "</s>"]))
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", eos_token="</s>"
    )
    config = Qwen2Config(
        vocab_size=tok.get_vocab_size(),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=64,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return str(out)


@pytest.mark.slow
def test_grpo_trainer_logs_every_component(tmp_path, monkeypatch):
    import torch
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from rewards.trl import reward_functions

    monkeypatch.delenv(CLIP_ENV, raising=False)
    torch.set_num_threads(1)
    model_dir = _tiny_lm(tmp_path / "lm")
    n = 4
    dataset = Dataset.from_dict(
        {
            "prompt": ["describe the image"] * n,
            "uid": [f"r{i}" for i in range(n)],
            "task": ["caption"] * n,
            "answer": [""] * n,
            "key_words": [["red circle", "blue square"]] * n,
            "reference_caption": [CAPTION] * n,
        }
    )
    funcs, weights = reward_functions(
        "pebr_stage1", overrides={"alignment.similarity": "lexical", "accuracy.caption_similarity": "lexical"}
    )
    args = GRPOConfig(
        output_dir=str(tmp_path / "out"),
        max_steps=1,
        per_device_train_batch_size=4,
        num_generations=2,
        max_completion_length=8,
        learning_rate=1e-4,
        logging_steps=1,
        report_to=[],
        use_cpu=True,
        save_strategy="no",
        reward_weights=weights,
        seed=0,
    )
    trainer = GRPOTrainer(model=model_dir, reward_funcs=funcs, args=args, train_dataset=dataset)
    trainer.train()
    logs = {k: v for entry in trainer.state.log_history for k, v in entry.items()}
    for f in funcs:
        key = f"rewards/{f.__name__}/mean"
        assert key in logs, f"{key} not logged; got {sorted(logs)}"
    # random tokens rarely write section headers: format is ~0; short completions: length is 1.0
    assert logs["rewards/pebr_stage1/length/mean"] == pytest.approx(1.0)
    assert 0.0 <= logs["rewards/pebr_stage1/keywords/mean"] <= 1.0
