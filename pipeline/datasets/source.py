"""What every opened dataset offers the pipeline (:class:`DatasetSource`), and a subset of one."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any, Protocol, runtime_checkable

from pipeline.datasets.manifest import ManifestEntry


@runtime_checkable
class DatasetSource(Protocol):
    """What every dataset offers the pipeline.

    Attributes:
        name: the canonical spec of the source (kind and absolute path).
    """

    name: str

    def iter_manifest(self) -> Iterator[ManifestEntry]:
        """Yield the images in a deterministic order, streamed."""
        ...

    def describe(self) -> dict[str, Any]:
        """JSON-able identity of the source (``kind``, ``root``/``path``, ``split``, counts
        when cheap): two runs over the same source describe it the same way."""
        ...


class LimitedSource:
    """The first ``limit`` images of another source, in its order (a quick subset, e.g. for
    the costly multi-scale test). Everything else is the wrapped source's."""

    def __init__(self, source: DatasetSource, limit: int):
        if not isinstance(limit, int) or limit < 1:
            raise ValueError(f"limit must be an integer >= 1, got {limit!r}")
        self.source = source
        self.limit = limit
        self.name = f"{source.name}[:{limit}]"

    def iter_manifest(self) -> Iterator[ManifestEntry]:
        """The wrapped manifest, stopped after ``limit`` entries."""
        return itertools.islice(self.source.iter_manifest(), self.limit)

    def describe(self) -> dict[str, Any]:
        """The wrapped source's description: a subset is the same dataset (its first images);
        the run records the limit in its plan, so a trial run can be extended to the whole
        dataset without redoing its images (the shards' digests prove the prefix)."""
        return self.source.describe()

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.source, attr)


def limit_dataset(source: DatasetSource, limit: int | None) -> DatasetSource:
    """``source`` itself when ``limit`` is None, else its first ``limit`` images."""
    return source if limit is None else LimitedSource(source, limit)
