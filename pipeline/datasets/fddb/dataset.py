"""An FDDB root: the fold lists, the annotations and the manifest of the images.

Layout of an FDDB root (the official distribution)::

    ROOT/FDDB-folds/FDDB-fold-01.txt               image paths, one per line, no extension
    ROOT/FDDB-folds/FDDB-fold-01-ellipseList.txt   per image: path, face count, K ellipse lines
    ...                                            folds 01..10
    ROOT/originalPics/<path>.jpg                   the images

The standard protocol concatenates folds 1..10 in order. The root (or folds folder) may be an
object-storage prefix (``s3://bucket/fddb``): the fold files are read through
:mod:`pipeline.storage` and each image's path is its ``s3://`` URI.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence

from pipeline.datasets.fddb.annotations import (
    FOLDS_DIR,
    FddbImage,
    ellipse_list_name,
    fold_list_name,
    read_ellipse_list,
    read_fold_list,
)
from pipeline.datasets.fddb.sizes import IMAGE_EXT
from pipeline.datasets.manifest import ManifestEntry
from pipeline.storage import Location, ObjectPath, list_dir, location

NUM_FOLDS = 10
IMAGES_DIR = "originalPics"


class FddbDataset:
    """An FDDB root holding ``FDDB-folds/`` and ``originalPics/``.

    Args:
        root: the dataset root.
        folds: which folds (1-based) to use, in order; default all folds found, 1..10.
        folds_dir: where the fold files are, if not ``ROOT/FDDB-folds``.
    """

    def __init__(
        self,
        root: str | os.PathLike[str] | ObjectPath,
        folds: Sequence[int] | None = None,
        folds_dir: str | os.PathLike[str] | ObjectPath | None = None,
    ):
        self.root: Location = location(root)
        self.folds_dir: Location = (location(folds_dir) if folds_dir is not None
                                    else self.root / FOLDS_DIR)
        folder = self.folds_dir
        files = _file_names(folder)
        if files is None:
            raise NotADirectoryError(f"FDDB folds folder not found: {folder}")
        if folds is None:
            folds = []
            while fold_list_name(len(folds) + 1) in files:
                folds.append(len(folds) + 1)
            if not folds:
                raise FileNotFoundError(f"no {fold_list_name(1)} in {folder}")
        self.folds = list(folds)
        for k in self.folds:
            for name in (fold_list_name(k), ellipse_list_name(k)):
                if name not in files:
                    raise FileNotFoundError(f"missing FDDB file {folder / name}")

    def fold_image_ids(self, fold: int) -> list[str]:
        """Image ids of one fold, in list order."""
        return read_fold_list(self.folds_dir / fold_list_name(fold))

    def image_ids(self) -> list[str]:
        """All image ids in the standard order (the chosen folds concatenated)."""
        return [i for k in self.folds for i in self.fold_image_ids(k)]

    def image_path(self, image_id: str) -> Location:
        """Path of an image: ``ROOT/originalPics/<image_id>.jpg``."""
        return self.root / IMAGES_DIR / f"{image_id}{IMAGE_EXT}"

    def iter_manifest(self) -> Iterator[ManifestEntry]:
        """Yield one ``ManifestEntry`` per image in the standard order (sizes unknown: None)."""
        for k in self.folds:
            for image_id in self.fold_image_ids(k):
                yield ManifestEntry(image_id=image_id, path=str(self.image_path(image_id)))

    def annotations(self) -> list[FddbImage]:
        """Ground truth of every image in the standard order.

        Raises:
            ValueError: a fold's ellipse list does not list the fold's images in order.
        """
        out: list[FddbImage] = []
        for k in self.folds:
            ids = self.fold_image_ids(k)
            ell_path = self.folds_dir / ellipse_list_name(k)
            images = read_ellipse_list(ell_path)
            got = [im.image_id for im in images]
            if got != ids:
                first = next(
                    (n for n, (a, b) in enumerate(zip(ids, got, strict=False)) if a != b),
                    min(len(ids), len(got)),
                )
                raise ValueError(
                    f"{ell_path}: image {first + 1} differs from {fold_list_name(k)} "
                    f"({len(got)} vs {len(ids)} images)"
                )
            out += images
        return out

    def describe(self) -> dict[str, object]:
        """JSON-able summary: root, folds, image and face counts per fold and in total."""
        per_fold = []
        for k in self.folds:
            images = read_ellipse_list(self.folds_dir / ellipse_list_name(k))
            per_fold.append(
                {"fold": k, "images": len(images), "faces": sum(i.num_faces for i in images)}
            )
        return {
            "dataset": "fddb",
            "root": str(self.root),
            "folds": per_fold,
            "num_images": sum(int(f["images"]) for f in per_fold),
            "num_faces": sum(int(f["faces"]) for f in per_fold),
            "images_dir": str(self.root / IMAGES_DIR),
        }


def _file_names(folder: Location) -> set[str] | None:
    """The names of the plain files in ``folder`` (links followed on a disk; one listing
    request on object storage), None when it is not a folder."""
    if isinstance(folder, ObjectPath):
        entries = list_dir(folder)
        return {e.name for e in entries if e.is_file} if entries else None
    if not folder.is_dir():
        return None
    return {p.name for p in folder.iterdir() if p.is_file()}


def read_annotations(path: str | os.PathLike[str] | ObjectPath) -> list[FddbImage]:
    """Annotations from an ellipse-list file, an ``FDDB-folds/`` folder or an FDDB root, on a
    disk or in object storage (``s3://...``).

    A folder gives all of its folds (01, 02, ... while they exist) concatenated in order, the
    standard protocol; each fold's ellipse list must follow its fold list.
    """
    p = location(path)
    if p.is_dir():
        if (p / FOLDS_DIR).is_dir():
            return FddbDataset(p).annotations()
        if (p / fold_list_name(1)).is_file():
            return FddbDataset(p, folds_dir=p).annotations()
        raise FileNotFoundError(f"{p} holds neither {FOLDS_DIR}/ nor {fold_list_name(1)}")
    if not p.is_file():
        raise FileNotFoundError(f"annotation file or folder not found: {p}")
    return read_ellipse_list(p)
