"""FDDB image sizes: the size table (``name width height``) and sizes read from image headers."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from pipeline.datasets.fddb.text import check_image_id, read_lines, write_text_lines

IMAGE_EXT = ".jpg"


def read_image_sizes_tsv(path: str | os.PathLike[str]) -> dict[str, tuple[int, int]]:
    """Read a size table: a header line, then ``name<TAB>width<TAB>height`` per image.

    Returns:
        image id -> (width, height) in pixels.
    """
    sizes: dict[str, tuple[int, int]] = {}
    lines = read_lines(path)
    if not lines:
        raise ValueError(f"{path}: empty size table; expected a header 'name width height'")
    header = lines[0].split("\t") if "\t" in lines[0] else lines[0].split()
    if [h.strip().lower() for h in header[:3]] != ["name", "width", "height"]:
        raise ValueError(f"{path}:1: expected the header 'name width height', got {lines[0]!r}")
    for line_no, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        parts = line.split("\t") if "\t" in line else line.split()
        try:
            name, width, height = parts[0].strip(), int(parts[1]), int(parts[2])
        except (IndexError, ValueError):
            raise ValueError(
                f"{path}:{line_no}: expected 'name<TAB>width<TAB>height' with integer sizes, "
                f"got {line!r}"
            ) from None
        if width <= 0 or height <= 0:
            raise ValueError(f"{path}:{line_no}: sizes must be positive, got {line!r}")
        sizes[name] = (width, height)
    return sizes


def write_image_sizes_tsv(
    path: str | os.PathLike[str], sizes: Mapping[str, tuple[int, int]]
) -> None:
    """Write a size table (header ``name width height``, tab separated) in mapping order."""
    lines = ["name\twidth\theight"]
    lines += [f"{check_image_id(k)}\t{int(w)}\t{int(h)}" for k, (w, h) in sizes.items()]
    write_text_lines(Path(path), lines)


def read_image_sizes_from_dir(
    image_dir: str | os.PathLike[str], image_ids: Sequence[str], ext: str = IMAGE_EXT
) -> dict[str, tuple[int, int]]:
    """Sizes of ``image_dir/<image_id><ext>`` read from the file headers (no decode), by the
    project's one decoder (:func:`pipeline.images.read_image_size`: the frame of the boxes).

    Raises:
        FileNotFoundError: an image is missing (the official program needs every image too).
        pipeline.images.ImageReadError: an image cannot be read (one line naming it).
    """
    from pipeline.images import read_image_size

    sizes: dict[str, tuple[int, int]] = {}
    for image_id in image_ids:
        path = Path(image_dir) / f"{image_id}{ext}"
        if not path.is_file():
            raise FileNotFoundError(f"image of {image_id!r} not found: {path}")
        sizes[image_id] = read_image_size(str(path))
    return sizes
