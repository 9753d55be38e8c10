"""NMS and box voting against straightforward references (transcriptions of the originals)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dsfd import nms as nms_module
from dsfd.boxes import box_iou, box_iou_plus_one
from dsfd.nms import box_vote, greedy_clusters, nms, pair_iou
from tests.oracles.nms_reference import reference_bbox_vote, reference_nms


def random_boxes(n: int, seed: int, span: float = 200.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, span, (n, 2))
    wh = rng.uniform(4, 60, (n, 2))
    boxes = np.concatenate((xy, xy + wh), axis=1).astype(np.float32)
    scores = rng.uniform(0, 1, n).astype(np.float32)
    scores[: n // 10] = 0.5  # ties
    return boxes, scores


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("block_size", [7, 64, 1024])
def test_nms_matches_reference(seed: int, block_size: int) -> None:
    boxes, scores = random_boxes(300, seed)
    want = reference_nms(boxes.astype(np.float64), scores.astype(np.float64), 0.3)
    order = torch.sort(torch.from_numpy(scores), descending=True, stable=True).indices
    leaders, _ = greedy_clusters(torch.from_numpy(boxes)[order], 0.3, block_size=block_size)
    assert order[leaders].tolist() == want
    got = nms(torch.from_numpy(boxes), torch.from_numpy(scores), 0.3, block_size=block_size)
    assert got.tolist() == want


def test_nms_edge_cases() -> None:
    assert nms(torch.zeros(0, 4), torch.zeros(0)).numel() == 0
    one = nms(torch.tensor([[0.0, 0.0, 1.0, 1.0]]), torch.tensor([0.5]))
    assert one.tolist() == [0]
    # IoU exactly 0.3 is kept (suppression needs IoU > 0.3): 3 boxes, 10x10, offset gives 0.3
    a = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0 * 0.3 / 1.3 * 2]])
    iou = box_iou(a[:1], a[1:]).item()
    kept = nms(a, torch.tensor([0.9, 0.8]), iou)
    assert kept.tolist() == [0, 1]


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("block_size", [5, 1024])
def test_box_vote_matches_reference(seed: int, block_size: int) -> None:
    boxes, scores = random_boxes(400, seed, span=120.0)
    det = np.concatenate((boxes, scores[:, None]), axis=1).astype(np.float64)
    want = reference_bbox_vote(det.copy())
    got = box_vote(torch.from_numpy(det), block_size=block_size).numpy()
    assert got.dtype == np.float32
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-4)


def test_box_vote_drops_singletons_and_caps() -> None:
    lonely = torch.tensor([[0.0, 0.0, 10.0, 10.0, 0.9], [50.0, 50.0, 60.0, 60.0, 0.8]])
    assert box_vote(lonely).shape == (0, 5)
    assert box_vote(torch.zeros(0, 5)).shape == (0, 5)
    pair = torch.tensor([[0.0, 0.0, 10.0, 10.0, 0.75], [2.0, 0.0, 12.0, 10.0, 0.25]])
    got = box_vote(pair)
    torch.testing.assert_close(got, torch.tensor([[0.5, 0.0, 10.5, 10.0, 0.75]]))
    many = torch.cat([torch.tensor([[i * 100.0, 0, i * 100.0 + 10, 10, 0.5]]).repeat(2, 1)
                      for i in range(800)])
    assert box_vote(many).shape == (750, 5)
    assert box_vote(many, top_k=None).shape == (800, 5)


def test_plus_one_iou_is_used_for_voting() -> None:
    # two 1-px-wide boxes touching: no overlap without +1, IoU 1/3 with +1 -> one group
    pair = torch.tensor([[0.0, 0.0, 0.0, 0.0, 0.9], [1.0, 0.0, 1.0, 0.0, 0.8]])
    assert box_iou_plus_one(pair[:1, :4], pair[1:, :4]).item() == 0.0
    close = torch.tensor([[0.0, 0.0, 1.0, 1.0, 0.9], [1.0, 0.0, 2.0, 1.0, 0.8]])
    assert box_iou_plus_one(close[:1, :4], close[1:, :4]).item() == pytest.approx(1 / 3)
    assert box_vote(close).shape == (1, 5)


# --- the sparse (bucketed grid) and dense paths: identical leaders and groups -------------


def mixed_boxes(n: int, seed: int) -> np.ndarray:
    """Clusters of near-duplicates, scattered boxes of all sizes, exact duplicates,
    degenerate and negative-coordinate boxes: ``[n, 4]`` float32."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(-50, 400, (12, 2))
    sizes = np.exp(rng.uniform(np.log(2), np.log(300), 12))
    k = rng.integers(0, 12, n // 2)
    c = centres[k] + rng.normal(0, 0.2, (k.size, 2)) * sizes[k, None]
    wh = sizes[k, None] * np.exp(rng.normal(0, 0.2, (k.size, 2)))
    clustered = np.concatenate((c - wh / 2, c + wh / 2), axis=1)
    xy = rng.uniform(-100, 500, (n - k.size, 2))
    wh = np.exp(rng.uniform(np.log(0.5), np.log(400), (n - k.size, 2)))
    scattered = np.concatenate((xy, xy + wh), axis=1)
    boxes = np.concatenate((clustered, scattered)).astype(np.float32)
    boxes[5:9] = boxes[0]  # exact duplicates
    boxes[10, 2] = boxes[10, 0]  # zero width
    boxes[11, 2] = boxes[11, 0] - 3  # negative width
    return boxes[rng.permutation(n)]


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize(("thresh", "inclusive", "plus_one"),
                         [(0.3, False, False), (0.3, True, True), (0.5, False, False),
                          (0.7, True, True), (1.0, True, False), (0.05, False, True)])
def test_sparse_equals_dense(seed: int, thresh: float, inclusive: bool, plus_one: bool) -> None:
    boxes = torch.from_numpy(mixed_boxes(700, seed))
    iou_fn = box_iou_plus_one if plus_one else box_iou
    dense = greedy_clusters(boxes, thresh, iou_fn=iou_fn, inclusive=inclusive, method="dense",
                            block_size=128)
    sparse = greedy_clusters(boxes, thresh, iou_fn=iou_fn, inclusive=inclusive,
                             method="sparse")
    assert torch.equal(dense[0], sparse[0])
    assert torch.equal(dense[1], sparse[1])


def test_sparse_nms_and_vote_match_references() -> None:
    boxes = mixed_boxes(400, 7)
    scores = np.random.default_rng(7).uniform(0, 1, 400).astype(np.float32)
    scores[:40] = 0.5  # ties
    want = reference_nms(boxes.astype(np.float64), scores.astype(np.float64), 0.3)
    for method in ("sparse", "dense", "auto"):
        got = nms(torch.from_numpy(boxes), torch.from_numpy(scores), 0.3, method=method)
        assert got.tolist() == want
    valid = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])  # the reference loops
    det = np.concatenate((boxes, scores[:, None]), axis=1).astype(np.float64)[valid]
    want_vote = reference_bbox_vote(det.copy())
    for method in ("sparse", "dense"):
        got_vote = box_vote(torch.from_numpy(det), method=method).numpy()
        np.testing.assert_allclose(got_vote, want_vote, rtol=1e-6, atol=1e-4)


@pytest.mark.parametrize("plus_one", [False, True])
def test_pair_iou_has_the_bits_of_the_matrix_iou(plus_one: bool) -> None:
    boxes = torch.from_numpy(mixed_boxes(300, 3)).double()
    a, b = boxes[:150], boxes[150:]
    matrix = (box_iou_plus_one if plus_one else box_iou)(a, b)  # [150, 150]
    rows = torch.arange(150).repeat_interleave(150)
    cols = torch.arange(150).repeat(150)
    paired = pair_iou(a[rows], b[cols], plus_one=plus_one)
    assert torch.equal(paired.view(150, 150).nan_to_num(-1.0), matrix.nan_to_num(-1.0))


def test_long_suppression_chain_finishes_sequentially(monkeypatch: pytest.MonkeyPatch) -> None:
    # each box overlaps the next with IoU 0.43 (the one after with 0.11): leaders alternate
    # down a chain of 300, which needs ~300 fixed-point steps; with the cap at 2 the
    # sequential finish must agree
    x = torch.arange(300, dtype=torch.float32) * 4.0
    boxes = torch.stack((x, torch.zeros(300), x + 10.0, torch.full((300,), 10.0)), dim=1)
    want = greedy_clusters(boxes, 0.3, method="dense", block_size=1024)
    assert want[0].tolist() == list(range(0, 300, 2))
    monkeypatch.setattr(nms_module, "MAX_FIXED_POINT_STEPS", 2)
    for method in ("sparse", "dense"):
        got = greedy_clusters(boxes, 0.3, method=method, block_size=64)
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


def test_paths_agree_on_inputs_the_sparse_path_refuses() -> None:
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 0.0, 11.0, 10.0],
                          [float("inf"), 0.0, float("inf"), 1.0], [2.0, 0.0, 12.0, 10.0]])
    for method in ("sparse", "dense"):
        leaders, group = greedy_clusters(boxes, 0.3, method=method)
        assert leaders.tolist() == [0, 2] and group.tolist() == [0, 0, 1, 0]
    with pytest.raises(ValueError, match="method"):
        greedy_clusters(boxes, 0.3, method="fast")


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("kind", ["clustered", "scattered"])
def test_loop_sweep_auto_match_references(seed: int, kind: str) -> None:
    rng = np.random.default_rng(seed)
    if kind == "clustered":  # few kept: many near-duplicates of a few faces
        boxes = mixed_boxes(600, seed)[:300]
        boxes = np.concatenate([boxes + rng.normal(0, 1.5, boxes.shape) for _ in range(2)])
    else:  # many kept
        xy = rng.uniform(0, 2000, (600, 2))
        boxes = np.concatenate((xy, xy + rng.uniform(4, 200, (600, 2))), axis=1)
    boxes = boxes.astype(np.float32)
    scores = rng.uniform(0, 1, boxes.shape[0]).astype(np.float32)
    scores[:50] = 0.5  # ties
    want = reference_nms(boxes.astype(np.float64), scores.astype(np.float64), 0.3)
    for method in ("window", "loop", "sweep", "auto", "dense"):
        got = nms(torch.from_numpy(boxes), torch.from_numpy(scores), 0.3, method=method)
        assert got.tolist() == want, method
        capped = nms(torch.from_numpy(boxes), torch.from_numpy(scores), 0.3, method=method,
                     max_kept=7)
        assert capped.tolist() == want[:7], method
    valid = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    det = np.concatenate((boxes, scores[:, None]), axis=1).astype(np.float64)[valid]
    want_vote = reference_bbox_vote(det.copy())
    dense = box_vote(torch.from_numpy(det), method="dense")
    for method in ("window", "loop", "sweep", "auto"):
        got_vote = box_vote(torch.from_numpy(det), method=method)
        np.testing.assert_allclose(got_vote.numpy(), want_vote, rtol=1e-6, atol=1e-4)
        assert torch.equal(got_vote, dense), method


@pytest.mark.parametrize("seed", range(2))
@pytest.mark.parametrize(("thresh", "inclusive", "plus_one"),
                         [(0.3, False, False), (0.3, True, True), (0.7, True, True),
                          (0.05, False, True)])
def test_loop_and_sweep_equal_dense(seed: int, thresh: float, inclusive: bool,
                                    plus_one: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    boxes = torch.from_numpy(mixed_boxes(700, seed))
    iou_fn = box_iou_plus_one if plus_one else box_iou
    dense = greedy_clusters(boxes, thresh, iou_fn=iou_fn, inclusive=inclusive, method="dense")
    for method in ("window", "loop", "sweep", "auto"):
        got = greedy_clusters(boxes, thresh, iou_fn=iou_fn, inclusive=inclusive, method=method)
        assert torch.equal(dense[0], got[0]) and torch.equal(dense[1], got[1]), method
    monkeypatch.setattr(nms_module, "LOOP_BUDGET_SHARE", 1e-4)  # the loop, then the sweep
    got = nms_module._auto_clusters(boxes, thresh, inclusive, plus_one, None,
                                    nms_module.SPARSE_MAX_PAIRS)
    assert torch.equal(dense[0], got[0]) and torch.equal(dense[1], got[1])
    # the compiled window, float32 and float64, stopped early
    for dtype in (torch.float32, torch.float64):
        b = boxes.to(dtype)
        want = greedy_clusters(b, thresh, iou_fn=iou_fn, inclusive=inclusive, method="dense")
        got = greedy_clusters(b, thresh, iou_fn=iou_fn, inclusive=inclusive, method="window",
                              max_leaders=5)
        assert torch.equal(want[0][:5], got[0])


@pytest.mark.parametrize("plus_one", [False, True])
def test_window_matches_the_loop_on_detector_like_boxes(plus_one: bool) -> None:
    """Thousands of boxes at every size (anchor pyramid + noise), many equal coordinates."""
    rng = np.random.default_rng(5)
    sizes = rng.choice([16.0, 32.0, 64.0, 128.0, 256.0, 512.0], 3000)
    centre = rng.uniform(0, 640, (3000, 2))
    wh = sizes[:, None] * np.exp(rng.normal(0, 0.3, (3000, 2)))
    boxes = np.concatenate((centre - wh / 2, centre + wh / 2), axis=1).astype(np.float32)
    boxes[100:200] = boxes[0]  # exact duplicates
    boxes[200:300, 0] = boxes[300:400, 0]  # shared x1
    b = torch.from_numpy(boxes)
    iou_fn = box_iou_plus_one if plus_one else box_iou
    for thresh, inclusive in ((0.3, False), (0.3, True), (0.9, False), (0.01, True)):
        loop = greedy_clusters(b, thresh, iou_fn=iou_fn, inclusive=inclusive, method="loop")
        window = greedy_clusters(b, thresh, iou_fn=iou_fn, inclusive=inclusive,
                                 method="window")
        assert torch.equal(loop[0], window[0]) and torch.equal(loop[1], window[1])
