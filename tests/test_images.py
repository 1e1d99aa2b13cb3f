"""Your own digit images: orientation, transparency, polarity and size are handled, never computed on wrongly."""

import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from dropcli.digits import to_mnist
from dropcli.errors import UsageError
from dropcli.images import load_image, read_gray


@pytest.fixture(scope="module")
def digit():
    from dropcli.data import load_dataset

    return (load_dataset("mnist").test.x[0].reshape(28, 28).numpy() * 255).astype(np.uint8)  # a 7, white on black


def loaded(path, invert=None):
    d = load_image(path, invert)
    return torch.from_numpy(d.x), d.inverted


def test_exif_orientation_is_applied(tmp_path, digit):
    plain = Image.fromarray(digit).resize((112, 112))
    plain.save(tmp_path / "plain.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display", as phones store portrait photos
    plain.transpose(Image.Transpose.ROTATE_90).save(tmp_path / "phone.png", exif=exif)
    assert not torch.equal(loaded(tmp_path / "phone.png", False)[0].T, loaded(tmp_path / "plain.png", False)[0])
    assert torch.equal(loaded(tmp_path / "phone.png")[0], loaded(tmp_path / "plain.png")[0])


@pytest.mark.parametrize("ink", [0, 255])
def test_ink_drawn_in_the_alpha_channel_is_seen(tmp_path, digit, ink):
    rgba = np.zeros((28, 28, 4), dtype=np.uint8)
    rgba[..., :3] = ink  # black (or white) paint everywhere; the digit's shape is its opacity
    rgba[..., 3] = digit
    Image.fromarray(rgba, "RGBA").save(tmp_path / "drawn.png")
    x, _ = loaded(tmp_path / "drawn.png")
    assert (x - loaded_plain(tmp_path, digit)).abs().max() <= 1.5 / 255  # the digit, white on black


def test_dark_ink_on_light_paper_is_inverted_unless_told(tmp_path, digit):
    Image.fromarray(255 - digit).convert("RGB").save(tmp_path / "paper.png")
    Image.fromarray(digit).save(tmp_path / "screen.png")
    x, inverted = loaded(tmp_path / "paper.png")
    assert inverted and torch.allclose(x, loaded(tmp_path / "screen.png")[0], atol=1e-6)
    assert not loaded(tmp_path / "screen.png")[1]
    told = to_mnist(read_gray(tmp_path / "paper.png"), invert=False)  # told: ink lighter than white paper, none
    assert not told.inverted and not told.x.any() and not told.found and "is --invert/--no-invert right?" in told.notes[0]
    with pytest.raises(UsageError, match=r"paper.png: no digit found: .*is --invert/--no-invert right\?$"):
        load_image(tmp_path / "paper.png", invert=False)  # refused, not predicted


def test_sixteen_bit_images_are_scaled_not_clipped(tmp_path, digit):
    Image.fromarray(digit.astype(np.uint16) * 257).save(tmp_path / "deep.png")
    x, _ = loaded(tmp_path / "deep.png")
    assert torch.allclose(x, loaded_plain(tmp_path, digit), atol=1.5 / 255)


def loaded_plain(tmp_path, digit):
    Image.fromarray(digit).save(tmp_path / "plain8.png")
    return loaded(tmp_path / "plain8.png")[0]


def png_header_only(path, width, height):
    """A PNG whose header claims width x height pixels (all a decompression bomb needs)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))


@pytest.mark.parametrize("side", [9000, 16000])
def test_huge_images_are_refused_before_decoding(tmp_path, side):
    png_header_only(tmp_path / "bomb.png", side, side)
    with pytest.raises(UsageError, match="too large"):
        load_image(tmp_path / "bomb.png")


def test_a_file_that_is_not_an_image_is_refused(tmp_path):
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(UsageError, match="is not a readable image; give a PNG or JPEG of a digit"):
        load_image(tmp_path / "notes.png")


def test_a_fifo_or_a_device_is_refused_without_reading_it(tmp_path):
    """A named pipe given as an image would block predict forever on its first read (nobody writes
    it); it and a device (/dev/zero) are refused before they are opened."""
    import os

    os.mkfifo(tmp_path / "pipe.png")
    for path in (tmp_path / "pipe.png", "/dev/zero"):
        with pytest.raises(UsageError, match="is not a regular file"):
            load_image(path)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_float_image_with_pixels_that_are_not_numbers_is_refused(tmp_path, digit, bad):
    """A float TIFF whose background is NaN (or holds one infinite pixel) would scale every pixel to
    NaN (or to 0) and be read as a blank image, predicted with a note instead of refused."""
    pixels = digit.astype(np.float32) / 255
    pixels[0, 0] = bad
    Image.fromarray(pixels, mode="F").save(tmp_path / "float.tiff")
    with pytest.raises(UsageError, match="pixels that are not numbers"):
        load_image(tmp_path / "float.tiff")
