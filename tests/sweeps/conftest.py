"""Fixtures of the sweep tests: the helpers' folder on sys.path, and a two-node Ray cluster."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = str(Path(__file__).resolve().parent)


@pytest.fixture(autouse=True)
def helpers_importable(monkeypatch):
    """Workers import ``sweep_helpers`` by name: the local pool and Ray hand them this sys.path."""
    monkeypatch.syspath_prepend(HERE)


@pytest.fixture(scope="session")
def ray_cluster():
    """A Ray cluster of two nodes (one CPU each) inside this machine, connected for the session."""
    import ray
    from ray.cluster_utils import Cluster

    sys.path.insert(0, HERE)
    import sweep_helpers

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    # as on a real cluster: the user's module is shipped to the workers by Ray (py_modules)
    ray.init(address=cluster.address, log_to_driver=False, include_dashboard=False, logging_level="ERROR",
             runtime_env={"py_modules": [sweep_helpers]})
    try:
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()
        sys.path.remove(HERE)
