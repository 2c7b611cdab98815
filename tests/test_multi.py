"""The multi-agent cluster: PettingZoo API, roles reuse the single-agent layouts and heuristics,
autoscaling with cold starts, the SB3 role adapter."""

from __future__ import annotations

import numpy as np
import pytest
from pettingzoo.test import parallel_api_test, parallel_seed_test
from test_routing import chain_trace

import envs
from agents.heuristics import multi as mh
from envs.kv_admission import env as kva
from envs.multi import env as M
from envs.multi import kernels as MK
from envs.routing import env as rt
from envs.core.invariants import violations

R = 4


def kw(trace, **more):
    base = {"trace": trace, "split": "all", "window_order": "sequential", "replicas": R,
            "window_requests": len(trace), "capacity_blocks": 4096, "rate_scale": 1.0}
    base.update(more)
    return base


def test_parallel_api_and_seeding():
    env = M.MultiClusterEnv(**kw(chain_trace(24, rate=20.0), n_routers=2))
    parallel_api_test(env, num_cycles=40)
    parallel_seed_test(lambda: M.parallel_env(**kw(chain_trace(24, rate=20.0), n_routers=2)), num_cycles=40)
    assert env.metadata["name"].endswith("_v0")
    assert isinstance(envs.make_parallel("servegym/MultiCluster-v0", **kw(chain_trace(24))), M.MultiClusterEnv)
    with pytest.raises(RuntimeError, match=r"before reset\(\)"):
        M.parallel_env(**kw(chain_trace(24))).step({})
    env.reset(seed=0)
    actions = {a: 0 for a in env.agents}
    with pytest.raises(ValueError, match=r"actions for agents not in this episode: \['bogus'\]"):
        env.step({**actions, "bogus": 0})  # was dropped unseen


def test_roles_share_the_single_agent_layouts():
    core = M.MultiCluster(1, seed=0, **kw(chain_trace(24)))
    routing = rt.RoutingVecEnv(1, seed=0, **kw(chain_trace(24)))
    admission = kva.KVAdmissionVecEnv(1, seed=0, trace=chain_trace(24), split="all", window_requests=24)
    assert M.role_spaces(core, "router")[0].shape == routing.observation_space.shape
    assert M.role_spaces(core, "router")[1].n == routing.action_space.n
    assert M.role_spaces(core, "admission")[0].shape == admission.observation_space.shape
    assert M.role_spaces(core, "admission")[1].n == admission.action_space.n
    # One router, every replica serving, vLLM admission, autoscaler holding: Routing-v0 exactly.
    core.reset()
    obs = routing.reset()
    assert np.array_equal(core.obs("router")[:, 0], obs)
    jsq = mh.rth.JSQ(routing)
    single = M.MultiCluster(1, seed=0, **kw(chain_trace(24), n_routers=1))
    single.reset()
    assert np.array_equal(single.obs("router")[:, 0], obs)
    metrics_single = None
    hold = np.array([[single.config.max_step]])
    while metrics_single is None:
        a = jsq.act(obs, routing.action_masks())
        obs, _, d, infos = routing.step(a)
        single.set_actions("router", a[:, None])
        single.set_actions("autoscaler", hold)
        single.step()
        if d[0]:
            metrics_single = single.episode_metrics(0)
            want = infos[0]["metrics"]
        else:
            assert np.array_equal(single.obs("router")[:, 0], obs)
    for k in ("slo_attainment", "ttft_p99_s", "token_hit_ratio", "goodput_rps"):
        assert metrics_single[k] == pytest.approx(want[k]), k


def test_autoscaler_cold_start_and_drain():
    tr = chain_trace(200, rate=5.0)
    core = M.MultiCluster(1, seed=0, **kw(tr, initial_replicas=1, cold_start_s=10.0, interval_s=5.0,
                                             n_routers=1))
    core.reset()
    assert core.life[0].tolist() == [MK.SERVING, MK.OFF, MK.OFF, MK.OFF]
    core.set_actions("autoscaler", np.array([[core.config.max_step + 2]]))
    t0 = core.state.clock[0]
    core.set_actions("router", np.array([[0]]))
    core.step()
    assert (core.life[0] == MK.STARTING).sum() == 2
    assert core.masks("router")[0, 0].tolist() == [True, False, False, False]
    hold = np.array([[core.config.max_step]])
    while core.state.clock[0] < t0 + 10.5:
        assert core.masks("autoscaler")[0, 0].sum() >= 1
        core.set_actions("autoscaler", hold)
        core.step()
    assert (core.life[0] == MK.SERVING).sum() == 3
    assert core.masks("router")[0, 0].tolist() == [True, True, True, False]
    assert core.cost[0] > 0
    bad = violations(core.state, core.scenario.engine.capacity_blocks, core.scenario.engine.block_size,
                     in_flight_iterations=True)
    assert not bad, bad


def test_heuristic_team_and_role_vecenv():
    tr = chain_trace(64, rate=10.0)
    eps = M.run_team(2, mh.team(), **kw(tr))
    assert len(eps) == 2 and all(0 <= m["slo_attainment"] <= 1 for m in eps)
    assert all(m["cost_usd"] > 0 for m in eps)
    vec = M.RoleVecEnv(3, role="admission", seed=0, others=mh.team(), **kw(tr))
    obs = vec.reset()
    assert obs.shape == (3 * R, vec.observation_space.shape[0])
    masks = vec.action_masks()
    rng = np.random.default_rng(0)
    episodes = 0
    for _ in range(200):
        a = np.array([rng.choice(np.flatnonzero(m)) for m in masks])
        _, rew, _, infos = vec.step(a)
        masks = vec.action_masks()
        assert rew.shape == (3 * R,) and np.all(rew.reshape(3, R) == rew.reshape(3, R)[:, :1])
        episodes += sum("episode" in i for i in infos)
    assert episodes >= 1



def test_role_vecenv_plays_the_episodes_set_options_name_and_refuses_unknown_ones():
    """RoleVecEnv.reset() ignored SB3's set_options: {"window": 2} still played windows 0 and 1 and {"bogus": 1} passed
    unseen. Now each cluster plays the named episode; an unknown key, a value not listed or different options for
    one cluster's agents is one line, and a refused reset moves no generator."""
    vec = M.RoleVecEnv(2, role="router", seed=0, others=mh.team(),
                       **kw(chain_trace(96), window_requests=24, window_order="random", load=(0.8, 1.0), rate_scale=None))
    assert vec.seed(5) == [5, 5, 6, 6]  # agent k is in cluster k // 2 (was [5, 5, 5, 5])
    vec.set_options({"window": 2, "load": 1.0})
    vec.reset()
    assert vec.core.state.window.tolist() == [2, 2] and vec.core._loads.tolist() == [1.0, 1.0]
    vec.set_options([{"window": 3}] * 2 + [{"window": 1}] * 2)
    vec.reset()
    assert vec.core.state.window.tolist() == [3, 1]
    before = [r.bit_generator.state for r in vec.core._rngs]
    for opts, says in (({"bogus": 1}, r"unknown reset option\(s\) \['bogus'\]"),
                       ([{}, {}, {"window": 9}, {"window": 9}], "reset option window must be an integer in"),
                       ({"load": 0.9}, r"reset option load must be one of \[0.8, 1.0\]"),
                       ([{}, {"window": 1}, {}, {}], r"agents of cluster 0 \(indices 0..1\) different options")):
        vec.set_options(opts)
        with pytest.raises(ValueError, match=f"^multi.*{says}"):
            vec.reset()
        assert [r.bit_generator.state for r in vec.core._rngs] == before


def test_ppo_trains_a_role_with_parameter_sharing():
    from sb3_contrib import MaskablePPO

    vec = M.RoleVecEnv(2, role="router", seed=0, others=mh.team(), **kw(chain_trace(48, rate=10.0), n_routers=2))
    model = MaskablePPO("MlpPolicy", vec, n_steps=16, batch_size=32, n_epochs=1, seed=0, device="cpu")
    model.learn(256)
    a, _ = model.predict(vec.reset(), action_masks=vec.action_masks(), deterministic=True)
    assert a.shape == (4,)


@pytest.mark.parametrize("actions", [None, [0, 0, 0], 3])
def test_step_with_actions_that_are_not_a_dict_is_one_line(actions):
    """Was "'NoneType' object is not iterable" (and for a list, 'no action for' every agent)."""
    env = M.parallel_env(**kw(chain_trace(24)))
    env.reset(seed=0)
    with pytest.raises(TypeError, match=rf"^multi: step\(actions\) takes a dict of agent name -> action, got "
                                        rf"{type(actions).__name__} "):
        env.step(actions)


@pytest.mark.parametrize("options", ["x", [("window", 0)], 5])
def test_reset_options_that_are_not_a_dict_are_one_line(options):
    """The PettingZoo envs passed options through dict(): 'x' gave 'dictionary update sequence element #0 has
    length 1; 2 is required'; the Gymnasium and SB3 paths refused a non-dict already (native_vec.options_dict)."""
    from envs.expert_placement.parallel import parallel_env as ep_parallel

    for env, name in ((M.parallel_env(**kw(chain_trace(24))), "multi"),
                      (ep_parallel(layers=2, intervals=2), "ExpertPlacementParallelEnv")):
        with pytest.raises(TypeError, match=rf"^{name}: reset\(options=\.\.\.\) must be a dict such as "):
            env.reset(seed=0, options=options)


def test_the_pettingzoo_envs_take_render_mode_none_as_pettingzoo_constructors_do():
    """PettingZoo's factories take ``render_mode`` (its tests and wrappers pass ``render_mode=None``); it was an
    unknown config field of both environments. Their metadata lists no render mode, so any other is refused."""
    from envs.expert_placement.parallel import parallel_env as ep_parallel

    for make, name in ((lambda **r: M.parallel_env(**r, **kw(chain_trace(24))), "multi"),
                       (lambda **r: ep_parallel(**r, layers=2, intervals=2), "ExpertPlacementParallelEnv")):
        env = make(render_mode=None)
        assert env.render_mode is None and env.metadata["render_modes"] == []
        env.reset(seed=0)
        with pytest.raises(ValueError, match=rf"^{name}: render_mode must be None \(this environment does not "
                                             r"render\), got 'ansi'$"):
            make(render_mode="ansi")


def test_bad_config_is_named():
    tr = chain_trace(16)
    with pytest.raises(ValueError, match="n_routers"):
        M.MultiCluster(1, **kw(tr, n_routers=0))
    with pytest.raises(ValueError, match="initial_replicas"):
        M.MultiCluster(1, **kw(tr, initial_replicas=9))
    with pytest.raises(TypeError, match="unknown config"):
        M.MultiCluster(1, **kw(tr, routers=2))
    with pytest.raises(TypeError, match="ttft_bound_x .* not used by the multi-agent cluster"):
        M.MultiCluster(1, **kw(tr, ttft_bound_x=3.0))  # Routing-v0's tail bound: refused, not ignored
    core = M.MultiCluster(1, **kw(tr))
    with pytest.raises(ValueError, match=rf"^multi: router actions must be integers in \[0, {R}\); env 0 agent 1 is {R}$"):
        core.set_actions("router", np.array([[0, R]]))
    with pytest.raises(ValueError, match=r"^multi: router actions .* of shape \(1, 2\), got int64 array of shape "
                                         r"\(1, 1000\)$"):  # the shapes, not the array (was its repr)
        core.set_actions("router", np.zeros((1, 1000), np.int64))


def test_the_readme_pettingzoo_example_prints_what_its_comment_says():
    """README, "Multi-agent cluster": the Python example's last line ends in a comment with the line it prints
    (it said `shared return -32.7` while the example printed 18.2)."""
    import contextlib
    import io
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    (code,) = [b for b in blocks if "MultiClusterEnv" in b]
    expected = re.search(r"# (.+)$", code.strip().splitlines()[-1]).group(1)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), {})
    assert out.getvalue().strip() == expected
