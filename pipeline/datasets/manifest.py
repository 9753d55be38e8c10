"""The manifest: what every dataset reader yields (no Ray, no torch)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ManifestEntry:
    """One image of a dataset.

    Attributes:
        image_id: the benchmark's own name for the image: ``EVENT/NAME`` for WIDER FACE (no
            extension), the fold path for FDDB (``2002/08/11/big/img_591``), the path relative
            to the root (with extension) for a folder or list.
        path: absolute or working-directory-relative path of the image file.
        width: image width in pixels when the dataset knows it without decoding, else None.
        height: image height in pixels when known, else None.
    """

    image_id: str
    path: str
    width: int | None = None
    height: int | None = None
