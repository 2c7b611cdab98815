"""ExpertPlacement-v0's observation features in time (issue 21): each option's MoE time on the last
interval and the migration blocking it adds to the layers already decided, in units of the last
interval's MoE time; checked by hand on a small case and against what the env then charges."""

from __future__ import annotations

import numpy as np

from envs.expert_placement import kernels as K
from envs.expert_placement.env import ExpertPlacementVecEnv
from envs.expert_placement.sim import make_config, shape_of

SMALL = {"model": "Qwen3-30B-A3B", "gpus": 16, "layers": 3, "intervals": 3, "interval_steps": 8,
         "tokens_per_gpu": 64}
F = {name: i for i, name in enumerate(K.GLOBAL_FEATURES)}


def test_blocking_is_the_slowest_gpus_fetch_by_hand():
    mig_in = np.array([0.0, 1.0, 2.0, 3.0])  # seconds to fetch n experts from its own node
    mig_out = np.array([0.0, 5.0, 10.0, 15.0])  # ... from another node
    mv = np.array([[3, 0], [0, 1], [1, 0]], np.int64)  # GPU 0: 3 on node; GPU 1: 1 off node; GPU 2: 1 on node
    assert K._blocking(mv, mig_in, mig_out) == 5.0
    mv[0, 1] = 2
    assert K._blocking(mv, mig_in, mig_out) == 10.0
    assert K._blocking(np.zeros((3, 2), np.int64), mig_in, mig_out) == 0.0


def _constant_load(tmp_path, E: int, L: int) -> str:
    """Recorded counts whose every step is the same skewed load: the last interval is the next one."""
    rng = np.random.default_rng(0)
    row = rng.zipf(1.6, (L, E)).clip(max=200).astype(np.int64)
    path = tmp_path / "constant.npz"
    np.savez(path, counts=np.broadcast_to(row, (400, L, E)).copy())
    return str(path)


def test_time_features_predict_the_charged_interval_on_constant_load(tmp_path):
    """On a load that never changes, the features at each layer's mode sub-step say exactly what the
    env charges next: KEEP's time + each chosen option's MoE change, and the blocking the chosen
    options add layer after layer, all over the last interval's MoE time."""
    sh = shape_of(make_config(**SMALL))
    path = _constant_load(tmp_path, sh.E, sh.L)
    v = ExpertPlacementVecEnv(1, seed=0, trace=path, split="all", **SMALL)
    obs = v.reset()
    plan = (K.EPLB, K.LPT, K.CUSTOM)  # layer 0, 1, 2 (each moves experts from round-robin)
    total = v.sim.last_moe_s[0].sum()
    moe, mig, committed = 0.0, 0.0, 0.0
    for l, mode in enumerate(plan):
        o = obs[0]
        assert v.layer[0] == l and o[F["phase_mode"]] == 1.0
        assert np.isclose(o[F["mig_committed"]] * total, committed, rtol=1e-6)
        d_moe = o[F[("dmoe_lpt", "dmoe_eplb", "dmoe_custom")[mode - 1]]]
        d_mig = o[F[("dmig_lpt", "dmig_eplb", "dmig_custom")[mode - 1]]]
        assert d_mig > 0  # every option moves experts off round-robin here
        moe += (o[F["moe_keep"]] + d_moe) * total
        committed += d_mig * total
        obs, rew, _, _ = v.step(np.array([mode]))
    # the rebalance was played: what the env charged (MoE seconds per layer-step summed, + blocking)
    charged = -rew[0] * v.config.reward_scale_s * v.config.interval_steps * sh.L
    mig_s = v.sim.acc[0, 7]
    assert np.isclose(mig_s, committed, rtol=1e-5)
    assert np.isclose(charged - mig_s, moe, rtol=1e-5)
    # the next rebalance starts from the played placement: KEEP is what was just charged, nothing committed
    o = obs[0]
    assert np.isclose(o[F["moe_keep"]] * v.sim.last_moe_s[0].sum(), v.sim.last_moe_s[0, 0])
    assert o[F["mig_committed"]] == 0.0
    assert np.isclose(v.sim.last_moe_s[0].sum(), charged - mig_s, rtol=1e-9)


def test_keep_adds_no_migration_and_features_are_relative():
    """KEEP of the layers before commits nothing; the features are fractions of the interval's MoE
    time (one layer's share below 1), at 64 and at 256 tokens per GPU alike."""
    v = ExpertPlacementVecEnv(2, seed=3, **SMALL)
    obs = v.reset()
    for _ in range(SMALL["layers"]):
        assert (obs[:, F["mig_committed"]] == 0.0).all()
        assert (obs[:, F["moe_keep"]] > 0).all() and (obs[:, F["moe_keep"]] < 1).all()
        obs, _, _, _ = v.step(np.full(2, K.KEEP))
    big = ExpertPlacementVecEnv(1, seed=3, **{**SMALL, "tokens_per_gpu": 256}).reset()
    assert 0 < big[0, F["moe_keep"]] < 1
    assert big[0, F["dmig_eplb"]] > 0
