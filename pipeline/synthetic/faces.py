"""Drawing of one synthetic face, and of face-like things that are not faces (numpy + Pillow).

A face is drawn large (supersampled) with Pillow: a head ellipse in a skin tone, a hair cap,
eyes with irises, brows, a nose, a mouth, optional glasses and beard, and a soft shading; or,
for a share of faces, one of the 100 real 25x25 face crops that scikit-image ships
(``skimage.data.lfw_subset()``), tinted to a skin tone inside an elliptical mask. It is then
rotated (roll), reduced to its target size, lit and blurred. The result carries the exact
pixel mask of the face, from which the annotation box is taken, and the ellipse fitted to the
head, from which the FDDB annotation is taken.

Nothing here draws on a whole image; :mod:`pipeline.synthetic.scene` composes scenes.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

RGB = tuple[int, int, int]

SKIN_TONES: tuple[RGB, ...] = (
    (255, 224, 196),
    (241, 194, 167),
    (234, 192, 134),
    (224, 172, 138),
    (198, 134, 103),
    (161, 102, 76),
    (121, 77, 55),
    (89, 58, 43),
)
HAIR_COLORS: tuple[RGB, ...] = (
    (20, 16, 14),
    (45, 30, 22),
    (90, 60, 35),
    (150, 110, 60),
    (210, 180, 120),
    (120, 120, 120),
    (205, 205, 200),
    (130, 50, 25),
)
IRIS_COLORS: tuple[RGB, ...] = ((60, 40, 20), (40, 80, 120), (60, 100, 60), (30, 25, 20))

NUM_PHOTO_FACES = 100  # lfw_subset(): images 0..99 are faces, 100..199 are not
MIN_DRAW_HEIGHT = 48  # faces are drawn at least this tall before reduction (anti-aliasing)


@functools.lru_cache(maxsize=1)
def lfw_crops() -> np.ndarray:
    """The 200 grayscale 25x25 crops of ``skimage.data.lfw_subset()``.

    Returns:
        (200, 25, 25) uint8 array; rows 0..99 are faces, rows 100..199 are non-faces.
    """
    from skimage.data import lfw_subset  # shipped with scikit-image, nothing is downloaded

    crops = np.asarray(lfw_subset(), dtype=np.float64)
    return np.clip(np.round(crops * 255.0), 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class FaceLook:
    """How one face looks, independent of its size and placement.

    Attributes:
        skin: skin RGB.
        hair: hair RGB, or None for a bald head.
        hairline: sine of the hairline angle above the head centre, 0.35..0.75.
        iris: iris RGB.
        width_ratio: head width / head height before pose squash, 0.7..0.86.
        yaw: -1..1; turns the head (narrower head, features shifted to one side).
        exaggerated: an exaggerated expression (open mouth, raised brows).
        glasses: draws glasses.
        beard: draws a beard in the hair colour.
        photo: index of a real face crop (0..99) to use instead of drawn features, or None.
    """

    skin: RGB
    hair: RGB | None
    hairline: float
    iris: RGB
    width_ratio: float
    yaw: float
    exaggerated: bool
    glasses: bool
    beard: bool
    photo: int | None


@dataclass(frozen=True)
class FacePatch:
    """One rendered face, ready to composite.

    Attributes:
        rgba: (h, w, 4) uint8 premultiplied-free RGBA; alpha 0 outside the face (and its blur).
        mask: (h, w) bool, the face's own pixels (alpha >= 0.5 before blur).
        box_xywh: (x, y, w, h) int pixels of the tight box around ``mask`` in patch pixels.
        ellipse: (ra, rb, angle, cx, cy) of the head in patch pixels: semi-axes (ra >= rb),
            angle of the major axis in radians (image axes, y down), centre (pixel centres).
    """

    rgba: np.ndarray
    mask: np.ndarray
    box_xywh: tuple[int, int, int, int]
    ellipse: tuple[float, float, float, float, float]


def _jitter(rng: np.random.Generator, color: RGB, amount: int) -> RGB:
    values = np.clip(np.asarray(color) + rng.integers(-amount, amount + 1, size=3), 0, 255)
    return (int(values[0]), int(values[1]), int(values[2]))


def _pick(rng: np.random.Generator, palette: tuple[RGB, ...]) -> RGB:
    return palette[int(rng.integers(len(palette)))]


def sample_face_look(
    rng: np.random.Generator, *, yaw: float, exaggerated: bool, allow_photo: bool
) -> FaceLook:
    """Draw a random look (skin, hair, accessories) for a face with the given pose/expression.

    Args:
        rng: the random source.
        yaw: head turn in -1..1 (0 frontal).
        exaggerated: whether the expression is exaggerated.
        allow_photo: whether a real face crop may be used (only sensible for faces >= ~12 px).
    """
    photo = int(rng.integers(NUM_PHOTO_FACES)) if allow_photo and rng.random() < 0.25 else None
    return FaceLook(
        skin=_jitter(rng, _pick(rng, SKIN_TONES), 10),
        hair=None if rng.random() < 0.1 else _jitter(rng, _pick(rng, HAIR_COLORS), 8),
        hairline=float(rng.uniform(0.35, 0.75)),
        iris=_pick(rng, IRIS_COLORS),
        width_ratio=float(rng.uniform(0.7, 0.86)),
        yaw=float(yaw),
        exaggerated=bool(exaggerated),
        glasses=bool(rng.random() < 0.1),
        beard=bool(rng.random() < 0.1),
        photo=photo,
    )


def _oval(cx: float, cy: float, rx: float, ry: float) -> list[float]:
    return [cx - rx, cy - ry, cx + rx, cy + ry]


def _scale(color: RGB, factor: tuple[float, float, float]) -> RGB:
    return (
        int(min(255, color[0] * factor[0])),
        int(min(255, color[1] * factor[1])),
        int(min(255, color[2] * factor[2])),
    )


def _draw_eyes(
    draw: ImageDraw.ImageDraw, look: FaceLook, cx: float, cy: float, rx: float, ry: float
) -> None:
    """Eyes, brows and glasses around the feature centre (cx, cy) of a head of radii rx, ry."""
    brow = look.hair if look.hair is not None else _scale(look.skin, (0.45, 0.4, 0.4))
    eye_y = cy - 0.12 * ry
    raise_ = 0.08 * ry if look.exaggerated else 0.0
    for side in (-1, 1):
        near = 1.0 - 0.5 * max(0.0, -side * look.yaw)  # the eye turned away looks narrower
        ex = cx + side * 0.36 * rx * (1.0 - 0.3 * abs(look.yaw))
        ew, eh = 0.16 * rx * near, 0.075 * ry * (1.3 if look.exaggerated else 1.0)
        draw.ellipse(_oval(ex, eye_y, ew, eh), fill=(245, 245, 240))
        iris_x = ex + 0.35 * ew * look.yaw
        draw.ellipse(_oval(iris_x, eye_y, 0.6 * eh, 0.9 * eh), fill=look.iris)
        draw.ellipse(_oval(iris_x, eye_y, 0.3 * eh, 0.45 * eh), fill=(10, 10, 10))
        by = eye_y - 0.17 * ry - raise_
        draw.line(
            [(ex - 1.1 * ew, by + 0.02 * ry), (ex + 1.1 * ew, by - 0.01 * ry)],
            fill=brow,
            width=max(1, round(0.05 * ry)),
        )
        if look.glasses:
            draw.ellipse(
                _oval(ex, eye_y, 1.35 * ew, 2.0 * eh),
                outline=(25, 25, 25),
                width=max(1, round(0.03 * ry)),
            )


def _draw_mouth_nose(
    draw: ImageDraw.ImageDraw, look: FaceLook, cx: float, cy: float, rx: float, ry: float
) -> None:
    """Nose, mouth and beard below the feature centre (cx, cy)."""
    shade = _scale(look.skin, (0.78, 0.72, 0.7))
    tip = cx + 0.15 * rx * look.yaw
    draw.polygon(
        [(cx, cy - 0.05 * ry), (tip + 0.1 * rx, cy + 0.28 * ry), (tip - 0.1 * rx, cy + 0.28 * ry)],
        fill=shade,
    )
    if look.beard and look.hair is not None:
        draw.chord(_oval(cx, cy + 0.25 * ry, 0.85 * rx, 0.72 * ry), 20, 160, fill=look.hair)
    lip = _scale(look.skin, (0.8, 0.45, 0.45))
    my, mw = cy + 0.52 * ry, 0.28 * rx * (1.0 - 0.3 * abs(look.yaw))
    mx = cx + 0.1 * rx * look.yaw
    if look.exaggerated:
        draw.ellipse(
            _oval(mx, my, mw, 0.16 * ry),
            fill=(60, 15, 20),
            outline=lip,
            width=max(1, round(0.03 * ry)),
        )
    else:
        draw.chord(_oval(mx, my - 0.06 * ry, mw, 0.11 * ry), 0, 180, fill=lip)


def _shade(rgba: Image.Image, rx: float, ry: float, light_x: float) -> Image.Image:
    """Darken towards the head outline (a round-head look); light comes from ``light_x``."""
    arr = np.asarray(rgba, dtype=np.float32).copy()
    h, w = arr.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r2 = ((xx - (w - 1) / 2 - light_x * rx) / rx) ** 2 + ((yy - (h - 1) / 2) / ry) ** 2
    factor = 1.0 - 0.28 * np.clip(r2, 0.0, 1.6) ** 1.5 / 1.6**1.5  # (h, w)
    arr[..., :3] *= factor[..., None]
    return Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8), "RGBA")


def _draw_photo(look: FaceLook, width: int, height: int) -> Image.Image:
    """A real face crop resized to (width, height), tinted with the skin tone."""
    if look.photo is None or not 0 <= look.photo < NUM_PHOTO_FACES:
        raise ValueError(
            f"look.photo must be a face crop index in 0..{NUM_PHOTO_FACES - 1}, got {look.photo!r}"
        )
    crop = Image.fromarray(lfw_crops()[look.photo], "L").resize(
        (width, height), Image.Resampling.BICUBIC
    )
    gray = np.asarray(crop, dtype=np.float32)[..., None] / 255.0  # (h, w, 1)
    tint = np.asarray(look.skin, dtype=np.float32) / max(look.skin) * 1.25  # (3,)
    rgb = np.clip(gray * tint * 255.0 + 0.5, 0, 255).astype(np.uint8)  # (h, w, 3)
    return Image.fromarray(rgb, "RGB").convert("RGBA")


def draw_face(look: FaceLook, height: int) -> tuple[Image.Image, Image.Image]:
    """Draw an upright face ``height`` pixels tall (no reduction, rotation or blur).

    Returns:
        ``(rgba, head)``: the RGBA drawing (alpha 255 on the face, 0 elsewhere) and an ``L``
        mask of the head ellipse, both of size (round(height * width_ratio * squash), height).
    """
    squash = 1.0 - 0.4 * abs(look.yaw)
    width = max(2, round(height * look.width_ratio * squash))
    rx, ry = (width - 1) / 2.0, (height - 1) / 2.0
    head = Image.new("L", (width, height), 0)
    ImageDraw.Draw(head).ellipse([0, 0, width - 1, height - 1], fill=255)
    if look.photo is not None:
        rgba = _draw_photo(look, width, height)
    else:
        rgba = Image.new("RGBA", (width, height), look.skin + (255,))
        draw = ImageDraw.Draw(rgba)
        fx = rx + 0.3 * rx * look.yaw  # features move towards the turn
        _draw_eyes(draw, look, fx, ry, rx, ry)
        _draw_mouth_nose(draw, look, fx, ry, rx, ry)
        if look.hair is not None:
            start = math.degrees(math.asin(look.hairline))
            draw.chord([0, 0, width - 1, height - 1], 180 + start, 360 - start, fill=look.hair)
        rgba = _shade(rgba, rx, ry, light_x=-0.3 * look.yaw)
    rgba.putalpha(head)
    return rgba, head


def _supersample(height: int) -> int:
    """Drawing scale for a face of ``height`` target pixels: drawn >= MIN_DRAW_HEIGHT tall."""
    return int(min(12, max(2, math.ceil(MIN_DRAW_HEIGHT / max(height, 1)))))


def fit_ellipse(mask: np.ndarray) -> tuple[float, float, float, float, float]:
    """Ellipse with the same area moments as a filled region.

    Args:
        mask: (h, w) array, > 0 on the region (weights are used as given).

    Returns:
        (ra, rb, angle, cx, cy): semi-axes with ra >= rb (pixels), angle of the major axis in
        radians in (-pi/2, pi/2] measured from +x towards +y (image axes, y down), centre in
        pixel coordinates (pixel centres at integers).
    """
    weights = np.asarray(mask, dtype=np.float64)
    total = weights.sum()
    if total <= 0:
        raise ValueError("fit_ellipse: the mask is empty")
    ys, xs = np.mgrid[0 : weights.shape[0], 0 : weights.shape[1]]
    cx, cy = (weights * xs).sum() / total, (weights * ys).sum() / total
    cov = (
        np.array(
            [
                [(weights * (xs - cx) ** 2).sum(), (weights * (xs - cx) * (ys - cy)).sum()],
                [0.0, (weights * (ys - cy) ** 2).sum()],
            ]
        )
        / total
    )
    cov[1, 0] = cov[0, 1]
    values, vectors = np.linalg.eigh(cov)  # ascending
    # A filled ellipse of semi-axis a has variance a^2/4 along that axis (+1/12 per pixel).
    ra = 2.0 * math.sqrt(max(values[1] - 1.0 / 12.0, 0.0))
    rb = 2.0 * math.sqrt(max(values[0] - 1.0 / 12.0, 0.0))
    angle = math.atan2(vectors[1, 1], vectors[0, 1])
    if angle <= -math.pi / 2:
        angle += math.pi
    elif angle > math.pi / 2:
        angle -= math.pi
    return ra, rb, angle, float(cx), float(cy)


def _tight_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return 0, 0, 0, 0
    return int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)


def render_face(
    look: FaceLook, *, height: int, roll_degrees: float, light: float, blur_sigma: float
) -> FacePatch:
    """Render a face whose upright head is ``height`` pixels tall.

    Args:
        look: the face's look.
        height: head height in output pixels before roll (>= 2).
        roll_degrees: in-plane rotation, counter-clockwise on screen.
        light: brightness factor applied to the face (1 normal; < 0.5 or > 1.5 extreme).
        blur_sigma: Gaussian blur sigma in output pixels (0 for none).

    Returns:
        The patch; its box is the tight box of the face's pixels before blur.
    """
    if height < 2:
        raise ValueError(f"render_face: height must be >= 2 pixels, got {height}")
    scale = _supersample(height)
    rgba, head = draw_face(look, height * scale)
    if roll_degrees:
        rgba = rgba.convert("RGBa").rotate(roll_degrees, Image.Resampling.BICUBIC, expand=True)
        head = head.rotate(roll_degrees, Image.Resampling.BILINEAR, expand=True)
    big_w, big_h = rgba.size
    size = (max(1, round(big_w / scale)), max(1, round(big_h / scale)))
    ra, rb, angle, cx, cy = fit_ellipse(np.asarray(head, dtype=np.float64) / 255.0)
    ellipse = _scale_ellipse((ra, rb, angle, cx, cy), size[0] / big_w, size[1] / big_h)
    small = rgba.convert("RGBa").resize(size, Image.Resampling.BOX)
    mask = np.asarray(small.getchannel("a")) >= 128  # (h, w)
    pad = int(math.ceil(3.0 * blur_sigma))
    if pad:
        padded = Image.new("RGBa", (size[0] + 2 * pad, size[1] + 2 * pad), (0, 0, 0, 0))
        padded.paste(small, (pad, pad))
        small = padded.filter(ImageFilter.GaussianBlur(blur_sigma))
        mask = np.pad(mask, pad)
        ellipse = (ellipse[0], ellipse[1], ellipse[2], ellipse[3] + pad, ellipse[4] + pad)
    arr = np.asarray(small.convert("RGBA")).copy()  # (h, w, 4)
    arr[..., :3] = np.clip(arr[..., :3].astype(np.float32) * light + 0.5, 0, 255).astype(np.uint8)
    return FacePatch(rgba=arr, mask=mask, box_xywh=_tight_box(mask), ellipse=ellipse)


def _scale_ellipse(
    ellipse: tuple[float, float, float, float, float], sx: float, sy: float
) -> tuple[float, float, float, float, float]:
    """The ellipse after scaling the image by (sx, sy) (pixel-centre coordinates)."""
    ra, rb, angle, cx, cy = ellipse
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    cov = rot @ np.diag([ra * ra, rb * rb]) @ rot.T
    scale = np.diag([sx, sy])
    values, vectors = np.linalg.eigh(scale @ cov @ scale)
    new_angle = math.atan2(vectors[1, 1], vectors[0, 1])
    if new_angle <= -math.pi / 2:
        new_angle += math.pi
    elif new_angle > math.pi / 2:
        new_angle -= math.pi
    return (
        math.sqrt(values[1]),
        math.sqrt(values[0]),
        new_angle,
        (cx + 0.5) * sx - 0.5,
        (cy + 0.5) * sy - 0.5,
    )


def render_distractor(rng: np.random.Generator, size: int) -> np.ndarray:
    """Something face-sized that is not a face, as a (h, w, 4) uint8 RGBA patch.

    One of: a real non-face crop (lfw_subset 100..199) tinted and masked to an oval; a blank
    skin-coloured oval; the back of a head (a hair-coloured oval); a shaded ball.
    """
    kind = int(rng.integers(4))
    width = max(2, round(size * rng.uniform(0.7, 1.1)))
    if kind == 0:
        index = NUM_PHOTO_FACES + int(rng.integers(NUM_PHOTO_FACES))
        crop = Image.fromarray(lfw_crops()[index], "L").resize(
            (width, size), Image.Resampling.BICUBIC
        )
        tint = np.asarray(_jitter(rng, (200, 190, 180), 50), dtype=np.float32) / 200.0
        rgb = np.asarray(crop, dtype=np.float32)[..., None] * tint  # (h, w, 3)
        img = Image.fromarray(np.clip(rgb + 0.5, 0, 255).astype(np.uint8), "RGB").convert("RGBA")
    else:
        if kind == 1:
            color = _pick(rng, SKIN_TONES)
        elif kind == 2:
            color = _pick(rng, HAIR_COLORS)
        else:
            rgb_values = rng.integers(0, 256, size=3)
            color = (int(rgb_values[0]), int(rgb_values[1]), int(rgb_values[2]))
        img = Image.new("RGBA", (width, size), _jitter(rng, color, 10) + (255,))
        img = _shade(img, (width - 1) / 2, (size - 1) / 2, float(rng.uniform(-0.4, 0.4)))
    alpha = Image.new("L", (width, size), 0)
    ImageDraw.Draw(alpha).ellipse([0, 0, width - 1, size - 1], fill=255)
    img.putalpha(alpha)
    return np.asarray(img).copy()
