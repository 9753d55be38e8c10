"""Slow, obviously correct transcriptions of the originals' NMS and box voting.

They are the oracles of ``tests/dsfd/test_nms.py`` and the baselines of
``benchmarks/bench_postprocess.py`` (one copy for both): one box at a time, as ssd.pytorch's
``nms`` and the official ``bbox_vote`` of widerface_val.py compute them. Not for production use.
"""

from __future__ import annotations

import numpy as np


def reference_nms(boxes: np.ndarray, scores: np.ndarray, thresh: float) -> list[int]:
    """ssd.pytorch-style greedy NMS, one box at a time (stable descending order)."""
    order = list(np.argsort(-scores, kind="stable"))
    keep: list[int] = []
    while order:
        i = order.pop(0)
        keep.append(i)
        rest = []
        for j in order:
            xx1, yy1 = max(boxes[i, 0], boxes[j, 0]), max(boxes[i, 1], boxes[j, 1])
            xx2, yy2 = min(boxes[i, 2], boxes[j, 2]), min(boxes[i, 3], boxes[j, 3])
            inter = max(0.0, xx2 - xx1) * max(0.0, yy2 - yy1)
            area_i = (boxes[i, 2] - boxes[i, 0]) * (boxes[i, 3] - boxes[i, 1])
            area_j = (boxes[j, 2] - boxes[j, 0]) * (boxes[j, 3] - boxes[j, 1])
            if inter / (area_i + area_j - inter) <= thresh:
                rest.append(j)
        order = rest
    return keep


def reference_bbox_vote(det: np.ndarray) -> np.ndarray:
    """The official ``bbox_vote`` of widerface_val.py (HEAD version), with a stable sort."""
    order = np.argsort(-det[:, 4], kind="stable")
    det = det[order, :]
    dets = np.zeros((0, 5))
    while det.shape[0] > 0:
        area = (det[:, 2] - det[:, 0] + 1) * (det[:, 3] - det[:, 1] + 1)
        xx1 = np.maximum(det[0, 0], det[:, 0])
        yy1 = np.maximum(det[0, 1], det[:, 1])
        xx2 = np.minimum(det[0, 2], det[:, 2])
        yy2 = np.minimum(det[0, 3], det[:, 3])
        w = np.maximum(0.0, xx2 - xx1 + 1)
        h = np.maximum(0.0, yy2 - yy1 + 1)
        inter = w * h
        o = inter / (area[0] + area[:] - inter)
        merge_index = np.where(o >= 0.3)[0]
        det_accu = det[merge_index, :]
        det = np.delete(det, merge_index, 0)
        if merge_index.shape[0] <= 1:
            continue
        det_accu[:, 0:4] = det_accu[:, 0:4] * np.tile(det_accu[:, -1:], (1, 4))
        max_score = np.max(det_accu[:, 4])
        det_accu_sum = np.zeros((1, 5))
        det_accu_sum[:, 0:4] = np.sum(det_accu[:, 0:4], axis=0) / np.sum(det_accu[:, -1:])
        det_accu_sum[:, 4] = max_score
        dets = np.vstack((dets, det_accu_sum))
    return dets[0:750, :]
