"""How actor counts and per-actor CPUs/GPUs follow from the settings and the cluster."""

from __future__ import annotations

import pytest

from pipeline.runner import ClusterConfig, RunConfig, resolve_resources


def test_cpu_cluster_defaults_split_the_cpus() -> None:
    r = resolve_resources(ClusterConfig(), [{"CPU": 2.0}])
    assert (r.num_workers, r.num_cpus, r.num_gpus) == (1, 2.0, 0.0)
    r = resolve_resources(ClusterConfig(), [{"CPU": 16.0}])
    assert (r.num_workers, r.num_cpus, r.num_gpus) == (4, 4.0, 0.0)
    r = resolve_resources(ClusterConfig(num_workers=2), [{"CPU": 2.0}])
    assert (r.num_workers, r.num_cpus) == (2, 1.0)


def test_gpu_cluster_defaults_to_one_gpu_per_actor() -> None:
    r = resolve_resources(ClusterConfig(), [{"CPU": 32.0, "GPU": 4.0}])
    assert (r.num_workers, r.num_cpus, r.num_gpus) == (4, 4.0, 1.0)
    r = resolve_resources(ClusterConfig(num_gpus_per_worker=0.5), [{"CPU": 8.0, "GPU": 1.0}])
    assert (r.num_workers, r.num_gpus) == (2, 0.5)
    r = resolve_resources(ClusterConfig(num_gpus_per_worker=0), [{"CPU": 8.0, "GPU": 1.0}])
    assert (r.num_workers, r.num_gpus) == (2, 0.0)


def test_impossible_requests_are_refused() -> None:
    with pytest.raises(ValueError, match="2 GPUs per worker requested but no node has that many"):
        resolve_resources(ClusterConfig(num_gpus_per_worker=2), [{"CPU": 8.0, "GPU": 1.0}])
    with pytest.raises(ValueError, match="gpus per worker must be >= 0"):
        resolve_resources(ClusterConfig(num_gpus_per_worker=-1), [{"CPU": 8.0}])


def test_actors_fit_on_one_node_and_workers_are_clamped_with_a_note() -> None:
    two_nodes = [{"CPU": 2.0}, {"CPU": 1.0}]
    r = resolve_resources(ClusterConfig(), two_nodes)  # never one 3-CPU actor
    assert (r.num_workers, r.num_cpus) == (1, 2.0)
    with pytest.raises(ValueError, match=r"64 CPUs per worker requested but no node has that "
                                         r"many \(at most 2 CPUs on one node, 3 in the cluster"):
        resolve_resources(ClusterConfig(num_cpus_per_worker=64), two_nodes)
    with pytest.raises(ValueError, match="cpus per worker must be > 0"):
        resolve_resources(ClusterConfig(num_cpus_per_worker=0), two_nodes)
    notes: list[str] = []
    r = resolve_resources(ClusterConfig(num_workers=8, num_cpus_per_worker=1), two_nodes,
                          note=notes.append)
    assert r.num_workers == 3
    assert notes == ["--workers 8: only 3 actors of 1 CPUs fit on this cluster (3 CPUs); "
                     "running 3"]
    r = resolve_resources(ClusterConfig(num_workers=3, num_cpus_per_worker=2), two_nodes)
    assert r.num_workers == 1  # one 2-CPU actor fits on the first node, none on the second


def test_run_config_checks_its_values() -> None:
    with pytest.raises(ValueError, match="shard_size must be an int >= 1, got 0"):
        RunConfig(model="vgg16", shard_size=0)
    with pytest.raises(ValueError, match="max_size must be >= 1 or None, got 0"):
        RunConfig(model="vgg16", max_size=0)
