"""FDDB files: fold lists, ellipse lists, detection files and image sizes (numpy only).

One module per file format: :mod:`~pipeline.datasets.fddb.annotations` (fold and ellipse
lists), :mod:`~pipeline.datasets.fddb.detections` (detection files),
:mod:`~pipeline.datasets.fddb.sizes` (image size tables), :mod:`~pipeline.datasets.fddb.dataset`
(an FDDB root: folds and manifest), :mod:`~pipeline.datasets.fddb.text` (the text conventions
they share) and :mod:`~pipeline.datasets.fddb.kinds` (the ``fddb:`` dataset spec).
"""

from pipeline.datasets.fddb.annotations import (
    FOLDS_DIR,
    FddbImage,
    ellipse_list_name,
    fold_list_name,
    read_ellipse_list,
    read_fold_list,
    write_ellipse_list,
    write_fddb_folds,
    write_fold_list,
)
from pipeline.datasets.fddb.dataset import IMAGES_DIR, NUM_FOLDS, FddbDataset, read_annotations
from pipeline.datasets.fddb.detections import (
    DetFormat,
    FddbDetections,
    check_same_images,
    read_detections,
    write_detections,
)
from pipeline.datasets.fddb.sizes import (
    IMAGE_EXT,
    read_image_sizes_from_dir,
    read_image_sizes_tsv,
    write_image_sizes_tsv,
)

__all__ = [
    "FOLDS_DIR",
    "IMAGES_DIR",
    "IMAGE_EXT",
    "NUM_FOLDS",
    "DetFormat",
    "FddbDataset",
    "FddbDetections",
    "FddbImage",
    "check_same_images",
    "ellipse_list_name",
    "fold_list_name",
    "read_annotations",
    "read_detections",
    "read_ellipse_list",
    "read_fold_list",
    "read_image_sizes_from_dir",
    "read_image_sizes_tsv",
    "write_detections",
    "write_ellipse_list",
    "write_fddb_folds",
    "write_fold_list",
    "write_image_sizes_tsv",
]
