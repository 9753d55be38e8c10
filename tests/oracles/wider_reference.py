"""Slow, line-by-line transcription of the two WIDER evaluators (test oracle and benchmark
baseline). Plain Python loops over images, detections and thresholds, mirroring
``eval_tools/evaluation.m`` (with ``boxoverlap.m`` in int32 arithmetic, ``norm_score.m``,
``VOCap.m``) and the wondervictor port's ``evaluation.py``. Use
:func:`reports.wider.evaluate_run` for real work; this exists to be obviously right.
"""

from __future__ import annotations

import math

import numpy as np

from pipeline.datasets.wider import SETTINGS, WiderGroundTruth
from reports.wider.predictions import EMPTY, WiderPredictions

THRESH_NUM = 1000
_INT32_MAX = 2**31 - 1
_INT32_MIN = -(2**31)


def matlab_round(v: float) -> float:
    """Nearest integer, halves away from zero."""
    a = abs(v)
    f = math.floor(a)
    return math.copysign(f + (1 if a - f >= 0.5 else 0), v)


def to_int32(v: float) -> int:
    """MATLAB's double -> int32 conversion."""
    if math.isnan(v):
        return 0
    if math.isinf(v):
        return _INT32_MAX if v > 0 else _INT32_MIN
    return int(min(max(matlab_round(v), _INT32_MIN), _INT32_MAX))


def int_divide(a: int, b: int) -> int:
    """int32 ./ int32: rounded quotient; x/0 saturates, 0/0 is 0."""
    if b == 0:
        return _INT32_MAX if a > 0 else (_INT32_MIN if a < 0 else 0)
    return to_int32(a / b)


def boxoverlap_int32(gt: list[list[int]], det: list[float]) -> list[int]:
    """``boxoverlap(gt, det)`` with int32 ``gt`` corners and a double detection row."""
    out = []
    b = [to_int32(v) for v in det]
    barea = (det[2] - det[0] + 1) * (det[3] - det[1] + 1)
    for a in gt:
        x1, y1 = max(a[0], b[0]), max(a[1], b[1])
        x2, y2 = min(a[2], b[2]), min(a[3], b[3])
        w, h = x2 - x1 + 1, y2 - y1 + 1
        inter = w * h
        aarea = (a[2] - a[0] + 1) * (a[3] - a[1] + 1)
        o = int_divide(inter, to_int32(aarea + barea) - inter)
        out.append(0 if w <= 0 or h <= 0 else o)
    return out


def bbox_overlaps_port(det: list[float], gt: list[list[float]]) -> list[float]:
    """The port's Cython ``bbox_overlaps`` for one detection row against all GT rows."""
    out = []
    for q in gt:
        box_area = (q[2] - q[0] + 1) * (q[3] - q[1] + 1)
        iw = min(det[2], q[2]) - max(det[0], q[0]) + 1
        o = 0.0
        if iw > 0:
            ih = min(det[3], q[3]) - max(det[1], q[1]) + 1
            if ih > 0:
                ua = float((det[2] - det[0] + 1) * (det[3] - det[1] + 1) + box_area - iw * ih)
                o = iw * ih / ua
        out.append(o)
    return out


def _image_eval(gt_xywh, det_rows, ignore, flavour):
    """``image_evaluation``: per detection, greedy matching against the first maximal GT."""
    gt = [[g[0], g[1], g[0] + g[2], g[1] + g[3]] for g in gt_xywh]
    recall_list = [0] * len(gt)
    proposal_list = [1] * len(det_rows)
    pred_recall = [0] * len(det_rows)
    for h, d in enumerate(det_rows):
        box = [d[0], d[1], d[0] + d[2], d[1] + d[3]]
        if flavour == "matlab":
            overlaps: list = boxoverlap_int32(gt, box)
        else:
            overlaps = bbox_overlaps_port(box, [[float(v) for v in g] for g in gt])
        max_overlap = max(overlaps)
        idx = overlaps.index(max_overlap)
        if max_overlap >= 0.5:
            if ignore[idx] == 0:
                recall_list[idx] = -1
                proposal_list[h] = -1
            elif recall_list[idx] == 0:
                recall_list[idx] = 1
        pred_recall[h] = sum(1 for r in recall_list if r == 1)
    return pred_recall, proposal_list


def _image_pr_info(scores, proposal_list, pred_recall):
    """``image_pr_info``: per threshold, the last detection at or above it."""
    scores = np.asarray(scores, dtype=np.float64)
    info = [[0, 0] for _ in range(THRESH_NUM)]
    for t in range(1, THRESH_NUM + 1):
        thresh = 1 - t / THRESH_NUM
        passed = np.where(scores >= thresh)[0]
        if len(passed):
            r_index = int(passed[-1])
            info[t - 1][0] = sum(1 for p in proposal_list[: r_index + 1] if p == 1)
            info[t - 1][1] = pred_recall[r_index]
    return info


def _normalised(pred: WiderPredictions, gt: WiderGroundTruth) -> dict[str, list[float]]:
    """``norm_score`` of each flavour over the images the tool normalises."""
    dets = dict(pred.images)
    if pred.flavour == "pyport":
        dets.update(pred.extra)
        hi, lo = 0.0, 1.0
        for d in dets.values():
            if len(d):
                hi = max(float(np.max(d.scores)), hi)
                lo = min(float(np.min(d.scores)), lo)
        return {k: [(s - lo) / (hi - lo) for s in d.scores.tolist()] for k, d in dets.items()}
    f32 = np.float32
    hi32, lo32 = f32(np.finfo(f32).tiny), f32(np.finfo(f32).max)
    for d in dets.values():
        for s in d.scores.tolist():
            hi32, lo32 = max(hi32, f32(s)), min(lo32, f32(s))
    return {
        k: [float((f32(s) - lo32) / (hi32 - lo32)) for s in d.scores.tolist()]
        for k, d in dets.items()
    }


def reference_evaluate(pred: WiderPredictions, gt: WiderGroundTruth) -> dict[str, float]:
    """Easy/medium/hard AP by the transcribed tool of ``pred.flavour`` (slow)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        norm = _normalised(pred, gt)
    aps = {}
    for setting in SETTINGS:
        count_face = 0
        pr_curve = [[0, 0] for _ in range(THRESH_NUM)]
        for image in gt:
            det = pred.images.get(image.image_id, EMPTY)
            keep = image.keep[setting].tolist()
            count_face += len(keep)
            if len(image.boxes_xywh) == 0 or len(det) == 0:
                continue
            ignore = [0] * len(image.boxes_xywh)
            for k in keep:
                ignore[k] = 1
            rows = det.boxes_xywh.tolist()
            scores = norm[image.image_id]
            if det.threshold_scores is not None:
                scores = det.threshold_scores.tolist()
            gt_rows = image.boxes_xywh.tolist()
            pred_recall, proposal_list = _image_eval(gt_rows, rows, ignore, pred.flavour)
            info = _image_pr_info(scores, proposal_list, pred_recall)
            for t in range(THRESH_NUM):
                pr_curve[t][0] += info[t][0]
                pr_curve[t][1] += info[t][1]
        precision = [tp / p if p else math.nan for p, tp in pr_curve]
        recall = [tp / count_face if count_face else math.nan for _, tp in pr_curve]
        aps[setting] = _voc_ap(recall, precision, pred.flavour)
    return aps


def _voc_ap(rec: list[float], prec: list[float], flavour: str) -> float:
    mrec = [0.0, *rec, 1.0]
    mpre = [0.0, *prec, 0.0]
    for i in range(len(mpre) - 2, -1, -1):
        a, b = mpre[i], mpre[i + 1]
        if flavour == "matlab":  # MATLAB max ignores NaN
            mpre[i] = b if math.isnan(a) else (a if math.isnan(b) else max(a, b))
        else:  # np.maximum propagates NaN
            mpre[i] = math.nan if math.isnan(a) or math.isnan(b) else max(a, b)
    idx = [i for i in range(1, len(mrec)) if mrec[i] != mrec[i - 1]]
    terms = [(mrec[i] - mrec[i - 1]) * mpre[i] for i in idx]
    if flavour == "matlab":
        total = 0.0
        for t in terms:
            total += t
        return total
    return float(np.sum(np.asarray(terms, dtype=np.float64)))
