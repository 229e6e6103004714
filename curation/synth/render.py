"""Draw a scene with Pillow and encode it.

Digits use Pillow's bundled default font (``ImageFont.load_default(size=...)``, a scalable
FreeType font since Pillow 10.1), so rendering needs no font file and is the same on every
machine with the same Pillow build.
"""

from __future__ import annotations

import io
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFont

from curation.synth.config import SynthConfig
from curation.synth.scene import Scene, polygon

#: Dark text on light fills, light text on dark fills (ITU-R BT.601 luma threshold).
_LUMA_SPLIT = 140
_DARK, _LIGHT = (0, 0, 0), (255, 255, 255)


@lru_cache(maxsize=64)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except ImportError:  # Pillow built without FreeType: one fixed-size bitmap font
        return ImageFont.load_default()


def _text_color(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    r, g, b = rgb
    return _DARK if 0.299 * r + 0.587 * g + 0.114 * b > _LUMA_SPLIT else _LIGHT


def draw(scene: Scene, cfg: SynthConfig) -> Image.Image:
    """The scene as an RGB image of ``scene.width`` x ``scene.height`` pixels."""
    image = Image.new("RGB", (scene.width, scene.height), dict(cfg.backgrounds)[scene.background])
    pen = ImageDraw.Draw(image)
    for obj in scene.objects:
        fill = cfg.rgb(obj.color)
        if obj.shape == "circle":
            pen.ellipse(obj.bbox, fill=fill)
        elif obj.shape == "square":
            pen.rectangle(obj.bbox, fill=fill)
        else:
            pen.polygon(polygon(obj.shape, obj.bbox), fill=fill)
        if obj.digit is not None:
            cx, cy = obj.center
            if obj.shape == "triangle":  # the widest part of a triangle is near its base
                cy = obj.bbox[1] + 0.66 * obj.side
            pen.text(
                (cx, cy), str(obj.digit), font=_font(obj.font_size()), fill=_text_color(fill), anchor="mm"
            )
    return image


def encode(image: Image.Image, cfg: SynthConfig) -> bytes:
    """Encode deterministically (no timestamps or random metadata in either format)."""
    buf = io.BytesIO()
    if cfg.image_format == "JPEG":
        # 4:4:4 keeps the colours of 16 px objects from bleeding into their neighbours
        image.save(buf, "JPEG", quality=cfg.jpeg_quality, subsampling=0)
    else:
        image.save(buf, "PNG", compress_level=6)
    return buf.getvalue()


def extension(cfg: SynthConfig) -> str:
    return "jpg" if cfg.image_format == "JPEG" else "png"
