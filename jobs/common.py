"""What every command shares: the one-line error, validated argument types, the argument
groups of ``run``/``label``, and the one way to start or join Ray.

Nothing heavy is imported here (no torch, no Ray at import time), so ``dsfd eval`` stays fast.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import signal
import sys
from collections.abc import Iterator
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


def init_ray(address: str | None) -> bool:
    """Start a local Ray, or join ``address`` / ``$RAY_ADDRESS``; True when started here.

    Ray's own messages stay off stdout (and its workers' logs off the console).
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
    if ray.is_initialized():
        return False
    with stdout_to_stderr():  # ray.init prints its banner on stdout
        if address:
            try:
                ray.init(address=address, log_to_driver=False)
            except ConnectionError as exc:  # e.g. "auto" with no cluster running
                lines = str(exc).strip().splitlines() or [type(exc).__name__]
                raise CommandError(f"--address {address}: {lines[0]}") from None
        else:
            _start_reaper()
            ray.init(include_dashboard=False, log_to_driver=False)
    try:  # ray.init installs a handler that exits at once on SIGTERM: take it back
        signal.signal(signal.SIGTERM, interrupt_on_sigterm)
    except ValueError:  # not the main thread
        pass
    return True
