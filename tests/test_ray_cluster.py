"""The README's cluster recipe on one machine: a 2-node Ray test cluster (ray.cluster_utils.Cluster,
Ray's own multi-node test harness) runs the same sweep as tests/test_ray.py through --address."""

from __future__ import annotations

import json

import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[ray]')")

from agents import sweep  # noqa: E402


@pytest.fixture
def two_node_cluster(monkeypatch):
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    monkeypatch.setenv("RAY_worker_niceness", "0")  # as agents.ray_cluster does for embedded Ray
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    yield cluster
    ray.shutdown()
    cluster.shutdown()


def test_two_node_cluster_runs_the_sweep_on_both_nodes(two_node_cluster, tmp_path):
    out = tmp_path / "sweep"
    argv = ["--env", "servegym/KVAdmission-v0", "--algo", "ppo", "--seeds", "0-1",
            "--eval-episodes", "1", "--address", two_node_cluster.address, "--out", str(out),
            "--", "--timesteps", "256", "--n-envs", "2", "--env-kwargs", "window_requests=64"]
    assert sweep.main(argv) == 0
    assert len([n for n in ray.nodes() if n["Alive"]]) == 2
    rep = json.loads((out / "sweep.json").read_text())
    assert [(t["seed"], t["status"]) for t in rep["trials"]] == [(0, "ok"), (1, "ok")]
    # One CPU per node and one per trial: the two trials ran on different nodes.
    assert len({t["node_id"] for t in rep["trials"]}) == 2
