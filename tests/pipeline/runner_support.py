"""Fixtures and helpers of the runner tests: a small saved model, a synthetic benchmark, the
in-process reference detections. Test modules import the fixtures they use."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="session")
def small_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ``vgg16`` model at width 0.125 (random weights, seed 0) saved as our checkpoint."""
    import torch

    import dsfd

    torch.manual_seed(0)
    model = dsfd.build_model("vgg16", width=0.125)
    path = tmp_path_factory.mktemp("model") / "vgg16-w0125.pt"
    dsfd.save_checkpoint(path, model)
    return path


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated synthetic benchmark: 12 WIDER val images (``synthetic:ROOT``), no others."""
    from pipeline.synthetic import SynthConfig, generate_benchmark

    root = tmp_path_factory.mktemp("synth")
    generate_benchmark(root, SynthConfig(seed=3, num_val=12, num_train=0, num_fddb=0))
    return root


def reference_detections(checkpoint: Path, paths: dict[str, str], max_size: int | None = None,
                         multiscale: bool = False) -> dict[str, np.ndarray]:
    """``{image_id: (N, 5) boxes}`` from the Detector called directly in this process."""
    import torch

    import dsfd
    from pipeline.images import decode_image

    torch.manual_seed(0)
    model, _ = dsfd.load_model(str(checkpoint))
    detector = dsfd.Detector(model, device="cpu")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the 1-CPU workers: the same summation order
    try:
        out: dict[str, np.ndarray] = {}
        for image_id, path in paths.items():
            pixels = decode_image(path).pixels
            if multiscale:
                boxes = detector.detect_multiscale(pixels)
            else:
                boxes = detector.detect([pixels], max_size=max_size)[0]
            out[image_id] = np.asarray(boxes, np.float32).reshape(-1, 5)
    finally:
        torch.set_num_threads(threads)
    return out


def run_detections(run_dir: Path) -> dict[str, np.ndarray]:
    """``{image_id: (N, 5) boxes}`` of a run directory's ok images (manifest order kept)."""
    from pipeline.rundir import RunDir

    images = RunDir.open(run_dir).images().to_pandas()
    dets = RunDir.open(run_dir).detections().to_pandas()
    out: dict[str, np.ndarray] = {}
    for image_id in images.loc[images["status"] == "ok", "image_id"]:
        rows = dets[dets["image_id"] == image_id]
        out[image_id] = rows[["x1", "y1", "x2", "y2", "score"]].to_numpy(np.float32)
    return out


def assert_same_detections(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    """Same images, and per image the same boxes (order-free) to float tolerance."""
    assert sorted(got) == sorted(want)
    for image_id, boxes in want.items():
        a = got[image_id][np.lexsort(got[image_id].T[::-1])]
        b = boxes[np.lexsort(boxes.T[::-1])]
        assert a.shape == b.shape, f"{image_id}: {a.shape} boxes vs {b.shape} in-process"
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-3, err_msg=image_id)


FAST_HEALTH_CHECKS = {"health_check_period_ms": 500, "health_check_failure_threshold": 3,
                      "health_check_initial_delay_ms": 0}


def local_cluster(cpus_per_node: int, num_nodes: int = 2):  # type: ignore[no-untyped-def]
    """A Ray test cluster on this machine (a head without CPUs plus ``num_nodes`` nodes of
    ``cpus_per_node`` CPUs, fast node-death detection), joined by this process; a generator
    for fixtures: yields ``(cluster, nodes)`` and tears both down."""
    import ray
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 0, "include_dashboard": False, "object_store_memory": 150 * 1024**2,
        "_system_config": FAST_HEALTH_CHECKS})
    nodes = [cluster.add_node(num_cpus=cpus_per_node, object_store_memory=150 * 1024**2)
             for _ in range(num_nodes)]
    try:
        ray.init(address=cluster.address, log_to_driver=False)
        cluster.wait_for_nodes()
        yield cluster, nodes
    finally:
        ray.shutdown()
        cluster.shutdown()
