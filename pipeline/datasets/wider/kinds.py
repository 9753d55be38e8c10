"""The ``wider:`` and ``wider-gt:`` dataset kinds (see :mod:`pipeline.datasets.registry`).

``wider:ROOT[:split]`` is a WIDER FACE root (annotation txt plus images); split ``val`` by default
for images and ground truth, the caller's default (``train``) for face records. ``ROOT`` may be
an object-storage prefix (``wider:s3://bucket/wider:val``): the annotation files are read
through :mod:`pipeline.storage` and each image's path is its ``s3://`` URI.

``wider-gt:PATH`` is the official evaluation file ``wider_face_val.mat`` (``PATH`` is the folder
holding it, normally ``ROOT/eval_tools/ground_truth``, or the file itself):

* face records: boxes only. The images are absent, so each image is assumed to be a canvas of
  ``max(1024, right-most box edge)`` by ``max(768, lowest box edge)`` pixels (WIDER FACE images
  are 1024 pixels wide); the assumed size travels with every record. For box statistics
  (``dsfd anchors``); training refuses it (no image files).
* ground truth: the four evaluation files of the folder (keep lists included), or the boxes of
  the one file when the setting files are absent.
* images: the images of the ``.mat`` file, in its order, read from ``ROOT/WIDER_val/images``
  when ``PATH`` sits in the official layout; without that folder it cannot be opened.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from pipeline.datasets.face_record import FaceRecord, xywh_to_xyxy_filtered
from pipeline.datasets.manifest import ManifestEntry
from pipeline.datasets.registry import DatasetSpec, register
from pipeline.datasets.wider.dataset import SPLITS, WiderDataset, wider_images_dir
from pipeline.datasets.wider.eval_mat import (
    ALL_FACES_MAT,
    SETTING_MATS,
    load_wider_gt_dir,
    read_wider_eval_mat,
)
from pipeline.datasets.wider.records import WiderGroundTruth, WiderImageRecord, events_of
from pipeline.storage import Location

GT_CANVAS_WH: tuple[int, int] = (1024, 768)
"""``(width, height)``: the least canvas assumed for an image of a boxes-only source."""


class WiderSource(WiderDataset):
    """A :class:`WiderDataset` opened from a spec (adds ``name`` and ``kind``).

    Args:
        root: the WIDER root.
        split: the split.
        kind: the spec kind (``wider``, or ``synthetic`` for the part of a generated benchmark).
        name: the canonical spec (default ``KIND:ROOT:SPLIT``).
        extra: more keys of :meth:`describe` (a generated benchmark's identity).
    """

    def __init__(self, root: Location, split: str, kind: str, *, name: str | None = None,
                 extra: dict[str, Any] | None = None):
        super().__init__(root, split)
        self.kind = kind
        self.name = name or f"{kind}:{root}:{split}"
        self._extra = dict(extra or {})

    def describe(self) -> dict[str, Any]:
        """The reader's description plus ``kind`` (and ``extra``)."""
        return {**super().describe(), "kind": self.kind, **self._extra}


def wider_face_records(source: WiderDataset) -> list[FaceRecord]:
    """Face records of a WIDER split with annotations (image paths set)."""
    return [
        FaceRecord(r.image_id, r.path, xywh_to_xyxy_filtered(r.boxes_xywh))
        for r in source.records()
    ]


def _wider_source(spec: DatasetSpec, default_split: str) -> WiderSource:
    root, split = spec.path_and_split(default_split, SPLITS)
    if not root.is_dir():
        raise spec.error(f"WIDER FACE root {root} not found or not a directory")
    return WiderSource(root, split, "wider")


# ------------------------------------------------------------------------------------ wider-gt


def _gt_mat(spec: DatasetSpec) -> Location:
    path = spec.path()
    mat = path / ALL_FACES_MAT if path.is_dir() else path
    if not mat.is_file():
        raise spec.error(f"evaluation file {mat} not found")
    return mat


def _canvas_hw(boxes_xyxy: np.ndarray) -> tuple[int, int]:
    width, height = GT_CANVAS_WH
    if len(boxes_xyxy):
        width = max(width, int(np.ceil(boxes_xyxy[:, 2].max())))
        height = max(height, int(np.ceil(boxes_xyxy[:, 3].max())))
    return height, width


def gt_face_records(spec: DatasetSpec, default_split: str) -> list[FaceRecord]:
    """Boxes of ``wider_face_val.mat`` on assumed canvases (see the module docstring); the
    split is val whatever ``default_split`` says (the file holds val only)."""
    records, _ = read_wider_eval_mat(_gt_mat(spec))
    out = []
    for r in records:
        boxes = xywh_to_xyxy_filtered(r.boxes_xywh)
        out.append(FaceRecord(r.image_id, None, boxes, _canvas_hw(boxes)))
    return out


def gt_ground_truth(spec: DatasetSpec) -> WiderGroundTruth:
    """The four evaluation files of the folder, or the boxes of ``wider_face_val.mat`` alone
    (no keep lists) when the setting files are absent."""
    mat = _gt_mat(spec)
    if all((mat.parent / name).is_file() for name in SETTING_MATS.values()):
        return load_wider_gt_dir(mat.parent)
    records, _ = read_wider_eval_mat(mat)
    return WiderGroundTruth.from_records(records, source=str(mat))


class WiderGtSource:
    """The images of an evaluation ``.mat`` file, in its order, under the WIDER root it belongs
    to (``ROOT/eval_tools/ground_truth/wider_face_val.mat`` -> ``ROOT/WIDER_val/images``).

    Raises:
        FileNotFoundError: the image folder of that layout does not exist.
    """

    def __init__(self, mat: Location) -> None:
        self.mat = mat
        self.images_dir = wider_images_dir(mat.parent.parent.parent, "val")
        if mat.parent.parent.name != "eval_tools" or not self.images_dir.is_dir():
            raise FileNotFoundError(
                f"no images beside {mat} (expected ROOT/eval_tools/ground_truth/{mat.name} "
                "and ROOT/WIDER_val/images); wider-gt without images holds boxes only"
            )
        self.name = f"wider-gt:{mat}"
        self._records: list[WiderImageRecord] | None = None

    def records(self) -> list[WiderImageRecord]:
        """The file's records, in file order (read once)."""
        if self._records is None:
            self._records, _ = read_wider_eval_mat(self.mat)
        return self._records

    def iter_manifest(self) -> Iterator[ManifestEntry]:
        """One entry per image of the file (``EVENT/NAME``), sizes unknown."""
        for rec in self.records():
            path = self.images_dir / rec.event / f"{rec.name}.jpg"
            yield ManifestEntry(image_id=rec.image_id, path=str(path))

    def describe(self) -> dict[str, Any]:
        """Kind, file, image folder, image, face and event counts."""
        recs = self.records()
        return {
            "kind": "wider-gt",
            "path": str(self.mat),
            "images_dir": str(self.images_dir),
            "num_images": len(recs),
            "num_faces": int(sum(r.num_faces for r in recs)),
            "num_events": len(events_of(recs)),
        }


def open_wider(spec: DatasetSpec) -> WiderSource:
    """``wider:ROOT[:split]`` (val by default) as a source."""
    return _wider_source(spec, "val")


def wider_ground_truth(spec: DatasetSpec) -> WiderGroundTruth:
    """The split's ground truth (val by default): the ``.mat`` files when present, else the
    annotation txt (:meth:`WiderDataset.ground_truth`)."""
    return _wider_source(spec, "val").ground_truth()


def wider_records(spec: DatasetSpec, default_split: str) -> list[FaceRecord]:
    """Face records of ``wider:ROOT[:split]`` (``default_split`` when it names none)."""
    return wider_face_records(_wider_source(spec, default_split))


def open_wider_gt(spec: DatasetSpec) -> WiderGtSource:
    """``wider-gt:PATH`` as a source (its images must be in the official layout)."""
    return WiderGtSource(_gt_mat(spec))


register("wider", open_wider, grammar="wider:ROOT[:train|val|test]",
         ground_truth=wider_ground_truth, face_records=wider_records)
register("wider-gt", open_wider_gt, grammar="wider-gt:GT_DIR|MAT_FILE",
         ground_truth=gt_ground_truth, face_records=gt_face_records)
