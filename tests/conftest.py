"""Shared fixtures. Ray's environment is set here, before any test can start Ray: the raylet
and every worker inherit the driver's environment."""

from __future__ import annotations

import os
import time
from pathlib import Path

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
os.environ.setdefault("RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S", "30")

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"
NUM_CPUS = 2


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The test fixtures shipped with the repository (``tests/data``, see its README): real
    WIDER FACE val and FDDB annotations, the official evaluators' recorded outputs, the release
    checkpoint's key/shape table."""
    return DATA


def _start_local_ray() -> None:
    import ray

    ray.init(
        num_cpus=NUM_CPUS,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        object_store_memory=512 * 1024**2,
        log_to_driver=os.environ.get("RAY_LOG_TO_DRIVER") == "1",
    )


@pytest.fixture(scope="session")
def ray_session():
    import ray

    if not ray.is_initialized():
        _start_local_ray()
    yield
    ray.shutdown()


@pytest.fixture
def ray_ctx(ray_session):
    """A local Ray with 2 CPUs; restarts it if a cluster test tore it down and fails a test
    that leaks CPUs (leaked actors starve the next test)."""
    import ray

    if not ray.is_initialized():
        _start_local_ray()
    yield
    deadline = time.time() + 15
    while ray.available_resources().get("CPU", 0) < NUM_CPUS and time.time() < deadline:
        time.sleep(0.25)
    if ray.available_resources().get("CPU", 0) < NUM_CPUS:
        ray.shutdown()
        pytest.fail("test leaked Ray resources")
