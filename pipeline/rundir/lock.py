"""One owner at a time: the run directory's lock file (``RUN_DIR/run.lock``).

The lock is a small JSON file (host, pid, process start time, when) held with ``flock`` for the
life of the owning process, so the kernel releases it when that process dies however it dies.
A second process on the same host finds the ``flock`` taken and is refused, naming the holder.
A lock file whose ``flock`` is free was left by a process that is gone: on the same host it is
taken over (the recorded pid is checked too); one written on another host is refused, since
``flock`` may not reach across hosts on a shared file system, with how to clear it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.rundir.errors import RunDirError, RunLockedError

LOCK_FILE = "run.lock"
_LOCK_KIND = "dsfd-run-lock"


@dataclass(frozen=True)
class LockHolder:
    """Who holds (or held) a run directory's lock."""

    host: str
    pid: int
    started: str
    process_start: float

    def describe(self) -> str:
        return f"pid {self.pid} on host {self.host} (since {self.started})"


def _process_alive(pid: int, process_start: float) -> bool:
    """Whether ``pid`` runs on this host and is the same process (start time matches)."""
    import psutil

    try:
        proc = psutil.Process(pid)
        return abs(proc.create_time() - process_start) < 1.0 or process_start == 0.0
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return False


def _read_holder(path: Path) -> LockHolder | None:
    """The holder recorded in ``path``; None when the file is empty (being written)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RunDirError(f"{path}: cannot read the lock file ({exc}); remove it if no dsfd "
                          "job uses this folder") from exc
    if not text.strip():
        return None
    try:
        data = json.loads(text)
        if data.get("kind") != _LOCK_KIND:
            raise ValueError("not a dsfd lock")
        return LockHolder(str(data["host"]), int(data["pid"]), str(data["started"]),
                          float(data.get("process_start", 0.0)))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise RunDirError(f"{path}: not a dsfd lock file; it is not ours to replace: remove it "
                          "or choose another --out") from exc


class RunLock:
    """The lock of one run directory, held from :meth:`acquire` until :meth:`release`.

    Args:
        run_dir: the run directory (must exist).
    """

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self._fd: int | None = None
        self.took_over: LockHolder | None = None

    def acquire(self) -> RunLock:
        """Take the lock or raise :class:`RunLockedError` naming the holder.

        Raises:
            RunLockedError: a live process holds it, or a process on another host wrote it.
            RunDirError: ``run.lock`` is not a dsfd lock file.
        """
        for _ in range(20):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                holder = _read_holder(self.path)
                who = holder.describe() if holder else "another process"
                raise RunLockedError(f"{self.path.parent} is in use by {who}; wait for that "
                                     "job to end, or use another --out") from None
            if self._same_file(fd):
                try:
                    self._claim(fd)
                except BaseException:
                    os.close(fd)
                    raise
                self._fd = fd
                return self
            os.close(fd)  # the file was replaced or removed between open and flock: retry
            time.sleep(0.01)
        raise RunLockedError(f"{self.path}: could not be locked (it keeps changing)")

    def _same_file(self, fd: int) -> bool:
        try:
            return os.fstat(fd).st_ino == os.stat(self.path).st_ino
        except FileNotFoundError:
            return False

    def _claim(self, fd: int) -> None:
        """With the ``flock`` held: refuse a lock of another host, then write ours."""
        holder = _read_holder(self.path)
        here = socket.gethostname()
        if holder is not None and holder.host != here:
            raise RunLockedError(
                f"{self.path.parent} is locked by {holder.describe()}; if no dsfd job runs "
                f"there any more, remove {self.path} and run the command again")
        if holder is not None and holder.pid != os.getpid() and _process_alive(
                holder.pid, holder.process_start):
            raise RunLockedError(f"{self.path.parent} is in use by {holder.describe()}; wait "
                                 "for that job to end, or use another --out")
        if holder is not None:
            self.took_over = holder
        import psutil

        record: dict[str, Any] = {
            "kind": _LOCK_KIND, "host": here, "pid": os.getpid(),
            "process_start": psutil.Process().create_time(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        data = (json.dumps(record, sort_keys=True) + "\n").encode("utf-8")
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
        os.fsync(fd)

    def release(self) -> None:
        """Remove the lock file and drop the ``flock`` (safe to call twice)."""
        if self._fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            if self._same_file(self._fd):
                os.unlink(self.path)
        os.close(self._fd)
        self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
