"""The run directory as one object: ownership, the lock, resume, part verification, readers.

What the tool may delete or overwrite in a run directory, and nothing else:

* ``run.json`` when it is a dsfd run record, and ``run.lock`` when it is a dsfd lock;
* in ``images/`` and ``detections/``, files named exactly ``part-NNNNN.parquet`` that carry
  this pipeline's part metadata (or that sit beside a ``run.json`` of ours, which covers a
  truncated part of our own run);
* the run's own temporaries, named ``.tmp-<run id>-...``.

Anything else in ``images/`` or ``detections/`` is foreign: a run that would write there is
refused before it starts, naming the file. No folder is ever removed. ``logs/ray.log`` is the
command's log (Ray's own output, appended by each invocation): never checked as foreign, and
kept by ``--restart``.

The run directory may be a local folder or an object-storage prefix (``s3://bucket/run``,
see :mod:`pipeline.storage`): the rules are the same; on object storage parts and
``run.json`` are written under their final keys in one object write (there is no rename) and
the lock is an object (:class:`~pipeline.rundir.lock.ObjectRunLock`).
"""

from __future__ import annotations

import os
import secrets
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.rundir.errors import RunDirError, RunMismatchError
from pipeline.rundir.lock import LOCK_FILE, ObjectRunLock, RunLock
from pipeline.rundir.parts import (
    TABLES,
    PartInfo,
    ShardWriter,
    inspect_part,
    part_index,
    part_name,
    read_run_identity,
    tmp_prefix,
)
from pipeline.rundir.record import (
    RECORD_KIND,
    RUN_FORMAT,
    RUN_JSON,
    UnreadableRecord,
    config_differences,
    config_digest,
    read_record,
    write_record,
)
from pipeline.schema import DETECTIONS_DIR, DETECTIONS_SCHEMA, IMAGES_DIR, IMAGES_SCHEMA, TMP_PREFIX
from pipeline.shards import Shard
from pipeline.storage import Location, ObjectPath, arrow_file, list_dir, location


@dataclass
class Totals:
    """Counts over a set of complete shards (from the parts' metadata, no rows read)."""

    num_shards: int = 0
    num_images: int = 0
    num_errors: int = 0
    num_detections: int = 0

    def add(self, num_images: int, num_errors: int, num_detections: int) -> None:
        self.num_shards += 1
        self.num_images += num_images
        self.num_errors += num_errors
        self.num_detections += num_detections


@dataclass(frozen=True)
class ResumeState:
    """What :meth:`RunDir.prepare` found: the manifest's size and the shards already done."""

    num_shards: int
    num_images: int
    done: Totals
    redone: tuple[str, ...]  # one line per shard whose parts were bad and will be redone


def _note(message: str) -> None:
    print(f"dsfd: {message}", file=sys.stderr)


def _inside(path: Location, folder: Location) -> bool:
    if isinstance(path, ObjectPath) != isinstance(folder, ObjectPath):
        return False
    return path == folder or folder in path.parents


class RunDir:
    """One run directory (see the module docstring for what it owns).

    Use :meth:`open` to read a finished (or running) run and :meth:`open_for_writing` to run
    into one; the latter holds the lock until :meth:`release`.
    """

    def __init__(self, root: Location, record: dict[str, Any] | None,
                 lock: RunLock | ObjectRunLock | None = None) -> None:
        self.root = root
        self.record = record
        self._lock = lock

    # ---------------------------------------------------------------- reading
    @classmethod
    def open(cls, path: str | os.PathLike[str] | ObjectPath) -> RunDir:
        """Open a run directory (a local path or an object-storage URI) for reading.

        Raises:
            FileNotFoundError: no such folder.
            RunDirError: no ``run.json``, or one that is damaged or not ours.
        """
        root = location(path)
        if not root.is_dir():
            raise FileNotFoundError(f"{root}: no such run directory")
        try:
            record = read_record(root / RUN_JSON)
        except UnreadableRecord as exc:
            raise RunDirError(f"{exc}; run the same dsfd run/label command again: it rebuilds "
                              "run.json from the parts") from exc
        if record is None:
            raise RunDirError(f"{root}: not a run directory (no {RUN_JSON})")
        return cls(root, record)

    @staticmethod
    def is_run_dir(path: str | os.PathLike[str] | ObjectPath) -> bool:
        """Whether ``path`` is a folder holding a ``run.json`` (a cheap test, nothing read)."""
        return (location(path) / RUN_JSON).is_file()

    @property
    def config_digest(self) -> str:
        return str((self.record or {}).get("config_digest", ""))

    def _part_files(self, table: str) -> dict[int, Location]:
        out: dict[int, Location] = {}
        for entry in list_dir(self.root / table):
            index = part_index(entry.name)
            if index is not None and (entry.is_file or entry.path.is_file()):  # links followed
                out[index] = entry.path
        return out

    def complete_parts(self) -> list[tuple[int, Location, Location]]:
        """``(index, detections part, images part)`` of every complete shard, verified.

        Every part's footer is read: each must be whole and carry this run's config digest.

        Raises:
            RunDirError: a part is unreadable or damaged (names it).
            RunMismatchError: parts of another run config sit in the folder (names them).
        """
        dets, images = self._part_files(DETECTIONS_DIR), self._part_files(IMAGES_DIR)
        pairs = [(i, dets[i], images[i]) for i in sorted(set(dets) & set(images))]
        legacy = (self.record or {}).get("format") == 1
        odd: list[str] = []
        for _, det_path, img_path in pairs:
            for path, table in ((det_path, DETECTIONS_DIR), (img_path, IMAGES_DIR)):
                info = inspect_part(path, table)
                if legacy and table == DETECTIONS_DIR and not info.meta and info.num_rows >= 0 \
                        and (info.problem or "").startswith("no dsfd"):
                    continue
                if not info.ok:
                    raise RunDirError(f"{path}: {info.problem}; run the same dsfd run/label "
                                      "command again to redo this shard")
                if info.meta.get("config_digest") != self.config_digest:
                    odd.append(f"{table}/{path.name}")
        if odd:
            shown = ", ".join(odd[:5]) + (f" and {len(odd) - 5} more" if len(odd) > 5 else "")
            raise RunMismatchError(f"{self.root} mixes runs: {len(odd)} parts were written "
                                   f"with another config than {RUN_JSON} records ({shown}); "
                                   "rerun into a new --out, or with --restart")
        return pairs

    def _read(self, path: Location, schema: pa.Schema) -> pa.Table:
        try:
            where, fs = arrow_file(path)
            return pq.read_table(where, schema=schema, filesystem=fs)
        except (OSError, pa.ArrowException) as exc:
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise RunDirError(f"{path}: unreadable Parquet ({reason})") from exc

    def images(self) -> pa.Table:
        """The images table of every complete shard, in shard order."""
        parts = [self._read(img, IMAGES_SCHEMA) for _, _, img in self.complete_parts()]
        return pa.concat_tables(parts) if parts else IMAGES_SCHEMA.empty_table()

    def iter_detections(self, min_score: float | None = None) -> Iterator[pa.Table]:
        """Each complete shard's detections in turn (one shard in memory at a time),
        optionally ``score >= min_score`` only."""
        for _, det, _ in self.complete_parts():
            table = self._read(det, DETECTIONS_SCHEMA)
            if min_score is not None:
                table = table.filter(pc.greater_equal(table["score"],
                                                      pa.scalar(min_score, pa.float32())))
            yield table

    def detections(self, min_score: float | None = None) -> pa.Table:
        """The detections of every complete shard, in shard order, optionally
        ``score >= min_score`` only."""
        parts = list(self.iter_detections(min_score))
        return pa.concat_tables(parts) if parts else DETECTIONS_SCHEMA.empty_table()

    def detections_by_image(self, min_score: float | None = None
                            ) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
        """``(image_id, boxes [K, 4] float32 xyxy, scores [K] float32)`` for every image read
        without error, in manifest order (K may be 0); one shard in memory at a time."""
        for _, det_path, img_path in self.complete_parts():
            images = self._read(img_path, IMAGES_SCHEMA)
            dets = self._read(det_path, DETECTIONS_SCHEMA)
            if min_score is not None:
                dets = dets.filter(pc.greater_equal(dets["score"],
                                                    pa.scalar(min_score, pa.float32())))
            ids = np.asarray(dets["image_id"].to_pylist(), dtype=object)
            coords = np.stack([dets[c].to_numpy() for c in ("x1", "y1", "x2", "y2", "score")],
                              axis=1) if dets.num_rows else np.zeros((0, 5), np.float32)
            # group once per shard (a stable sort keeps each image's rows in stored order),
            # not one scan of the shard per image
            order = np.argsort(ids, kind="stable") if len(ids) else np.zeros(0, np.int64)
            sorted_ids = ids[order]
            starts: dict[str, int] = {}
            ends: dict[str, int] = {}
            for i, image_id in enumerate(sorted_ids):
                starts.setdefault(image_id, i)
                ends[image_id] = i + 1
            for image_id, status in zip(images["image_id"].to_pylist(),
                                        images["status"].to_pylist(), strict=True):
                if status != "ok":
                    continue
                rows = coords[order[starts.get(image_id, 0):ends.get(image_id, 0)]]
                yield image_id, rows[:, :4].astype(np.float32), rows[:, 4].astype(np.float32)

    # ---------------------------------------------------------------- writing
    @classmethod
    def open_for_writing(cls, path: str | os.PathLike[str] | ObjectPath, *,
                         inputs: Sequence[Location] = (), restart: bool = False,
                         force_unlock: bool = False) -> RunDir:
        """Claim ``path`` for a run: refuse what is not ours, take the lock, tidy up.

        Args:
            path: the run directory (created when missing), a local path or an
                object-storage URI (its bucket must exist).
            inputs: folders the run reads images from; a run directory inside one of them,
                or one of them inside the run directory, is refused.
            restart: remove the files an earlier run wrote here (and only those).
            force_unlock: take over a lock written on another host (``--force-unlock``).

        Raises:
            RunDirError: ``path`` is a file or lies under one, overlaps an input, or holds a
                foreign file where the run writes (named), or a ``run.json`` that cannot be
                read nor rebuilt from the parts.
            RunLockedError: another process owns the folder.
        """
        root = location(path).expanduser().absolute()
        _check_out_location(root, path, inputs)
        created = not isinstance(root, ObjectPath) and not root.exists()
        root.mkdir(parents=True, exist_ok=True)
        lock: RunLock | ObjectRunLock = ObjectRunLock(root, force=force_unlock) \
            if isinstance(root, ObjectPath) else RunLock(root, force=force_unlock)
        lock.acquire()
        run = cls(root, None, lock)
        try:
            if lock.took_over is not None:
                _note(f"took over {lock.path} of {lock.took_over.describe()}, which is no "
                      "longer running")
            run._claim()
            if restart:
                run.restart()
        except BaseException:
            run.release()
            if created and isinstance(root, Path):
                _remove_empty_tree(root)
            raise
        return run

    def _claim(self) -> None:
        try:
            self.record = read_record(self.root / RUN_JSON)
        except UnreadableRecord as exc:
            self.record = self._rebuild_record(str(exc), damaged=True)
        foreign = self._foreign_files()
        if foreign:
            raise RunDirError(f"{foreign[0]}: not written by this run; the run would write "
                              f"into {foreign[0].parent}, which must hold only its own parts: "
                              "move the file away or choose another --out")
        if self.record is None and self._part_files(IMAGES_DIR):
            self.record = self._rebuild_record(f"{self.root / RUN_JSON}: missing", damaged=False)
        self._remove_own_temporaries()

    def _foreign_files(self) -> list[Location]:
        """Files in ``images/`` and ``detections/`` that are provably not this run's."""
        run_id = str((self.record or {}).get("run_id", ""))
        out: list[Location] = []
        for table in TABLES:
            folder = self.root / table
            if isinstance(folder, ObjectPath):
                if folder.is_file():  # an object named like the folder (a prefix is no file)
                    return [folder]
            elif not folder.exists():
                continue
            elif not folder.is_dir():
                return [folder]
            for entry in list_dir(folder):
                path = entry.path
                if run_id and entry.name.startswith(tmp_prefix(run_id)) and entry.is_file:
                    continue
                if part_index(entry.name) is None or not entry.is_file:
                    out.append(path)
                    continue
                # beside a run.json of ours an exact part name is ours (even a truncated one);
                # without one, only a part that carries our metadata is
                if self.record is None and not inspect_part(path, table).meta:
                    out.append(path)
        return out

    def _rebuild_record(self, why: str, *, damaged: bool) -> dict[str, Any]:
        """A ``run.json`` rebuilt from the images parts' run identity (all must agree)."""
        identities = {}
        for index, path in sorted(self._part_files(IMAGES_DIR).items()):
            identity = read_run_identity(path)
            if identity is not None:
                identities[index] = identity
        digests = {i.get("config_digest") for i in identities.values()}
        if not identities or len(digests) != 1:
            what = "no part carries the run's identity" if not identities else \
                "the parts carry different run configs"
            raise RunDirError(f"{why}; it cannot be rebuilt ({what}): move it away to start "
                              "a new run here, or choose another --out")
        record = dict(next(iter(identities.values())))
        record.update({"kind": RECORD_KIND, "format": RUN_FORMAT,
                       "plan": {"complete": False}, "history": [],
                       "repaired": {"from_parts": len(identities), "reason": why}})
        kept = ""
        if damaged:
            path = self.root / RUN_JSON
            aside = path.with_name(f"{RUN_JSON}.damaged-{time.strftime('%Y%m%dT%H%M%S')}")
            if isinstance(path, ObjectPath) and isinstance(aside, ObjectPath):
                path.copy_to(aside)  # no rename on object storage: copy, then replace below
            else:
                os.replace(str(path), str(aside))
            kept = f" (the damaged file is kept as {aside.name})"
        self.write_record(record)
        _note(f"{why}; rebuilt it from {len(identities)} parts{kept}")
        return record

    def _remove_own_temporaries(self) -> int:
        run_id = str((self.record or {}).get("run_id", ""))
        if not run_id:
            return 0
        removed = 0
        for folder in (self.root, *(self.root / t for t in TABLES)):
            for entry in list_dir(folder):
                if entry.name.startswith(tmp_prefix(run_id)) and entry.is_file:
                    entry.path.unlink()
                    removed += 1
        return removed

    def restart(self) -> None:
        """``--restart``: remove the parts, temporaries and ``run.json`` of the earlier run
        (only those; folders stay)."""
        self._remove_own_temporaries()
        for table in TABLES:
            for path in self._part_files(table).values():
                path.unlink()
        (self.root / RUN_JSON).unlink(missing_ok=True)
        self.record = None

    def release(self) -> None:
        """Give up the lock (the run directory may be used by the next job)."""
        if self._lock is not None:
            self._lock.release()

    def __enter__(self) -> RunDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    # ---------------------------------------------------------------- resume
    def check_config(self, config: dict[str, Any]) -> None:
        """Refuse when the recorded run has another format or config than ``config``
        (a subset of the recorded keys may be given: only those are compared)."""
        old = self.record
        if old is None:
            return
        if old.get("format") != RUN_FORMAT:
            raise RunMismatchError(f"{self.root / RUN_JSON}: format {old.get('format')!r}, this "
                                   f"version writes {RUN_FORMAT}; use --restart")
        recorded = old.get("config", {})
        diffs = config_differences({k: recorded.get(k) for k in config}, config)
        if diffs:
            raise RunMismatchError(f"{self.root} holds a run with another config "
                                   f"({'; '.join(diffs)}); use --restart to replace it, or "
                                   "another --out")

    def prepare(self, config: dict[str, Any], shards: Iterable[Shard], *,
                retry_errors: bool = False) -> ResumeState:
        """Check the recorded run against ``config`` and the manifest's shards; tidy parts.

        Complete shards must hold the manifest's images and this config; a shard with a
        damaged, truncated or half-written part is removed here (and so redone), and with
        ``retry_errors`` so is a whole shard that holds error rows. A part beyond the
        manifest's last shard means the dataset shrank.

        Raises:
            RunMismatchError: another config, another dataset, or parts of another run.
        """
        self.check_config(config)
        digest = self.config_digest if self.record else config_digest(config)
        dets, images = self._part_files(DETECTIONS_DIR), self._part_files(IMAGES_DIR)
        done, redone = Totals(), []
        num_shards = num_images = 0
        for shard in shards:
            num_shards += 1
            num_images += len(shard.entries)
            paths = (dets.pop(shard.index, None), images.pop(shard.index, None))
            if paths == (None, None):
                continue
            infos = [inspect_part(p, t) for p, t in zip(paths, TABLES, strict=True) if p]
            problem = self._shard_problem(shard, infos, digest)
            if problem is None and retry_errors and infos[1].meta.get("num_errors"):
                problem = (f"shard {shard.index} holds {infos[1].meta['num_errors']} error "
                           "rows (--retry-errors)")
            if problem is None:
                meta = infos[1].meta
                done.add(int(meta["num_images"]), int(meta["num_errors"]),
                         int(meta["num_detections"]))
                continue
            if len(infos) == 2:
                redone.append(f"{problem}; the shard will be redone")
            for info in infos:
                info.path.unlink()
        leftover = sorted({*dets.values(), *images.values()})
        if leftover:
            raise RunMismatchError(f"{leftover[0]}: the dataset shrank to {num_images} images "
                                   f"({num_shards} shards); use --restart to start over")
        for line in redone:
            _note(line)
        return ResumeState(num_shards, num_images, done, tuple(redone))

    def _shard_problem(self, shard: Shard, infos: list[PartInfo], digest: str) -> str | None:
        """Why a shard's parts cannot be kept (None when they are whole and ours).

        Raises:
            RunMismatchError: a whole part of other images or another config.
        """
        if len(infos) < 2:
            return "half-written shard"
        for info in infos:
            if not info.ok:
                return f"{info.path}: {info.problem}"
        for info in infos:
            if info.meta.get("config_digest") != digest:
                raise RunMismatchError(f"{info.path}: written with another config than "
                                       f"{RUN_JSON} records; use --restart")
            if info.meta.get("digest") != shard.digest:
                if info.meta.get("num_images", 0) < len(shard.entries):
                    # the short last shard of a shorter manifest (a --limit trial run now
                    # extended, or a dataset grown at its end): redone whole
                    return f"shard {shard.index} was the short last shard of a shorter run"
                raise RunMismatchError(
                    f"{info.path}: the dataset changed: shard {shard.index} (first image "
                    f"{shard.entries[0].image_id!r}) holds other images than the manifest now "
                    "lists; use --restart to start over")
        if infos[1].meta.get("num_images") != len(shard.entries):
            return f"{infos[1].path}: {infos[1].num_rows} images, the shard has " \
                   f"{len(shard.entries)}"
        if infos[0].num_rows != infos[1].meta.get("num_detections"):
            return f"{infos[0].path}: {infos[0].num_rows} rows where the images part " \
                   f"records {infos[1].meta.get('num_detections')}"
        return None

    def is_done(self, shard_index: int) -> bool:
        """Both parts of the shard exist (after :meth:`prepare`, that means whole and ours)."""
        name = part_name(shard_index)
        return all((self.root / t / name).is_file() for t in TABLES)

    def begin(self, record: dict[str, Any]) -> ShardWriter:
        """Record the run (``run.json``) and return the writer of its shards.

        ``record`` holds at least ``config``; ``kind``, ``format``, ``run_id`` and
        ``config_digest`` are filled in (the run id is kept across resumes).
        """
        old = self.record or {}
        record = {**record, "kind": RECORD_KIND, "format": RUN_FORMAT,
                  "run_id": old.get("run_id") or secrets.token_hex(8),
                  "config_digest": config_digest(record["config"])}
        self.write_record(record)
        self.record = record
        import json

        identity = {k: record.get(k) for k in ("kind", "format", "run_id", "config",
                                                "config_digest", "dataset_spec",
                                                "dataset_name", "model")}
        return ShardWriter(str(self.root), record["run_id"], record["config_digest"],
                           json.dumps(identity, sort_keys=True, default=str))

    def write_record(self, record: dict[str, Any]) -> None:
        """Write ``run.json`` atomically (through one of the run's own temporaries)."""
        run_id = str(record.get("run_id") or (self.record or {}).get("run_id") or "new")
        write_record(self.root / RUN_JSON, record,
                     f"{tmp_prefix(run_id)}{os.getpid()}-{RUN_JSON}")
        self.record = dict(record)

    def finish(self, update: Callable[[dict[str, Any]], None]) -> None:
        """Remove temporaries left by killed writers, then rewrite ``run.json`` after
        ``update(record)`` has changed it in place."""
        self._remove_own_temporaries()
        record = dict(self.record or {})
        update(record)
        self.write_record(record)


def _check_out_location(root: Location, given: str | os.PathLike[str] | ObjectPath,
                        inputs: Sequence[Location]) -> None:
    if isinstance(root, ObjectPath):
        if root.key and root.is_file():
            raise RunDirError(f"--out {given} is an object, not a prefix (folder)")
        for folder in inputs:
            if _inside(root, folder):
                raise RunDirError(f"--out {given} lies inside the input folder {folder}: the "
                                  "run would read its own output; choose an --out outside it")
            if _inside(folder, root):
                raise RunDirError(f"the input folder {folder} lies inside --out {given}: the "
                                  "run would write among its inputs; choose an --out outside it")
        return
    for part in (root, *root.parents):
        if part.exists():
            if not part.is_dir():
                what = "is a file" if part == root else f"lies under a file ({part})"
                raise RunDirError(f"--out {given} {what}, not a directory")
            break
    real = Path(os.path.realpath(root))
    for folder in inputs:
        if isinstance(folder, ObjectPath):
            continue
        src = Path(os.path.realpath(folder))
        if _inside(real, src):
            raise RunDirError(f"--out {given} lies inside the input folder {folder}: the run "
                              "would read its own output; choose an --out outside it")
        if _inside(src, real):
            raise RunDirError(f"the input folder {folder} lies inside --out {given}: the run "
                              "would write among its inputs; choose an --out outside it")


def _remove_empty_tree(root: Path) -> None:
    """Remove ``root`` (which this call created) if nothing but empty folders is in it."""
    for name in (LOCK_FILE,):
        if (root / name).exists():
            return
    try:
        for sub in TABLES:
            if (root / sub).is_dir():
                (root / sub).rmdir()
        root.rmdir()
    except OSError:
        pass


__all__ = ["RunDir", "ResumeState", "Totals", "TMP_PREFIX"]
