"""Synthetic scenes: a textured background with distractors, then people (body, face,
occluder) drawn back to front; every face's attributes come from how it was drawn.

A scene is a pure function of a ``numpy.random.Generator``: the same generator state gives the
same pixels and annotations. The face attributes use the WIDER FACE codes (blur 0/1/2,
expression 0/1, illumination 0/1, occlusion 0/1/2, pose 0/1, invalid 0/1) and are derived by
:class:`AttributeRules` from the rendering parameters and from the fraction of each face's
pixels that stay visible once everything in front of it is drawn.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image, ImageDraw

from pipeline.synthetic.faces import (
    SKIN_TONES,
    FacePatch,
    render_distractor,
    render_face,
    sample_face_look,
)

SCENE_KINDS = ("crowd", "group", "portrait", "street", "night", "fddb")
BACKGROUND, NOT_A_FACE = -1, -2  # owner codes besides face indices 0..K-1


@dataclass(frozen=True)
class AttributeRules:
    """How rendering parameters become WIDER attribute codes (all sizes in image pixels).

    Attributes:
        blur_sigma_normal: Gaussian sigma of blur 1 as a fraction of face height (min 0.7 px).
        blur_sigma_heavy: sigma of blur 2 as a fraction of face height (min 1.5 px).
        extreme_light_low: a brightness factor below this is extreme illumination.
        extreme_light_high: a brightness factor above this is extreme illumination.
        atypical_roll_degrees: |roll| at or above this is an atypical pose.
        atypical_yaw: |yaw| (0 frontal .. 1) at or above this is an atypical pose.
        partial_occlusion: hidden fraction of the face's pixels at or above which occlusion is
            1 (partial).
        heavy_occlusion: hidden fraction at or above which occlusion is 2 (heavy).
        invalid_below_height: faces with a box shorter than this are invalid.
        invalid_below_visible: faces with less than this visible fraction are invalid.
    """

    blur_sigma_normal: float = 0.05
    blur_sigma_heavy: float = 0.12
    extreme_light_low: float = 0.5
    extreme_light_high: float = 1.5
    atypical_roll_degrees: float = 30.0
    atypical_yaw: float = 0.6
    partial_occlusion: float = 0.05
    heavy_occlusion: float = 0.35
    invalid_below_height: int = 6
    invalid_below_visible: float = 0.3

    def to_dict(self) -> dict[str, float | int]:
        """The rules as a JSON-able dict."""
        return asdict(self)


@dataclass(frozen=True)
class FacePlan:
    """What to draw for one person (image pixels, before placement adjustments)."""

    height: int
    center_x: float
    center_y: float
    roll_degrees: float
    yaw: float
    blur: int
    exaggerated: bool
    light: float
    occluder: str | None  # None, "bottom", "top", "left", "right"
    occluder_cover: float  # fraction of the face height/width the occluder reaches into
    body: bool


@dataclass(frozen=True)
class SceneFace:
    """One annotated face of a rendered scene.

    Attributes:
        box_xywh: (x, y, w, h) int pixels; the tight box of the face's pixels, x + w exclusive.
        ellipse: (ra, rb, angle, cx, cy) of the head: semi-axes (ra >= rb), major-axis angle in
            radians (image axes), centre in pixels.
        blur, expression, illumination, occlusion, pose, invalid: WIDER attribute codes.
        visible_fraction: fraction of the face's pixels not covered by anything in front.
    """

    box_xywh: tuple[int, int, int, int]
    ellipse: tuple[float, float, float, float, float]
    blur: int
    expression: int
    illumination: int
    occlusion: int
    pose: int
    invalid: int
    visible_fraction: float


@dataclass(frozen=True)
class RenderedScene:
    """A rendered image, its background alone, and its faces.

    Attributes:
        image: (H, W, 3) uint8 RGB.
        background: (H, W, 3) uint8 RGB, the same scene without people.
        faces: the faces in drawing order (back to front).
    """

    image: np.ndarray
    background: np.ndarray
    faces: tuple[SceneFace, ...]


def _random_color(rng: np.random.Generator) -> tuple[int, int, int]:
    c = rng.integers(0, 256, size=3)
    return int(c[0]), int(c[1]), int(c[2])


def render_background(
    rng: np.random.Generator, width: int, height: int, *, dark: bool
) -> np.ndarray:
    """A textured background: gradient, low-frequency noise, random shapes, fine noise.

    Returns:
        (height, width, 3) float32 RGB in 0..255.
    """
    c0, c1 = (np.asarray(_random_color(rng), np.float32) for _ in range(2))
    theta = rng.uniform(0, 2 * math.pi)
    xs = np.linspace(0.0, 1.0, width, dtype=np.float32)
    ys = np.linspace(0.0, 1.0, height, dtype=np.float32)
    t = math.cos(theta) * xs[None, :] + math.sin(theta) * ys[:, None]  # (H, W)
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    base = c0 + (c1 - c0) * t[..., None]  # (H, W, 3)
    grid = rng.normal(0.0, 25.0, size=(int(rng.integers(3, 9)), int(rng.integers(3, 9)), 3))
    low = Image.fromarray(np.clip(grid + 128, 0, 255).astype(np.uint8), "RGB")
    base += np.asarray(low.resize((width, height), Image.Resampling.BICUBIC), np.float32) - 128
    img = Image.fromarray(np.clip(base + 0.5, 0, 255).astype(np.uint8), "RGB")
    _draw_shapes(rng, ImageDraw.Draw(img), width, height, int(rng.integers(8, 40)))
    arr = np.asarray(img, dtype=np.float32)
    arr = arr + rng.standard_normal((height, width, 1), dtype=np.float32) * rng.uniform(2.0, 7.0)
    if dark:
        arr *= rng.uniform(0.22, 0.4)
    return np.clip(arr, 0.0, 255.0)


def _draw_shapes(
    rng: np.random.Generator, draw: ImageDraw.ImageDraw, width: int, height: int, count: int
) -> None:
    """Random rectangles, ellipses, polygons and lines (buildings, signs, poles, clutter)."""
    for _ in range(count):
        kind = int(rng.integers(4))
        x0, y0 = float(rng.uniform(-0.1, 1.0) * width), float(rng.uniform(-0.1, 1.0) * height)
        w, h = float(rng.uniform(0.03, 0.4) * width), float(rng.uniform(0.03, 0.4) * height)
        color = _random_color(rng)
        if kind == 0:
            draw.rectangle([x0, y0, x0 + w, y0 + h], fill=color)
        elif kind == 1:
            draw.ellipse([x0, y0, x0 + w, y0 + h], fill=color)
        elif kind == 2:
            pts = rng.uniform(0, 1, size=(int(rng.integers(3, 7)), 2)) * [w, h] + [x0, y0]
            draw.polygon([(float(p[0]), float(p[1])) for p in pts], fill=color)
        else:
            draw.line([(x0, y0), (x0 + w, y0 + h)], fill=color, width=int(rng.integers(1, 9)))


def composite(
    canvas: np.ndarray,
    owner: np.ndarray,
    rgba: np.ndarray,
    x0: int,
    y0: int,
    owner_id: int,
    mask: np.ndarray | None = None,
) -> None:
    """Alpha-blend ``rgba`` onto ``canvas`` at (x0, y0), clipped to the canvas, in place.

    Args:
        canvas: (H, W, 3) float32 RGB.
        owner: (H, W) int32; set to ``owner_id`` where ``mask`` (default: alpha >= 128) is set.
        rgba: (h, w, 4) uint8 patch.
        x0, y0: top-left of the patch in canvas pixels (may be outside the canvas).
        owner_id: code written into ``owner``.
        mask: (h, w) bool pixels that the patch claims, or None.
    """
    height, width = canvas.shape[:2]
    ph, pw = rgba.shape[:2]
    cx0, cy0 = max(0, x0), max(0, y0)
    cx1, cy1 = min(width, x0 + pw), min(height, y0 + ph)
    if cx1 <= cx0 or cy1 <= cy0:
        return
    sub = rgba[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0]  # (h', w', 4)
    alpha = sub[..., 3:4].astype(np.float32) / 255.0
    region = canvas[cy0:cy1, cx0:cx1]
    region += alpha * (sub[..., :3].astype(np.float32) - region)
    claim = sub[..., 3] >= 128 if mask is None else mask[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0]
    owner[cy0:cy1, cx0:cx1][claim] = owner_id


def _body_patch(
    rng: np.random.Generator, face_height: int, skin: tuple[int, int, int]
) -> tuple[np.ndarray, int, int]:
    """Neck and shoulders under a face: (rgba, dx, dy) with the patch's top-left offset from
    the face centre."""
    h = face_height
    w_img, h_img = max(4, round(2.6 * h)), max(4, round(2.4 * h))
    img = Image.new("RGBA", (w_img, h_img), (0, 0, 0, 0))
    draw = ImageDraw.Draw(img)
    cx = (w_img - 1) / 2
    neck = tuple(int(v * 0.85) for v in skin) + (255,)
    draw.rectangle([cx - 0.17 * h, 0.3 * h, cx + 0.17 * h, 0.95 * h], fill=neck)
    cloth = _random_color(rng) + (255,)
    draw.ellipse([cx - 1.05 * h, 0.85 * h, cx + 1.05 * h, 0.85 * h + 2.4 * h], fill=cloth)
    return np.asarray(img).copy(), -round(cx), 0


def _occluder_patch(
    rng: np.random.Generator, plan: FacePlan, box: tuple[int, int, int, int]
) -> tuple[np.ndarray, int, int]:
    """An object in front of a face, reaching ``occluder_cover`` into its box from one side.

    Returns (rgba, x0, y0) with the patch's top-left in the same pixels as ``box``.
    """
    x, y, w, h = box
    reach = plan.occluder_cover
    margin = max(2, round(0.25 * max(w, h)))
    if plan.occluder in ("bottom", "top"):
        ow, oh = w + 2 * margin, max(1, round(reach * h)) + margin
        ox = x - margin
        oy = y + h - (oh - margin) if plan.occluder == "bottom" else y - margin
    else:
        ow, oh = max(1, round(reach * w)) + margin, h + 2 * margin
        oy = y - margin
        ox = x + w - (ow - margin) if plan.occluder == "right" else x - margin
    color = (
        SKIN_TONES[int(rng.integers(len(SKIN_TONES)))] if rng.random() < 0.4 else _random_color(rng)
    )
    img = Image.new("RGBA", (ow, oh), (0, 0, 0, 0))
    if rng.random() < 0.5:
        ImageDraw.Draw(img).rectangle([0, 0, ow - 1, oh - 1], fill=color + (255,))
    else:  # rounded: a hand, a ball, a shoulder
        ImageDraw.Draw(img).rounded_rectangle(
            [0, 0, ow - 1, oh - 1], radius=min(ow, oh) // 2, fill=color + (255,)
        )
    return np.asarray(img).copy(), ox, oy


def _blur_sigma(level: int, height: int, rules: AttributeRules) -> float:
    if level == 0:
        return 0.0
    if level == 1:
        return max(0.7, rules.blur_sigma_normal * height)
    return max(1.5, rules.blur_sigma_heavy * height)


def _draw_person(
    rng: np.random.Generator,
    canvas: np.ndarray,
    owner: np.ndarray,
    plan: FacePlan,
    index: int,
    rules: AttributeRules,
    dark: bool,
) -> tuple[FacePatch, int, int]:
    """Body, face and occluder of one person; returns the face patch and its top-left.
    In a dark scene the body and occluder are darkened like the background."""
    look = sample_face_look(
        rng, yaw=plan.yaw, exaggerated=plan.exaggerated, allow_photo=plan.height >= 12
    )
    patch = render_face(
        look,
        height=plan.height,
        roll_degrees=plan.roll_degrees,
        light=plan.light,
        blur_sigma=_blur_sigma(plan.blur, plan.height, rules),
    )
    bx, by, bw, bh = patch.box_xywh
    img_h, img_w = canvas.shape[:2]
    # Centre the face's box on the plan, kept wholly inside the image.
    x = int(min(max(round(plan.center_x - bw / 2), 0), img_w - bw))
    y = int(min(max(round(plan.center_y - bh / 2), 0), img_h - bh))
    x0, y0 = x - bx, y - by
    if plan.body:
        body, dx, dy = _body_patch(rng, bh, look.skin)
        if dark:
            body[..., :3] = (body[..., :3] * 0.35).astype(np.uint8)
        composite(canvas, owner, body, x + bw // 2 + dx, y + bh // 2 + dy, NOT_A_FACE)
    composite(canvas, owner, patch.rgba, x0, y0, index, mask=patch.mask)
    if plan.occluder is not None:
        occ, ox, oy = _occluder_patch(rng, plan, (x, y, bw, bh))
        if dark:
            occ[..., :3] = (occ[..., :3] * 0.35).astype(np.uint8)
        composite(canvas, owner, occ, ox, oy, NOT_A_FACE)
    return patch, x0, y0


def _attributes(
    plan: FacePlan, box: tuple[int, int, int, int], visible: float, rules: AttributeRules
) -> dict[str, int]:
    hidden = 1.0 - visible
    occlusion = (
        2 if hidden >= rules.heavy_occlusion else 1 if hidden >= rules.partial_occlusion else 0
    )
    extreme = plan.light < rules.extreme_light_low or plan.light > rules.extreme_light_high
    atypical = (
        abs(plan.roll_degrees) >= rules.atypical_roll_degrees or abs(plan.yaw) >= rules.atypical_yaw
    )
    invalid = box[3] < rules.invalid_below_height or visible < rules.invalid_below_visible
    return {
        "blur": plan.blur,
        "expression": int(plan.exaggerated),
        "illumination": int(extreme),
        "occlusion": occlusion,
        "pose": int(atypical),
        "invalid": int(invalid),
    }


def _draw_distractors(
    rng: np.random.Generator, canvas: np.ndarray, owner: np.ndarray, count: int, dark: bool
) -> None:
    """Face-sized non-faces at random places (part of the background; owner unchanged)."""
    height, width = canvas.shape[:2]
    for _ in range(count):
        size = int(rng.integers(8, max(9, min(height, width) // 3)))
        thing = render_distractor(rng, size)
        if dark:
            thing[..., :3] = (thing[..., :3] * 0.35).astype(np.uint8)
        x0 = int(rng.integers(-size // 3, width - size // 2))
        y0 = int(rng.integers(-size // 3, height - size // 2))
        composite(canvas, owner, thing, x0, y0, BACKGROUND)


def render_scene(
    rng: np.random.Generator,
    *,
    plans: list[FacePlan],
    width: int,
    height: int,
    num_distractors: int,
    dark: bool,
    rules: AttributeRules,
) -> RenderedScene:
    """Render a background with distractors, then the planned people back to front.

    Args:
        rng: the random source (consumed in a fixed order: same state, same scene).
        plans: the people, drawn in the given order (later ones in front).
        width, height: image size in pixels.
        num_distractors: face-sized non-faces drawn into the background.
        dark: darkens the background (a night scene).
        rules: attribute rules.
    """
    canvas = render_background(rng, width, height, dark=dark)
    owner = np.full((height, width), BACKGROUND, dtype=np.int32)
    _draw_distractors(rng, canvas, owner, num_distractors, dark)
    background = np.clip(canvas + 0.5, 0, 255).astype(np.uint8)
    placed = [
        _draw_person(rng, canvas, owner, plan, k, rules, dark) for k, plan in enumerate(plans)
    ]
    visible_counts = np.bincount(owner[owner >= 0].ravel(), minlength=len(plans))
    faces = []
    for k, (plan, (patch, x0, y0)) in enumerate(zip(plans, placed, strict=True)):
        bx, by, bw, bh = patch.box_xywh
        box = (x0 + bx, y0 + by, bw, bh)
        visible = float(visible_counts[k]) / max(int(patch.mask.sum()), 1)
        ra, rb, angle, ecx, ecy = patch.ellipse
        faces.append(
            SceneFace(
                box_xywh=box,
                ellipse=(ra, rb, angle, ecx + x0, ecy + y0),
                visible_fraction=visible,
                **_attributes(plan, box, visible, rules),
            )
        )
    image = np.clip(canvas + 0.5, 0, 255).astype(np.uint8)
    return RenderedScene(image=image, background=background, faces=tuple(faces))


# --- scene plans -------------------------------------------------------------------------

# kind -> (faces min, faces max, distractors min, distractors max, max box overlap, blur probs)
_KIND_SETTINGS: dict[str, tuple[int, int, int, int, float, tuple[float, float, float]]] = {
    "crowd": (25, 100, 3, 10, 0.2, (0.6, 0.25, 0.15)),
    "group": (3, 14, 2, 6, 0.1, (0.75, 0.18, 0.07)),
    "portrait": (1, 3, 1, 4, 0.0, (0.8, 0.15, 0.05)),
    "street": (2, 20, 5, 15, 0.15, (0.75, 0.18, 0.07)),
    "night": (2, 16, 3, 8, 0.15, (0.6, 0.25, 0.15)),
    "fddb": (1, 4, 1, 4, 0.0, (0.9, 0.1, 0.0)),
}


def scene_size(rng: np.random.Generator, kind: str) -> tuple[int, int]:
    """Image (width, height) for a scene kind; the long side is 320..640 pixels."""
    if kind == "crowd":
        width = int(rng.integers(520, 641))
        return width, int(round(width * rng.uniform(0.6, 0.8)))
    if kind == "fddb":
        long_side, short = int(rng.integers(320, 451)), rng.uniform(0.65, 0.8)
    else:
        long_side, short = int(rng.integers(400, 641)), rng.uniform(0.6, 0.8)
    upright = rng.random() < (0.6 if kind == "portrait" else 0.5 if kind == "fddb" else 0.2)
    other = int(round(long_side * short))
    return (other, long_side) if upright else (long_side, other)


def _face_heights(
    rng: np.random.Generator, kind: str, count: int, width: int, height: int
) -> tuple[np.ndarray, np.ndarray]:
    """Face heights and centre rows for a scene kind: (heights (N,), y fractions (N,))."""
    short = min(width, height)
    if kind == "crowd":
        y_frac = rng.random(count) ** 1.5  # more people far away (top) than near
        near, far = rng.uniform(18, 45), rng.uniform(7, 11)
        heights = (far + (near - far) * y_frac) * rng.uniform(0.85, 1.15, count)
        top = rng.uniform(0.15, 0.4)
        return heights, top + (0.95 - top) * y_frac
    low, high = {
        "group": (20, 90),
        "portrait": (0.25 * short, 0.55 * short),
        "street": (10, 150),
        "night": (10, 120),
        "fddb": (40, min(200, 0.6 * short)),
    }[kind]
    heights = np.exp(rng.uniform(math.log(low), math.log(high), count))
    return heights, rng.uniform(0.1, 0.9, count)


def _overlap(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    """Intersection over the smaller area of two (x, y, w, h) boxes."""
    iw = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    ih = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    return iw * ih / min(a[2] * a[3], b[2] * b[3])


def _face_plan(rng: np.random.Generator, kind: str, height: int, cx: float, cy: float) -> FacePlan:
    """Pose, blur, expression, light and occluder of one face, drawn for a scene kind."""
    mild = kind == "fddb"
    roll, yaw = rng.uniform(-15, 15), rng.uniform(-0.35, 0.35)
    if rng.random() < (0.1 if mild else 0.2):
        if rng.random() < 0.5:
            roll = rng.choice([-1.0, 1.0]) * rng.uniform(30, 60)
        else:
            yaw = rng.choice([-1.0, 1.0]) * rng.uniform(0.6, 0.9)
    blur = int(rng.choice(3, p=_KIND_SETTINGS[kind][5]))
    light = rng.uniform(0.85, 1.15)
    if kind == "night":
        light = rng.uniform(0.3, 0.45)
    elif not mild and rng.random() < 0.1:
        light = rng.uniform(0.3, 0.45) if rng.random() < 0.5 else rng.uniform(1.55, 1.8)
    occluder, cover = None, 0.0
    if rng.random() < (0.1 if mild else 0.18):
        occluder = str(rng.choice(["bottom", "bottom", "top", "left", "right"]))
        heavy = not mild and rng.random() < 0.35
        cover = rng.uniform(0.4, 0.8) if heavy else rng.uniform(0.1, 0.3)
    return FacePlan(
        height=height,
        center_x=float(cx),
        center_y=float(cy),
        roll_degrees=float(roll),
        yaw=float(yaw),
        blur=blur,
        exaggerated=bool(rng.random() < 0.15),
        light=float(light),
        occluder=occluder,
        occluder_cover=float(cover),
        body=bool(rng.random() < (0.8 if mild else 0.85)),
    )


def plan_scene(
    rng: np.random.Generator, kind: str, width: int, height: int
) -> tuple[list[FacePlan], int]:
    """People of a scene, back to front, and the number of distractors.

    Faces are placed by rejection so that no two approximate face boxes overlap by more than
    the kind's limit (intersection over the smaller box); a face that finds no place is
    dropped.
    """
    if kind not in _KIND_SETTINGS:
        raise ValueError(f"unknown scene kind {kind!r}; expected one of {SCENE_KINDS}")
    n_min, n_max, d_min, d_max, max_overlap, _ = _KIND_SETTINGS[kind]
    count = int(rng.integers(n_min, n_max + 1))
    heights, y_fracs = _face_heights(rng, kind, count, width, height)
    limit = 0.8 * min(width, height)
    boxes: list[tuple[float, float, float, float]] = []
    plans = []
    for h_float, y_frac in sorted(zip(heights.tolist(), y_fracs.tolist(), strict=True)):
        h = int(round(min(max(h_float, 5.0), limit)))
        for _ in range(30):
            cx = rng.uniform(0.45 * h, width - 0.45 * h)
            cy = min(
                max(y_frac * height + rng.normal(0, 0.03 * height), 0.55 * h), height - 0.55 * h
            )
            box = (cx - 0.4 * h, cy - 0.5 * h, 0.8 * h, float(h))
            if all(_overlap(box, other) <= max_overlap for other in boxes):
                boxes.append(box)
                plans.append(_face_plan(rng, kind, h, cx, cy))
                break
    return plans, int(rng.integers(d_min, d_max + 1))
