"""Image decoding for every command: any file Pillow reads, to an RGB ``uint8`` array.

The Ray actors of ``run``/``label``, ``dsfd detect``, the training data and the report's
galleries all read pixels through :func:`decode_image` (and sizes through
:func:`read_image_size`), so boxes found by one of them are in the frame the others see.

Decoding applies the EXIF orientation and converts every mode a photo collection holds
(grayscale, 1-bit, CMYK, palette, alpha, 16-bit and 32-bit integer, float) to RGB. A file that
cannot be turned into an image raises :class:`ImageReadError` with a one-line reason that the
pipeline records in the ``error`` column; nothing here imports torch or Ray.
"""

from __future__ import annotations

import io
import os
import stat
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

DEFAULT_MAX_PIXELS = 178_956_970  # Pillow's own default MAX_IMAGE_PIXELS, stated explicitly
_RGB_DIRECT = {"1", "L", "P", "RGB", "RGBA", "RGBX", "LA", "PA", "La", "RGBa", "CMYK", "YCbCr",
               "LAB", "HSV"}
_HIGH_DEPTH = {"I", "I;16", "I;16B", "I;16L", "I;16N", "F"}
_EXIF_ORIENTATION = 0x0112
_TRANSPOSED_ORIENTATIONS = frozenset({5, 6, 7, 8})  # the ones that swap width and height


# Pillow refuses images over twice its global ``Image.MAX_IMAGE_PIXELS`` with its own message;
# our header check replaces it, so Pillow's global is lifted (one call at a time) while a
# header is parsed, and while an image is loaded when ``max_pixels`` is above Pillow's.
_PILLOW_LIMIT_LOCK = threading.RLock()


class ImageReadError(Exception):
    """An image file that cannot be decoded; ``str(error)`` is the reason, one line."""


@dataclass(frozen=True)
class DecodedImage:
    """An image ready for the detector.

    Attributes:
        pixels: ``(H, W, 3)`` uint8 RGB array, C-contiguous, writable.
        width: ``W``, the width in pixels after EXIF orientation.
        height: ``H``, the height in pixels after EXIF orientation.
    """

    pixels: np.ndarray
    width: int
    height: int


def _to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to RGB (alpha dropped, high bit depths scaled to 8 bits)."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in _HIGH_DEPTH:
        arr = np.asarray(image, dtype=np.float64)
        if mode == "F":
            peak = 1.0 if arr.size and float(np.nanmax(arr)) <= 1.0 else 255.0
        else:
            peak = 65535.0 if arr.size and float(arr.max()) > 255 else 255.0
        arr = np.nan_to_num(arr) * (255.0 / peak)
        gray = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
        return Image.fromarray(np.repeat(gray[:, :, None], 3, axis=2), mode="RGB")
    if mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if mode in _RGB_DIRECT or image.mode == "RGBA":
        try:
            return image.convert("RGB")
        except (ValueError, OSError) as exc:
            raise ImageReadError(f"unsupported image mode {mode!r}: {exc}") from exc
    raise ImageReadError(f"unsupported image mode {mode!r}")


@contextmanager
def _pillow_limit(max_pixels: int | None) -> Iterator[None]:
    """Let Pillow open (and load) images up to ``max_pixels`` pixels, None: any size.

    Our own check, made from the header right after opening, is the one in force. Pillow's
    global limit (it refuses more than twice ``Image.MAX_IMAGE_PIXELS``) is only changed,
    under a lock and restored afterwards, when the wanted limit is above what it lets
    through, so loading with the default limit runs in parallel.
    """
    limit = Image.MAX_IMAGE_PIXELS
    if limit is None or (max_pixels is not None and max_pixels <= 2 * limit):  # Pillow: > 2x
        yield
        return
    with _PILLOW_LIMIT_LOCK:
        saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, max_pixels
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def _check_file(path: str) -> None:
    """Refuse a missing path, a directory, a device or pipe, and an empty file."""
    try:
        info = os.stat(path)
    except FileNotFoundError as exc:
        raise ImageReadError(f"file not found: {path}") from exc
    except PermissionError as exc:
        raise ImageReadError(f"permission denied: {path}") from exc
    except OSError as exc:
        raise ImageReadError(f"cannot stat file: {exc}") from exc
    if stat.S_ISDIR(info.st_mode):
        raise ImageReadError(f"is a directory: {path}")
    if not stat.S_ISREG(info.st_mode):  # a FIFO would block the reader forever
        raise ImageReadError(f"not a regular file (a pipe, socket or device): {path}")
    if info.st_size == 0:
        raise ImageReadError("empty file (0 bytes)")


def _fetch(uri: str) -> bytes:
    """The bytes of an object-storage image (``s3://...``), one request; a missing or
    forbidden key becomes an :class:`ImageReadError` naming the URI."""
    from pipeline.storage import location  # pyarrow.fs only when an image is remote

    try:
        return location(uri).read_bytes()
    except (OSError, ValueError) as exc:
        raise ImageReadError(str(exc).strip().splitlines()[0] if str(exc).strip()
                             else f"cannot read {uri}") from None


def _open_checked(path: str | bytes, max_pixels: int) -> Image.Image:
    """Open ``path`` (or encoded image bytes) lazily and refuse empty files and images over
    ``max_pixels``."""
    if isinstance(path, str) and "://" in path:
        path = _fetch(path)
        if not path:
            raise ImageReadError("empty file (0 bytes)")
    if isinstance(path, bytes):
        if not path:
            raise ImageReadError("empty image (0 bytes)")
        source: str | io.BytesIO = io.BytesIO(path)
    else:
        _check_file(path)
        source = path
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with _pillow_limit(None):  # header only; the size is checked below, in one way
                image = Image.open(source)
    except FileNotFoundError as exc:
        raise ImageReadError(f"file not found: {source}") from exc
    except PermissionError as exc:
        raise ImageReadError(f"permission denied: {source}") from exc
    except UnidentifiedImageError as exc:
        raise ImageReadError("not an image (format not recognised)") from exc
    except Image.DecompressionBombError as exc:
        raise ImageReadError(f"decompression bomb: {exc}") from exc
    except OSError as exc:
        raise ImageReadError(f"cannot open image: {exc}") from exc
    width, height = image.size
    if width * height > max_pixels:
        image.close()
        raise ImageReadError(
            f"decompression bomb: {width}x{height} = {width * height} pixels over the limit "
            f"of {max_pixels}"
        )
    if width <= 0 or height <= 0:
        image.close()
        raise ImageReadError(f"degenerate image size {width}x{height}")
    return image


def decode_image(path: str | bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> DecodedImage:
    """Decode an image file to RGB with its EXIF orientation applied.

    Args:
        path: image file path, an object-storage URI (``s3://bucket/key``, read through
            :mod:`pipeline.storage`), or the encoded bytes of an image (e.g. embedded in a
            manifest).
        max_pixels: refuse images with more pixels than this (decompression-bomb guard),
            checked from the header before any pixel is decoded. It replaces Pillow's own
            limit in both directions: above ``2 * PIL.Image.MAX_IMAGE_PIXELS`` Pillow's
            global is lifted for the call (such calls then run one at a time).

    Returns:
        The decoded image; see :class:`DecodedImage`.

    Raises:
        ImageReadError: vanished, unreadable or empty file, a directory or pipe, not an
            image, truncated or corrupt data, unsupported mode, or more than ``max_pixels``
            pixels.
    """
    if max_pixels <= 0:
        raise ValueError(f"max_pixels must be > 0, got {max_pixels}")
    try:
        with _pillow_limit(max_pixels):
            image = _open_checked(path, max_pixels)
            with image:
                image.load()
                oriented = ImageOps.exif_transpose(image)
                rgb = _to_rgb(oriented)
                width, height = rgb.size
                pixels = np.array(rgb, dtype=np.uint8)  # copy: writable, C-contiguous (H, W, 3)
    except ImageReadError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageReadError(f"decompression bomb: {exc}") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageReadError(f"corrupt or truncated image: {exc}") from exc
    if pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ImageReadError(f"decoded to unexpected shape {pixels.shape}")
    return DecodedImage(pixels=pixels, width=width, height=height)


def read_image_size(path: str, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[int, int]:
    """The ``(width, height)`` that :func:`decode_image` would return, without decoding pixels.

    The size comes from the header and the EXIF orientation is applied (orientations 5 to 8
    swap width and height), so it is the frame of the decoded pixels and of every box found
    in them. The same checks as :func:`decode_image` run first.

    Args:
        path: image file path.
        max_pixels: refuse images with more pixels than this (see :func:`decode_image`).

    Returns:
        ``(width, height)`` in pixels after EXIF orientation.

    Raises:
        ImageReadError: as for :func:`decode_image`, for the reasons the header shows.
    """
    if max_pixels <= 0:
        raise ValueError(f"max_pixels must be > 0, got {max_pixels}")
    try:
        with _pillow_limit(max_pixels):
            image = _open_checked(path, max_pixels)
            with image:
                width, height = image.size
                orientation = image.getexif().get(_EXIF_ORIENTATION, 1)
    except ImageReadError:
        raise
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageReadError(f"corrupt or truncated image: {exc}") from exc
    if orientation in _TRANSPOSED_ORIENTATIONS:
        return height, width
    return width, height
