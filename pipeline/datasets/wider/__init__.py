"""WIDER FACE readers and writers (numpy/scipy only: no torch, no Ray).

One module per file format: :mod:`~pipeline.datasets.wider.records` (records and ground truth
in memory), :mod:`~pipeline.datasets.wider.annotations` (the annotation txt),
:mod:`~pipeline.datasets.wider.eval_mat` (the evaluation ``.mat`` files),
:mod:`~pipeline.datasets.wider.dataset` (a dataset root: layout and manifest),
:mod:`~pipeline.datasets.wider.detections` (submission files) and
:mod:`~pipeline.datasets.wider.kinds` (the ``wider:`` and ``wider-gt:`` dataset specs).
"""

from pipeline.datasets.wider.annotations import read_wider_annotations, write_wider_annotations
from pipeline.datasets.wider.dataset import (
    SPLITS,
    WiderDataset,
    wider_annotation_path,
    wider_gt_dir,
    wider_images_dir,
)
from pipeline.datasets.wider.detections import format_wider_detections
from pipeline.datasets.wider.eval_mat import (
    ALL_FACES_MAT,
    SETTING_MATS,
    load_wider_gt_dir,
    read_wider_eval_mat,
    write_wider_eval_mats,
)
from pipeline.datasets.wider.records import (
    ATTRIBUTE_NAMES,
    SETTINGS,
    WiderGroundTruth,
    WiderImageGT,
    WiderImageRecord,
    split_image_id,
)

__all__ = [
    "ALL_FACES_MAT",
    "ATTRIBUTE_NAMES",
    "SETTINGS",
    "SETTING_MATS",
    "SPLITS",
    "WiderDataset",
    "WiderGroundTruth",
    "WiderImageGT",
    "WiderImageRecord",
    "format_wider_detections",
    "load_wider_gt_dir",
    "read_wider_annotations",
    "read_wider_eval_mat",
    "split_image_id",
    "wider_annotation_path",
    "wider_gt_dir",
    "wider_images_dir",
    "write_wider_annotations",
    "write_wider_eval_mats",
]
