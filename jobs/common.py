"""What every command shares: the one-line error, validated argument types, the argument
groups of ``run``/``label``, and the one way to start or join Ray.

Nothing heavy is imported here (no torch, no Ray at import time), so ``dsfd eval`` stays fast.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import re
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any


class CommandError(Exception):
    """A failure a subcommand reports as one line (exit status 1), without a traceback."""


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from exc
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def non_negative_float(text: str) -> float:
    """argparse type: a finite number >= 0."""
    try:
        value = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from exc
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    value = non_negative_float(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def score(text: str) -> float:
    """argparse type: a score in [0, 1]."""
    try:
        value = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected a score in [0, 1], got {text!r}") from exc
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise argparse.ArgumentTypeError(f"expected a score in [0, 1], got {text!r}")
    return value


def add_bootstrap_arguments(parser: argparse.ArgumentParser, *, interval_help: str,
                            compare_help: str) -> None:
    """``--bootstrap N``, ``--seed S`` and ``--compare RUN_B`` of the evaluators (checked by
    :func:`check_bootstrap_arguments`)."""
    parser.add_argument("--bootstrap", type=int, metavar="N", help=interval_help)
    parser.add_argument("--seed", type=int, default=0, help="seed of the resampling (0)")
    parser.add_argument("--compare", metavar="RUN_B", help=compare_help)


def check_bootstrap_arguments(args: argparse.Namespace) -> None:
    """``--bootstrap N`` needs N >= 1; ``--compare`` needs ``--bootstrap``."""
    if args.bootstrap is not None and args.bootstrap < 1:
        raise CommandError(f"--bootstrap {args.bootstrap}: need at least 1 replicate")
    if args.compare is not None and args.bootstrap is None:
        raise CommandError("--compare needs --bootstrap N (the number of replicates)")


def note(command: str, message: str) -> None:
    """One line on stderr (``dsfd COMMAND: note: ...``); stdout carries results only."""
    print(f"dsfd {command}: note: {message}", file=sys.stderr)


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Send what Python code prints on stdout to stderr meanwhile (Ray prints its banner and
    its workers' error messages with ``print``), so stdout carries the command's results
    only."""
    stdout = sys.stdout
    sys.stdout = sys.stderr
    try:
        yield
    finally:
        sys.stdout = stdout


def interrupt_on_sigterm(signum: int = signal.SIGTERM, frame: Any = None) -> None:
    """SIGTERM handler: end a command as Ctrl-C does, so its clean-up runs (lock released,
    the local Ray it started shut down) instead of the process vanishing mid-way."""
    raise KeyboardInterrupt


def _start_reaper() -> None:
    """A watcher that ends this process's local Ray once this process is gone, even when it
    is killed outright (``jobs/ray_reaper.py``)."""
    import subprocess

    subprocess.Popen([sys.executable, "-m", "jobs.ray_reaper", str(os.getpid())],
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True)


RAY_CONNECT_TIMEOUT_S = 5.0


def check_ray_address(address: str, timeout: float = RAY_CONNECT_TIMEOUT_S) -> None:
    """Refuse in one line, within ``timeout`` seconds, a Ray address nothing answers at
    (``ray.init`` would retry the GCS for minutes).

    Raises:
        CommandError: the host does not resolve, or nothing accepts a connection on the port.
    """
    import socket

    text = address.removeprefix("ray://")
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit():
        raise CommandError(f"--address {address}: expected HOST:PORT (or 'auto')")
    host = host.strip("[]") or "127.0.0.1"
    try:
        with socket.create_connection((host, int(port_text)), timeout=timeout):
            pass
    except socket.gaierror as exc:
        raise CommandError(f"--address {address}: cannot resolve host {host!r} "
                           f"({exc.strerror})") from None
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise CommandError(f"--address {address}: no Ray cluster answers there ({reason}); "
                           "start one with `ray start --head`, or leave --address out for a "
                           "local Ray") from None


VERBOSE_ENV = "DSFD_VERBOSE"
RAY_LOG = "logs/ray.log"
_LOG_HANDLER = "dsfd_ray_log"


def verbose_requested(flag: bool = False) -> bool:
    """``--verbose``, or ``DSFD_VERBOSE`` set to anything but empty or ``0``."""
    return flag or os.environ.get(VERBOSE_ENV, "") not in ("", "0")


def log_file_for(out: str | os.PathLike[str]) -> Path:
    """Where a command writing to ``out`` keeps Ray's logs: ``OUT/logs/ray.log`` for a local
    folder; for an object-storage URI (``s3://``, ``gs://``, ...), which cannot be appended
    to line by line, a local folder named after the URI under the system's temporary folder
    (the command prints its path)."""
    import tempfile

    text = os.fspath(out)
    scheme, sep, rest = text.partition("://")
    if sep and scheme not in ("", "file"):
        name = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{scheme}_{rest}").strip("_")
        return Path(tempfile.gettempdir()) / "dsfd-logs" / name / "ray.log"
    local = rest if sep else text
    return Path(os.path.abspath(local)) / RAY_LOG


class RayLog:
    """Ray's own output sent to a file instead of the console (to both when ``verbose``):
    the driver's ``ray`` loggers, the workers' output streamed to the driver (the
    ``(ShardWorker pid=...)`` lines) and what Ray prints on stdout (its banner, the
    raylet's messages about dead or restarted workers) while :meth:`stdout` is active.

    Attributes:
        path: the log file (it and its folder are created at the first line, so a command
            refused before Ray starts leaves nothing).
        verbose: keep Ray's console output as well.
    """

    def __init__(self, path: Path, *, verbose: bool = False) -> None:
        self.path, self.verbose = path, verbose
        self._opened: Any = None
        self._handler = _QuietFileHandler(path, encoding="utf-8", delay=True)
        self._handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        self._removed: list[Any] = []
        self._dispatcher: Any = None

    @property
    def _file(self) -> Any:
        """The log, opened (line-buffered, until :meth:`close`) at its first use."""
        if self._opened is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._opened = open(self.path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115
        return self._opened

    def attach(self) -> None:
        """Route the ``ray`` logger (and, once Ray is up, the workers' streams) to the file."""
        import ray  # noqa: F401 - sets up the "ray" logger and its console handler

        logger = logging.getLogger("ray")
        if not self.verbose:
            for old in list(logger.handlers):
                if isinstance(old, logging.StreamHandler) and not isinstance(
                        old, logging.FileHandler):
                    logger.removeHandler(old)
                    self._removed.append(old)
        logger.addHandler(self._handler)

    def attach_workers(self) -> None:
        """Stream the workers' output lines (as Ray prefixes them) into the file, and off the
        console unless ``verbose``; call after ``ray.init(log_to_driver=True)``."""
        from ray._private.worker import global_worker_stdstream_dispatcher as dispatcher

        if not self.verbose:
            dispatcher.remove_handler("ray_print_logs")
        dispatcher.remove_handler(_LOG_HANDLER)
        dispatcher.add_handler(_LOG_HANDLER, self._write_worker_lines)
        self._dispatcher = dispatcher

    def _write_worker_lines(self, data: dict[str, Any]) -> None:
        who = data.get("actor_name") or data.get("task_name") or ""
        prefix = f"({who} pid={data.get('pid')}, ip={data.get('ip')})"
        try:
            self._file.writelines(f"{prefix} {line}\n" for line in data.get("lines", []))
        except (OSError, ValueError):  # a full disk or a closed log: the run goes on
            pass

    @contextlib.contextmanager
    def stdout(self) -> Iterator[None]:
        """Meanwhile, what Python code prints on stdout (Ray's banner, the raylet's messages)
        goes to the file (to stderr as well when ``verbose``), so stdout carries results only.
        """
        stdout = sys.stdout
        target: Any = _Tee(_Plain(self), sys.stderr) if self.verbose else _Plain(self)
        sys.stdout = target
        try:
            yield
        finally:
            sys.stdout = stdout

    def write_failure(self, command: str, exc: BaseException) -> None:
        """The full error, with its traceback, at the end of the file."""
        import traceback

        try:
            self._file.write(f"dsfd {command} failed:\n" + "".join(traceback.format_exception(exc)))
        except (OSError, ValueError):
            pass

    def close(self) -> None:
        """Give Ray's console output back and close the file (idempotent)."""
        logger = logging.getLogger("ray")
        logger.removeHandler(self._handler)
        for old in self._removed:
            logger.addHandler(old)
        self._removed = []
        self._handler.close()
        if self._dispatcher is not None:
            self._dispatcher.remove_handler(_LOG_HANDLER)
            self._dispatcher = None
        if self._opened is not None:
            self._opened.close()
            self._opened = None


class _QuietFileHandler(logging.FileHandler):
    """A log file that drops what it cannot write (a full disk) instead of printing a
    traceback on the console."""

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        pass

    def _open(self) -> Any:  # at the first record (delay=True): the folder too
        Path(self.baseFilename).parent.mkdir(parents=True, exist_ok=True)
        return super()._open()


class _Plain:
    """A text stream into the log file without the terminal colours Ray adds."""

    _COLOUR = re.compile(r"\x1b\[[0-9;]*m")

    def __init__(self, log: RayLog) -> None:
        self.log = log

    def write(self, text: str) -> int:
        self.log._file.write(self._COLOUR.sub("", text))
        return len(text)

    def flush(self) -> None:
        if self.log._opened is not None:
            self.log._opened.flush()

    def isatty(self) -> bool:
        return False


class _Tee:
    """A text stream writing to several (``--verbose`` with a log file)."""

    def __init__(self, *streams: Any) -> None:
        self.streams = streams

    def write(self, text: str) -> int:
        for stream in self.streams:
            stream.write(text)
        return len(text)

    def flush(self) -> None:
        for stream in self.streams:
            stream.flush()

    def isatty(self) -> bool:
        return False


def storage_runtime_env() -> dict[str, Any] | None:
    """The Ray ``runtime_env`` that gives every worker the object-storage settings this
    process sees (the names of :data:`pipeline.storage.FORWARDED_ENV` only; the values are
    never logged nor recorded), or None when none is set."""
    from pipeline.storage import forwarded_env

    env = forwarded_env()
    return {"env_vars": env} if env else None


def init_ray(address: str | None, log: RayLog | None = None) -> bool:
    """Start a local Ray, or join ``address`` / ``$RAY_ADDRESS``; True when started here.

    Ray's own messages stay off stdout. With ``log``, Ray's logs and its workers' output go to
    ``log.path`` (and stay on the console too when ``log.verbose``); without, the workers'
    output is not streamed to this process at all.

    Raises:
        CommandError: ``address`` names no Ray cluster (in seconds, one line).
    """
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    # the shards still in flight when a run stops on an error (a full disk) fail as their
    # actors are killed; their errors are not the run's, which was already reported in one line
    os.environ.setdefault("RAY_IGNORE_UNHANDLED_ERRORS", "1")
    import ray

    address = address or os.environ.get("RAY_ADDRESS") or None
    if address and address != "auto":
        check_ray_address(address)
    if log is not None:
        log.attach()
    if ray.is_initialized():
        return False
    to_driver = log is not None
    runtime_env = storage_runtime_env()
    with log.stdout() if log is not None else stdout_to_stderr():  # ray.init's banner
        if address:
            try:
                ray.init(address=address, log_to_driver=to_driver, runtime_env=runtime_env)
            except ConnectionError as exc:  # e.g. "auto" with no cluster running
                lines = str(exc).strip().splitlines() or [type(exc).__name__]
                raise CommandError(f"--address {address}: {lines[0]}") from None
        else:
            _start_reaper()
            ray.init(include_dashboard=False, log_to_driver=to_driver, runtime_env=runtime_env)
    if log is not None:
        log.attach_workers()
    try:  # ray.init installs a handler that exits at once on SIGTERM: take it back
        signal.signal(signal.SIGTERM, interrupt_on_sigterm)
    except ValueError:  # not the main thread
        pass
    return True
