"""Writers of good, odd and broken image files for the pipeline tests (Pillow only)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def gradient_rgb(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A deterministic ``(H, W, 3)`` uint8 test picture with structure in every channel."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([xx * 255 // max(1, width - 1), yy * 255 // max(1, height - 1),
                     (xx + yy) * 255 // max(1, width + height - 2)], axis=2)
    noise = rng.integers(0, 20, size=(height, width, 3))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def write_odd_images(folder: Path) -> dict[str, str]:
    """Write one file per case into ``folder``; return ``{name: "ok" | "error"}``.

    Good: RGB JPEG, EXIF-rotated JPEG, grayscale PNG, CMYK JPEG, palette image with
    transparency (PNG), RGBA PNG, 16-bit grayscale PNG, 1-bit PNG. Bad: zero bytes, truncated JPEG,
    text named .jpg, random bytes named .png (all names a folder dataset lists).
    """
    folder.mkdir(parents=True, exist_ok=True)
    rgb = gradient_rgb(64, 48)
    expect: dict[str, str] = {}
    Image.fromarray(rgb).save(folder / "rgb.jpg", quality=90)
    expect["rgb.jpg"] = "ok"
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    Image.fromarray(rgb).save(folder / "rotated.jpg", quality=90, exif=exif)
    expect["rotated.jpg"] = "ok"
    Image.fromarray(rgb).convert("L").save(folder / "gray.png")
    expect["gray.png"] = "ok"
    Image.fromarray(rgb).convert("CMYK").save(folder / "cmyk.jpg", quality=90)
    expect["cmyk.jpg"] = "ok"
    pal = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    pal.save(folder / "palette.png", transparency=0)
    expect["palette.png"] = "ok"
    Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 128, np.uint8)])).save(
        folder / "alpha.png")
    expect["alpha.png"] = "ok"
    deep = (rgb[:, :, 0].astype(np.uint16) * 257)
    Image.fromarray(deep).save(folder / "deep16.png")
    expect["deep16.png"] = "ok"
    Image.fromarray(rgb).convert("1").save(folder / "bilevel.png")
    expect["bilevel.png"] = "ok"
    (folder / "empty.jpg").write_bytes(b"")
    expect["empty.jpg"] = "error"
    data = (folder / "rgb.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 2])
    expect["truncated.jpg"] = "error"
    (folder / "text.jpg").write_text("this is not an image\n")
    expect["text.jpg"] = "error"
    (folder / "noise.png").write_bytes(np.random.default_rng(1).bytes(300))
    expect["noise.png"] = "error"
    return expect
