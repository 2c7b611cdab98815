"""SB3Policy's direct deterministic action equals SB3's predict, bit for bit, on every zoo agent that takes it."""

import numpy as np
import pytest

import envs
from agents.sb3_policy import SB3Policy
from agents.zoo import ZOO

SMALL = {"servegym/Routing-v0": {"replicas": 4}}


@pytest.mark.parametrize("env_id", sorted(e for e in ZOO if e != "servegym/MultiCluster-v0"))
def test_direct_mode_is_predict(env_id):
    vec = envs.make_vec(env_id, 3, seed=1, split="test")
    pol = SB3Policy(ZOO[env_id], vec)
    if pol._mode is None:  # custom policy classes and MultiDiscrete keep predict
        assert type(pol.model.policy).__name__ not in ("MaskableActorCriticPolicy", "ActorCriticPolicy") \
            or vec.action_space.__class__.__name__ != "Discrete"
        pytest.skip(f"{env_id}: {type(pol.model.policy).__name__} keeps SB3's predict")
    obs = vec.reset()
    masked = pol.algo == "maskable-ppo"
    seen = set()
    for _ in range(400):
        mask = vec.action_masks() if masked else None
        mine = pol.act(obs, mask)
        theirs, _ = pol.model.predict(obs, deterministic=True, action_masks=mask) if masked \
            else pol.model.predict(obs, deterministic=True)
        np.testing.assert_array_equal(mine, np.asarray(theirs).reshape(-1))
        seen.update(mine.tolist())
        obs, _, _, _ = vec.step(mine)
    vec.close()
    assert len(seen) > 1, "the episode exercised one action only"


def test_direct_mode_with_a_mask_that_forbids_the_argmax():
    # a mask that removes the unmasked argmax must move the action, as MaskableCategorical does
    vec = envs.make_vec("servegym/KVAdmission-v0", 2, seed=0, split="test")
    pol = SB3Policy(ZOO["servegym/KVAdmission-v0"], vec)
    obs = vec.reset()
    mask = vec.action_masks().copy()
    free = pol.act(obs, np.ones_like(mask))
    mask[:] = True
    mask[np.arange(len(free)), free] = False
    moved = pol.act(obs, mask)
    assert (moved != free).all()
    np.testing.assert_array_equal(moved, pol.model.predict(obs, deterministic=True, action_masks=mask)[0])
