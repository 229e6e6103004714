"""Speed of `pebr data synth`: 10,000 records (5,000 SFT, 4,000 RL, 1,000 test) by default.

Baseline, measured in the same run: a bare Pillow loop that draws the same number of images of
the same sizes (random ellipses, no questions, no scene graph) and writes them as JPEG files. It
is the floor any Pillow-based generator pays; the ratio shows what questions, answers, defects,
Parquet and JSON add on top. Target from the issue: 10,000 records in well under a minute
(we aim for < 20 s on a 2-core machine).

    python benchmarks/synth_speed.py [--sft 5000 --rl 4000 --test 1000] [--workers 1 2]
"""

from __future__ import annotations

import argparse
import io
import json
import random
import shutil
import tempfile
import time
from pathlib import Path

from PIL import Image, ImageDraw

from curation.synth import generate_dataset


def baseline(n: int, root: Path, seed: int = 0) -> float:
    rng = random.Random(seed)
    start = time.perf_counter()
    for i in range(n):
        w, h = rng.randint(96, 320), rng.randint(96, 320)
        im = Image.new("RGB", (w, h), (255, 255, 255))
        pen = ImageDraw.Draw(im)
        for _ in range(6):
            x, y = rng.randint(0, w - 40), rng.randint(0, h - 40)
            pen.ellipse([x, y, x + 30, y + 30], fill=(220, 38, 38))
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=92, subsampling=0)
        path = root / f"{i // 1000:04d}" / f"{i:06d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(buf.getvalue())
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sft", type=int, default=5000)
    ap.add_argument("--rl", type=int, default=4000)
    ap.add_argument("--test", type=int, default=1000)
    ap.add_argument("--workers", type=int, nargs="*", default=[1, 2])
    args = ap.parse_args()
    n = args.sft + args.rl + args.test
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        results["baseline_pillow_loop_s"] = round(baseline(n, Path(tmp) / "baseline"), 2)
        for w in args.workers:
            out = Path(tmp) / f"synth_w{w}"
            start = time.perf_counter()
            generate_dataset(out, sft=args.sft, rl=args.rl, test=args.test, seed=0, workers=w)
            elapsed = time.perf_counter() - start
            results[f"synth_workers{w}_s"] = round(elapsed, 2)
            results[f"synth_workers{w}_vs_baseline"] = round(elapsed / results["baseline_pillow_loop_s"], 2)
            results[f"synth_workers{w}_records_per_s"] = round(n / elapsed)
            shutil.rmtree(out)
    print(json.dumps({"records": n, **results}, indent=2))


if __name__ == "__main__":
    main()
