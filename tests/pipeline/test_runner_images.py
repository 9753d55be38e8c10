"""Decoding of good, odd and broken image files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.images import ImageReadError, decode_image
from tests.pipeline.odd_images import gradient_rgb, write_odd_images


def test_every_odd_mode_decodes_to_rgb_and_bad_files_raise(tmp_path: Path) -> None:
    expect = write_odd_images(tmp_path)
    for name, status in expect.items():
        path = str(tmp_path / name)
        if status == "ok":
            image = decode_image(path)
            assert image.pixels.dtype == np.uint8
            assert image.pixels.shape == (image.height, image.width, 3), name
            assert image.pixels.flags.writeable and image.pixels.flags.c_contiguous
        else:
            with pytest.raises(ImageReadError):
                decode_image(path)


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    write_odd_images(tmp_path)
    plain = decode_image(str(tmp_path / "rgb.jpg"))
    rotated = decode_image(str(tmp_path / "rotated.jpg"))
    assert (plain.width, plain.height) == (64, 48)
    assert (rotated.width, rotated.height) == (48, 64)
    # orientation 6 = the stored picture must be turned 90 degrees clockwise
    turned = np.rot90(plain.pixels, k=-1)
    assert np.abs(turned.astype(int) - rotated.pixels.astype(int)).mean() < 3.0


def test_sixteen_bit_is_scaled_not_clipped(tmp_path: Path) -> None:
    write_odd_images(tmp_path)
    deep = decode_image(str(tmp_path / "deep16.png")).pixels
    source = gradient_rgb(64, 48)[:, :, 0]
    np.testing.assert_array_equal(deep[:, :, 0], source)
    np.testing.assert_array_equal(deep[:, :, 1], source)


def test_reasons_name_the_problem(tmp_path: Path) -> None:
    write_odd_images(tmp_path)
    cases = {"empty.jpg": "empty file", "truncated.jpg": "truncated",
             "text.jpg": "not an image", "missing.jpg": "file not found"}
    for name, words in cases.items():
        with pytest.raises(ImageReadError, match=words):
            decode_image(str(tmp_path / name))


def test_decompression_bomb_limit_is_checked_from_the_header(tmp_path: Path) -> None:
    Image.fromarray(gradient_rgb(40, 30)).save(tmp_path / "big.png")
    with pytest.raises(ImageReadError, match="decompression bomb: 40x30 = 1200 pixels"):
        decode_image(str(tmp_path / "big.png"), max_pixels=1199)
    assert decode_image(str(tmp_path / "big.png"), max_pixels=1200).width == 40
