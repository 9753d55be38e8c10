"""Golden values and invariances of the box maths."""

from __future__ import annotations

import math

import pytest
import torch

from dsfd.boxes import box_iou, box_iou_plus_one, cxcywh_to_xyxy, decode, encode, xyxy_to_cxcywh


def test_box_iou_golden() -> None:
    a = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 0.0, 0.0]])
    b = torch.tensor([[5.0, 0.0, 15.0, 10.0], [20.0, 20.0, 30.0, 30.0], [0.0, 0.0, 10.0, 10.0]])
    iou = box_iou(a, b)
    assert iou.shape == (2, 3)
    torch.testing.assert_close(iou[0], torch.tensor([50 / 150, 0.0, 1.0]))
    assert torch.all(iou[1] == 0)  # empty box: no NaN


def test_box_iou_plus_one_golden() -> None:
    a = torch.tensor([[0.0, 0.0, 9.0, 9.0]])
    b = torch.tensor([[5.0, 0.0, 14.0, 9.0], [0.0, 0.0, 0.0, 0.0]])
    # +1 convention: areas 100 and 100, intersection 5*10 = 50 -> 50/150; degenerate box area 1
    torch.testing.assert_close(box_iou_plus_one(a, b), torch.tensor([[50 / 150, 1 / 100]]))


def test_format_round_trip() -> None:
    boxes = torch.tensor([[1.0, 2.0, 5.0, 10.0]])
    torch.testing.assert_close(xyxy_to_cxcywh(boxes), torch.tensor([[3.0, 6.0, 4.0, 8.0]]))
    torch.testing.assert_close(cxcywh_to_xyxy(xyxy_to_cxcywh(boxes)), boxes)


def test_encode_golden() -> None:
    anchors = torch.tensor([[0.0, 0.0, 10.0, 20.0]])  # cx 5, cy 10, w 10, h 20
    gt = torch.tensor([[1.0, 2.0, 11.0, 42.0]])  # cx 6, cy 22, w 10, h 40
    want = torch.tensor([[1 / (0.1 * 10), 12 / (0.1 * 20), 0.0, math.log(2) / 0.2]])
    torch.testing.assert_close(encode(gt, anchors), want)


def test_encode_decode_round_trip() -> None:
    g = torch.Generator().manual_seed(0)
    anchors = torch.rand(500, 2, generator=g) * 600
    anchors = torch.cat((anchors, anchors + 5 + torch.rand(500, 2, generator=g) * 300), dim=1)
    gt = torch.rand(500, 2, generator=g) * 600
    gt = torch.cat((gt, gt + 1 + torch.rand(500, 2, generator=g) * 300), dim=1)
    deltas = encode(gt, anchors)
    torch.testing.assert_close(decode(deltas, anchors), gt, rtol=1e-5, atol=1e-3)
    # decode broadcasts over a batch dimension
    batch = decode(torch.stack((deltas, deltas)), anchors)
    assert batch.shape == (2, 500, 4)


def test_bad_shapes_raise() -> None:
    with pytest.raises(ValueError, match="shape"):
        box_iou(torch.zeros(3, 5), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="anchors"):
        decode(torch.zeros(3, 4), torch.zeros(2, 4))
    with pytest.raises(TypeError):
        encode([[0, 0, 1, 1]], torch.zeros(1, 4))  # type: ignore[arg-type]
