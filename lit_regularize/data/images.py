"""One rule for turning a decoded picture of any Pillow mode into 8-bit grayscale; predict and imagedir training
both use it, so a file is encoded the same way when a run trains on it and when it predicts from it.

By mode (the bit depth the file declares decides the scale, never the picture's content):

    1, L, P, RGB, CMYK, YCbCr, ...   8 bits a channel: Pillow's ITU-R 601-2 luma (``convert("L")``)
    LA, PA, RGBA, La, RGBa, P with transparency
                                     composited over white first: transparent pixels are blank paper, as image
                                     viewers show them (dropping alpha would show a transparent background in
                                     whatever color its hidden RGB holds, usually black)
    I;16, I;16B, I;16L, I;16N        16 bits: value / 257, rounded (65535 -> 255); ``convert("L")`` would clip
                                     every value above 255 to white
    I                                32-bit integers, which is how Pillow opens 16-bit PGM / PPM / TIFF files:
                                     read as 16 bits too (value / 257), values outside 0..65535 clipped
    F                                32-bit floats: 0..1 (x 255), or 0..255 when the maximum is above 1 (the rule
                                     of float arrays in `lit_regularize.predict`); NaN is black
"""
from __future__ import annotations

from typing import Any

import numpy as np

SIXTEEN_BIT_SCALE = 257.0  # 65535 / 255: 16-bit white is 8-bit white
ALPHA_MODES = ("LA", "PA", "RGBA", "La", "RGBa")


def _has_alpha(img: Any) -> bool:
    return img.mode in ALPHA_MODES or (img.mode == "P" and "transparency" in img.info)


def _from_values(values: np.ndarray, scale: float) -> Any:
    """An 8-bit "L" image of values / scale, rounded and clipped to 0..255."""
    from PIL import Image

    a = np.nan_to_num(values.astype(np.float64) / scale, nan=0.0, posinf=255.0, neginf=0.0)
    return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), "L")


def to_gray8(img: Any) -> Any:
    """Any PIL image as an 8-bit grayscale ("L") PIL image, scaled by its mode's bit depth (see the module doc)."""
    from PIL import Image

    mode = img.mode
    if mode == "I" or mode.startswith("I;16"):
        return _from_values(np.asarray(img), SIXTEEN_BIT_SCALE)
    if mode == "F":
        values = np.asarray(img, dtype=np.float64)
        finite = values[np.isfinite(values)]
        return _from_values(values, 1.0 / 255.0 if finite.size == 0 or finite.max() <= 1.0 else 1.0)
    if _has_alpha(img):
        rgba = img.convert("RGBA")
        img = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    try:
        return img.convert("L")
    except ValueError:  # a mode Pillow converts to RGB only (e.g. LAB, HSV)
        return img.convert("RGB").convert("L")


__all__ = ["to_gray8"]
