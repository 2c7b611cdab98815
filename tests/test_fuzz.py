"""Fuzzed invariants (envs.fuzz), numba bounds checking over every kernel, and the soak script."""

from __future__ import annotations

import numpy as np
import pytest

import boundscheck_runs
import envs
from envs import fuzz, soak


def test_fuzz_short_kv_admission_finds_no_violation():
    n, bad = fuzz.fuzz("servegym/KVAdmission-v0", 600, seed=3, scenario_steps=200, log=lambda m: None)
    assert not bad, bad
    assert n >= 600


def test_fuzz_check_catches_a_broken_state():
    vec = envs.make_vec("servegym/KVAdmission-v0", 2, seed=0, **fuzz.draw_scenario(
        "servegym/KVAdmission-v0", np.random.default_rng(0))[1])
    obs = vec.reset()
    clock = vec.state.clock.copy()
    vec.state.free_blocks[1, 0] += 1  # a block out of thin air: KV accounting broken
    obs[0, 0] = np.nan
    errs = fuzz.check_batch(vec, obs, np.zeros(2), np.zeros(2, bool), clock + 1.0)
    text = " | ".join(errs)
    assert "non-finite observation" in text and "capacity" in text and "backward" in text, errs


def test_fuzz_routing_lets_iterations_in_flight_lead_but_not_run_backward():
    # Seed 0's first Routing scenario decides while a replica's iteration is in flight (replica
    # clock ahead of the env clock by design); that once failed the default `python -m envs.fuzz`.
    n, bad = fuzz.fuzz("servegym/Routing-v0", 200, seed=0, scenario_steps=100, log=lambda m: None)
    assert not bad and n >= 200, bad
    vec = envs.make_vec("servegym/Routing-v0", 2, seed=0, **fuzz.draw_scenario(
        "servegym/Routing-v0", np.random.default_rng(1))[1])
    obs = vec.reset()
    obs, rew, dones, _ = vec.step(vec.action_masks().argmax(1))
    r_clock = vec.state.r_clock.copy() + 1.0  # as if every replica had been 1 s further on
    errs = fuzz.check_batch(vec, obs, rew, dones, vec.state.clock.copy(), r_clock, "servegym/Routing-v0")
    assert any("replica 0: clock ran backward" in m for m in errs), errs
    assert not any("ahead of the env clock" in m for m in errs), errs


def test_fuzz_disaggregation_draws_random_clusters_and_traces_and_finds_no_violation():
    rng = np.random.default_rng(5)
    drawn = [fuzz.draw_scenario("servegym/Disaggregation-v0", rng)[1] for _ in range(12)]
    assert len({d["instances"] for d in drawn}) > 2 and len({d["interval_s"] for d in drawn}) > 1
    assert all(d["trace"].meta.source == "envs.fuzz" for d in drawn)
    assert any(d["shift_trace"] is None for d in drawn) and any(d["shift_trace"] is not None for d in drawn)
    n, bad = fuzz.fuzz("servegym/Disaggregation-v0", 120, seed=11, scenario_steps=40, log=lambda m: None)
    assert not bad and n >= 120, bad


@pytest.mark.parametrize("env_id", ["servegym/PrefixEviction-v0", "servegym/ExpertPlacement-v0",
                                    "servegym/Autoscale-v0"])
def test_fuzz_short_finds_no_violation(env_id):
    """The CI variant for the environments the tests above do not fuzz (issue 16: a fast variant of
    the fuzz per environment); random scenarios of their swept knob, random legal actions."""
    n, bad = fuzz.fuzz(env_id, 120, seed=7, scenario_steps=40, log=lambda m: None)
    assert not bad and n >= 120, bad


def test_fuzz_draws_non_default_expert_placement_and_autoscale_configs():
    rng = np.random.default_rng(0)
    ep = [fuzz.draw_scenario(fuzz.EXPERT_PLACEMENT, rng)[1] for _ in range(12)]
    assert len({d["model"] for d in ep}) > 1 and len({d["gpus"] for d in ep}) > 1
    assert {d["replica_substeps"] for d in ep} == {True, False} and len({d["dispatch"] for d in ep}) == 2
    asc = [fuzz.draw_scenario(fuzz.AUTOSCALE, rng)[1] for _ in range(12)]
    assert len({d["gpu_types"] for d in asc}) > 1 and len({d["interval_s"] for d in asc}) > 1
    assert all(d["interval_s"] % d["bin_s"] == 0 and d["engine_init_s"] < d["interval_s"] - 10 for d in asc)


def _played_interval(env_id: str, kw: dict, module):
    """A 2-env batch stepped with random legal actions until an env plays an interval without its
    episode ending; returns (vec, snapshot before that step, live mask)."""
    vec = envs.make_vec(env_id, 2, seed=0, **kw)
    vec.reset()
    rng = np.random.default_rng(0)
    for _ in range(200):
        before = module.snapshot(vec)
        _, _, dones, _ = vec.step(fuzz.random_legal_actions(vec, rng))
        live = ~np.asarray(dones, bool)
        assert not module.violations(vec) and not module.step_violations(vec, before, live)
        key = "interval" if "interval" in before else "step"
        now = vec.sim.interval if key == "interval" else vec.state.step
        if (live & (now != before[key])).any():
            return vec, before, live
    raise AssertionError("no interval played in 200 steps")


def test_fuzz_expert_placement_invariants_catch_broken_states():
    """Negative controls: a placement that loses an expert (its tokens go nowhere), an id out of
    range, migration bytes for an unchanged placement, costs that shrink are each named."""
    from envs.expert_placement import invariants as EI

    kw = dict(model="Mixtral-8x7B", gpus=4, gpus_per_node=4, layers=2, interval_steps=4, intervals=3)
    vec, before, live = _played_interval(fuzz.EXPERT_PLACEMENT, kw, EI)
    e = int(np.argmax(live & (vec.sim.interval != before["interval"])))
    assert not EI.dispatch_violations(vec, np.array([e]))
    lost = int(vec.sim.place[e, 1, 0])
    vec.sim.place[e, 1][vec.sim.place[e, 1] == lost] = (lost + 1) % vec.sh.E  # expert `lost` on no slot
    text = " | ".join(EI.violations(vec) + EI.dispatch_violations(vec, np.array([e])))
    assert f"env {e} layer 1: experts [{lost}] on no slot" in text, text
    assert f"env {e} layer 1 step" in text and f"expert {lost}'s slots got 0 tokens" in text, text
    vec.sim.place[1 - e, 0, 2] = vec.sh.E
    assert f"env {1 - e} layer 0: expert ids outside" in " | ".join(EI.violations(vec))
    b = {k: v.copy() for k, v in before.items()}
    b["place"][e] = vec.sim.place[e]  # as if the placement had not changed, yet bytes moved
    b["acc"][e, EI.ACC_MIG_BYTES] = vec.sim.acc[e, EI.ACC_MIG_BYTES] - 1.0
    b["acc"][1 - e, 0] = vec.sim.acc[1 - e, 0] + 1.0
    text = " | ".join(EI.step_violations(vec, b, np.ones(2, bool)))
    assert f"env {e}: 1 migration bytes with the placement unchanged" in text, text
    assert f"env {1 - e}: accumulated MoE seconds decreased" in text, text


def test_fuzz_autoscale_invariants_catch_broken_states():
    """Negative controls: a fleet over its limit, a negative backlog, arrivals the trace does not
    have, a cost that shrinks and a clock that stands still are each named."""
    from envs.autoscale import invariants as AI

    kw = dict(gpu_types=("H100", "L40S"), max_replicas=(40, 40), episode_s=4 * 3600.0)
    vec, before, live = _played_interval(fuzz.AUTOSCALE, kw, AI)
    st = vec.state
    st.serving[0, 1] = vec.scenario.pools.max_n[1] + 1
    st.Q[1] = -1.0
    st.acc[0, 2] += 5.0  # ACC_ARRIVED
    text = " | ".join(AI.violations(vec))
    assert "env 0 type 1: serving" in text and "outside [0, max_replicas" in text, text
    assert "env 1: backlog -1.0" in text and "env 0: arrived" in text and "!= the trace's" in text, text
    b = {k: v.copy() for k, v in before.items()}
    b["acc"][0, 0] = st.acc[0, 0] + 1.0  # ACC_COST
    b["step"][1] = st.step[1]
    text = " | ".join(AI.step_violations(vec, b, np.ones(2, bool)))
    assert "env 0: cost decreased" in text and "env 1: clock went from interval" in text, text


def test_fuzz_checks_disaggregation_handover_invariants_and_clock():
    """Disaggregation-v0 is checked for conservation and KV capacity across handovers, and for its
    clock (it was checked for finite observations and legal actions only)."""
    env_id = "servegym/Disaggregation-v0"
    vec = envs.make_vec(env_id, 2, seed=0, **fuzz.draw_scenario(env_id, np.random.default_rng(5))[1])
    obs = vec.reset()
    for _ in range(3):
        obs, rew, dones, _ = vec.step(fuzz.random_legal_actions(vec, np.random.default_rng(0)))
    clock = vec.state.clock.copy()
    assert not fuzz.check_batch(vec, obs, rew, dones, clock, None, env_id)
    vec._state.free_blocks[1, 0] += 1  # a block out of thin air
    errs = fuzz.check_batch(vec, obs, rew, np.zeros(2, bool), clock + 1.0, None, env_id)
    text = " | ".join(errs)
    assert "env 1 instance 0: used" in text and "capacity" in text and "clock ran backward" in text, errs


def test_fuzz_checks_prefix_eviction_cache_occupancy():
    env_id = "servegym/PrefixEviction-v0"
    vec = envs.make_vec(env_id, 2, seed=0, capacity_frac=0.05)
    obs = vec.reset()
    obs, rew, dones, _ = vec.step(fuzz.random_legal_actions(vec, np.random.default_rng(0)))
    assert not fuzz.check_batch(vec, obs, rew, dones, None, None, env_id)
    from envs.prefix_eviction import kernels as PK

    vec.state.iv[0, PK.I_CNT] = vec.state.iv[0, PK.I_CAP] + 1
    vec.state.iv[1, PK.I_HIT_BLOCKS] = vec.state.iv[1, PK.I_REF_BLOCKS] + 1
    text = " | ".join(fuzz.check_batch(vec, obs, rew, dones, None, None, env_id))
    assert "env 0:" in text and "outside 0..capacity" in text and "env 1:" in text and "block hits >" in text, text


def test_fuzz_short_multi_cluster_draws_random_clusters_and_finds_no_violation():
    """MultiCluster-v0's CI variant: random roles through RoleVecEnv, random legal actions for
    every seat, random clusters; every lifecycle state of a replica is reached."""
    rng = np.random.default_rng(4)
    drawn = [fuzz.draw_scenario(fuzz.MULTI, rng)[1] for _ in range(12)]
    assert {d["role"] for d in drawn} == {"router", "admission", "autoscaler"}
    assert len({d["replicas"] for d in drawn}) > 2 and len({d["n_routers"] for d in drawn}) > 1
    assert len({d["stale_s"] for d in drawn}) > 1 and all(d["min_replicas"] <= d["replicas"] for d in drawn)
    n, bad = fuzz.fuzz(fuzz.MULTI, 240, seed=2, scenario_steps=80, log=lambda m: None)
    assert not bad and n >= 240, bad
    from envs.multi import kernels as MK

    E, kw = fuzz.draw_scenario(fuzz.MULTI, np.random.default_rng(2))
    kw.update(role="autoscaler", replicas=4, min_replicas=1, initial_replicas=4, interval_s=0.5, cold_start_s=1.0)
    rng = np.random.default_rng(0)
    vec = fuzz.make_multi(2, 0, kw, rng)
    vec.reset()
    seen = set()
    for _ in range(150):
        vec.step(fuzz.random_legal_actions(vec, rng))
        seen |= set(np.unique(vec.core.life).tolist())
    assert seen == {MK.OFF, MK.STARTING, MK.SERVING, MK.DRAINING}, seen


def _multi_vec(steps: int = 20):
    E, kw = fuzz.draw_scenario(fuzz.MULTI, np.random.default_rng(2))
    kw.update(role="router", replicas=3, min_replicas=1, initial_replicas=3)
    rng = np.random.default_rng(0)
    vec = fuzz.make_multi(2, 0, kw, rng)
    vec.reset()
    for _ in range(steps):
        _, _, dones, _ = vec.step(fuzz.random_legal_actions(vec, rng))
    return vec, dones


def test_fuzz_multi_cluster_catches_broken_states():
    """Negative controls: each deliberately broken state of the multi-agent cluster is named."""
    from envs.core import state as S
    from envs.multi import invariants as MI
    from envs.multi import kernels as MK

    vec, dones = _multi_vec()
    core = vec.core
    before = MI.snapshot(core)
    live = np.ones(2, bool)
    assert not fuzz.multi_violations(vec, before, np.zeros(vec.num_envs, bool))
    core.state.free_blocks[0, 1] += 1  # a KV block out of thin air
    core.state.counters[1, S.C_ARRIVED] += 1  # a request counted twice
    text = " | ".join(MI.violations(core))
    assert "env 0 replica 1: used" in text and "capacity" in text, text
    assert "env 1: arrived counter" in text and "queued+running" in text, text

    vec, _ = _multi_vec()
    core = vec.core
    busy = np.argwhere(core.state.n_queued + core.state.n_running > 0)
    e, r = (int(i) for i in busy[0])
    core.life[e, r] = MK.STARTING  # requests on a replica that is still cold-starting
    core.life[1 - e, :] = MK.DRAINING  # no fleet, nobody serving
    text = " | ".join(MI.violations(core))
    assert f"env {e} replica {r}:" in text and "requests on a STARTING replica" in text, text
    assert f"env {e} replica {r}: up 1.0 but STARTING" in text, text
    assert f"env {1 - e}: fleet 0 outside" in text and f"env {1 - e}: no SERVING replica" in text, text

    vec, _ = _multi_vec()
    core = vec.core
    before = MI.snapshot(core)
    before["clock"][0] += 1.0
    before["billed_s"][1] += 1.0
    before["r_clock"][1, 2] += 1.0
    text = " | ".join(MI.step_violations(core, before, live))
    assert "env 0: clock ran backward" in text and "env 1: billed replica-seconds ran backward" in text, text
    assert "env 1 replica 2: clock ran backward" in text, text
    assert not MI.step_violations(core, before, np.zeros(2, bool))  # episodes that restarted: not compared
    core.r_obs[0, 1, 0] = np.inf
    core.s_mask[0, :] = False
    text = " | ".join(fuzz.multi_violations(vec, MI.snapshot(core), np.zeros(vec.num_envs, bool)))
    assert "env 1 router 0: non-finite observation" in text and "env 0 autoscaler 0: no legal action" in text, text


@pytest.mark.slow
@pytest.mark.parametrize("env_id", list(fuzz.FUZZ_ENVS))
def test_fuzz_full_size(env_id):
    n, bad = fuzz.fuzz(env_id, 1_000_000, seed=0, scenario_steps=20_000, log=lambda m: None)
    assert not bad, bad


def _boundscheck_envs(*env_ids: str):
    """Mark a test as reading the session's background boundscheck run (``boundscheck_runs``), which
    ``conftest.py`` starts for these environments as soon as collection ends."""
    def mark(f):
        f.boundscheck_envs = env_ids
        return f
    return mark


def _boundscheck_background(env_ids: tuple[str, ...]) -> boundscheck_runs.BoundscheckRun:
    run = boundscheck_runs.run()
    if run is None or not set(env_ids) <= set(run.env_ids):  # not started by conftest: start it here
        boundscheck_runs.stop()
        boundscheck_runs.start(list(env_ids))
        run = boundscheck_runs.run()
    return run


KV_MULTI = ("servegym/KVAdmission-v0", "servegym/MultiCluster-v0")


@_boundscheck_envs(*KV_MULTI)
def test_kernels_under_numba_boundscheck_kv_admission_and_multi_cluster():
    """The CI variant: KVAdmission-v0's kernels and the multi-agent cluster's (envs/multi/kernels.py,
    which call KVAdmission's and Routing's) compile afresh with bounds checks in one process, then
    300 random steps each. The compilation (on the loaded 2-core box, 2026-12-03: 116 CPU-s for
    KVAdmission, 67 more for MultiCluster) runs in the background from the start of the session
    (``boundscheck_runs``, shared with the PrefixEviction test below); this test waits for it."""
    run = _boundscheck_background(KV_MULTI)
    for env_id in KV_MULTI:
        run.check(env_id)


@_boundscheck_envs("servegym/PrefixEviction-v0")
def test_kernels_under_numba_boundscheck_prefix_eviction():
    """The CI variant for PrefixEviction-v0, whose kernels run without reference counting
    (``_nrt=False``) and whose out-of-contract call corrupted the heap (issue 16): 92 CPU-s on the
    loaded 2-core box, compilation included, in the same background run as the test above."""
    run = _boundscheck_background(("servegym/PrefixEviction-v0",))
    run.check("servegym/PrefixEviction-v0")


def test_boundscheck_run_check_fails_on_a_failed_or_missing_environment():
    """Negative controls of how the background run's lines are read (no subprocess here)."""
    run = object.__new__(boundscheck_runs.BoundscheckRun)
    run.env_ids = ["servegym/KVAdmission-v0", "servegym/PrefixEviction-v0"]
    run._result = (1, "OK servegym/KVAdmission-v0 301\nFAIL servegym/PrefixEviction-v0: IndexError: index 9 is out of "
                      "bounds for axis 0 with size 4\n")
    run.check("servegym/KVAdmission-v0")
    with pytest.raises(AssertionError, match="PrefixEviction-v0 under boundscheck"):
        run.check("servegym/PrefixEviction-v0")
    run._result = (1, "bounds checking is off\n")
    with pytest.raises(AssertionError, match="bounds checking is off"):
        run.check("servegym/KVAdmission-v0")
    with pytest.raises(ValueError, match="MultiCluster-v0.*not among"):
        run.check("servegym/MultiCluster-v0")


@pytest.mark.slow
def test_kernels_under_numba_boundscheck_every_env():
    run = boundscheck_runs.BoundscheckRun(list(fuzz.FUZZ_ENVS), 300)  # in the foreground, its own cache
    try:
        rc, out = run.outcome()
        assert rc == 0, out
        for env_id in fuzz.FUZZ_ENVS:
            run.check(env_id)
    finally:
        run.close()


def test_soak_reports_rss_at_start_and_end():
    r = soak.soak("servegym/KVAdmission-v0", 400, 4, 0, log=lambda m: None)
    assert r["env_steps"] == 400 and r["rss_start_bytes"] > 0 and r["rss_end_bytes"] > 0
    with pytest.raises(ValueError, match="steps"):
        soak.soak("servegym/KVAdmission-v0", 10, 4, 0)


def test_random_legal_actions_draw_each_multidiscrete_component_from_its_own_mask():
    class Vec:  # a MultiDiscrete([3, 2]) batch of 2: masks side by side
        nvec = np.array([3, 2])

        def action_masks(self):
            return np.array([[False, False, True, True, False], [True, True, False, False, True]])

    for s in range(20):
        a = fuzz.random_legal_actions(Vec(), np.random.default_rng(s))
        assert a.shape == (2, 2) and a[0].tolist() == [2, 0] and a[1, 0] in (0, 1) and a[1, 1] == 1


@pytest.mark.parametrize("argv, named", [
    (["--steps", "0"], "--steps 0: must be >= 1"),
    (["--steps", "10", "--scenario-steps", "-2"], "--scenario-steps -2: must be >= 1"),
    (["--steps", "10", "--seed", "-1"], "--seed -1: must be >= 0"),
])
def test_fuzz_cli_names_a_bad_argument_in_one_line(argv, named, capsys):
    from envs.fuzz import main

    with pytest.raises(SystemExit) as exc:
        main(["--env", "servegym/Disaggregation-v0", *argv])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert named in err[-1] and "Traceback" not in "\n".join(err)


def test_fuzz_cli_takes_short_and_package_names(monkeypatch, capsys):
    """--env takes an id's short or package name as every command does (was: "unknown ['Routing']")."""
    from envs import fuzz as fuzz_mod

    played = []
    monkeypatch.setattr(fuzz_mod, "fuzz", lambda env_id, *a, **k: (played.append(env_id) or 0, []))
    assert fuzz_mod.main(["--env", "Routing", "multi", "--steps", "10"]) == 0
    assert played == ["servegym/Routing-v0", "servegym/MultiCluster-v0"]
    with pytest.raises(SystemExit) as exc:
        fuzz_mod.main(["--env", "Nope"])
    assert exc.value.code == 2 and "unknown environment 'Nope'" in capsys.readouterr().err


@pytest.mark.parametrize("argv, named", [
    (["--steps", "10"], "--steps 10: must be >= 100"),
    (["--steps", "400", "--n-envs", "0"], "--n-envs 0: must be >= 1"),
    (["--steps", "400", "--seed", "-1"], "--seed -1: must be >= 0"),
    (["--steps", "400", "--max-growth", "nan"], "--max-growth nan: must be a finite percentage >= 0"),
    (["--steps", "400", "--max-growth", "-1"], "--max-growth -1.0: must be a finite percentage >= 0"),
    (["--env", "MultiCluster", "--steps", "400"], "--env servegym/MultiCluster-v0: multi-agent"),
])
def test_soak_cli_names_a_bad_argument_in_one_line(argv, named, capsys):
    """Was a traceback of soak()'s ValueError (--steps, --n-envs); --seed -1 and --max-growth nan ran (nan
    passed every soak: growth > nan is never true)."""
    with pytest.raises(SystemExit) as exc:
        soak.main(["--env", "Routing", *argv])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert named in err[-1] and "Traceback" not in "\n".join(err)


def test_soak_cli_takes_a_short_name(monkeypatch, capsys):
    played = []
    monkeypatch.setattr(soak, "soak", lambda env_id, *a, **k: played.append(env_id) or {
        "env_steps": 400, "episodes": 0, "rss_start_bytes": 1, "rss_end_bytes": 1, "growth_pct": 0.0})
    assert soak.main(["--env", "prefix_eviction", "--steps", "400"]) == 0
    assert played == ["servegym/PrefixEviction-v0"]
