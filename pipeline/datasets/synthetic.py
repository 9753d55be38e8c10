"""The ``synthetic:`` and ``synthetic-fddb:`` dataset kinds: a generated benchmark, read.

The benchmark is written by the generator (:mod:`pipeline.synthetic`, ``dsfd synth``) in the
official layouts, so it is read by the WIDER FACE and FDDB readers::

    DIR/synth.json     generator name and version, seed, counts, status (complete when done)
    DIR/wider/         a WIDER FACE root (train and val)   -> synthetic:DIR[:train|val]
    DIR/fddb/          an FDDB root (10 folds)              -> synthetic-fddb:DIR

``synthetic:DIR[:split]`` is ``wider:DIR/wider[:split]`` (split val by default for images and
ground truth, the caller's default for face records) and ``synthetic-fddb:DIR`` is
``fddb:DIR/fddb``; both refuse a folder whose ``synth.json`` is missing or not ``complete``, and
their descriptions carry the generator's version, seed and counts. ``DIR`` may be an
object-storage prefix holding an uploaded benchmark (``synthetic:s3://bucket/bench``). No
Pillow, no torch here.
"""

from __future__ import annotations

import json
import os
from typing import Any

from pipeline.datasets.face_record import FaceRecord
from pipeline.datasets.fddb.annotations import FddbImage
from pipeline.datasets.fddb.kinds import FddbSource
from pipeline.datasets.registry import DatasetSpec, register
from pipeline.datasets.wider.dataset import SPLITS
from pipeline.datasets.wider.kinds import WiderSource, wider_face_records
from pipeline.datasets.wider.records import WiderGroundTruth
from pipeline.storage import Location, ObjectPath, StorageError, location

GENERATOR_NAME = "dsfd-synthetic-benchmark"
INFO_FILE = "synth.json"
WIDER_DIR = "wider"
FDDB_DIR = "fddb"


def _info(out_dir: str | os.PathLike[str] | ObjectPath) -> dict[str, Any] | None:
    """The parsed ``synth.json`` of ``out_dir`` when this generator wrote it, else None."""
    try:
        data = json.loads((location(out_dir) / INFO_FILE).read_bytes())
    except StorageError:  # a store that refuses or cannot be reached is not "no benchmark"
        raise
    except (OSError, ValueError):
        return None
    ok = isinstance(data, dict) and data.get("generator") == GENERATOR_NAME
    return data if ok else None


def is_synthetic_benchmark(out_dir: str | os.PathLike[str] | ObjectPath) -> bool:
    """Whether ``out_dir`` holds a ``synth.json`` written by this generator."""
    return _info(out_dir) is not None


def read_synth_info(out_dir: str | os.PathLike[str] | ObjectPath) -> dict[str, Any]:
    """The ``synth.json`` of a generated benchmark (a local folder or a prefix in a bucket).

    Raises:
        ValueError: ``out_dir`` is not a (complete) synthetic benchmark.
        StorageError: it cannot be read (access denied, store unreachable).
    """
    data = _info(out_dir)
    if data is None:
        raise ValueError(f"{out_dir}: not a synthetic benchmark (no valid {INFO_FILE})")
    if data.get("status") != "complete":
        raise ValueError(
            f"{location(out_dir) / INFO_FILE}: generation did not finish "
            f"(status {data.get('status')!r}); generate it again"
        )
    return data


def _benchmark(spec: DatasetSpec, directory: Location) -> dict[str, str | dict[str, Any]]:
    """The description keys of the benchmark in ``directory`` (which must be complete)."""
    if not directory.is_dir():
        raise spec.error(
            f"benchmark folder {directory} not found (make one with "
            f"`dsfd synth --out {directory}`)"
        )
    try:
        info = read_synth_info(directory)
    except (ValueError, StorageError) as exc:
        raise spec.error(str(exc)) from None
    return {"synthetic": {k: info.get(k) for k in ("generator_version", "seed", "counts")}}


def _wider_part(spec: DatasetSpec, default_split: str) -> WiderSource:
    directory, split = spec.path_and_split(default_split, SPLITS)
    extra = _benchmark(spec, directory)
    if split not in ("train", "val"):
        raise spec.error(f"a synthetic benchmark has splits train and val, not {split!r}")
    name = f"synthetic:{directory}:{split}"
    return WiderSource(directory / WIDER_DIR, split, "synthetic", name=name, extra=extra)


def open_synthetic(spec: DatasetSpec) -> WiderSource:
    """``synthetic:DIR[:split]`` (val by default) as a source."""
    return _wider_part(spec, "val")


def synthetic_ground_truth(spec: DatasetSpec) -> WiderGroundTruth:
    """The WIDER ground truth of the split (val by default: the evaluation ``.mat`` files)."""
    return _wider_part(spec, "val").ground_truth()


def synthetic_records(spec: DatasetSpec, default_split: str) -> list[FaceRecord]:
    """Face records of the WIDER part (``default_split`` when the spec names none)."""
    return wider_face_records(_wider_part(spec, default_split))


def open_synthetic_fddb(spec: DatasetSpec) -> FddbSource:
    """``synthetic-fddb:DIR`` as a source."""
    directory = spec.existing_dir("benchmark folder")
    extra = _benchmark(spec, directory)
    if not (directory / FDDB_DIR).is_dir():
        raise spec.error(f"{directory} was generated without an FDDB part")
    name = f"synthetic-fddb:{directory}"
    return FddbSource(directory / FDDB_DIR, "synthetic-fddb", name=name, extra=extra)


def synthetic_fddb_ground_truth(spec: DatasetSpec) -> list[FddbImage]:
    """The FDDB annotations of the benchmark, in the standard order."""
    return open_synthetic_fddb(spec).annotations()


register("synthetic", open_synthetic, grammar="synthetic:DIR[:train|val]",
         ground_truth=synthetic_ground_truth, face_records=synthetic_records)
register("synthetic-fddb", open_synthetic_fddb, grammar="synthetic-fddb:DIR",
         ground_truth=synthetic_fddb_ground_truth)
