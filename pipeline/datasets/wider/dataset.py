"""A WIDER FACE dataset root: layout, manifest and ground truth of one split.

Layout of a dataset root, real or synthetic::

    ROOT/WIDER_{train,val}/images/EVENT/NAME.jpg
    ROOT/wider_face_split/wider_face_{train,val}_bbx_gt.txt
    ROOT/eval_tools/ground_truth/{wider_face_val,wider_easy_val,wider_medium_val,wider_hard_val}.mat
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, overload

from pipeline.datasets.manifest import ManifestEntry
from pipeline.datasets.wider.annotations import read_wider_annotations
from pipeline.datasets.wider.eval_mat import ALL_FACES_MAT, load_wider_gt_dir
from pipeline.datasets.wider.records import (
    WiderGroundTruth,
    WiderImageRecord,
    events_of,
    split_image_id,
)
from pipeline.storage import Location, ObjectPath, iter_object_files, location

SPLITS: tuple[str, ...] = ("train", "val", "test")


@overload
def _root(root: ObjectPath) -> ObjectPath: ...
@overload
def _root(root: str | os.PathLike[str]) -> Path: ...
def _root(root: str | os.PathLike[str] | ObjectPath) -> Location:
    """An :class:`ObjectPath` as it is, anything else as a local :class:`Path`."""
    return root if isinstance(root, ObjectPath) else Path(root)


@overload
def wider_annotation_path(root: ObjectPath, split: str) -> ObjectPath: ...
@overload
def wider_annotation_path(root: str | os.PathLike[str], split: str) -> Path: ...
def wider_annotation_path(root: str | os.PathLike[str] | ObjectPath, split: str) -> Location:
    """``ROOT/wider_face_split/wider_face_{split}_bbx_gt.txt``."""
    return _root(root) / "wider_face_split" / f"wider_face_{split}_bbx_gt.txt"


@overload
def wider_images_dir(root: ObjectPath, split: str) -> ObjectPath: ...
@overload
def wider_images_dir(root: str | os.PathLike[str], split: str) -> Path: ...
def wider_images_dir(root: str | os.PathLike[str] | ObjectPath, split: str) -> Location:
    """``ROOT/WIDER_{split}/images``."""
    return _root(root) / f"WIDER_{split}" / "images"


@overload
def wider_gt_dir(root: ObjectPath) -> ObjectPath: ...
@overload
def wider_gt_dir(root: str | os.PathLike[str]) -> Path: ...
def wider_gt_dir(root: str | os.PathLike[str] | ObjectPath) -> Location:
    """``ROOT/eval_tools/ground_truth`` (the four evaluation ``.mat`` files of val)."""
    return _root(root) / "eval_tools" / "ground_truth"


class WiderDataset:
    """A WIDER FACE split under a dataset root (see the module docstring for the layout).

    Args:
        root: the dataset root.
        split: ``train``, ``val`` or ``test``.

    Raises:
        ValueError: unknown split. FileNotFoundError: neither annotation nor image folder.
    """

    def __init__(self, root: str | os.PathLike[str] | ObjectPath, split: str = "val") -> None:
        if split not in SPLITS:
            raise ValueError(f"WIDER FACE split must be one of {SPLITS}, got {split!r}")
        self.root: Location = location(root)
        self.split = split
        self.annotation_path: Location = wider_annotation_path(self.root, split)
        self.images_dir: Location = wider_images_dir(self.root, split)
        if not self.annotation_path.is_file() and not self.images_dir.is_dir():
            raise FileNotFoundError(
                f"{self.root}: no WIDER FACE {split} split (neither {self.annotation_path} "
                f"nor {self.images_dir} exists)"
            )
        self._records: list[WiderImageRecord] | None = None

    def gt_dir(self) -> Location:
        """``ROOT/eval_tools/ground_truth``."""
        return wider_gt_dir(self.root)

    def has_annotations(self) -> bool:
        """Whether the split's annotation txt exists."""
        return self.annotation_path.is_file()

    def records(self) -> list[WiderImageRecord]:
        """Annotation records in file order (with ``path`` set); raises without a txt."""
        if self._records is None:
            if not self.has_annotations():
                raise FileNotFoundError(f"{self.annotation_path}: annotation file not found")
            self._records = [
                WiderImageRecord(r.image_id, r.boxes_xywh, r.attributes, str(self.image_path(r)))
                for r in read_wider_annotations(self.annotation_path)
            ]
        return self._records

    def image_path(self, record_or_id: WiderImageRecord | str) -> Location:
        """``ROOT/WIDER_{split}/images/EVENT/NAME.jpg`` of an image id or record."""
        image_id = record_or_id if isinstance(record_or_id, str) else record_or_id.image_id
        event, name = split_image_id(image_id)
        return self.images_dir / event / f"{name}.jpg"

    def _tree_ids(self) -> Iterator[str]:
        if isinstance(self.images_dir, ObjectPath):  # the order of a disk walk, not of keys
            found = []
            for obj in iter_object_files(self.images_dir):
                folder, _, file = obj.relative_to(self.images_dir).partition("/")
                if file and "/" not in file and file.lower().endswith(".jpg"):
                    found.append((folder, file))
            yield from (f"{folder}/{file[:-len('.jpg')]}" for folder, file in sorted(found))
            return
        if not self.images_dir.is_dir():
            return
        for event in sorted(p for p in self.images_dir.iterdir() if p.is_dir()):
            for img in sorted(event.iterdir()):
                if img.is_file() and img.suffix.lower() == ".jpg":
                    yield f"{event.name}/{img.stem}"

    def iter_manifest(self) -> Iterator[ManifestEntry]:
        """Yield one entry per image (``image_id = EVENT/NAME``) in annotation order, or in
        sorted image-tree order when there is no annotation txt. Sizes are unknown (None)."""
        if self.has_annotations():
            for rec in self.records():
                yield ManifestEntry(image_id=rec.image_id, path=str(self.image_path(rec)))
        else:
            for image_id in self._tree_ids():
                yield ManifestEntry(image_id=image_id, path=str(self.image_path(image_id)))

    def ground_truth(self) -> WiderGroundTruth:
        """The evaluation ground truth: the ``.mat`` files of val when present (with keep lists),
        else the annotation txt (no keep lists)."""
        gt_dir = self.gt_dir()
        if self.split == "val" and (gt_dir / ALL_FACES_MAT).is_file():
            return load_wider_gt_dir(gt_dir)
        return WiderGroundTruth.from_records(self.records(), source=str(self.annotation_path))

    def describe(self) -> dict[str, Any]:
        """A JSON-able summary: root, split, sources, image and face counts."""
        gt_dir = self.gt_dir()
        info: dict[str, Any] = {
            "dataset": "wider",
            "root": str(self.root),
            "split": self.split,
            "images_dir": str(self.images_dir),
            "annotation": str(self.annotation_path) if self.has_annotations() else None,
            "eval_ground_truth": str(gt_dir) if (gt_dir / ALL_FACES_MAT).is_file() else None,
        }
        if self.has_annotations():
            recs = self.records()
            info["num_images"] = len(recs)
            info["num_faces"] = int(sum(r.num_faces for r in recs))
            info["num_events"] = len(events_of(recs))
        else:
            info["num_images"] = sum(1 for _ in self._tree_ids())
        return info
