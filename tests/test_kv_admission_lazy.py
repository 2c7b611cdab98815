"""KVAdmission-v0's lazy decoders (``envs.core.lazy``) against the per-request iteration, bit for bit.

Two batches with the same seed play the same actions: one steps with the env's kernel (steady
decoders kept lazily), the other with ``tests/reference_kernels.kv_step_all`` (the step before the
lazy decoders: ``envs.core.replica.run_iteration`` for every env, the observation on that plain
state). Observations, masks, rewards, episode ends and infos (metrics, per-request records,
terminal observations) must be equal at every step, and the whole state, written back, every
``CHECK_EVERY`` steps and at the end (the episode's gap heap as a multiset: the lazy path pushes
an iteration's gaps in another order, and only the set of largest gaps is ever read).
"""

from __future__ import annotations

import numpy as np
import pytest

import reference_kernels as ref
from envs.core import lazy
from envs.core import state as S
from envs.kv_admission import env as kva
from envs.kv_admission.bench import VLLM_ACTION

CHECK_EVERY = 97


def _reference_advance(vec: kva.KVAdmissionVecEnv) -> None:
    sc = vec.scenario
    ref.kv_step_all(vec._state, sc.workload, sc.engine, vec._actions, vec._admit, vec._budget, vec.config.drain_s,
                    vec.config.recompute_penalty, vec.K, vec._obs, vec._mask, vec._rew, vec._term, vec._trunc,
                    vec._scratch)


def _same_info(x: dict, y: dict) -> bool:
    if x.keys() != y.keys():
        return False
    for k in x:
        a, b = x[k], y[k]
        if isinstance(a, dict):
            if not _same_info(a, b):
                return False
        elif isinstance(a, np.ndarray):
            if a.dtype != b.dtype or a.tobytes() != b.tobytes():
                return False
        elif not (a == b or (a != a and b != b)):  # NaN metrics are equal here
            return False
    return True


def _same_state(fast: kva.KVAdmissionVecEnv, slow: kva.KVAdmissionVecEnv, t: int) -> None:
    # fast.state writes every lazy decoder back
    ref.assert_same_state(fast.state, slow.state, f"step {t}, against the per-request iteration")


def _lockstep(E: int, steps: int, policy: str, **kwargs) -> tuple[int, int, int]:
    fast = kva.KVAdmissionVecEnv(E, seed=11, **kwargs)
    slow = kva.KVAdmissionVecEnv(E, seed=11, **kwargs)
    slow.advance = lambda: _reference_advance(slow)
    rng = np.random.default_rng(E)
    o1, o2 = fast.reset(), slow.reset()
    ended = most_lazy = 0
    for t in range(steps):
        assert o1.tobytes() == o2.tobytes(), f"step {t}: observation differs from the per-request iteration"
        assert np.array_equal(fast.action_masks(), slow.action_masks()), f"step {t}: mask differs"
        if policy == "vllm":
            act = np.full(E, VLLM_ACTION)
        else:
            act = (rng.random(fast.action_masks().shape) * fast.action_masks()).argmax(1)
        o1, r1, d1, i1 = fast.step(act)
        o2, r2, d2, i2 = slow.step(act)
        assert r1.tobytes() == r2.tobytes(), f"step {t}: rewards differ: {r1} != {r2}"
        assert np.array_equal(d1, d2), f"step {t}: episode ends differ"
        assert all(_same_info(x, y) for x, y in zip(i1, i2)), f"step {t}: infos differ"
        ended += int(d1.sum())
        most_lazy = max(most_lazy, int(fast._lazy.agg[:, lazy.G_LAZY].max()))
        if t % CHECK_EVERY == CHECK_EVERY - 1:
            _same_state(fast, slow, t)
    _same_state(fast, slow, steps)
    return ended, most_lazy, int(fast.state.counters[:, S.C_FINISHED].sum())


@pytest.mark.parametrize("E, steps, policy, min_lazy, kwargs", [
    (4, 1500, "vllm", 50, {}),  # the benchmark's policy: almost every iteration steady
    (6, 1000, "random", 20, {"load": 1.5}),  # KV shortages, deferrals, small budgets, every order
    (4, 700, "random", 8, {"window_requests": 128, "drain_s": 5.0, "load": 1.5}),  # episodes end and reset
    (3, 500, "random", 3, {"trace": "mooncake_conv", "prefix_caching": True, "load": 1.5}),  # prefix cache
    (3, 300, "random", 0, {"slo_metric": "p99_tbt", "load": 1.3}),  # no lazy decoders: the per-request loop
    (2, 500, "random", 8, {"queue_slots": 24, "load": 1.5, "window_requests": 256}),  # a queue that drops
])
def test_lazy_decoders_match_the_per_request_iteration(E, steps, policy, min_lazy, kwargs):
    ended, most_lazy, finished = _lockstep(E, steps, policy, **kwargs)
    assert finished > 0, "no request finished: the comparison proved little"
    if kwargs.get("slo_metric") == "p99_tbt":
        assert most_lazy == 0, "p99_tbt keeps every request in the per-request loop"
    else:
        assert most_lazy >= min_lazy, f"at most {most_lazy} lazy decoders: the lazy path was hardly exercised"
    if "drain_s" in kwargs:
        assert ended > 0, "no episode ended"


def test_written_back_state_keeps_the_same_trajectory():
    """Reading ``state`` (which writes every lazy decoder back) between steps changes nothing that
    follows: a batch read every step and one never read agree."""
    read = kva.KVAdmissionVecEnv(3, seed=2, load=1.3)
    unread = kva.KVAdmissionVecEnv(3, seed=2, load=1.3)
    rng = np.random.default_rng(0)
    o1, o2 = read.reset(), unread.reset()
    for t in range(600):
        act = (rng.random(read.action_masks().shape) * read.action_masks()).argmax(1)
        _ = read.state
        assert read._lazy.agg[:, lazy.G_LAZY].sum() == 0
        o1, r1, d1, _ = read.step(act)
        o2, r2, d2, _ = unread.step(act)
        assert o1.tobytes() == o2.tobytes() and r1.tobytes() == r2.tobytes() and np.array_equal(d1, d2), f"step {t}"


def test_allocate_lazy_sizes_and_errors():
    lz = lazy.allocate_lazy(2, 5, 16, 1000)
    assert lz.glog.shape == (2, 1024) and lz.dead.shape == (2, 5) and lz.phase.shape == (2, 16)
    assert np.isinf(lz.dead).all() and (lz.agg == 0).all()
    with pytest.raises(ValueError, match="max_output"):
        lazy.allocate_lazy(2, 5, 16, 0)
