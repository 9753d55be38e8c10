"""Batched inference: tensor post-processing == per image, bucketed == unbucketed, padding
yields nothing, memory-budget splits, folded BatchNorm + channels-last within tolerance."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import dsfd
from dsfd import Detector, build_model
from dsfd.anchors import cached_anchors
from dsfd.batching import bucket_hw, pad_batch, split_to_budget
from dsfd.nms import batched_nms, nms
from dsfd.postprocess import detections_per_image, padding_mask, postprocess_shot
from dsfd.preprocess import image_to_tensor, normalize


def _image(seed: int, hw: tuple[int, int]) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (*hw, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    return build_model("vgg16", width=0.125).eval()


def test_batched_nms_equals_nms_per_segment() -> None:
    rng = np.random.default_rng(0)
    boxes, scores, segments = [], [], []
    for seg in range(4):
        xy = rng.uniform(0, 300, (400, 2))
        b = np.concatenate((xy, xy + rng.uniform(5, 80, (400, 2))), axis=1)
        s = rng.uniform(0, 1, 400).round(2)  # many ties
        boxes.append(b)
        scores.append(s)
        segments.append(np.full(400, seg))
    b = torch.from_numpy(np.concatenate(boxes)).float()
    s = torch.from_numpy(np.concatenate(scores)).float()
    seg = torch.from_numpy(np.concatenate(segments))
    kept = batched_nms(b, s, seg, 0.3, max_kept=50)
    for i in range(4):
        mine = torch.nonzero(seg == i).squeeze(1)
        want = mine[nms(b[mine], s[mine], 0.3, max_kept=50)]
        assert torch.equal(kept[seg[kept] == i], want)
    small = batched_nms(b, s, seg, 0.3, max_pairs=10)  # each segment alone (dense)
    assert torch.equal(small, batched_nms(b, s, seg, 0.3))


def test_tensor_postprocessing_equals_the_reference(model: torch.nn.Module) -> None:
    x = torch.stack([normalize(image_to_tensor(_image(i, (96, 128))), model.input_format)
                     for i in range(3)])
    with torch.inference_mode():
        shot = model(x).second
    spec = model.anchor_specs[1]
    config = dsfd.PostprocessConfig()
    anchors = cached_anchors(spec, (96, 128), shot.feature_hw, shot.loc.device)
    per_image = postprocess_shot(shot, (96, 128), spec, config, 750, method="per_image")
    batched = postprocess_shot(shot, (96, 128), spec, config, 750, method="batched")
    for i in range(3):
        reference = detections_per_image(shot.loc[i], shot.conf[i], anchors, config, 750)
        assert reference.shape[0] > 100
        assert torch.equal(per_image[i], reference)
        assert torch.equal(batched[i], reference)
    with pytest.raises(ValueError, match="postprocess"):
        postprocess_shot(shot, (96, 128), spec, config, 750, method="fast")


def test_padding_yields_no_detections(model: torch.nn.Module) -> None:
    detector = Detector(model, bucket=True)
    image = _image(1, (70, 100))  # bucket 128 x 128
    tensor = detector.prepare(image)
    with torch.inference_mode():
        shot = detector.model(pad_batch([tensor], bucket_hw((70, 100), 128))).second
    anchors = cached_anchors(detector.anchor_spec, (128, 128), shot.feature_hw,
                             torch.device("cpu"))
    mask = padding_mask(anchors, [(70, 100)])[0]
    centre = (anchors[:, :2] + anchors[:, 2:]) / 2
    assert torch.equal(mask, (centre[:, 0] < 100) & (centre[:, 1] < 70))
    dets = postprocess_shot(shot, (128, 128), detector.anchor_spec, detector.config, 750,
                            image_hw=[(70, 100)])[0]
    assert len(dets) > 0
    for row in dets.tolist():  # each kept box comes from an anchor centred in the image
        cx, cy = (row[0] + row[2]) / 2, (row[1] + row[3]) / 2
        assert cx < 100 + 64 and cy < 70 + 64  # deltas move a centre by < its anchor's size


def test_bucketed_equals_unbucketed_and_batched_equals_single(model: torch.nn.Module) -> None:
    sizes = [(70, 100), (100, 128), (128, 90), (64, 64), (200, 100)]
    images = [_image(i, hw) for i, hw in enumerate(sizes)]
    bucketed = Detector(model, bucket=True, batch_size=8)
    assert sorted(len(b) for b in bucketed.planned_batches(sizes)) == [1, 4]
    together = bucketed.detect(images)
    for image, got in zip(images, together, strict=True):
        alone = bucketed.detect([image])[0]  # the same padding, a batch of one
        assert got.shape == alone.shape and got.shape[0] > 0
        np.testing.assert_allclose(got, alone, rtol=1e-4, atol=1e-3)
    # an image already at its bucket size: bucketing changes nothing
    plain = Detector(model, batch_size=8)
    exact = _image(9, (128, 128))
    np.testing.assert_allclose(bucketed.detect([exact, images[0]])[0], plain.detect([exact])[0],
                               rtol=1e-4, atol=1e-3)


def test_memory_budget_splits_batches(model: torch.nn.Module) -> None:
    assert split_to_budget([0, 1, 2, 3, 4], (100, 100), 10.0, 250_000, 8) == [[0, 1], [2, 3],
                                                                              [4]]
    assert split_to_budget([0, 1], (100, 100), 10.0, 1.0, 8) == [[0], [1]]  # one runs alone
    assert split_to_budget([0, 1, 2], (100, 100), 10.0, None, 2) == [[0, 1], [2]]
    images = [_image(i, (96, 128)) for i in range(4)]
    roomy = Detector(model, batch_size=4)
    tight = Detector(model, batch_size=4, memory_budget=2.5 * 96 * 128 * roomy.bytes_per_pixel)
    assert roomy.bytes_per_pixel > 100  # dozens of float32 maps per input pixel
    assert [len(b) for b in tight.planned_batches([(96, 128)] * 4)] == [2, 2]
    for a, b in zip(roomy.detect(images), tight.detect(images), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-3)


def test_optimized_detector_matches_within_tolerance() -> None:
    shipped, _ = dsfd.load_model("shipped")
    images = [_image(i, (120, 160)) for i in range(2)]
    plain = Detector(shipped)
    fast = Detector(shipped, optimize=True)
    assert fast.optimized and not plain.optimized
    assert fast.model is not plain.model
    for a, b in zip(plain.detect(images), fast.detect(images), strict=True):
        confident_a, confident_b = a[a[:, 4] > 0.5], b[b[:, 4] > 0.5]
        assert confident_a.shape == confident_b.shape
        np.testing.assert_allclose(confident_a, confident_b, rtol=1e-4, atol=1e-2)
