"""One owner at a time: the run directory's lock file (``RUN_DIR/run.lock``).

The lock is a small JSON file (host, pid, process start time, when) held with ``flock`` for the
life of the owning process, so the kernel releases it when that process dies however it dies.
A second process on the same host finds the ``flock`` taken and is refused, naming the holder.
A lock file whose ``flock`` is free was left by a process that is gone: on the same host it is
taken over (the recorded pid is checked too); one written on another host is refused, since
``flock`` may not reach across hosts on a shared file system, with how to clear it
(``--force-unlock`` takes it over).

On object storage (:class:`ObjectRunLock`) there is no ``flock`` and no create-if-absent: the
lock is the same JSON record written as the ``run.lock`` object, plus a random token. A lock
object of a live process on this host is refused; one of a process that is gone on this host
is taken over; one written on another host is refused unless ``--force-unlock`` is given. After
writing its record a job reads it back (after a short settle time) and goes on only if its own
token is there, so of two jobs that start together at most one normally proceeds; the store
cannot make this a guarantee (see ``docs/pipeline.md``, "Object storage").
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.rundir.errors import RunDirError, RunLockedError
from pipeline.storage import Location, ObjectPath

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


def _read_holder(path: Location) -> LockHolder | None:
    """The holder recorded in ``path``; None when the file is empty (being written) or, on
    object storage, absent."""
    return _parse_holder(path)[0]


def _parse_holder(path: Location) -> tuple[LockHolder | None, str | None]:
    """``(holder, token)`` recorded in ``path`` (token: object-storage locks only)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        if isinstance(exc, FileNotFoundError) and isinstance(path, ObjectPath):
            return None, None
        raise RunDirError(f"{path}: cannot read the lock file ({exc}); remove it if no dsfd "
                          "job uses this folder") from exc
    if not text.strip():
        return None, None
    try:
        data = json.loads(text)
        if data.get("kind") != _LOCK_KIND:
            raise ValueError("not a dsfd lock")
        token = data.get("token")
        return LockHolder(str(data["host"]), int(data["pid"]), str(data["started"]),
                          float(data.get("process_start", 0.0))), \
            None if token is None else str(token)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise RunDirError(f"{path}: not a dsfd lock file; it is not ours to replace: remove it "
                          "or choose another --out") from exc


class RunLock:
    """The lock of one run directory, held from :meth:`acquire` until :meth:`release`.

    Args:
        run_dir: the run directory (must exist).
        force: take over a lock written on another host (``--force-unlock``); a live
            ``flock`` on this host is still refused.
    """

    def __init__(self, run_dir: Path, *, force: bool = False) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self.force = force
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
        if holder is not None and holder.host != here and not self.force:
            raise RunLockedError(
                f"{self.path.parent} is locked by {holder.describe()}; if no dsfd job runs "
                f"there any more, remove {self.path} and run the command again (or run it "
                "with --force-unlock)")
        if holder is not None and holder.pid != os.getpid() and _process_alive(
                holder.pid, holder.process_start):
            raise RunLockedError(f"{self.path.parent} is in use by {holder.describe()}; wait "
                                 "for that job to end, or use another --out")
        if holder is not None:
            self.took_over = holder
        data = _lock_record()
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


def _lock_record(token: str | None = None) -> bytes:
    """This process's lock record (host, pid, process start, time; a token on object
    storage) as the bytes of the lock file."""
    import psutil

    record: dict[str, Any] = {
        "kind": _LOCK_KIND, "host": socket.gethostname(), "pid": os.getpid(),
        "process_start": psutil.Process().create_time(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    if token is not None:
        record["token"] = token
    return (json.dumps(record, sort_keys=True) + "\n").encode("utf-8")


OBJECT_LOCK_SETTLE_S = 0.5
"""How long a job waits after writing the lock object before reading it back."""


class ObjectRunLock:
    """The lock of a run directory on object storage: the ``run.lock`` object (see the module
    docstring for the rules and what they guarantee).

    Args:
        run_dir: the run directory's URI.
        force: take over a lock object written on another host (``--force-unlock``).
    """

    def __init__(self, run_dir: ObjectPath, *, force: bool = False) -> None:
        self.path = run_dir / LOCK_FILE
        self.force = force
        self.took_over: LockHolder | None = None
        self._token: str | None = None

    def acquire(self) -> ObjectRunLock:
        """Take the lock or raise :class:`RunLockedError` naming the holder.

        Raises:
            RunLockedError: a live process on this host, or a process on another host (unless
                ``force``), holds it; or another job wrote it at the same moment.
            RunDirError: ``run.lock`` is not a dsfd lock.
        """
        holder, _ = _parse_holder(self.path)
        if holder is not None:
            self._check_holder(holder)
            self.took_over = holder
        token = secrets.token_hex(16)
        self.path.write_bytes(_lock_record(token))
        time.sleep(OBJECT_LOCK_SETTLE_S)
        now, now_token = _parse_holder(self.path)
        if now_token != token:
            who = now.describe() if now else "another job"
            raise RunLockedError(f"{self.path.parent} was locked by {who} at the same moment; "
                                 "wait for that job to end, or use another --out")
        self._token = token
        return self

    def _check_holder(self, holder: LockHolder) -> None:
        if self.force:
            return
        if holder.host != socket.gethostname():
            raise RunLockedError(
                f"{self.path.parent} is locked by {holder.describe()}; if no dsfd job runs "
                f"there any more, remove {self.path} and run the command again (or run it "
                "with --force-unlock)")
        if holder.pid == os.getpid() or _process_alive(holder.pid, holder.process_start):
            raise RunLockedError(f"{self.path.parent} is in use by {holder.describe()}; wait "
                                 "for that job to end, or use another --out")

    def release(self) -> None:
        """Delete the lock object if it is still ours (safe to call twice)."""
        if self._token is None:
            return
        token, self._token = self._token, None
        with contextlib.suppress(RunDirError, OSError):
            if _parse_holder(self.path)[1] == token:
                self.path.unlink(missing_ok=True)

    @property
    def held(self) -> bool:
        return self._token is not None

    def __enter__(self) -> ObjectRunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
