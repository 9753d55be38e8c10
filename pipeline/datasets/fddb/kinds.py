"""The ``fddb:`` dataset kind (see :mod:`pipeline.datasets.registry`).

``fddb:ROOT`` is an FDDB root (``FDDB-folds/`` and ``originalPics/``), folds 1..10 in order; its
ground truth is the ellipse annotations of every image (a list of ``FddbImage``). ``ROOT``
may be an object-storage prefix (``fddb:s3://bucket/fddb``).
"""

from __future__ import annotations

from typing import Any

from pipeline.datasets.fddb.annotations import FddbImage
from pipeline.datasets.fddb.dataset import FddbDataset
from pipeline.datasets.registry import DatasetSpec, register
from pipeline.storage import Location


class FddbSource(FddbDataset):
    """An :class:`FddbDataset` opened from a spec (adds ``name`` and ``kind``).

    Args:
        root: the FDDB root.
        kind: the spec kind (``fddb``, or ``synthetic-fddb`` for a generated benchmark's part).
        name: the canonical spec (default ``KIND:ROOT``).
        extra: more keys of :meth:`describe` (a generated benchmark's identity).
    """

    def __init__(self, root: Location, kind: str, *, name: str | None = None,
                 extra: dict[str, Any] | None = None):
        super().__init__(root)
        self.kind = kind
        self.name = name or f"{kind}:{root}"
        self._extra = dict(extra or {})

    def describe(self) -> dict[str, Any]:
        """The reader's description plus ``kind`` (and ``extra``)."""
        return {**super().describe(), "kind": self.kind, **self._extra}


def open_fddb(spec: DatasetSpec) -> FddbSource:
    """``fddb:ROOT`` as a source."""
    return FddbSource(spec.existing_dir("FDDB root"), "fddb")


def fddb_ground_truth(spec: DatasetSpec) -> list[FddbImage]:
    """The annotations of every image of ``fddb:ROOT``, in the standard order."""
    return open_fddb(spec).annotations()


register("fddb", open_fddb, grammar="fddb:ROOT", ground_truth=fddb_ground_truth)
