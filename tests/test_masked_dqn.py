"""Masked dueling DQN (agents/masked_dqn.py) on PrefixEviction-v0: masking, dueling identity,
legal exploration, a tiny training run through make_policy, ONNX export parity."""

from __future__ import annotations

import numpy as np
import pytest
import torch as th

import envs
from agents import export as X
from agents.masked_dqn import ILLEGAL, DuelingItemDQNPolicy, MaskedDQN
from agents.onnx_policy import OnnxPolicy
from agents.policy import make_policy
from agents.sb3_policy import SB3Policy, detect_algo
from agents.training import HYPERPARAMS, atomic_save, make_model
from envs.prefix_eviction.kernels import N_CAND as F
from envs.prefix_eviction.kernels import N_GLOBAL as G

ENV = "servegym/PrefixEviction-v0"
K = 16


@pytest.fixture(autouse=True)
def _one_thread():
    with X.torch_one_thread():  # small MLPs on a busy 2-core machine: 30x faster on one thread
        yield


@pytest.fixture(scope="module")
def vec():
    # Short windows: the real env offers all K candidates except on a no-op step (a window that
    # needed no eviction: only action 0 is legal), which short windows make frequent.
    v = envs.make_vec(ENV, 4, seed=0, split="train", window_requests=2)
    yield v
    v.close()


def _model(vec, **kw) -> MaskedDQN:
    kw = {"buffer_size": 1_000, "learning_starts": 0, "seed": 0, **kw}
    return MaskedDQN(DuelingItemDQNPolicy, vec, device="cpu",
                     policy_kwargs=dict(n_global=G, n_item=F, hidden=32), **kw)


def _obs(legal_sets: list[list[int]], absent_value: float = 10.0, seed: int = 0) -> np.ndarray:
    """Hand-made observations: candidates in each row's set present (small features), the rest
    absent with large features (what a network that ignored the mask would rank first)."""
    rng = np.random.default_rng(seed)
    obs = np.zeros((len(legal_sets), G + K * F), np.float32)
    obs[:, :G] = rng.random((len(legal_sets), G))
    items = np.full((len(legal_sets), K, F), absent_value, np.float32)
    items[:, :, 0] = 0.0
    for b, ks in enumerate(legal_sets):
        items[b, ks] = rng.random((len(ks), F)) * 0.1
        items[b, ks, 0] = 1.0
    obs[:, G:] = items.reshape(len(legal_sets), -1)
    return obs


def _monotone(net) -> None:
    """Make every advantage grow with the candidate features, so absent candidates (features
    10.0) would be everyone's argmax without the mask."""
    with th.no_grad():
        for layer in (net.embed[0], net.embed[2], net.advantage):
            layer.weight.abs_()


LEGAL = [[2, 9], [k for k in range(K) if k != 4], []]  # the last row: no candidate (no-op step)
EXPECT = [{2, 9}, set(LEGAL[1]), {0}]


def test_absent_candidates_are_never_chosen_nor_bootstrapped(vec):
    m = _model(vec)
    for net in (m.q_net, m.q_net_target):
        _monotone(net)
    obs = _obs(LEGAL)
    o = th.as_tensor(obs)
    with th.no_grad():
        v, a, legal = m.q_net.dueling(o)
        q = m.q_net(o)
        q_t = m.q_net_target(o)
    legal_np = legal.numpy()
    assert [set(np.flatnonzero(r)) for r in legal_np] == EXPECT
    # Without the mask an absent candidate would win in every row that has one.
    assert not legal_np[np.arange(3), a.numpy().argmax(1)][:2].any()
    assert (q.numpy()[~legal_np] == ILLEGAL).all() and (q.numpy()[legal_np] > -1e3).all()
    greedy = m.predict(obs, deterministic=True)[0]
    assert all(int(greedy[b]) in EXPECT[b] for b in range(3))
    assert (m.policy.predict(obs, deterministic=True)[0] == greedy).all()
    legal_max = np.where(legal_np, q_t.numpy(), -np.inf).max(1, keepdims=True)
    m.double_q = False
    with th.no_grad():
        np.testing.assert_allclose(m.next_value(o).numpy(), legal_max, rtol=1e-6)
        m.double_q = True
        dq = m.next_value(o).numpy()
    np.testing.assert_allclose(dq[:, 0], q_t.numpy()[np.arange(3), greedy], rtol=1e-6)
    assert (dq > -1e3).all()


def test_dueling_identity_mean_over_legal_only(vec):
    m = _model(vec)
    obs = _obs(LEGAL, absent_value=3.0, seed=1)
    with th.no_grad():
        v, a, legal = m.q_net.dueling(th.as_tensor(obs))
        q = m.q_net(th.as_tensor(obs))
    q, v, a, legal = q.numpy(), v.numpy(), a.numpy(), legal.numpy()
    for b in range(3):
        adv = (q[b] - v[b])[legal[b]]
        assert abs(adv.mean()) < 1e-5  # Q - V has zero mean over the legal actions
        np.testing.assert_allclose(adv, a[b, legal[b]] - a[b, legal[b]].mean(), atol=1e-5)
    assert abs((q[0] - v[0]).mean()) > 1e3  # ... and not over all K (the absent are ILLEGAL)
    # Absent candidates' features change nothing; relabelling candidates relabels Q.
    other = _obs(LEGAL, absent_value=-7.0, seed=1)
    with th.no_grad():
        np.testing.assert_allclose(m.q_net(th.as_tensor(other)).numpy(), q, rtol=1e-5, atol=1e-5)
        perm = np.random.default_rng(0).permutation(K)
        items = obs[:, G:].reshape(3, K, F)[:2, perm]
        shuffled = np.concatenate([obs[:2, :G], items.reshape(2, -1)], 1)
        np.testing.assert_allclose(m.q_net(th.as_tensor(shuffled)).numpy(), q[:2, perm], rtol=1e-5, atol=1e-5)


def test_full_exploration_takes_only_legal_actions(vec):
    m = _model(vec, learning_starts=10**9)
    m.exploration_rate = 1.0
    obs = _obs(LEGAL)
    draws = np.stack([m.predict(obs, deterministic=False)[0] for _ in range(200)])
    assert [set(draws[:, b].tolist()) for b in range(3)] == EXPECT  # uniform over the legal: all seen
    obs = vec.reset()
    illegal_slots, taken = 0, set()
    for step in range(300):
        mask = vec.action_masks()
        illegal_slots += int((~mask).sum())
        if step % 3 == 0:
            a = m.predict(obs, deterministic=False)[0]  # mask from the observation
        elif step % 3 == 1:
            a = m.predict(obs, deterministic=False, action_masks=mask)[0]
        else:
            m._last_obs = obs  # SB3's warm-up path (before learning_starts)
            a = m._sample_action(m.learning_starts, n_envs=vec.num_envs)[0]
        assert mask[np.arange(vec.num_envs), a].all()
        taken.update(a.tolist())
        obs, _, _, _ = vec.step(a)  # the env raises ValueError on an illegal action
    assert illegal_slots > 0 and len(taken) > 4  # masks bite, and the choice is random


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """train.py's model for --algo dueling-dqn, shortened: 2000 steps, learning from 500."""
    params = HYPERPARAMS[ENV]["dueling-dqn"]
    assert params["policy"] == "agents.masked_dqn:DuelingItemDQNPolicy"
    v = envs.make_vec(ENV, 4, seed=0, split="train")
    with X.torch_one_thread():
        m = make_model("dueling-dqn", ENV, v, 0, None)
        assert isinstance(m, MaskedDQN) and isinstance(m.policy, DuelingItemDQNPolicy)
        m.learning_starts, m.batch_size, m.target_update_interval = 500, 64, 25
        m.learn(2_000)
    v.close()
    path = tmp_path_factory.mktemp("dqn") / "final.zip"
    atomic_save(m, path)
    return m, path


def test_tiny_training_loads_and_plays_an_episode_legally(tiny):
    trained, path = tiny
    assert trained._n_updates > 0 and trained.exploration_rate < 1.0
    assert detect_algo(path) == "dueling-dqn"
    evec = envs.make_vec(ENV, 2, seed=3, split="test", window_requests=64)
    pol = make_policy(str(path), evec, ENV)
    assert isinstance(pol, SB3Policy) and isinstance(pol.model, MaskedDQN)
    obs = evec.reset()
    with th.no_grad():
        np.testing.assert_allclose(pol.model.q_net(th.as_tensor(obs)).numpy(),
                                   trained.q_net(th.as_tensor(obs)).numpy(), rtol=1e-6)
    ended = np.zeros(2, bool)
    for _ in range(5_000):
        mask = evec.action_masks()
        a = pol.act(obs, mask)
        assert mask[np.arange(2), a].all()
        obs, _, done, _ = evec.step(a)
        ended |= done
        if ended.all():
            break
    evec.close()
    assert ended.all()


def test_onnx_export_parity(tiny, tmp_path):
    _, path = tiny
    out = tmp_path / "pe.onnx"
    parity = X.export(ENV, str(path), out, parity_obs=2_000)
    assert parity is not None and parity.ok and parity.mismatches == 0 and parity.decided > 1_000
    onnx = OnnxPolicy(out, env_id=ENV)
    assert onnx.metadata["algorithm"] == "dueling-dqn"
    obs = _obs(LEGAL)
    actions, q = onnx.run(obs, np.ones((3, K), bool))  # all-True mask: the graph masks itself
    assert all(int(actions[b]) in EXPECT[b] for b in range(3))
    assert (q[0, [k for k in range(K) if k not in EXPECT[0]]] == ILLEGAL).all()
