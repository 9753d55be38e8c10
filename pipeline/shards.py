"""Cutting a streamed manifest into shards (no Ray, no torch).

Shard ``k`` holds manifest entries ``[k*K, (k+1)*K)`` in manifest order. Shards are produced
lazily, so a driver that consumes them one at a time holds at most one shard of entries.
Each shard carries a digest of its entries (image ids and paths) that a resumed run compares
with the digest stored in the finished shard's files, so a changed dataset never mixes into
an existing run.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from pipeline.datasets.manifest import ManifestEntry


@dataclass(frozen=True)
class Shard:
    """A contiguous run of manifest entries processed and written as one unit.

    Attributes:
        index: shard number ``k`` (part file ``part-{k:05d}.parquet``).
        entries: the entries ``[k*K, (k+1)*K)`` of the manifest (the last shard may be short).
        digest: hex SHA-256 (first 32 characters) of the entries' image ids and paths.
    """

    index: int
    entries: tuple[ManifestEntry, ...]
    digest: str


def shard_digest(entries: Iterable[ManifestEntry]) -> str:
    """Stable digest of a shard's image ids and paths (sizes left out: often unknown)."""
    h = hashlib.sha256()
    for entry in entries:
        h.update(entry.image_id.encode("utf-8"))
        h.update(b"\0")
        h.update(entry.path.encode("utf-8", "surrogateescape"))
        h.update(b"\n")
    return h.hexdigest()[:32]


def iter_shards(manifest: Iterable[ManifestEntry], shard_size: int) -> Iterator[Shard]:
    """Cut a (streamed) manifest into shards of ``shard_size`` entries, lazily.

    Args:
        manifest: the dataset's entries in manifest order; consumed once.
        shard_size: number of entries per shard (``K``), at least 1.

    Yields:
        Shards 0, 1, ... in order; the last one holds the remaining ``1..K`` entries. An empty
        manifest yields nothing.

    Raises:
        ValueError: ``shard_size`` is not a positive int, or an entry is not a ManifestEntry.
    """
    if isinstance(shard_size, bool) or not isinstance(shard_size, int) or shard_size < 1:
        raise ValueError(f"shard_size must be an int >= 1, got {shard_size!r}")
    batch: list[ManifestEntry] = []
    index = 0
    for position, entry in enumerate(manifest):
        if not isinstance(entry, ManifestEntry):
            raise ValueError(
                f"manifest entry {position} must be a ManifestEntry, got {type(entry).__name__}"
            )
        batch.append(entry)
        if len(batch) == shard_size:
            yield Shard(index=index, entries=tuple(batch), digest=shard_digest(batch))
            index += 1
            batch = []
    if batch:
        yield Shard(index=index, entries=tuple(batch), digest=shard_digest(batch))


class ManifestDigest:
    """Running digest of a whole manifest, fed shard by shard (order-sensitive)."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self.num_images = 0
        self.num_shards = 0

    def update(self, shard: Shard) -> None:
        """Add ``shard`` (shards must arrive in index order)."""
        if shard.index != self.num_shards:
            raise ValueError(f"shards must arrive in order: expected {self.num_shards}, "
                             f"got {shard.index}")
        self._hash.update(shard.digest.encode("ascii"))
        self.num_images += len(shard.entries)
        self.num_shards += 1

    def hexdigest(self) -> str:
        """Digest of the shards seen so far (hex, 32 characters)."""
        return self._hash.hexdigest()[:32]
