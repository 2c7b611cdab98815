"""agents.masked_policy.MaskedMlpPolicy trains exactly as sb3-contrib's MaskableActorCriticPolicy."""

from __future__ import annotations

import zipfile

import numpy as np
import torch as th
from sb3_contrib import MaskablePPO
from sb3_contrib.common.maskable.policies import MaskableActorCriticPolicy

import envs
from agents.masked_policy import MaskedMlpPolicy
from agents.sb3_policy import SB3Policy, no_distribution_validation
from agents.training import make_model

ENV = "servegym/KVAdmission-v0"
SMALL = {"window_requests": 64}
HP = {"n_steps": 32, "batch_size": 64, "n_epochs": 2, "policy_kwargs": {"net_arch": [16, 16]}}


def _trained(policy: str | None, seed: int = 3):
    vec = envs.make_vec(ENV, 4, seed=seed, **SMALL)
    model = make_model("maskable-ppo", ENV, vec, seed, None, {**HP, **({"policy": policy} if policy else {})})
    with no_distribution_validation():
        model.learn(4 * 32 * 3)
    return model


def test_training_is_bit_identical_to_sb3_contrib():
    th.set_num_threads(1)
    ours = _trained(None)  # make_model's default for a masked Discrete env
    theirs = _trained("sb3_contrib.common.maskable.policies:MaskableActorCriticPolicy")
    assert type(ours.policy) is MaskedMlpPolicy and type(theirs.policy) is MaskableActorCriticPolicy
    for (name, a), (_, b) in zip(ours.policy.state_dict().items(), theirs.policy.state_dict().items()):
        assert th.equal(a, b), name
    assert ours.logger.name_to_value.keys() == theirs.logger.name_to_value.keys()
    assert ours.logger.name_to_value["train/entropy_loss"] == theirs.logger.name_to_value["train/entropy_loss"]


def test_evaluate_actions_and_forward_match_the_parent_on_random_masks():
    th.set_num_threads(1)
    model = _trained(None)
    p = model.policy
    rng = np.random.default_rng(0)
    obs = th.as_tensor(rng.normal(size=(50, *p.observation_space.shape)), dtype=th.float32)
    masks = rng.random((50, p.action_space.n)) < 0.3
    masks[np.arange(50), rng.integers(p.action_space.n, size=50)] = True  # at least one legal action
    actions = th.as_tensor(np.array([rng.choice(np.flatnonzero(m)) for m in masks]))
    with th.no_grad():
        mine = p.evaluate_actions(obs, actions, th.as_tensor(masks))
        parent = MaskableActorCriticPolicy.evaluate_actions(p, obs, actions, th.as_tensor(masks))
        for a, b in zip(mine, parent):
            assert th.equal(a, b)
        th.manual_seed(5)
        f_mine = p.forward(obs, action_masks=masks)
        th.manual_seed(5)
        f_parent = MaskableActorCriticPolicy.forward(p, obs, action_masks=masks)
    for a, b in zip(f_mine, f_parent):
        assert th.equal(a, b)
    assert masks[np.arange(50), f_mine[0].numpy()].all()  # sampled actions are legal


def test_a_checkpoint_names_sb3_contribs_class_and_acts_the_same(tmp_path):
    model = _trained(None)
    model.save(tmp_path / "m.zip")
    with zipfile.ZipFile(tmp_path / "m.zip") as z:  # stock sb3-contrib loads it: no servegym class inside
        assert b"masked_policy" not in z.read("data")
    loaded = MaskablePPO.load(tmp_path / "m.zip")
    assert type(loaded.policy) is MaskableActorCriticPolicy
    for (name, a), (_, b) in zip(loaded.policy.state_dict().items(), model.policy.state_dict().items()):
        assert th.equal(a, b), name
    vec = envs.make_vec(ENV, 3, seed=0, **SMALL)
    pol = SB3Policy(tmp_path / "m.zip", vec)
    assert pol._mode is not None  # the direct deterministic path takes it
    obs = vec.reset()
    for _ in range(50):
        mask = vec.action_masks()
        a = pol.act(obs, mask)
        b, _ = loaded.predict(obs, deterministic=True, action_masks=mask)
        np.testing.assert_array_equal(a, b)
        obs, *_ = vec.step(a)


def test_make_model_refuses_a_bad_policy_spec_in_one_line():
    import pytest

    from agents.training import MLP_POLICIES, policy_spec, resolve_device

    vec = envs.make_vec(ENV, 2, seed=0, **SMALL)
    for spec, what in (("foo_no_such_module:Bar", "cannot import 'foo_no_such_module'"),
                       ("agents.masked_policy:Nope", "module 'agents.masked_policy' has no 'Nope'"),
                       ("a:b:c", "expected 'module:Class'"),
                       ("agents.masked_policy:np", "not an SB3 policy class"),
                       (3, "expected a policy name")):
        with pytest.raises(ValueError, match=what):
            make_model("maskable-ppo", ENV, vec, 0, None, {**HP, "policy": spec})
    assert type(make_model("maskable-ppo", ENV, vec, 0, None, {**HP, "policy": MaskedMlpPolicy}).policy) \
        is MaskedMlpPolicy  # a class, as SB3 takes it, still works
    # named explicitly, the MLP still trains on the CPU under --device auto (as MlpPolicy does)
    spec = policy_spec("maskable-ppo", ENV, {"policy": "agents.masked_policy:MaskedMlpPolicy"})
    assert spec in MLP_POLICIES and resolve_device("auto", spec) == "cpu"
