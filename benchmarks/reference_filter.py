"""A faithful re-implementation of PeBR-R1's SFT data filter, the baseline of ``bench_filter.py``.

The algorithm (see /work/shared/bench/README.md): ``json.load`` the whole file; for each record
drop it if an assistant message's ``.lower()`` contains "let me rethink it", else for each image
drop it if the file is missing, ``PIL.Image.open`` fails, or its width or height is under 28;
write the kept records with ``json.dump(kept, indent=2, ensure_ascii=False)``.

Usage: python benchmarks/reference_filter.py INPUT.json IMAGE_ROOT OUTPUT.json
"""

from __future__ import annotations

import json
import os
import sys

from PIL import Image

PHRASE = "let me rethink it"
MIN_SIDE = 28


def keep(record: dict, image_root: str) -> bool:
    for message in record["messages"]:
        if message["role"] == "assistant" and PHRASE in message["content"].lower():
            return False
    images = record.get("images") or []
    if isinstance(images, str):
        images = [images]
    for rel in images:
        path = os.path.join(image_root, rel)
        if not os.path.exists(path):
            return False
        try:
            with Image.open(path) as im:
                width, height = im.size
        except Exception:  # noqa: BLE001 - the reference drops anything Pillow cannot open
            return False
        if width < MIN_SIDE or height < MIN_SIDE:
            return False
    return True


def main(argv: list[str]) -> int:
    src, image_root, dst = argv
    with open(src, encoding="utf-8") as f:
        data = json.load(f)
    kept = [r for r in data if keep(r, image_root)]
    with open(dst, "w", encoding="utf-8") as f:
        json.dump(kept, f, indent=2, ensure_ascii=False)
    print(json.dumps({"input": len(data), "kept": len(kept)}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
