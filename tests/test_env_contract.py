"""The contract every registered environment keeps, one test per clause, parametrized over every
id: Gymnasium's and SB3's checkers, ``gymnasium.make_vec`` returning the native batch behind the
vector API, the native batch equal to E single envs seeded s + e, determinism, terminal flags,
masks, reset options, rendering, and one-line errors for bad actions, bad config and misuse.
Environment-specific behaviour is tested in each environment's own test file."""

from __future__ import annotations

import re
import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from gymnasium.vector import AutoresetMode
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import envs
import traces
from conftest import make_trace
from envs.native_vec import NativeVecEnv
from envs.vector import NativeVectorEnv
from test_routing import chain_trace

# Small scenarios (short episodes, fast builds); each id's own defaults are tested in its file.
SMALL = {
    "servegym/KVAdmission-v0": dict(
        trace=make_trace(1024, rate=20.0, prompt=np.arange(1024) % 900 + 50, output=np.arange(1024) % 60 + 5,
                         seed=4), window_requests=24, load=(0.7, 1.1)),
    "servegym/Routing-v0": dict(trace=chain_trace(96), split="all", replicas=4, window_requests=24,
                                capacity_blocks=4096, load=(0.8, 1.0)),
    "servegym/PrefixEviction-v0": dict(trace=traces.load_trace("mooncake_conv", seed=1, duration_s=120.0),
                                       window_requests=40, warmup_requests=20, capacity_frac=(0.02, 0.1)),
    "servegym/Autoscale-v0": dict(episode_s=300.0, train_days=2, test_days=1, rate_rps=30.0),
    "servegym/ExpertPlacement-v0": dict(model="Qwen3-30B-A3B", gpus=16, layers=2, intervals=2, interval_steps=8,
                                        tokens_per_gpu=256),
    "servegym/Disaggregation-v0": dict(instances=3, phases=2, phase_s=20.0, interval_s=5.0, load=(0.4, 0.6),
                                       episodes_per_load=2, drain_s=20.0, switch_s=3.0),
}
IDS = sorted(envs.ENVS)
MAX_STEPS = 4000


def test_every_registered_id_has_a_small_scenario_here():
    assert sorted(SMALL) == IDS


def _masked_random(rng: np.random.Generator, mask: np.ndarray, space: gym.spaces.Space) -> np.ndarray:
    """A random legal action per env ([E] for Discrete; [E, D] for MultiDiscrete, whose mask is
    its components' masks side by side)."""
    keys = rng.random(mask.shape)
    keys[~mask] = -1.0
    nvec = getattr(space, "nvec", None)
    if nvec is None:
        return keys.argmax(-1)
    cuts = np.cumsum([0, *np.asarray(nvec).reshape(-1)])
    return np.stack([keys[..., a:b].argmax(-1) for a, b in zip(cuts[:-1], cuts[1:])], axis=-1)


def _single(a: np.ndarray):
    """One env's action as Gymnasium's step takes it (an int for Discrete)."""
    return int(a) if np.ndim(a) == 0 else a


# The checkers step unmasked random actions. PrefixEviction's leaf-only candidate sets often hold
# fewer than K candidates, so its checkers see the layout with the constraint off (the masked
# rollouts of the other tests here play it on).
CHECKER_KWARGS = {"servegym/PrefixEviction-v0": {"evict_leaves_only": False}}


@pytest.mark.parametrize("env_id", IDS)
def test_checkers_pass(env_id):
    kw = {**SMALL[env_id], **CHECKER_KWARGS.get(env_id, {})}
    env = gym.make(env_id, **kw).unwrapped
    gym_check_env(env, skip_render_check=True)
    sb3_check_env(gym.make(env_id, **kw).unwrapped, warn=True)


@pytest.mark.parametrize("env_id", IDS)
def test_make_vec_is_the_native_batch_with_same_step_autoreset(env_id):
    for mode in (None, "vector_entry_point"):
        kw = {} if mode is None else {"vectorization_mode": mode}
        venv = gym.make_vec(env_id, 2, **kw, **SMALL[env_id])
        assert isinstance(venv, NativeVectorEnv)
        assert f"{type(venv.vec).__module__}:{type(venv.vec).__name__}" == envs.VEC_ENVS[env_id]
        assert venv.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
    obs, info = venv.reset(seed=3)
    assert obs.shape == venv.observation_space.shape and obs.dtype == np.float32 and info == {}
    rng = np.random.default_rng(0)
    for _ in range(MAX_STEPS):
        obs, rew, term, trunc, info = venv.step(_masked_random(rng, venv.action_masks(), venv.single_action_space))
        assert obs.shape == (2, *venv.single_observation_space.shape) and rew.shape == term.shape == (2,)
        if (term | trunc).any():
            break
    else:
        raise AssertionError("no episode ended")
    ended = term | trunc
    assert np.array_equal(info["_final_obs"], ended) and np.array_equal(info["_final_info"], ended)
    e = int(np.argmax(ended))
    assert venv.single_observation_space.contains(info["final_obs"][e])
    assert info["final_info"]["_metrics"][e] and info["final_info"]["_episode"][e]
    assert not np.array_equal(obs[e], info["final_obs"][e])  # the next episode's first observation


@pytest.mark.parametrize("env_id", IDS)
def test_make_vec_takes_max_episode_steps_as_sync_vector_env_with_a_time_limit(env_id):
    """gymnasium.make_vec(id, n, max_episode_steps=k) (Gymnasium's own vector entry points take it) was "unknown config
    field(s) ['max_episode_steps']". Now the facade cuts each episode at k steps and plays exactly as SyncVectorEnv over
    gymnasium.make(id, max_episode_steps=k) with same-step autoreset: observations, flags, final_obs (rewards to
    float32 rounding, as without a limit)."""
    k, E = 3, 2
    facade = gym.make_vec(env_id, E, max_episode_steps=k, **SMALL[env_id])
    sync = gym.make_vec(env_id, E, vectorization_mode="sync", max_episode_steps=k,
                        vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP}, **SMALL[env_id])
    a, _ = facade.reset(seed=4)
    b, _ = sync.reset(seed=4)
    np.testing.assert_array_equal(a, b)
    rng, cuts, elapsed = np.random.default_rng(0), 0, np.zeros(E, np.int64)
    for _ in range(3 * k + 1):
        masks = facade.action_masks()
        np.testing.assert_array_equal(masks, np.stack([env.unwrapped.action_masks() for env in sync.envs]))
        actions = _masked_random(rng, masks, facade.single_action_space)
        got, want = facade.step(actions), sync.step(actions)
        for i in (0, 2, 3):
            np.testing.assert_array_equal(got[i], want[i])
        np.testing.assert_allclose(got[1], want[1], rtol=1e-6)  # the facade's rewards pass through float32 (SB3's)
        elapsed += 1
        assert got[3][elapsed == k].all()  # the limit truncates an episode on its k-th step
        cuts += int((elapsed == k).sum())
        ended = got[2] | got[3]
        elapsed[ended] = 0
        assert np.array_equal(got[4].get("_final_obs", np.zeros(E, bool)), ended)
        for e in np.flatnonzero(ended):
            np.testing.assert_array_equal(got[4]["final_obs"][e], want[4]["final_obs"][e])
    assert cuts >= E
    with pytest.raises(ValueError, match=r"max_episode_steps must be None or an integer >= 1, got 0$"):
        gym.make_vec(env_id, E, max_episode_steps=0, **SMALL[env_id])


@pytest.mark.parametrize("env_id", IDS)
def test_sb3_make_vec_env_builds_every_environment(env_id):
    """SB3's make_vec_env(id) passes render_mode="rgb_array" and builds the env again without it only on a
    TypeError; the refusal was a ValueError alone, so make_vec_env failed for every servegym id. The refusal is
    still one line naming render_mode (a ValueError too), and the env make_vec_env builds plays."""
    from stable_baselines3.common.env_util import make_vec_env

    vec = make_vec_env(env_id, n_envs=2, seed=0, env_kwargs=SMALL[env_id])
    assert vec.num_envs == 2 and vec.get_attr("render_mode") == [None, None]
    vec.reset()
    masks = np.stack(vec.env_method("action_masks"))
    vec.step(_masked_random(np.random.default_rng(0), masks, vec.action_space))
    for error in (ValueError, TypeError):
        with pytest.raises(error, match=r"render_mode must be None or one of \['ansi'\], got 'rgb_array'"):
            gym.make(env_id, render_mode="rgb_array", **SMALL[env_id])


def _first_episodes(env_id: str, E: int, seed: int, action_seed: int = 0):
    """Play the batch and E single envs seeded ``seed + e`` on the same masked random actions
    until each env's first episode ends; check they agree step by step; return the trail."""
    vec = envs.make_vec(env_id, E, seed=seed, **SMALL[env_id])
    singles = [gym.make(env_id, **SMALL[env_id]).unwrapped for _ in range(E)]
    obs = vec.reset()
    np.testing.assert_array_equal(obs, np.stack([s.reset(seed=seed + e)[0] for e, s in enumerate(singles)]))
    rng = np.random.default_rng(action_seed)
    alive = np.ones(E, bool)
    trail = []
    for _ in range(MAX_STEPS):
        mask = vec.action_masks()
        assert mask.shape == (E, vec.n_actions) and mask.any(1).all()
        np.testing.assert_array_equal(mask[alive], np.stack([s.action_masks() for s in singles])[alive])
        a = _masked_random(rng, mask, vec.action_space)
        obs, rew, done, infos = vec.step(a)
        trail.append((obs.copy(), rew.copy(), done.copy()))
        for e, s in enumerate(singles):
            if not alive[e]:
                continue
            o, r, term, trunc, info = s.step(_single(a[e]))
            assert np.float32(r) == rew[e] and (term or trunc) == done[e]
            if done[e]:
                alive[e] = False
                assert infos[e]["TimeLimit.truncated"] == (trunc and not term)
                assert infos[e]["episode"]["l"] == info["episode"]["l"]
                assert infos[e]["metrics"].keys() == info["metrics"].keys()
                np.testing.assert_array_equal(infos[e]["terminal_observation"], o)
                with pytest.raises(RuntimeError, match="reset"):
                    s.step(_single(a[e]))
            else:
                np.testing.assert_array_equal(o, obs[e])
        if not alive.any():
            return trail
    raise AssertionError(f"{env_id}: first episodes did not end within {MAX_STEPS} steps")


@pytest.mark.parametrize("env_id", IDS)
def test_native_batch_equals_single_envs_and_is_deterministic(env_id):
    a, b = _first_episodes(env_id, 3, seed=11), _first_episodes(env_id, 3, seed=11)
    assert len(a) == len(b)
    for (oa, ra, da), (ob, rb, db) in zip(a, b):
        np.testing.assert_array_equal(oa, ob)
        np.testing.assert_array_equal(ra, rb)
        np.testing.assert_array_equal(da, db)


@pytest.mark.parametrize("env_id", IDS)
def test_reset_options_name_the_episode(env_id):
    # PrefixEviction's default candidates are sampled at random: take LRU's, so that the first
    # observation depends on the episode only.
    extra = {"candidate_set": "lru"} if env_id == "servegym/PrefixEviction-v0" else {}
    vec = envs.make_vec(env_id, 2, seed=0, **SMALL[env_id], **extra)
    knob, values = vec.sweep()
    assert knob == vec.episode_knob and len(values) > 1
    value = values[-1]
    first = []
    for seed in (1, 2):
        vec.seed(seed)
        vec.set_options({"window": 0, knob: value})
        first.append(vec.reset())
    np.testing.assert_array_equal(first[0], first[1])  # the same episode whatever the seed
    vec.set_options({"day": 0})
    with pytest.raises(ValueError, match=r"unknown reset option\(s\) \['day'\]"):
        vec.reset()
    vec.set_options({"window": -1})
    with pytest.raises(ValueError, match="window must be an integer"):
        vec.reset()
    one = gym.make(env_id, **SMALL[env_id], **extra)
    for wrapped in (one, gym.make_vec(env_id, 2, **SMALL[env_id], **extra)):  # not a dict: was "cannot convert dictionary update sequence"
        with pytest.raises(TypeError, match=r"reset\(options=\.\.\.\) must be a dict"):
            wrapped.reset(options=[1])


@pytest.mark.parametrize("env_id", IDS)
def test_misuse_gets_a_clear_error(env_id):
    vec = envs.make_vec(env_id, 2, seed=0, **SMALL[env_id])
    assert isinstance(vec, NativeVecEnv)
    with pytest.raises(RuntimeError, match=r"step\(\) before reset\(\)"):
        vec.step(np.zeros(2, np.int64))
    vec.reset()
    nvec = getattr(vec.action_space, "nvec", None)
    zero = np.zeros(2, np.int64) if nvec is None else np.zeros((2, len(nvec)), np.int64)
    out_of_range = zero.copy()
    if nvec is None:
        out_of_range[1] = vec.action_space.n
    else:
        out_of_range[1, 0] = nvec[0]
    with pytest.raises(ValueError, match="actions must be integers"):
        vec.step(zero.astype(np.float64))  # floats are refused, not truncated
    with pytest.raises(ValueError, match="actions must be integers"):
        vec.step(out_of_range)
    env = gym.make(env_id, **SMALL[env_id]).unwrapped
    with pytest.raises(RuntimeError, match=r"step\(\) before reset\(\)"):
        env.step(_single(zero[0]))
    env.reset(seed=0)
    with pytest.raises(ValueError, match="actions must be integers"):
        env.step(zero[0].astype(np.float64) if nvec is not None else 0.0)
    with pytest.raises(ValueError, match="actions must be integers"):
        env.step(np.float32(1.7))
    with pytest.raises(TypeError, match="bogus"):
        envs.make_vec(env_id, 1, bogus=1, **SMALL[env_id])
    with pytest.raises(ValueError, match="render_mode"):
        gym.make(env_id, render_mode="human", **SMALL[env_id])


@pytest.mark.parametrize("env_id", IDS)
@pytest.mark.parametrize("n", [0, -1, 2.5, "2", True])
def test_a_batch_size_that_is_not_a_positive_integer_is_one_error_naming_num_envs(env_id, n):
    """envs.make_vec(id, 0) and gymnasium.make_vec(id, 0) were an IndexError in SB3's VecEnv ('list index out of
    range'), -1 the same or numpy's 'negative dimensions', 2.5 and '2' TypeErrors: none named num_envs."""
    name = env_id.split("/")[1].split("-")[0]
    says = rf"^{name}: num_envs must be an integer >= 1, got {re.escape(repr(n))}$"
    with pytest.raises(ValueError, match=says):
        envs.make_vec(env_id, n, seed=0, **SMALL[env_id])
    with pytest.raises(ValueError, match=says):
        gym.make_vec(env_id, n, **SMALL[env_id])
    assert envs.make_vec(env_id, np.int64(1), seed=0, **SMALL[env_id]).num_envs == 1


@pytest.mark.parametrize("env_id", IDS)
def test_a_misshapen_action_array_is_one_line_with_both_shapes_not_the_array(env_id):
    """step() with a wrong-shaped action array dumped the whole array into the message (1000 actions: a
    2,000-character error over dozens of lines); now the expected and received shape and dtype only, from the
    native VecEnv, the single env and the Gymnasium vector facade alike."""
    name = env_id.split("/")[1].split("-")[0]
    nvec = getattr(envs.make_vec(env_id, 1, **SMALL[env_id]).action_space, "nvec", None)
    big = np.zeros(1000, np.int64)
    vec = envs.make_vec(env_id, 2, seed=0, **SMALL[env_id])
    vec.reset()
    want = r"\(2,\)" if nvec is None else rf"\(2, {len(nvec)}\)"
    with pytest.raises(ValueError, match=rf"^{name}: actions must be integers.* of shape {want}.*got int64 array of "
                                         r"shape \(1000,\)$"):
        vec.step(big)
    facade = gym.make_vec(env_id, 2, **SMALL[env_id])
    facade.reset(seed=0)
    with pytest.raises(ValueError, match=r"got int64 array of shape \(1000,\)$"):
        facade.step(big)
    single = gym.make(env_id, **SMALL[env_id]).unwrapped
    single.reset(seed=0)
    with pytest.raises(ValueError, match=rf"^{name}: .*got float32 array of shape \(1000,\)$") as err:
        single.step(big.astype(np.float32))
    assert "\n" not in str(err.value) and len(str(err.value)) < 300, str(err.value)
    if nvec is None:  # out of range everywhere: the first bad entry and a count, not the list
        with pytest.raises(ValueError, match=rf"^{name}: actions must be integers in \[0, \d+\), got -1 at index 0 "
                                             r"\(2 entries out of range\)$"):
            vec.step(np.full(2, -1))


@pytest.mark.parametrize("env_id", IDS)
def test_a_seed_that_is_not_a_non_negative_integer_is_one_error_naming_seed(env_id):
    """seed(-1) and reset(seed=-1) surfaced numpy's SeedSequence 'expected non-negative integer' (1.5: 'SeedSequence
    expects int or sequence of ints', Gymnasium's own 'Seed must be greater or equal to zero' for the single
    env), and a refused seed(-1) left the native batch unable to reset. Now one line naming the argument and
    what it takes, from the native VecEnv, the single env and the Gymnasium vector facade; nothing changes."""
    name = env_id.split("/")[1].split("-")[0]
    allowed = r"must be None or an integer >= 0"
    vec = envs.make_vec(env_id, 2, seed=0, **SMALL[env_id])
    first = vec.reset()
    for bad in (-1, 1.5, True, np.int64(-3), "7"):
        with pytest.raises(ValueError, match=rf"^{name}: seed {allowed} \(numpy's SeedSequence entropy\), "
                                             rf"got {re.escape(repr(bad))}$"):
            vec.seed(bad)
    with pytest.raises(ValueError, match=rf"^{name}: seeds\[1\] {allowed}"):
        vec.seed_each([0, -1])
    with pytest.raises(ValueError, match=rf"^{name}: seed {allowed}"):
        envs.make_vec(env_id, 2, seed=-1, **SMALL[env_id])
    # A list where the constructor takes one base seed says where per-env seeds go (was only 'got int64 array').
    for per_env in ([0, 1], np.array([0, -1])):
        with pytest.raises(ValueError, match=rf"^{name}: seed {allowed}, one base seed \(env e gets seed \+ e; "
                                             r"per-env seeds go to reset\(seed=\[\.\.\.\]\) or seed_each\) .*, got "):
            envs.make_vec(env_id, 2, seed=per_env, **SMALL[env_id])
    vec.seed(0)  # the refused seeds changed nothing: seed 0 replays the first episode
    np.testing.assert_array_equal(vec.reset(), first)
    facade = gym.make_vec(env_id, 2, **SMALL[env_id])
    with pytest.raises(ValueError, match=rf"^{name}: seed {allowed}, or a list of 2 such .*, got -1$"):
        facade.reset(seed=-1)
    with pytest.raises(ValueError, match=rf"^{name}: seed {allowed}, or a list of 2 such .*, got 1\.5$"):
        facade.reset(seed=1.5)
    with pytest.raises(ValueError, match=rf"^{name}: seed\[1\] {allowed} .*, got -1$"):
        facade.reset(seed=[0, -1])
    single = gym.make(env_id, **SMALL[env_id])
    with pytest.raises(ValueError, match=rf"^{name}: seed {allowed} .*, got -1$"):
        single.reset(seed=-1)


@pytest.mark.parametrize("env_id", IDS)
def test_ansi_render_shows_the_cluster_state(env_id):
    env = gym.make(env_id, render_mode="ansi", **SMALL[env_id])
    env.reset(seed=0)
    text = env.render()
    assert isinstance(text, str) and text.startswith(env_id.split("/")[1].split("-")[0])
    env.step(_single(_masked_random(np.random.default_rng(0), env.unwrapped.action_masks(), env.action_space)))
    assert env.render() != text  # the state moved on


def _play_single(env, options: dict | None, seed: int = 1, action_seed: int = 0):
    """One whole episode of the Gymnasium env ``env`` from ``reset(seed=seed, options=options)`` on masked random
    actions: (observations [T + 1, F], rewards [T], last info)."""
    obs, _ = env.reset(seed=seed, options=options)
    rng = np.random.default_rng(action_seed)
    trail, rewards = [obs], []
    for _ in range(MAX_STEPS):
        a = _masked_random(rng, env.unwrapped.action_masks()[None], env.action_space)[0]
        obs, r, term, trunc, info = env.step(_single(a))
        trail.append(obs)
        rewards.append(r)
        if term or trunc:
            return np.stack(trail), np.array(rewards), info
    raise AssertionError("the episode did not end")


@pytest.mark.parametrize("env_id", IDS)
def test_a_reset_option_value_plays_the_listed_value_it_equals_and_a_bool_is_refused(env_id):
    """reset(options={"load": np.float32(1.1)}) was accepted (it equals 1.1) and played load 1.100000023841858:
    another episode than {"load": 1.1} (KVAdmission's TTFTs and its metrics' load, Autoscale's slo_penalty
    0.009999999776, ExpertPlacement's drift); {"load": True} was load 1.0 on Routing. Now the listed value plays,
    and a bool is refused with the one line a value not listed gets."""
    env = gym.make(env_id, **SMALL[env_id])
    knob, values = env.unwrapped.vec.sweep()
    listed = _play_single(env, {"window": 0, knob: values[-1]})
    as_f32 = _play_single(env, {"window": 0, knob: np.float32(values[-1])})
    np.testing.assert_array_equal(as_f32[0], listed[0])
    np.testing.assert_array_equal(as_f32[1], listed[1])
    assert as_f32[2]["metrics"].keys() == listed[2]["metrics"].keys()
    for k, v in listed[2]["metrics"].items():
        assert as_f32[2]["metrics"][k] == v or (np.isnan(v) and np.isnan(as_f32[2]["metrics"][k])), k
    for bad in (True, np.bool_(True), "1.0", None, [values[0]]):
        with pytest.raises(ValueError, match=rf"^{env_id.split('/')[1].split('-')[0]}: reset option {knob} must be "
                                             rf"one of \[.*\], got "):
            env.reset(seed=1, options={knob: bad})


@pytest.mark.parametrize("env_id", IDS)
def test_a_refused_reset_moves_no_generator_and_leaves_no_half_reset_batch(env_id):
    """A reset refused for its options (window -1, an unknown knob value) had drawn from the env's generator first
    (and, in a batch, env 0 had drawn and reset before env 1's option was refused), so the next reset() played
    another episode than the same calls without the refused one. Now it plays the same, generators and all, and the
    batch does not step until a reset succeeds."""
    name = env_id.split("/")[1].split("-")[0]
    a, b = gym.make(env_id, **SMALL[env_id]), gym.make(env_id, **SMALL[env_id])
    knob = a.unwrapped.vec.episode_knob
    a.reset(seed=1)
    b.reset(seed=1)
    for bad in ({"window": -1}, {knob: "x"}):
        with pytest.raises(ValueError, match=f"^{name}: reset option"):
            a.reset(options=bad)
    np.testing.assert_array_equal(a.reset()[0], b.reset()[0])
    assert a.unwrapped.vec._rngs[0].bit_generator.state == b.unwrapped.vec._rngs[0].bit_generator.state
    va, vb = envs.make_vec(env_id, 3, seed=2, **SMALL[env_id]), envs.make_vec(env_id, 3, seed=2, **SMALL[env_id])
    va.reset()
    vb.reset()
    va.set_options([{}, {}, {"window": -1}])
    with pytest.raises(ValueError, match=f"^{name}: reset option window"):
        va.reset()
    with pytest.raises(RuntimeError, match=r"step\(\) before reset\(\)"):
        va.step(_masked_random(np.random.default_rng(0), va.action_masks(), va.action_space))
    np.testing.assert_array_equal(va.reset(), vb.reset())
    assert [r.bit_generator.state for r in va._rngs] == [r.bit_generator.state for r in vb._rngs]


@pytest.mark.parametrize("env_id", IDS)
def test_np_random_is_the_generator_the_env_draws_from(env_id):
    """Gymnasium's np_random was a second generator nothing drew from: a Generator assigned to it changed no episode,
    its state did not move as the env drew, and an unseeded env's np_random_seed was a fresh number that did not
    replay its episode. Now it is the env's own generator, as Gymnasium documents it."""
    env, ref = gym.make(env_id, **SMALL[env_id]), gym.make(env_id, **SMALL[env_id])
    env.reset(seed=5)
    assert env.unwrapped.np_random_seed == 5
    env.unwrapped.np_random = np.random.default_rng(77)
    assert env.unwrapped.np_random_seed == -1
    obs, _ = env.reset()
    first, _ = ref.reset(seed=77)
    np.testing.assert_array_equal(obs, first)  # the assigned generator drew the episode
    assert env.unwrapped.np_random.bit_generator.state == ref.unwrapped.np_random.bit_generator.state
    assert env.unwrapped.np_random.bit_generator.state != np.random.default_rng(77).bit_generator.state  # it moved
    fresh = gym.make(env_id, **SMALL[env_id])
    trail = _play_single(fresh, None, seed=None)
    replay = _play_single(ref, None, seed=fresh.unwrapped.np_random_seed)
    np.testing.assert_array_equal(trail[0], replay[0])
    np.testing.assert_array_equal(trail[1], replay[1])
    built_seeded = gym.make(env_id, seed=3, **SMALL[env_id])
    assert built_seeded.unwrapped.np_random_seed == 3
    np.testing.assert_array_equal(built_seeded.reset()[0], ref.reset(seed=3)[0])
