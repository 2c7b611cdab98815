"""ExpertPlacement-v0: placement algorithms on hand-built loads, the cluster model's costs against
hwmodels and the perfect-balance bound, the env contract, heuristics, and the PettingZoo variant."""

from __future__ import annotations

import numpy as np
import pytest

import envs
import hwmodels
from agents.evaluate import evaluate
from agents.policy import make_policy
from envs.expert_placement import algos as A
from envs.expert_placement import kernels as K
from envs.expert_placement.env import ENV_ID, ExpertPlacementEnv, ExpertPlacementVecEnv
from envs.expert_placement.sim import (
    TEST_DRIFTS,
    TRAIN_DRIFTS,
    CostModel,
    LoadSource,
    dispatch_batch,
    make_config,
    migration_counts,
    shape_of,
)

SMALL = {"model": "Qwen3-30B-A3B", "gpus": 16, "layers": 2, "intervals": 3, "interval_steps": 16,
         "tokens_per_gpu": 256}


# ---------------------------------------------------------------- algorithms
def test_eplb_readme_example():
    """The example in github.com/deepseek-ai/EPLB's README (2 layers, 12 experts, 16 replicas,
    4 groups, 2 nodes, 8 GPUs) and the phy2log it prints."""
    w = np.array([[90, 132, 40, 61, 104, 165, 39, 4, 73, 56, 183, 86],
                  [20, 107, 104, 64, 19, 197, 187, 157, 172, 86, 16, 27]], float)
    want = [[5, 6, 5, 7, 8, 4, 3, 4, 10, 9, 10, 2, 0, 1, 11, 1],
            [7, 10, 6, 8, 6, 11, 8, 9, 2, 4, 5, 1, 5, 0, 3, 1]]
    for row, exp in zip(w, want):
        out = np.empty(16, np.int64)
        A.eplb(row, 16, 4, 2, 8, out)
        assert out.tolist() == exp


def test_replicate_and_balanced_packing_by_hand():
    phy, cnt = np.empty(5, np.int64), np.empty(3, np.int64)
    A.replicate(np.array([10.0, 4.0, 1.0]), 5, phy, cnt)  # 10 > 4, then 10/2 = 5 > 4 again
    assert phy.tolist() == [0, 1, 2, 0, 0] and cnt.tolist() == [3, 1, 1]
    A.replicate(np.array([10.0, 6.0, 1.0]), 5, phy, cnt)  # 10 > 6, then 6 > 10/2 = 5
    assert phy.tolist() == [0, 1, 2, 0, 1] and cnt.tolist() == [2, 2, 1]
    pidx, rank = np.empty(4, np.int64), np.empty(4, np.int64)
    A.balanced_packing(np.array([4.0, 3.0, 2.0, 1.0]), 2, pidx, rank)  # LPT: {4, 1} and {3, 2}
    assert pidx.tolist() == [0, 1, 1, 0] and rank.tolist() == [0, 0, 1, 1]


def test_lpt_repack_and_sticky_pack_by_hand():
    w = np.array([8.0, 1.0, 7.0, 2.0])  # current: GPU0 = {0, 2} (15), GPU1 = {1, 3} (3)
    cur = np.array([0, 2, 1, 3])
    out = np.empty(4, np.int64)
    A.lpt_repack(w, cur, 2, out)  # 8 -> GPU0, 7 -> GPU1, 2 -> GPU1, 1 -> GPU0: 9 vs 9
    assert sorted(out[:2].tolist()) == [0, 1] and sorted(out[2:].tolist()) == [2, 3]
    # sticky: a placement that is already balanced is kept as it is (no expert moves)
    bal = np.array([0, 1, 2, 3])
    A.sticky_pack(w, np.ones(4, np.int64), bal, 2, out)
    moved = np.zeros((2, 2), np.int64)
    A.moved_experts(bal, out, 2, 8, 4, moved)
    assert moved.sum() == 0
    # from the unbalanced one it reaches LPT's balance while keeping 2 of 4 experts home
    A.sticky_pack(w, np.ones(4, np.int64), cur, 2, out)
    loads = np.zeros(2)
    A.gpu_loads(w, out, 2, loads)
    assert loads.max() == 9.0
    moved[:] = 0
    A.moved_experts(cur, out, 2, 8, 4, moved)
    assert moved.sum() == 2


def test_moved_experts_links():
    # 4 GPUs, 2 per node, 1 slot each; GPU 1 takes expert 0 (on its node), GPU 2 takes expert 1
    # (only on node 0), GPU 3 takes expert 3 back from itself (already there: free)
    old, new = np.array([0, 1, 2, 3]), np.array([0, 0, 1, 3])
    out = np.zeros((4, 2), np.int64)
    A.moved_experts(old, new, 4, 2, 4, out)
    assert out.tolist() == [[0, 0], [1, 0], [0, 1], [0, 0]]


# ---------------------------------------------------------------- cluster model
def test_dispatch_least_loaded_and_even():
    # 2 GPUs x 2 slots; expert 0 on both GPUs, experts 1 (GPU0) and 2 (GPU1) single
    place = np.array([[[0, 1, 0, 2]]])
    counts = np.array([[[[10, 6, 2]]]], np.int32)
    out = np.zeros((1, 1, 1, 4), np.int32)
    dispatch_batch(counts, place, 2, 2, False, out)
    # GPU0 has 6, GPU1 has 2: water-fill 10 tokens -> GPU1 gets 4 first, then 3 each: 3 and 7
    assert out[0, 0, 0].tolist() == [3, 6, 7, 2]
    dispatch_batch(counts, place, 2, 2, True, out)
    assert out[0, 0, 0].tolist() == [5, 6, 5, 2]


def test_dispatch_conserves_tokens_random():
    rng = np.random.default_rng(1)
    sh = shape_of(make_config(**SMALL))
    counts = rng.integers(0, 50, (3, 5, sh.L, sh.E)).astype(np.int32)
    place = np.stack([np.stack([rng.permutation(np.arange(sh.P) % sh.E) for _ in range(sh.L)]) for _ in range(3)])
    out = np.zeros((3, 5, sh.L, sh.P), np.int32)
    for even in (False, True):
        dispatch_batch(counts, place, sh.S, sh.G, even, out)
        np.testing.assert_array_equal(out.sum(-1), counts.sum(-1))
        for e in range(3):
            for l in range(sh.L):
                got = np.zeros((5, sh.E), np.int64)
                np.add.at(got, (slice(None), place[e, l]), out[e, :, l])
                np.testing.assert_array_equal(got, counts[e, :, l])


def test_costs_match_hwmodels_and_bound_is_a_lower_bound():
    cfg = make_config(**SMALL)
    sh = shape_of(cfg)
    cm = CostModel(cfg, sh)
    rng = np.random.default_rng(2)
    slots = rng.integers(0, 200, (6, sh.P)).astype(np.int64)
    per = slots.reshape(6, sh.G, sh.S)
    np.testing.assert_allclose(cm.group_time(per), hwmodels.expert_group_time(cfg.model, cfg.gpu, per), rtol=1e-12)
    # bound <= every placement's layer time, on skewed random loads
    counts = rng.multinomial(sh.tokens_per_step * sh.k, rng.dirichlet(np.full(sh.E, 0.3), 20)).astype(np.int32)
    counts = np.minimum(counts, sh.tokens_per_step)[:, None, None, :].repeat(sh.L, 2).transpose(1, 0, 2, 3)
    lb = cm.bound_costs(counts)["moe_s"]
    for _ in range(10):
        place = np.stack([rng.permutation(np.arange(sh.P) % sh.E) for _ in range(sh.L)])[None]
        out = np.zeros((1, 20, sh.L, sh.P), np.int32)
        dispatch_batch(counts, place, sh.S, sh.G, False, out)
        assert np.all(cm.layer_costs(out)["moe_s"] >= lb - 1e-15)


def test_migration_cost_uses_hwmodels_links():
    cfg = make_config(**SMALL)
    sh = shape_of(cfg)
    cm = CostModel(cfg, sh)
    moved = np.zeros((1, sh.G, 2), np.int64)
    moved[0, 3] = (2, 1)
    b, t = cm.migration(moved)
    assert b[0] == 3 * sh.expert_bytes
    expect = max(hwmodels.weight_transfer_time(2 * sh.expert_bytes, cfg.gpu, intra_node=True),
                 hwmodels.weight_transfer_time(sh.expert_bytes, cfg.gpu, intra_node=False))
    assert t[0] == pytest.approx(expect)
    old = np.arange(sh.P)[None, None, :].repeat(sh.L, 1) % sh.E
    out = np.zeros((1, sh.G, 2), np.int64)
    migration_counts(old, old.copy(), sh.G, sh.gpn, sh.E, out)
    assert out.sum() == 0


# ---------------------------------------------------------------- config, splits, loads
def test_config_errors_name_the_field():
    with pytest.raises(TypeError, match=r"^ExpertPlacement: unknown config field\(s\) \['gpu_count'\]; known: "):
        make_config(gpu_count=8)
    with pytest.raises(ValueError, match="must be a multiple of gpus"):
        make_config(model="Qwen3-30B-A3B", gpus=16, redundant_slots=3)
    with pytest.raises(ValueError, match="dense"):
        make_config(model="Llama-3.1-8B")
    with pytest.raises(ValueError, match="drift"):
        make_config(drift=1.5)
    with pytest.raises(ValueError, match="gpus_per_node"):
        make_config(gpus=12)
    assert make_config(model="Mixtral-8x7B", gpus=16).redundant_slots == 24  # 32 slots, 2 per GPU


@pytest.mark.parametrize("kw, says", [
    ({"reward_scale_s": 1e-308}, r"reward_scale_s must lie in \[1e-06, 4294967296\] seconds, got 1e-308$"),
    ({"reward_scale_s": 1e308}, r"reward_scale_s must lie in \[1e-06, 4294967296\] seconds, got 1e\+308$"),
    ({"inter_node_bw": 1e-308}, r"inter_node_bw 1e-308 bytes/s moves one expert of .* in more than 2\^32 s; at least "),
])
def test_a_reward_unit_or_nic_rate_beyond_the_clock_is_refused(kw, says):
    """reward_scale_s=1e-308 made rewards inf and 1e308 every reward 0.0 (float32); inter_node_bw=1e-308 made the
    MoE layer time, migration time and cost inf and normalized_score nan, all silently."""
    with pytest.raises(ValueError, match=r"^ExpertPlacement: " + says):
        make_config(**kw)
    m = make_config(inter_node_bw=1.0)  # slow, but every move within the clock
    assert m.inter_node_bw == 1.0 and make_config(reward_scale_s=1e-6).reward_scale_s == 1e-6


def test_held_out_split_uses_other_seeds_and_drifts():
    assert not set(TRAIN_DRIFTS) & set(TEST_DRIFTS)
    assert make_config(split="test").drifts() == TEST_DRIFTS
    a = LoadSource(make_config(**SMALL, split="train"), shape_of(make_config(**SMALL)))
    b = LoadSource(make_config(**SMALL, split="test"), shape_of(make_config(**SMALL)))
    assert not np.array_equal(a.episode(0, 0.01), b.episode(0, 0.01))
    assert np.array_equal(a.episode(5, 0.01), a.episode(5, 0.01))


def test_recorded_counts(tmp_path):
    sh = shape_of(make_config(**SMALL))
    rng = np.random.default_rng(3)
    counts = rng.integers(0, 30, (300, 3, sh.E))
    path = tmp_path / "counts.npz"
    np.savez(path, counts=counts)
    v = ExpertPlacementVecEnv(2, seed=0, trace=str(path), split="test", **SMALL)
    v.reset()
    held = counts[210:, :sh.L]  # the held-out last 30%, first `layers` layers
    ep = v.sim.counts[0]
    assert any(np.array_equal(ep, held[s:s + len(ep)]) for s in range(len(held) - len(ep) + 1))
    with pytest.raises(ValueError, match="experts"):
        np.savez(path, counts=counts[:, :, :10])
        ExpertPlacementVecEnv(1, trace=str(path), **SMALL)


def test_a_request_trace_is_named_as_such(tmp_path, capsys):
    """A request trace given to ExpertPlacement-v0 (--trace x.jsonl or .csv) read 'not a readable .npz file (This
    file contains pickled (object) data ...)', numpy's guess; a built-in request trace's name, 'no such file'.
    Now the line says ExpertPlacement reads expert-load counts, what those are and that the file is a request
    trace (its format)."""
    from agents import evaluate as ev

    jsonl = tmp_path / "requests.jsonl"
    jsonl.write_text("".join(f'{{"timestamp": {i * 100}, "input_length": 600, "output_length": 20}}\n'
                             for i in range(5)))
    csv = tmp_path / "requests.csv"
    csv.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.6805900,374,44\n")
    for trace, what in ((str(jsonl), f"{jsonl}: a request trace (mooncake format), not expert-load counts; "),
                        (str(csv), f"{csv}: a request trace (azure format), not expert-load counts; "),
                        ("azure_conv", "'azure_conv' is a built-in request trace (arrivals and token counts of "
                                       "requests), not expert-load counts; ")):
        with pytest.raises(SystemExit):
            ev.main(["--env", "ExpertPlacement", "--policy", "round_robin", "--episodes", "1", "--trace", trace])
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert line == (f"python -m agents.evaluate: error: --trace {trace!r}: ExpertPlacement reads expert-load "
                        f"counts: {what}expert-load counts are an .npz archive with key 'counts' [steps, layers, "
                        "experts] (tokens routed to each expert per batch step; `python -m traces.moe_counts` writes "
                        "one)"), line


# ---------------------------------------------------------------- env contract
def _play(policy: str, seed: int = 5, **kw) -> dict[str, float]:
    v = ExpertPlacementVecEnv(2, seed=seed, split="test", window_order="sequential", **{**SMALL, **kw})
    pol = make_policy(policy, v, ENV_ID)
    obs = v.reset()
    while True:
        obs, r, d, infos = v.step(pol.act(obs, v.action_masks()))
        assert np.isfinite(r).all() and (r <= 0).all()
        if d.all():
            return infos[0]["metrics"]


def test_same_seed_same_result_and_references():
    a, b = _play("eplb"), _play("eplb")
    assert a == b
    rr, clair, bound = _play("round_robin"), _play("eplb_clairvoyant"), _play("perfect_balance")
    assert rr["normalized_score"] == pytest.approx(0.0, abs=1e-9)
    assert clair["normalized_score"] == pytest.approx(100.0)
    assert rr["migration_bytes"] == 0.0 and bound["imbalance"] == 1.0
    for m in (rr, clair, a, _play("lpt"), _play("sticky_eplb")):
        assert bound["moe_layer_time_s"] <= m["moe_layer_time_s"]
        assert m["imbalance"] >= 1.0
    assert a["imbalance"] < rr["imbalance"] and a["moe_layer_time_s"] < rr["moe_layer_time_s"]
    for key in ("imbalance", "moe_layer_time_s", "tokens_per_gpu_s", "a2a_bytes", "migration_bytes",
                "normalized_score"):
        assert np.isfinite(a[key])


def test_masks_phases_and_bad_actions():
    v = ExpertPlacementVecEnv(1, seed=0, replica_substeps=True, **SMALL)
    v.reset()
    m = v.action_masks()[0]
    assert m[:K.N_MODES].all() and not m[K.N_MODES:].any()
    v.step(np.array([K.CUSTOM]))
    m = v.action_masks()[0]
    assert not m[:K.N_MODES].any() and m[K.FILL:].all()
    with pytest.raises(ValueError, match="integers in"):
        v.step(np.array([v.n_actions]))
    v.step(np.array([K.KEEP]))  # masked on a replica sub-step: taken as FILL, and counted
    assert v._masked[0] == 1 and v.phase[0] == K.MODE and v.layer[0] == 1
    # the same layer given replica by replica (candidate 0 each time) = FILL = sticky EPLB
    w = ExpertPlacementVecEnv(1, seed=0, replica_substeps=True, **SMALL)
    w.reset()
    w.step(np.array([K.CUSTOM]))
    for _ in range(w.sh.R):
        assert w.phase[0] == K.REPLICATE
        w.step(np.array([K.FIRST_CANDIDATE]))
    assert w.phase[0] == K.MODE and w.layer[0] == 1
    np.testing.assert_array_equal(w.pending[0, 0], v.pending[0, 0])
    phy, cnt, want = np.empty(w.sh.P, np.int64), np.empty(w.sh.E, np.int64), np.empty(w.sh.P, np.int64)
    A.replicate(w.sim.window[0, 0], w.sh.P, phy, cnt)  # EPLB's replication, packed sticky
    A.sticky_pack(w.sim.window[0, 0], cnt, w.sim.place[0, 0], w.sh.G, want)
    np.testing.assert_array_equal(w.pending[0, 0], want)
    u = ExpertPlacementVecEnv(1, seed=0, **SMALL)  # default: custom decides a layer in one sub-step
    u.reset()
    u.step(np.array([K.CUSTOM]))
    assert u.phase[0] == K.MODE and u.layer[0] == 1
    np.testing.assert_array_equal(u.pending[0, 0], want)


def test_gymnasium_and_sb3_checkers():
    from gymnasium.utils.env_checker import check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check

    env = ExpertPlacementEnv(**SMALL)
    check_env(env, skip_render_check=True)
    sb3_check(env, warn=False)
    import gymnasium as gym

    assert gym.make(ENV_ID, **SMALL).unwrapped.config.gpus == 16


def test_evaluate_contract_and_vec_registry():
    v = envs.make_vec(ENV_ID, 1, seed=0, **SMALL)
    assert v.sweep() == ("drift", TRAIN_DRIFTS)
    rep = evaluate(ENV_ID, ["round_robin", "eplb"], episodes=1, seed=1, progress=False,
                   env_kwargs={**SMALL, "drift": 0.04})
    by = {r["policy"]: r["metrics"] for r in rep["results"]}
    assert by["eplb"]["moe_layer_time_s"] < by["round_robin"]["moe_layer_time_s"]


def test_parallel_env_api_and_cooperative_reward():
    from pettingzoo.test import parallel_api_test, parallel_seed_test

    from envs.expert_placement.parallel import ExpertPlacementParallelEnv, parallel_env

    parallel_api_test(ExpertPlacementParallelEnv(seed=0, **SMALL), num_cycles=50)
    parallel_seed_test(lambda: parallel_env(**SMALL), num_cycles=50)
    env = ExpertPlacementParallelEnv(seed=0, **SMALL)
    obs, _ = env.reset(seed=0)
    total = 0.0
    while env.agents:
        acts = {a: int(np.flatnonzero(o["action_mask"])[-1]) for a, o in obs.items()}
        obs, rew, _, _, infos = env.step(acts)
        assert len(set(rew.values())) <= 1  # every agent gets the same reward
        total += next(iter(rew.values()), 0.0)
        # every expert keeps at least one replica
        counts = np.bincount(env.sim.place[0].reshape(-1) % env.sh.E, minlength=env.sh.E)
        assert (counts >= 1).all()
    assert total < 0 and "metrics" in next(iter(infos.values()))


def test_zoo_agent_matches_eplb_on_held_out_drift():
    """The committed agent, on held-out generator seeds and a drift it never saw: at least EPLB's
    MoE layer time (1% slack) with no more migration bytes, and far better than round-robin."""
    from agents.policy import ZOO, _load_registries

    _load_registries()
    if ENV_ID not in ZOO:
        pytest.skip("no zoo checkpoint for ExpertPlacement-v0")
    kw = {**SMALL, "model": "DeepSeek-V3", "gpus": 32, "layers": 4, "interval_steps": 32, "intervals": 6,
          "drift": 0.04}
    zoo, ep, rr = (_play(p, seed=10000, **kw) for p in ("zoo", "eplb", "round_robin"))
    assert zoo["moe_layer_time_s"] <= 1.01 * ep["moe_layer_time_s"]
    assert zoo["migration_bytes"] <= ep["migration_bytes"]
    assert zoo["moe_layer_time_s"] < 0.7 * rr["moe_layer_time_s"]
