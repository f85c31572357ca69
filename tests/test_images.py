"""Issue 21: one rule turns a picture of any Pillow mode into 8-bit grayscale (data.images.to_gray8), scaled by its
bit depth, and predict and imagedir training both read image files through it.

The same picture saved in every mode must give the same 8-bit array. A tolerance of 1 level absorbs the
rounding of mode conversions (CMYK, float); clipping a 16-bit image by convert("L"), the bug, turns almost every
pixel into 255 and misses by up to 255.
"""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from lit_regularize.data.imagedir import load_imagedir, read_image
from lit_regularize.data.images import to_gray8
from lit_regularize.data.mnist import read_image_file

TOLERANCE = 1  # levels of 255; the clipped 16-bit image of the bug is off by up to 254


def picture(size: tuple[int, int] = (28, 28)) -> np.ndarray:
    """A uint8 picture using every gray level: a diagonal gradient with a bright block and a dark block."""
    h, w = size
    a = (np.add.outer(np.arange(h), np.arange(w)) * 255 // (h + w - 2)).astype(np.uint8)
    a[2:8, 3:10], a[15:20, 12:25] = 250, 5
    return a


def in_mode(a: np.ndarray, mode: str) -> Image.Image:
    """The picture a as an image of mode, each in that mode's own scale (16 bits: x 257, float: 0..1)."""
    h, w = a.shape
    if mode in ("I;16", "I;16L", "I;16B"):
        dtype = ">u2" if mode == "I;16B" else "<u2"
        return Image.frombytes(mode, (w, h), (a.astype(np.uint16) * 257).astype(dtype).tobytes())
    if mode == "I":
        return Image.fromarray(a.astype(np.int32) * 257, "I")  # how Pillow opens 16-bit PGM/PPM
    if mode == "F":
        return Image.fromarray(a.astype(np.float32) / 255, "F")
    if mode == "P":  # a gray palette: index i is gray i
        p = Image.fromarray(a, "P")
        p.putpalette([v for i in range(256) for v in (i, i, i)])
        return p
    return Image.fromarray(a, "L").convert(mode)


MODES = ["L", "LA", "P", "RGB", "RGBA", "CMYK", "I;16", "I;16B", "I;16L", "I", "F"]
# file formats that store each mode (PNG and TIFF give back I;16L as I;16; TIFF keeps CMYK, I;16B, I and F)
FORMATS = {"L": "PNG", "LA": "PNG", "P": "PNG", "RGB": "PNG", "RGBA": "PNG", "CMYK": "TIFF", "I;16": "PNG",
           "I;16B": "TIFF", "I;16L": "TIFF", "I": "TIFF", "F": "TIFF"}


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_gives_the_same_8bit_picture(mode):
    a = picture()
    img = in_mode(a, mode)
    assert img.mode == mode
    got = np.asarray(to_gray8(img))
    assert got.dtype == np.uint8 and got.shape == a.shape
    assert np.abs(got.astype(int) - a).max() <= TOLERANCE, mode


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_saved_to_a_file_reads_back_the_same(mode, tmp_path):
    """Through a real file: what Pillow opens (a 16-bit PNG opens as I;16, a 32-bit TIFF as I) scales right, in
    predict (read_image_file) and in imagedir training (read_image) alike."""
    a = picture()
    path = tmp_path / f"pic.{FORMATS[mode].lower()}"
    in_mode(a, mode).save(path, FORMATS[mode])
    by_predict = read_image_file(path, "fashion_mnist")[0]
    by_training = read_image(path, 28)
    assert np.abs(by_predict.astype(int) - a).max() <= TOLERANCE, mode
    assert np.array_equal(by_predict, by_training), mode


def test_binary_mode_1():
    """Mode 1 holds black and white only: a black-and-white picture comes back exactly."""
    a = np.where(picture() > 127, 255, 0).astype(np.uint8)
    assert np.array_equal(np.asarray(to_gray8(Image.fromarray(a, "L").convert("1"))), a)


def test_sixteen_bit_png_is_not_clipped(tmp_path):
    """The reported case: a 16-bit PNG read with convert('L') was black and white."""
    a = picture()
    path = tmp_path / "deep.png"
    in_mode(a, "I;16").save(path)
    with Image.open(path) as im:
        clipped = np.asarray(im.convert("L"))
    assert np.abs(clipped.astype(int) - a).max() > 100  # what the bug did
    assert np.abs(read_image(path, 28).astype(int) - a).max() <= TOLERANCE


def test_float_images_in_0_255():
    """F images above 1 are read as 0..255 (the rule of float arrays), not clipped to white."""
    a = picture()
    got = np.asarray(to_gray8(Image.fromarray(a.astype(np.float32), "F")))
    assert np.abs(got.astype(int) - a).max() <= TOLERANCE


def test_transparent_pixels_are_white_everywhere(tmp_path):
    """One transparency rule for predict and training: transparent pixels are blank (white) paper."""
    rgba = np.zeros((28, 28, 4), np.uint8)  # transparent black everywhere ...
    rgba[10:18, 10:18] = (0, 0, 0, 255)  # ... but an opaque black square
    path = tmp_path / "icon.png"
    Image.fromarray(rgba, "RGBA").save(path)
    for got in (read_image_file(path, "mnist")[0], read_image(path, 28)):
        assert got[0, 0] == 255 and got[14, 14] == 0


def test_imagedir_training_reads_16bit_images_as_8bit(tmp_path):
    """The same class folders saved at 8 and at 16 bits decode to the same training images (the bug: 16-bit
    folders trained on clipped black-and-white pictures; test accuracy fell from 1.00 to 0.50)."""
    for depth in (8, 16):
        for c, (lo, hi) in (("dark", (0, 90)), ("light", (140, 255))):
            d = tmp_path / f"d{depth}" / "train" / c
            d.mkdir(parents=True)
            for i in range(4):
                a = np.random.RandomState(i + (100 if c == "light" else 0)).randint(lo, hi, (10, 10)).astype(np.uint8)
                (in_mode(a, "I;16") if depth == 16 else Image.fromarray(a, "L")).save(d / f"{i}.png")
    eight = load_imagedir(str(tmp_path / "d8"), "k8", 8).splits["train"][0].numpy()
    sixteen = load_imagedir(str(tmp_path / "d16"), "k16", 8).splits["train"][0].numpy()
    assert np.abs(eight.astype(int) - sixteen).max() <= TOLERANCE


def test_decoded_image_round_trip_in_memory():
    """A PIL image handed to predict (not a file) goes through the same rule."""
    from lit_regularize.data.mnist import prepare_image

    a = picture()
    buf = io.BytesIO()
    in_mode(a, "I;16").save(buf, "PNG")
    buf.seek(0)
    with Image.open(buf) as im:
        assert np.abs(prepare_image(im, "mnist").astype(int) - a).max() <= TOLERANCE
