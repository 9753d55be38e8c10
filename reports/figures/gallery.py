"""Galleries of the worst mistakes of a run: high-scoring false positives and large misses.

No official tool draws these; they are for looking, not for scoring, so the matching here is
the plain one (float IoU of ``xyxy`` boxes, no +1, threshold 0.5) rather than either
evaluator's quirks:

- a *false positive* is a detection whose IoU with every ground-truth box of its image (kept
  or not, so an ignored face is not called a false positive) is below 0.5; the gallery shows the
  highest-scoring ones;
- a *miss* is a face kept in ``setting`` that no detection with score >= ``miss_score`` covers
  at IoU >= 0.5; the gallery shows the largest ones (a missed big face is the worst miss).

Tiles are crops around the box with context, drawn with Pillow: the false positive or the
missed face in red, the other ground-truth faces in green.
"""

from __future__ import annotations

import os
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from pipeline.boxes import box_iou, xywh_to_xyxy
from pipeline.datasets.folder import unescape_path
from pipeline.datasets.wider import WiderGroundTruth
from pipeline.images import ImageReadError, decode_image
from pipeline.rundir import RunDir

TILE = 144
IOU_THRESH = 0.5


@dataclass(frozen=True)
class GalleryItem:
    """One mistake: the image, the box (xyxy pixels) and its score (NaN for a miss)."""

    kind: str  # "false_positive" | "miss"
    image_id: str
    path: str
    box_xyxy: tuple[float, float, float, float]
    score: float


def find_mistakes(
    run_dir: str | os.PathLike[str],
    gt: WiderGroundTruth,
    setting: str = "hard",
    num_items: int = 12,
    miss_score: float = 0.5,
) -> tuple[list[GalleryItem], list[GalleryItem]]:
    """The worst false positives (by score) and misses (by face area) of a run.

    Args:
        run_dir: a run directory (detections and images tables).
        gt: WIDER ground truth of the run's images.
        setting: which keep list defines the faces that can be missed.
        num_items: at most this many of each kind.
        miss_score: detections below this raw score do not rescue a face from being a miss.

    Returns:
        (false_positives, misses), each sorted worst first.
    """
    run = RunDir.open(run_dir)
    dets = run.detections().to_pandas()
    images = run.images().to_pandas()
    paths = dict(zip(images["image_id"], images["path"], strict=True))
    by_image = {k: v for k, v in dets.groupby("image_id", sort=False)} if len(dets) else {}
    fps: list[GalleryItem] = []
    misses: list[tuple[float, GalleryItem]] = []
    for img in gt:
        if img.image_id not in paths:
            continue
        gt_boxes = xywh_to_xyxy(img.boxes_xywh)
        d = by_image.get(img.image_id)
        boxes = d[["x1", "y1", "x2", "y2"]].to_numpy(np.float64) if d is not None else None
        scores = d["score"].to_numpy(np.float64) if d is not None else np.zeros(0)
        if boxes is None:
            boxes = np.zeros((0, 4))
        iou = box_iou(boxes, gt_boxes) if len(gt_boxes) else np.zeros((len(boxes), 0))
        best = iou.max(axis=1) if iou.shape[1] else np.zeros(len(boxes))
        for k in np.flatnonzero(best < IOU_THRESH):
            fps.append(GalleryItem("false_positive", img.image_id, paths[img.image_id],
                                   tuple(boxes[k].tolist()), float(scores[k])))  # type: ignore[arg-type]
        keep = img.keep.get(setting, np.zeros(0, np.int64))
        strong = scores >= miss_score
        covered = np.asarray((iou[strong] >= IOU_THRESH).any(axis=0)) if strong.any() \
            else np.zeros(len(gt_boxes), bool)
        for j in keep:
            w, h = img.boxes_xywh[j, 2], img.boxes_xywh[j, 3]
            if not covered[j] and w > 0 and h > 0:
                misses.append((float(w) * float(h), GalleryItem(
                    "miss", img.image_id, paths[img.image_id],
                    tuple(gt_boxes[j].tolist()), float("nan"))))  # type: ignore[arg-type]
    fps.sort(key=lambda it: -it.score)
    misses.sort(key=lambda pair: -pair[0])
    return fps[:num_items], [m for _, m in misses[:num_items]]


def _unreadable_tile(reason: str) -> Image.Image:
    """A grey TILE x TILE tile that says the image could not be read, and why."""
    tile = Image.new("RGB", (TILE, TILE), "#d1d5db")
    draw = ImageDraw.Draw(tile)
    lines = ["cannot read image:", *textwrap.wrap(reason, width=TILE // 6)][:TILE // 12 - 1]
    for k, line in enumerate(lines):  # Pillow's default font: about 6 x 11 pixels a glyph
        draw.text((4, 4 + 12 * k), line, fill="black")
    return tile


def _tile(item: GalleryItem, gt: WiderGroundTruth) -> Image.Image:
    """A TILE x TILE crop around the item's box with the boxes drawn.

    The image is decoded as the run decoded it (:func:`pipeline.images.decode_image`, EXIF
    orientation applied), so the boxes land where the detector saw the face; an image that
    cannot be read gives a grey tile with the reason.
    """
    try:
        im = Image.fromarray(decode_image(unescape_path(item.path)).pixels)
    except ImageReadError as exc:
        return _unreadable_tile(str(exc))
    x1, y1, x2, y2 = item.box_xyxy
    side = max(x2 - x1, y2 - y1, 16.0) * 2.5
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    left, top = cx - side / 2, cy - side / 2
    crop = im.crop((int(left), int(top), int(left + side), int(top + side)))
    scale = TILE / max(crop.width, 1)
    crop = crop.resize((TILE, TILE), Image.Resampling.BILINEAR)
    draw = ImageDraw.Draw(crop)

    def rect(box: np.ndarray | tuple[float, ...], colour: str, width: int) -> None:
        bx1, by1, bx2, by2 = box
        draw.rectangle([(bx1 - int(left)) * scale, (by1 - int(top)) * scale,
                        (bx2 - int(left)) * scale, (by2 - int(top)) * scale],
                       outline=colour, width=width)

    for box in xywh_to_xyxy(gt[item.image_id].boxes_xywh):
        rect(tuple(box.tolist()), "#22c55e", 1)
    rect(item.box_xyxy, "#ef4444", 2)
    return crop


def draw_gallery(
    items: list[GalleryItem], gt: WiderGroundTruth, path: str | os.PathLike[str],
    columns: int = 6,
) -> Path | None:
    """Draw ``items`` as a grid of captioned tiles into a PNG; None when there are none."""
    if not items:
        return None
    rows = (len(items) + columns - 1) // columns
    caption = 16
    sheet = Image.new("RGB", (columns * (TILE + 4), rows * (TILE + caption + 4)), "white")
    draw = ImageDraw.Draw(sheet)
    for k, item in enumerate(items):
        r, c = divmod(k, columns)
        x, y = c * (TILE + 4), r * (TILE + caption + 4)
        sheet.paste(_tile(item, gt), (x, y))
        x1, y1, x2, y2 = item.box_xyxy
        text = (f"score {item.score:.3f}" if item.kind == "false_positive"
                else f"{x2 - x1:.0f}x{y2 - y1:.0f} px")
        draw.text((x + 2, y + TILE + 2), text, fill="black")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path
