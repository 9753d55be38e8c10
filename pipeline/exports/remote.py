"""Exports into object storage (``--out s3://bucket/labels.coco.json``): staged in a local
temporary folder, then published object by object (no torch, no Ray).

Every exporter writes local files under its own rules (replace only an earlier export of the
same kind, nothing partial). For an object-storage ``OUT`` the earlier export found there (the
object, or the objects under the prefix, and the receipt beside it) is first copied into the
staging folder, so the exporter applies exactly the same rules to it; then each written file
is uploaded in one object write, files first and the receipt last, and objects of the earlier
export that the new one no longer holds are deleted. A failure before the upload leaves the
bucket as it was.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.exports.file_tree import receipt_path
from pipeline.exports.registry import ExportSummary
from pipeline.storage import ObjectPath, location


def _receipt(target: ObjectPath) -> ObjectPath:
    """The receipt object beside ``target`` (named as :func:`receipt_path` names it)."""
    return target.parent / receipt_path(Path(target.name)).name


def _stage(target: ObjectPath, local: Path) -> set[str]:
    """Copy what ``target`` holds now into ``local``; returns the keys (relative to
    ``target``) staged from under the prefix."""
    if target.is_file():
        local.write_bytes(target.read_bytes())
        return set()
    staged: set[str] = set()
    for info in target.walk_files():
        obj = ObjectPath(f"{target.scheme}://{info.path}")
        rel = obj.relative_to(target)
        path = local.joinpath(*rel.split("/"))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(obj.read_bytes())
        staged.add(rel)
    receipt = _receipt(target)
    if receipt.is_file():
        (local.parent / receipt.name).write_bytes(receipt.read_bytes())
    return staged


def _publish(local: Path, target: ObjectPath, staged: set[str]) -> None:
    """Upload the export in ``local`` to ``target`` (receipt last), then delete the staged
    objects of the earlier export that it no longer holds."""
    if local.is_file():
        target.write_bytes(local.read_bytes())
        return
    written: set[str] = set()
    for folder, _, names in os.walk(local):
        for name in sorted(names):
            path = Path(folder) / name
            rel = path.relative_to(local).as_posix()
            (target / rel).write_bytes(path.read_bytes())
            written.add(rel)
    receipt = receipt_path(local)
    if receipt.is_file():
        _receipt(target).write_bytes(receipt.read_bytes())
    for rel in sorted(staged - written):
        (target / rel).unlink(missing_ok=True)


def export_to_store(function: Callable[..., ExportSummary], run_dir: str | os.PathLike[str],
                    out: str, kwargs: dict[str, Any]) -> ExportSummary:
    """Run the export ``function(run_dir, LOCAL, **kwargs)`` into a staging folder holding
    what ``out`` (an object-storage URI) holds now, then publish it to ``out``.

    Raises:
        ValueError: ``out`` holds something else than an earlier export (the exporter's own
            refusal; nothing is written).
        pipeline.storage.StorageError: the bucket cannot be read or written (one line).
    """
    target = location(out)
    if not isinstance(target, ObjectPath) or not target.key:
        raise ValueError(f"{out}: expected an object-storage URI with a key (s3://bucket/name)")
    target.parent.mkdir(parents=True, exist_ok=True)  # the bucket must exist
    with tempfile.TemporaryDirectory(prefix="dsfd-export-") as tmp:
        local = Path(tmp) / "stage" / target.name
        local.parent.mkdir()
        staged = _stage(target, local)
        summary = function(run_dir, local, **kwargs)
        _publish(local, target, staged)
    return summary
