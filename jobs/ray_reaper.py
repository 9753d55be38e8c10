"""Watches a driver that started its own local Ray and, once the driver is gone however it
ended (a SIGKILL included), ends what is left of that Ray: ``ray stop`` for one session.

Ray ends its GCS and raylet with the driver, but the raylet's agents (``ray::DashboardAgent``,
``ray::RuntimeEnvAgent``) and, at times, workers outlive them. The reaper runs as its own
process in its own session, polls the driver's descendants while the driver lives, and after
the driver is gone sends SIGTERM, then SIGKILL, to every recorded process still alive (a
process is recognised by pid and start time, so a reused pid is never touched).

    python -m jobs.ray_reaper DRIVER_PID
"""

from __future__ import annotations

import os
import sys
import time

import psutil

POLL_SECONDS = 0.5
GRACE_SECONDS = 3.0


def _snapshot(driver: psutil.Process, seen: dict[int, float]) -> None:
    try:
        for child in driver.children(recursive=True):
            if child.pid == os.getpid():  # this reaper is one of them
                continue
            try:
                seen.setdefault(child.pid, child.create_time())
            except psutil.Error:
                continue
    except psutil.Error:
        pass


def _alive(seen: dict[int, float]) -> list[psutil.Process]:
    out = []
    for pid, started in seen.items():
        try:
            proc = psutil.Process(pid)
            if abs(proc.create_time() - started) < 0.01 and proc.status() != psutil.STATUS_ZOMBIE:
                out.append(proc)
        except psutil.Error:
            continue
    return out


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def reap(driver_pid: int) -> int:
    """Watch ``driver_pid`` until it ends, then end its leftover descendants; how many."""
    try:
        driver = psutil.Process(driver_pid)
    except psutil.Error:
        return 0
    seen: dict[int, float] = {}
    while _running(driver):
        _snapshot(driver, seen)
        time.sleep(POLL_SECONDS)
    deadline = time.monotonic() + GRACE_SECONDS  # Ray's own fate-sharing goes first
    while _alive(seen) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = _alive(seen)
    for proc in left:
        try:
            proc.terminate()
        except psutil.Error:
            pass
    _, still = psutil.wait_procs(left, timeout=GRACE_SECONDS)
    for proc in still:
        try:
            proc.kill()
        except psutil.Error:
            pass
    return len(left)


if __name__ == "__main__":
    reap(int(sys.argv[1]))
