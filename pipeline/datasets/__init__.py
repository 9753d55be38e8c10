"""Dataset readers: manifests, ground truth and face boxes as numpy (no Ray, no torch).

Every command names a dataset with one SPEC string, resolved by the registry of dataset kinds
(:mod:`pipeline.datasets.registry`): :func:`open_dataset` for the images, :func:`ground_truth`
and :func:`face_records` for the annotations. The readers: :mod:`~pipeline.datasets.wider`
and :mod:`~pipeline.datasets.fddb` (packages, one module per file format),
:mod:`~pipeline.datasets.folder`, :mod:`~pipeline.datasets.listfile` and
:mod:`~pipeline.datasets.synthetic` (a generated benchmark; the generator is
:mod:`pipeline.synthetic`).
"""

from pipeline.datasets.face_record import FaceRecord
from pipeline.datasets.manifest import ManifestEntry
from pipeline.datasets.registry import (
    DatasetSpec,
    dataset_kinds,
    face_records,
    ground_truth,
    open_dataset,
    register,
    valid_forms,
)
from pipeline.datasets.source import DatasetSource, LimitedSource, limit_dataset

__all__ = [
    "DatasetSource",
    "DatasetSpec",
    "FaceRecord",
    "LimitedSource",
    "ManifestEntry",
    "dataset_kinds",
    "face_records",
    "ground_truth",
    "limit_dataset",
    "open_dataset",
    "register",
    "valid_forms",
]
