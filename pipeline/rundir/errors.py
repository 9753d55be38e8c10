"""The errors of the run directory; each message is one line naming the file it is about."""

from __future__ import annotations


class RunDirError(ValueError):
    """A run directory cannot be used as asked (foreign files, corrupt parts, mixed runs)."""


class RunMismatchError(RunDirError):
    """The run directory holds results of a different config, model or dataset."""


class RunLockedError(RunDirError):
    """Another process owns the run directory (its lock names the holder)."""


class OutputWriteError(OSError):
    """A shard's parts could not be written (disk full, file too large, read-only, no
    permission); ``str(error)`` is one line naming the shard, the folder and the reason.

    A run stops at the first one instead of retrying: rerunning the same command once the
    cause is fixed resumes, since nothing but complete part pairs is ever kept.
    """
