"""envs.bench: steady-state accounting (no timing assertions: only what the figures mean)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from envs import bench
from envs.kv_admission import bench as kvb
from envs.kv_admission import env as kva


def test_warmup_fills_the_batch_and_probe_counts_what_a_step_simulates():
    cold = bench.steady_rate(kva.KVAdmissionVecEnv(2, seed=0), kvb._vllm, 0, 20, 1, bench.cluster_probe)
    warm = bench.steady_rate(kva.KVAdmissionVecEnv(2, seed=0), kvb._vllm, 600, 200, 1, bench.cluster_probe)
    # Right after reset the batch is nearly empty; after the warm-up it is full (the artefact of issue 16).
    assert warm["batch_mean"] > 3 * cold["batch_mean"], (cold["batch_mean"], warm["batch_mean"])
    assert warm["simulated_s_per_step"] > 0 and warm["finished_per_step"] > 0
    assert warm["steps_per_s"] > 0 and len(warm["steps_per_s_runs"]) == 1
    with pytest.raises(ValueError, match="steps and repeats"):
        bench.steady_rate(kva.KVAdmissionVecEnv(1, seed=0), kvb._vllm, 0, 0, 1)


def test_probe_quantities_match_the_state_of_a_twin_run():
    vec = kva.KVAdmissionVecEnv(1, seed=0)
    out = bench.steady_rate(vec, kvb._vllm, 0, 300, 1, bench.cluster_probe)
    # The probe run is steps 301..600 of the first episode (no episode ends this early): its
    # per-step figures times 300 are what the state gained over a twin stopped after 300 steps.
    twin = kva.KVAdmissionVecEnv(1, seed=0)
    twin.reset()
    for k in range(300):
        twin.step(kvb._vllm(twin, k))
    assert out["finished_per_step"] * 300 == pytest.approx(vec.state.counters[0, 2] - twin.state.counters[0, 2])
    assert out["simulated_s_per_step"] * 300 == pytest.approx(vec.state.clock[0] - twin.state.clock[0])


def test_kv_admission_bench_json_has_design_keys_and_steady_state(tmp_path):
    out = tmp_path / "b.json"
    assert kvb.main(["--sizes", "2", "--steps", "40", "--repeats", "1", "--warmup", "50", "--no-full-trace",
                     "--json", str(out)]) == 0
    d = json.loads(out.read_text())
    assert d["env"] == kva.ENV_ID
    row = d["rows"][0]
    for k in ("n_envs", "native_steps_per_s", "dummy_steps_per_s", "ratio", "mean_batch",
              "finished_requests_per_s", "simulated_s_per_wall_s"):
        assert k in row and np.isfinite(row[k]), k
    assert d["steady_state"]["warmup_steps"] == 50 and d["steady_state"]["repeats"] == 1


def test_dispatcher_rejects_unknown_env(capsys):
    """The CLI convention: one line naming the argument and what is allowed, exit status 2."""
    with pytest.raises(SystemExit) as exc:
        bench.main(["--env", "servegym/Nope-v0"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--env" in err and "known" in err


def test_disaggregation_bench_plays_the_same_episodes_on_both_sides_at_every_run():
    from envs.disaggregation import bench as db

    native, dummy = db._make(2, True), db._make(2, False)
    roles = db.ROLES["5p3d"](native.R)
    seen = []
    for vec in (native, dummy, native):
        db._restart(vec)
        eps = [tuple(native._episode[e]) if vec is native else tuple(vec.envs[e].unwrapped.vec._episode[0])
               for e in range(2)]
        seen.append(eps)
    # env e plays episode e of the sequence: window e at the first load, on both sides, at every restart
    assert seen[0] == seen[1] == seen[2] == [(0.0, 0.5), (1.0, 0.5)]
    # the next episodes continue the sequence (episodes 2 and 3) after the first ends
    vec = db._make(1, True)
    db._restart(vec)
    a = np.array([roles + [0]], np.int64)
    for _ in range(vec.config.decisions):
        _, _, done, infos = vec.step(a)
    assert done[0] and tuple(vec._episode[0]) == (1.0, 0.5)
    # the ended episode's simulated time, read from its metrics, is its end clock (>= the decisions' span)
    m = infos[0]["metrics"]
    assert m["gpu_hours"] * 3600.0 / m["gpus"] >= vec.config.decisions * vec.config.interval_s


def test_disaggregation_bench_json_has_steady_state_and_what_a_step_simulates(tmp_path):
    """Issue 16: every environment's benchmark JSON says how its rows were measured and what a step
    simulates (requests/s and simulated seconds per wall second) beside steps/s."""
    from envs.disaggregation import bench as db

    out = tmp_path / "d.json"
    assert db.main(["--sizes", "1", "--episodes", "1", "--repeats", "1", "--json", str(out)]) == 0
    d = json.loads(out.read_text())
    assert d["env"] == "servegym/Disaggregation-v0"
    row = d["rows"][0]
    for k in ("n_envs", "native_steps_per_s", "dummy_steps_per_s", "ratio", "finished_requests_per_s",
              "simulated_s_per_wall_s"):
        assert k in row and np.isfinite(row[k]) and row[k] > 0, k
    assert row["simulated_s_per_wall_s"] == row["native_sim_s_per_s"]
    ss = d["steady_state"]
    assert ss["steps_timed"] == "whole episodes" and ss["repeats"] == 1 and ss["episodes_per_run"] == 1


def _rows_have(row: dict, keys: tuple[str, ...]) -> None:
    for k in keys:
        assert k in row and np.isfinite(row[k]) and row[k] > 0, (k, row.get(k))


def test_multi_cluster_bench_json_has_steady_state_and_what_a_step_simulates(tmp_path):
    out = tmp_path / "m.json"
    assert bench.main(["--env", "servegym/MultiCluster-v0", "--sizes", "2", "--steps", "40", "--warmup", "10",
                       "--repeats", "1", "--json", str(out)]) == 0
    d = json.loads(out.read_text())
    assert d["env"] == "servegym/MultiCluster-v0" and "PettingZoo" in d["dummy"]
    row = d["rows"][0]
    _rows_have(row, ("n_envs", "native_steps_per_s", "dummy_steps_per_s", "ratio", "mean_batch",
                     "routed_requests_per_s", "finished_requests_per_s", "simulated_s_per_wall_s"))
    # two routers: each joint step routes two requests (no episode of 1024 requests ends this early)
    assert row["routed_per_step"] == 2.0
    assert row["routed_requests_per_s"] == pytest.approx(2.0 * row["native_steps_per_s"])
    ss = d["steady_state"]
    assert ss["warmup_steps"] == 10 and ss["repeats"] == 1 and ss["steps_timed"] == {"2": [20, 5]}


def test_multi_cluster_bench_plays_the_same_episodes_on_both_sides():
    """The native RoleVecEnv and the PettingZoo envs see the same clusters under the same actions."""
    from envs.multi import bench as mb

    native, pz = mb.NativeClusters(2, load=0.9), mb.PettingZooClusters(2, load=0.9)
    native.reset()
    pz.reset()
    for k in range(30):
        m = native.router_masks()
        assert (m == pz.router_masks()).all()
        a = mb._round_robin(m, k)
        assert (m[np.arange(2)[:, None], np.arange(a.shape[1])[None], a]).all()  # legal
        native.step(a)
        pz.step(a)
    for e in range(2):
        assert pz.envs[e].core.state.clock[0] == native.state.clock[e]
        assert (pz.envs[e].core.state.counters[0] == native.state.counters[e]).all()


@pytest.mark.parametrize("env_id, argv, rates", [
    ("servegym/Routing-v0", ["--steps", "20", "--warmup", "5"],
     ("mean_batch", "finished_requests_per_s", "simulated_s_per_wall_s")),
    ("servegym/Autoscale-v0", ["--steps", "20"], ("sim_hours_per_s", "simulated_s_per_wall_s", "requests_per_s")),
])
def test_bench_json_has_steady_state_and_per_row_rates(env_id, argv, rates, tmp_path):
    """Issue 16: every benchmark JSON has the top-level steady_state object and, per row, steps/s
    beside what a step simulates (tiny sizes: what the keys mean, not how fast)."""
    out = tmp_path / "b.json"
    assert bench.main(["--env", env_id, "--sizes", "1", "--repeats", "1", *argv, "--json", str(out)]) == 0
    d = json.loads(out.read_text())
    assert d["env"] == env_id
    _rows_have(d["rows"][0], ("n_envs", "native_steps_per_s", "dummy_steps_per_s", "ratio", *rates))
    ss = d["steady_state"]
    for k in ("method", "warmup_steps", "steps_timed", "repeats"):
        assert k in ss, k
    assert ss["repeats"] == 1


def test_autoscale_bench_requests_per_s_is_the_trace_arrivals_per_interval():
    from envs.autoscale import bench as ab
    from envs.autoscale import env as asc

    vec = asc.AutoscaleVecEnv(2, seed=0)
    noop = int(vec.action_of(np.zeros((2, vec.G), np.int64))[0])
    _, per_step = ab._rate(vec, 10, 1, noop)
    # 1 warm step + 10 timed: the arrivals counted are the trace's over those intervals of each env's day
    bins = 11 * vec.scenario.pools.bins_per_step
    want = sum(vec.scenario.arrivals[int(vec.state.window[e]), :bins].sum() for e in range(2)) / 22
    assert per_step == pytest.approx(want) and per_step > 0


@pytest.mark.slow
def test_expert_placement_bench_json_has_steady_state_and_tokens_per_s(tmp_path):
    """Whole episodes of the default scenario (two per figure): slow on the 2-core box."""
    from envs.expert_placement import bench as eb

    out = tmp_path / "e.json"
    assert eb.main(["--sizes", "1", "--repeats", "1", "--json", str(out)]) == 0
    d = json.loads(out.read_text())
    row = d["rows"][0]
    _rows_have(row, ("n_envs", "native_steps_per_s", "dummy_steps_per_s", "ratio", "eplb_rebalances_per_s",
                     "batch_steps_per_s", "tokens_per_s"))
    assert row["batch_steps_per_s"] == pytest.approx(row["eplb_rebalances_per_s"] * 32)
    assert d["steady_state"]["steps_timed"] == "whole episodes" and d["steady_state"]["repeats"] == 1


def test_prefix_eviction_bench_rows_give_decisions_and_references_per_s():
    """The fast variant: the rows' rate fields (main also replays the whole training part in the
    kernel and in libCacheSim: the slow test below)."""
    from envs.prefix_eviction import bench as pb

    row = pb.bench_rows([2], 40, 1)[0]
    _rows_have(row, ("n_envs", "native_steps_per_s", "dummy_steps_per_s", "ratio", "refs_per_s_lru"))
    # a decision is an eviction: at least one reference per decision
    assert row["refs_per_s_lru"] >= row["native_steps_per_s"]


@pytest.mark.slow
def test_prefix_eviction_bench_json_has_steady_state(tmp_path):
    """About 105 s on the loaded 2-core box (28 s CPU)."""
    out = tmp_path / "p.json"
    assert bench.main(["--env", "servegym/PrefixEviction-v0", "--sizes", "1", "--steps", "40", "--repeats", "1",
                       "--json", str(out)]) == 0
    d = json.loads(out.read_text())
    assert d["env"] == "servegym/PrefixEviction-v0" and d["refs_per_s_kernel"] > 0
    _rows_have(d["rows"][0], ("n_envs", "native_steps_per_s", "dummy_steps_per_s", "ratio", "refs_per_s_lru"))
    ss = d["steady_state"]
    assert ss["warmup_steps"] == 1 and ss["steps_timed"] == {"1": [40, 5]} and ss["repeats"] == 1
