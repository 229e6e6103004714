"""Build time of the tiny presets and generate latency of one image + question.

Baseline: transformers' own ``model.generate(**processor(...))`` on the same prompt, measured
in the same run, so the ratio shows the overhead of :func:`trainer.vlm.generate` (chat
template, decoding, finish reasons). Run from the repository root::

    OMP_NUM_THREADS=1 python benchmarks/tiny_generate.py --preset small --new-tokens 64
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path


def _median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small", choices=["nano", "small"])
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--image-size", type=int, nargs=2, default=(336, 252), metavar=("W", "H"))
    args = parser.parse_args()

    import torch
    from PIL import Image

    torch.set_num_threads(args.threads)
    from trainer.tiny import build_tiny_vlm
    from trainer.vlm import chat_messages, generate, load_vlm

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        summary = build_tiny_vlm(Path(tmp) / "model", preset=args.preset, seed=0)
        build_s = time.perf_counter() - start
        model, processor = load_vlm(Path(tmp) / "model")

    image = Image.new("RGB", tuple(args.image_size), "red")
    question = "How many red circles are in the image? Answer with a number."
    text = processor.apply_chat_template(
        chat_messages(question, 1), tokenize=False, add_generation_prompt=True
    )

    def baseline() -> None:
        inputs = processor(text=[text], images=[image], return_tensors="pt")
        with torch.inference_mode():
            model.generate(
                **inputs, max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, do_sample=False
            )

    def ours() -> None:
        # min_new_tokens on both sides: exactly --new-tokens tokens, whatever the random weights emit
        generate(
            model,
            processor,
            [image],
            question,
            max_new_tokens=args.new_tokens,
            min_new_tokens=args.new_tokens,
        )

    base_s = _median_seconds(baseline, args.repeats)
    ours_s = _median_seconds(ours, args.repeats)
    inputs = processor(text=[text], images=[image], return_tensors="pt")
    print(
        json.dumps(
            {
                "preset": args.preset,
                "parameters": summary["parameters"],
                "build_seconds": round(build_s, 2),
                "prompt_tokens": int(inputs["input_ids"].shape[1]),
                "image_tokens": int((inputs["input_ids"] == model.config.image_token_id).sum()),
                "new_tokens": args.new_tokens,
                "threads": args.threads,
                "generate_seconds": round(ours_s, 4),
                "tokens_per_second": round(args.new_tokens / ours_s, 1),
                "baseline_hf_generate_seconds": round(base_s, 4),
                "ratio_vs_baseline": round(ours_s / base_s, 3),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
