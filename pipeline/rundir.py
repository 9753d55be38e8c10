"""The run directory on disk: ``run.json``, shard part pairs, resume checks (no Ray, no torch).

A shard is complete when both ``detections/part-NNNNN.parquet`` and
``images/part-NNNNN.parquet`` exist; the images part is renamed into place last, so a killed
writer leaves at most a detections part (removed on the next start) or a ``.tmp-*`` file
(also removed). The images part carries the shard's manifest digest and the run's config
digest in its Parquet key-value metadata, so a resumed run can prove the shard belongs to it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.schema import (
    DETECTIONS_DIR,
    DETECTIONS_SCHEMA,
    IMAGES_DIR,
    IMAGES_SCHEMA,
    TMP_PREFIX,
    part_name,
    write_table_atomic,
)

RUN_JSON = "run.json"
RUN_FORMAT = 1
SHARD_METADATA_KEY = b"dsfd.shard"


class RunMismatchError(ValueError):
    """The run directory holds results of a different config, model or dataset."""


class OutputWriteError(OSError):
    """A shard's parts could not be written (disk full, file too large, read-only, no
    permission); ``str(error)`` is one line naming the shard, the folder and the reason.

    A run stops at the first one instead of retrying: rerunning the same command once the
    cause is fixed resumes, since nothing but complete part pairs is ever kept.
    """


def config_digest(config: Mapping[str, Any]) -> str:
    """Hex digest (32 characters) of a JSON-able config, independent of key order."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def detections_part(run_dir: Path, shard_index: int) -> Path:
    """Path of shard ``shard_index``'s detections part."""
    return run_dir / DETECTIONS_DIR / part_name(shard_index)


def images_part(run_dir: Path, shard_index: int) -> Path:
    """Path of shard ``shard_index``'s images part (its presence marks the shard done)."""
    return run_dir / IMAGES_DIR / part_name(shard_index)


def is_shard_complete(run_dir: Path, shard_index: int) -> bool:
    """True when both parts of the shard exist."""
    return images_part(run_dir, shard_index).is_file() and detections_part(
        run_dir, shard_index
    ).is_file()


def _one_line(schema: pa.Schema) -> str:
    return "; ".join(str(field) for field in schema)


def write_shard(run_dir: Path, shard_index: int, detections: pa.Table, images: pa.Table, *,
                shard_digest: str, run_config_digest: str) -> None:
    """Write one shard's part pair: detections first, then the images part (marks it done).

    Args:
        run_dir: the run directory.
        shard_index: the shard number.
        detections: table with :data:`DETECTIONS_SCHEMA` (one row per box).
        images: table with :data:`IMAGES_SCHEMA` (one row per image of the shard).
        shard_digest: the shard's manifest digest (see ``pipeline.shards.shard_digest``).
        run_config_digest: :func:`config_digest` of the run's config.

    Raises:
        OutputWriteError: a part could not be written (its temporary file is removed; a
            detections part without its images part is removed on the next start).
    """
    if not detections.schema.equals(DETECTIONS_SCHEMA):
        raise ValueError("detections table schema differs from DETECTIONS_SCHEMA: "
                         + _one_line(detections.schema))
    if not images.schema.equals(IMAGES_SCHEMA):
        raise ValueError("images table schema differs from IMAGES_SCHEMA: "
                         + _one_line(images.schema))
    meta = json.dumps({"index": shard_index, "digest": shard_digest,
                       "config_digest": run_config_digest, "num_images": images.num_rows})
    images = images.replace_schema_metadata({SHARD_METADATA_KEY: meta.encode("utf-8")})
    try:
        write_table_atomic(detections, detections_part(run_dir, shard_index))
        write_table_atomic(images, images_part(run_dir, shard_index))
    except OSError as exc:
        reason = _os_reason(exc)
        raise OutputWriteError(f"cannot write shard {shard_index} to {run_dir}: {reason}; "
                               "free space or fix the folder, then run the same command again "
                               "to resume") from exc


def _os_reason(exc: OSError) -> str:
    """``exc``'s reason in the system's words (``No space left on device``); Arrow's errors
    carry the errno only in their text (``... Detail: [errno 28] ...``)."""
    if exc.errno:
        return os.strerror(exc.errno)
    found = re.search(r"\[errno (\d+)\]", str(exc), flags=re.IGNORECASE)
    if found:
        return os.strerror(int(found[1]))
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def read_shard_metadata(run_dir: Path, shard_index: int) -> dict[str, Any]:
    """The metadata :func:`write_shard` stored in a complete shard's images part."""
    path = images_part(run_dir, shard_index)
    metadata = pq.read_schema(path).metadata or {}
    raw = metadata.get(SHARD_METADATA_KEY)
    if raw is None:
        raise RunMismatchError(f"{path}: no {SHARD_METADATA_KEY.decode()} metadata; it was not "
                               "written by this pipeline (use --restart)")
    return dict(json.loads(raw))


def clean_incomplete(run_dir: Path) -> int:
    """Remove ``.tmp-*`` leftovers and half-written shards; return how many files went."""
    removed = 0
    for sub in (run_dir, run_dir / DETECTIONS_DIR, run_dir / IMAGES_DIR):
        if not sub.is_dir():
            continue
        with os.scandir(sub) as it:
            for entry in it:
                if entry.name.startswith(TMP_PREFIX) and entry.is_file():
                    os.unlink(entry.path)
                    removed += 1
    for table, other in ((DETECTIONS_DIR, IMAGES_DIR), (IMAGES_DIR, DETECTIONS_DIR)):
        folder = run_dir / table
        if not folder.is_dir():
            continue
        with os.scandir(folder) as it:
            for entry in it:
                if entry.name.startswith("part-") and not (run_dir / other / entry.name).exists():
                    os.unlink(entry.path)
                    removed += 1
    return removed


def has_parts(run_dir: Path) -> bool:
    """True when any part file exists (complete or not)."""
    for table in (DETECTIONS_DIR, IMAGES_DIR):
        folder = run_dir / table
        if folder.is_dir() and any(p.name.startswith("part-") for p in folder.iterdir()):
            return True
    return False


def clear_run(run_dir: Path) -> None:
    """Remove the parts and ``run.json`` of a run (for ``--restart``); other files stay."""
    for table in (DETECTIONS_DIR, IMAGES_DIR):
        folder = run_dir / table
        if folder.is_dir():
            shutil.rmtree(folder)
    (run_dir / RUN_JSON).unlink(missing_ok=True)


def read_run_json(run_dir: Path) -> dict[str, Any] | None:
    """The run's ``run.json`` as a dict, or None when there is none."""
    path = run_dir / RUN_JSON
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise RunMismatchError(f"{path}: line {exc.lineno}: invalid JSON ({exc.msg}); "
                               "use --restart to start over") from exc
    if not isinstance(data, dict):
        raise RunMismatchError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def write_run_json(run_dir: Path, data: Mapping[str, Any]) -> None:
    """Write ``run.json`` atomically (temporary file, fsync, rename)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / RUN_JSON
    tmp = run_dir / f"{TMP_PREFIX}{os.getpid()}-{RUN_JSON}"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, sort_keys=True, default=str)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _diff(old: Any, new: Any, prefix: str, out: list[str]) -> None:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new), key=str):
            name = f"{prefix}.{key}" if prefix else str(key)
            if key not in old:
                out.append(f"{name}: (absent) -> {new[key]!r}")
            elif key not in new:
                out.append(f"{name}: {old[key]!r} -> (absent)")
            else:
                _diff(old[key], new[key], name, out)
    elif old != new:
        out.append(f"{prefix}: {old!r} -> {new!r}")


def config_differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Human-readable ``key: old -> new`` lines for every leaf that differs."""
    out: list[str] = []
    _diff(json.loads(json.dumps(old, default=str)), json.loads(json.dumps(new, default=str)),
          "", out)
    return out


def copy_run_with_min_score(run_dir: Path, out_dir: Path, min_score: float) -> int:
    """Copy the complete shards of a run, keeping detections with ``score >= min_score``.

    The copy is a run directory of its own (part pairs, no ``run.json``) for exporters that
    take a whole run; returns the number of detections kept.
    """
    import pyarrow.compute as pc

    kept = 0
    for path in sorted((run_dir / IMAGES_DIR).glob("part-*.parquet")):
        index = int(path.stem.split("-")[1])
        if not is_shard_complete(run_dir, index):
            continue
        dets = pq.read_table(detections_part(run_dir, index), schema=DETECTIONS_SCHEMA)
        dets = dets.filter(pc.greater_equal(dets["score"], pa.scalar(min_score, pa.float32())))
        images = pq.read_table(path, schema=IMAGES_SCHEMA)
        write_table_atomic(dets, detections_part(out_dir, index))
        write_table_atomic(images, images_part(out_dir, index))
        kept += dets.num_rows
    return kept
