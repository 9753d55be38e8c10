"""The run directory, the project's central contract: one object (:class:`RunDir`) owns its
layout, ``run.json``, the lock, part verification, resume, the shard writer and the readers.

Every reader of a run's Parquet parts and every writer goes through :class:`RunDir`; see
``docs/reliability.md`` for what the tool may delete and how runs are kept apart.
"""

from pipeline.rundir.errors import OutputWriteError, RunDirError, RunLockedError, RunMismatchError
from pipeline.rundir.lock import LOCK_FILE, RunLock
from pipeline.rundir.parts import ShardWriter, inspect_part, part_index, part_name
from pipeline.rundir.record import (
    RUN_FORMAT,
    RUN_JSON,
    config_differences,
    config_digest,
)
from pipeline.rundir.rundir import ResumeState, RunDir, Totals

__all__ = [
    "LOCK_FILE", "RUN_FORMAT", "RUN_JSON", "OutputWriteError", "ResumeState", "RunDir",
    "RunDirError", "RunLock", "RunLockedError", "RunMismatchError", "ShardWriter", "Totals",
    "config_differences", "config_digest", "inspect_part", "part_index", "part_name",
]
