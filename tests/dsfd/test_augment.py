"""IAM / SSD augmentation: boxes follow the pixels, determinism, anchor-scale sampling."""

from __future__ import annotations

import numpy as np
import pytest

from dsfd.augment import AugmentConfig, augment, augment_boxes, photometric_distort

COLOURS = [(0, 0, 255), (0, 255, 0), (255, 0, 0), (255, 255, 0)]


def _painted(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A grey image with up to 4 non-overlapping boxes painted in distinct pure colours."""
    h, w = int(rng.integers(120, 400)), int(rng.integers(120, 400))
    image = np.full((h, w, 3), 128, np.uint8)
    boxes = []
    for k, colour in enumerate(COLOURS[: int(rng.integers(1, 5))]):
        # Each box in its own quadrant so that boxes never overlap.
        qx, qy = (k % 2) * w // 2, (k // 2) * h // 2
        bw = int(rng.integers(12, w // 2 - 4))
        bh = int(rng.integers(12, h // 2 - 4))
        x1 = qx + int(rng.integers(0, w // 2 - bw))
        y1 = qy + int(rng.integers(0, h // 2 - bh))
        image[y1 : y1 + bh, x1 : x1 + bw] = colour
        boxes.append([x1, y1, x1 + bw, y1 + bh])
    return image, np.array(boxes, np.float32)


@pytest.mark.parametrize("policy", ["iam", "ssd"])
def test_colour_is_where_the_box_says(policy: str) -> None:
    cfg = AugmentConfig(image_size=160, policy=policy, photometric=False, min_face_size=8.0)
    checked = 0
    for seed in range(60):
        rng = np.random.default_rng(seed)
        image, boxes = _painted(rng)
        out = augment(image, boxes, rng, cfg)
        assert out.image.shape == (160, 160, 3) and out.image.dtype == np.uint8
        for box, idx in zip(out.boxes, out.indices, strict=True):
            x1, y1, x2, y2 = box
            if min(x2 - x1, y2 - y1) < 8:
                continue
            # The interior (1.5 px margin for interpolation) is exactly the box's colour...
            inner = out.image[
                int(np.ceil(y1 + 1.5)) : int(y2 - 1.5), int(np.ceil(x1 + 1.5)) : int(x2 - 1.5)
            ]
            assert inner.size
            assert np.abs(inner.astype(int) - COLOURS[idx]).max() <= 2, (seed, box)
            # ...and the colour does not leak beyond the box (ring 1.5 px outside).
            colour_mask = np.abs(out.image.astype(int) - COLOURS[idx]).max(axis=2) <= 2
            ys, xs = np.nonzero(colour_mask)
            assert xs.min() >= x1 - 1.5 and xs.max() + 1 <= x2 + 1.5
            assert ys.min() >= y1 - 1.5 and ys.max() + 1 <= y2 + 1.5
            checked += 1
    assert checked > 50


def test_same_seed_same_output_different_seed_differs() -> None:
    image, boxes = _painted(np.random.default_rng(0))
    a = augment(image, boxes, np.random.default_rng(7), AugmentConfig(image_size=128))
    b = augment(image, boxes, np.random.default_rng(7), AugmentConfig(image_size=128))
    c = augment(image, boxes, np.random.default_rng(8), AugmentConfig(image_size=128))
    assert np.array_equal(a.image, b.image) and np.array_equal(a.boxes, b.boxes)
    assert not np.array_equal(a.image, c.image)


def test_boxes_only_matches_pixels_path() -> None:
    for seed in range(30):
        image, boxes = _painted(np.random.default_rng(seed))
        cfg = AugmentConfig(image_size=200)
        full = augment(image, boxes, np.random.default_rng(seed), cfg)
        geo = augment_boxes(boxes, image.shape[:2], np.random.default_rng(seed), cfg)
        np.testing.assert_array_equal(full.boxes, geo.boxes)
        np.testing.assert_array_equal(full.indices, geo.indices)


def test_boxes_inside_output_and_not_tiny_over_seeds() -> None:
    cfg = AugmentConfig(image_size=96, min_face_size=4.0)
    modes = set()
    for seed in range(300):
        rng = np.random.default_rng(seed)
        n = int(rng.integers(0, 12))
        wh = rng.uniform(1, 200, size=(n, 2))
        xy = rng.uniform(0, 300, size=(n, 2))
        boxes = np.concatenate([xy, xy + wh], axis=1).astype(np.float32)
        out = augment_boxes(boxes, (500, 500), rng, cfg)
        modes.add(out.mode)
        assert out.boxes.dtype == np.float32 and out.boxes.shape == (len(out.indices), 4)
        assert (out.boxes >= 0).all() and (out.boxes <= 96).all()
        assert (out.boxes[:, 2:] > out.boxes[:, :2]).all()
        sides = np.sqrt(np.prod(out.boxes[:, 2:] - out.boxes[:, :2], axis=1))
        assert (sides >= 4.0 - 1e-4).all()
        assert len(set(out.indices.tolist())) == len(out.indices) and (out.indices < n).all()
    assert modes == {"anchor", "ssd"}


@pytest.mark.parametrize("das_targets", ["official", "paper"])
def test_anchor_sampling_hits_the_target_scale(das_targets: str) -> None:
    cfg = AugmentConfig(
        image_size=640, policy="iam", anchor_sampling_prob=1.0, das_targets=das_targets
    )  # type: ignore[arg-type]
    targets = []
    for seed in range(200):
        rng = np.random.default_rng(seed)
        n = int(rng.integers(1, 6))
        wh = rng.uniform(5, 400, size=(n, 2))
        xy = rng.uniform(0, 600, size=(n, 2))
        boxes = np.concatenate([xy, xy + wh], axis=1).astype(np.float32)
        out = augment_boxes(boxes, (1024, 1024), rng, cfg)
        assert out.mode == "anchor" and out.target_size in cfg.anchor_sizes
        (row,) = np.flatnonzero(out.indices == out.anchor_face)
        side = float(np.sqrt(np.prod(out.boxes[row, 2:] - out.boxes[row, :2])))
        assert side == pytest.approx(out.target_size, rel=1e-4)
        face_side = float(np.sqrt(np.prod(boxes[out.anchor_face, 2:] - boxes[out.anchor_face, :2])))
        if das_targets == "official":
            # Never enlarged beyond the face's own octave bucket.
            assert out.target_size <= max(32, 2 ** int(np.ceil(np.log2(face_side))))
        targets.append(out.target_size)
    assert set(targets) == set(cfg.anchor_sizes)


def test_anchor_sampling_probability_is_two_fifths() -> None:
    cfg = AugmentConfig(image_size=64)
    boxes = np.array([[10, 10, 60, 70]], np.float32)
    rng = np.random.default_rng(0)
    modes = [augment_boxes(boxes, (200, 200), rng, cfg).mode for _ in range(2000)]
    assert modes.count("anchor") / 2000 == pytest.approx(0.4, abs=0.04)
    ssd = AugmentConfig(image_size=64, policy="ssd")
    assert {augment_boxes(boxes, (200, 200), rng, ssd).mode for _ in range(200)} == {"ssd"}


def test_no_faces_is_valid() -> None:
    image = np.full((50, 80, 3), 7, np.uint8)
    out = augment(
        image, np.zeros((0, 4), np.float32), np.random.default_rng(0), AugmentConfig(image_size=32)
    )
    assert out.boxes.shape == (0, 4) and out.indices.shape == (0,)
    assert out.image.shape == (32, 32, 3) and out.mode == "ssd"


def test_flip_mirrors_pixels_and_boxes() -> None:
    image, boxes = _painted(np.random.default_rng(3))
    base = AugmentConfig(
        image_size=128,
        policy="ssd",
        photometric=False,
        expand_prob=0.0,
        min_crop_scale=1.0,
        flip_prob=0.0,
    )
    plain = augment(image, boxes, np.random.default_rng(1), base)
    flipped = augment(
        image, boxes, np.random.default_rng(1), AugmentConfig(**{**base.__dict__, "flip_prob": 1.0})
    )
    assert flipped.flipped and not plain.flipped
    np.testing.assert_array_equal(flipped.image, plain.image[:, ::-1])
    np.testing.assert_allclose(flipped.boxes[:, [2, 0]], 128 - plain.boxes[:, [0, 2]], atol=1e-4)


def test_photometric_keeps_shape_and_changes_values() -> None:
    image = np.random.default_rng(0).integers(0, 256, size=(20, 30, 3), dtype=np.uint8)
    outs = [photometric_distort(image, np.random.default_rng(s)) for s in range(10)]
    assert all(o.shape == image.shape and o.dtype == np.uint8 for o in outs)
    assert any(not np.array_equal(o, image) for o in outs)


def test_bad_inputs_are_named() -> None:
    with pytest.raises(TypeError, match="uint8"):
        augment(np.zeros((4, 4, 3), np.float32), np.zeros((0, 4)), np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"\[N, 4\]"):
        augment(np.zeros((4, 4, 3), np.uint8), np.zeros((2, 3)), np.random.default_rng(0))
    with pytest.raises(ValueError, match="policy"):
        AugmentConfig(policy="yolo")  # type: ignore[arg-type]


def test_zoom_out_is_off_by_default_and_selectable() -> None:
    boxes = np.array([[90, 80, 130, 130]], np.float32)
    default = AugmentConfig(image_size=64, policy="ssd")
    assert default.expand_prob == 0.0
    rng = np.random.default_rng(0)
    for _ in range(300):  # every window lies inside the 300x200 image
        x0, y0, w, h = augment_boxes(boxes, (200, 300), rng, default).window
        assert x0 >= 0 and y0 >= 0 and x0 + w <= 300 + 1e-6 and y0 + h <= 200 + 1e-6
    zoom = AugmentConfig(image_size=64, policy="ssd", expand_prob=1.0)
    windows = [augment_boxes(boxes, (200, 300), rng, zoom).window for _ in range(300)]
    outside = [w for w in windows if w[0] < 0 or w[1] < 0 or w[0] + w[2] > 300 or w[1] + w[3] > 200]
    assert len(outside) > 100  # the canvas overhangs the image: SSD's zoom-out
    assert max(w[2] for w in windows) > 300  # crops of a canvas up to 4x the image


def test_one_third_of_ssd_crops_keep_the_whole_short_side() -> None:
    boxes = np.array([[140, 90, 160, 110]], np.float32)  # centred: most crops contain it
    cfg = AugmentConfig(image_size=64, policy="ssd")
    assert cfg.whole_crop_prob == pytest.approx(1 / 3)
    rng = np.random.default_rng(1)
    sides = [augment_boxes(boxes, (200, 300), rng, cfg).window[2] for _ in range(3000)]
    whole = np.isclose(sides, 200.0).mean()  # the official "None" option: 1 of 3 options
    assert whole == pytest.approx(1 / 3, abs=0.035)
    always = AugmentConfig(image_size=64, policy="ssd", whole_crop_prob=1.0)
    assert {augment_boxes(boxes, (200, 300), rng, always).window[2] for _ in range(50)} == {200.0}
    with pytest.raises(ValueError, match="whole_crop_prob"):
        AugmentConfig(whole_crop_prob=1.5)
