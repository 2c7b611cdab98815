"""Routing-v0's privileged teacher (envs/routing/teacher.py): hand-built cases, determinism, no leak."""

from __future__ import annotations

import numpy as np
import pytest

from envs.core.engine import step_time
from envs.routing import teacher as T
from test_routing import BS, chain_trace, vec
from traces.trace import Trace, TraceMeta


def _trace(t, prompt, out, **chains) -> Trace:
    return Trace(np.array(t, float), np.array(prompt, np.int64), np.array(out, np.int64),
                 TraceMeta("teacher", "tests", "n/a"), **chains)


def _outcomes(v, mode: str = "marginal") -> np.ndarray:
    """``play_candidates``' rows [2R, 2] (reward, the request's TTFT) for env 0's pending request."""
    rows = T.scratch_like(v.state)
    T.load_rows(rows, v.state, 0)
    out = np.zeros((2 * v.R, 2))
    T.play_candidates(rows, v.scenario.workload, v.scenario.engine, int(v.state.next_arrival[0]), v.config.budget,
                      v.config.teacher_horizon_s, mode == "ttft", v.ttft_bound_s, float(v.config.ttft_bound_penalty),
                      np.zeros((2 * v.R, v.R)), out)
    return out


def test_teacher_follows_the_prefix_cache_by_hand():
    # Turn 1 (2 blocks) was served by replica 1; turn 2 (3 blocks, same first 2) comes 30 s later to
    # two idle replicas. Its first token: one prefill iteration of its uncached tokens (replica 1: the
    # third block after 1,024 cached tokens; replica 0: all 1,536), by the step-time model.
    # outputs 4 and 5: two of one length finish together in the capacity measurement (NoSteadyState)
    tr = _trace([0.0, 30.0], [2 * BS, 3 * BS], [4, 5], block_ids=np.array([0, 1, 0, 1, 2], np.int64),
                block_offsets=np.array([0, 2, 5]), block_size=BS)
    v = vec(tr, replicas=2)
    v.reset()
    v.step(np.array([1]))
    out = _outcomes(v, "ttft")
    c = v.scenario.engine.coeffs
    cold = step_time(c, 3.0 * BS, 3 * BS * (0 + (3 * BS + 1) / 2.0), 0.0, 0.0, 0.0, 3.0 * BS)
    warm = step_time(c, 1.0 * BS, BS * (2 * BS + (BS + 1) / 2.0), 0.0, 0.0, 0.0, 3.0 * BS)
    assert out[0, 1] == pytest.approx(cold, rel=1e-12) and out[1, 1] == pytest.approx(warm, rel=1e-12)
    assert warm < cold
    assert v.teacher_actions("ttft")[0] == 1 and v.teacher_actions("marginal")[0] == 1  # not the lowest index
    _, _, d, infos = v.step(np.array([1]))
    assert d[0] and infos[0]["requests"]["ttft"][1] == pytest.approx(warm, rel=1e-12)


def test_marginal_rule_spares_a_decode_the_soonest_first_token_would_break():
    # A (100 tokens, 8 out) on replica 0, C (2,000 tokens, 2 out) on replica 1, then B (16,000 tokens)
    # at 50 ms. B's first token comes 5 ms sooner on replica 1, but there its first 8,192-token chunk
    # shares the iteration of C's second token: C's one gap (its TPOT) passes the 0.1 s SLO. On
    # replica 0, A's decodes pay too, yet A's TPOT over 7 gaps stays within it.
    tr = _trace([0.0, 0.0, 0.05], [100, 2000, 16000], [8, 2, 4])
    met = {}
    for a in (0, 1):
        v = vec(tr, replicas=2, capacity_blocks=20_000)
        v.reset()
        v.step(np.array([0]))
        v.step(np.array([1]))
        out = _outcomes(v)
        assert v.teacher_actions("ttft")[0] == 1 and v.teacher_actions("marginal")[0] == 0
        assert list(v.teacher_targets()[0]) == [True, False]
        _, _, d, infos = v.step(np.array([a]))
        assert d[0]
        req = infos[0]["requests"]
        assert req["ttft"][2] == pytest.approx(out[a, 1], rel=1e-12)  # the replay is the episode (no later arrival)
        met[a] = req["slo_met"].copy()
        # Reward deltas (met +1, missed -1): replica 0 gains B and keeps A; replica 1 gains B, loses C.
        assert out[0, 0] - out[2, 0] == 1.0 and out[1, 0] - out[3, 0] == -1.0
    assert met[0].all() and list(met[1]) == [True, False, True]


def test_targets_hold_every_equally_good_replica():
    # The first request of an episode: every replica is idle and gives the same first token, so every
    # one is a target (imitation must not learn the lowest-index tie-break); the action is replica 0.
    tr = _trace([0.0, 0.01], [8000, 100], [4, 5])  # outputs unequal: a measurable capacity (NoSteadyState)
    v = vec(tr)
    v.reset()
    assert v.teacher_targets().all() and v.teacher_actions()[0] == 0
    v.step(np.array([2]))
    good = v.teacher_targets()[0]  # replica 2 is prefilling the first: it would delay the second
    assert not good[2] and good[[0, 1, 3]].all()
    loose = vec(tr, teacher_ttft_slack=1.0)  # within 1 TTFT SLO of the soonest: replica 2 too
    loose.reset()
    loose.step(np.array([2]))
    assert loose.teacher_targets()[0].all()


def test_teacher_is_deterministic_and_leaves_the_env_untouched():
    tr = chain_trace(n=96, rate=12.0, seed=3)

    def run(threads: int = 1):
        v = vec(tr, n_envs=3, teacher_threads=threads)
        obs = v.reset()
        acts, obs_seen = [], [obs.copy()]
        for _ in range(60):
            before = [getattr(v.state, f).copy() for f in v.state._fields]
            a = v.teacher_actions()
            for f, x in zip(v.state._fields, before):  # privileged: reads the state, never writes it
                np.testing.assert_array_equal(getattr(v.state, f), x, err_msg=f)
            acts.append(a)
            obs, *_ = v.step(a)
            obs_seen.append(obs.copy())
        return acts, obs_seen

    a1, o1 = run()
    a2, o2 = run(threads=2)
    assert all((x == y).all() for x, y in zip(a1, a2))  # same state, same labels (on any number of threads)
    assert all((x == y).all() for x, y in zip(o1, o2))
    assert len({int(a) for acts in a1 for a in acts}) > 1  # it routes, not a constant


def test_teacher_output_is_not_in_the_observation():
    # The observation after the same actions is the same whether the teacher was asked or not, and
    # no feature holds a replica choice or an output length the router cannot know.
    tr = chain_trace(n=48, rate=8.0, seed=1)
    v1, v2 = vec(tr), vec(tr)
    o1, o2 = v1.reset(), v2.reset()
    for _ in range(30):
        a = v1.teacher_actions()
        o1, *_ = v1.step(a)
        o2, *_ = v2.step(a)
        np.testing.assert_array_equal(o1, o2)
    assert not any("teacher" in n or "output" in n for n in v1.feature_names())


def test_teacher_rejects_bad_arguments():
    v = vec(chain_trace(n=8))
    v.reset()
    with pytest.raises(ValueError, match="mode must be one of marginal, ttft"):
        v.teacher_actions("oracle")
    with pytest.raises(ValueError, match="horizon_s must be > 0"):
        v.teacher_actions(horizon_s=0.0)
    with pytest.raises(ValueError, match="teacher_horizon_s must be a number > 0"):
        vec(chain_trace(n=8), teacher_horizon_s=-1.0)
    with pytest.raises(ValueError, match="teacher_ttft_slack must be a number >= 0"):
        vec(chain_trace(n=8), teacher_ttft_slack=-0.1)


def test_zoo_recipe_imitates_the_teacher_on_the_transfer_distribution():
    from agents.zoo import PENDING, RECIPES

    recipes = [RECIPES["servegym/Routing-v0"]]
    if "servegym/Routing-v0" in PENDING:  # issue 21: the same recipe imitating the sampled-length teacher
        recipes.append(PENDING["servegym/Routing-v0"])
        assert "teacher_lengths='sampled'" in recipes[-1].train_args
    for recipe in recipes:
        _check_recipe(list(recipe.train_args))


def _check_recipe(args):
    from pathlib import Path

    from agents import scenarios as scn
    from agents.training import parse_hyperparams
    from agents.zoo import ROUTING_WORKLOADS
    from envs.routing import kernels as K

    assert "workloads=" + ",".join(ROUTING_WORKLOADS) in args and "--trace" not in args
    root = Path(__file__).resolve().parents[1]
    assert tuple(str((root / w).resolve()) if "/" in w else w for w in ROUTING_WORKLOADS) == \
        scn.TRAINING_WORKLOADS["servegym/Routing-v0"]
    assert int(args[args.index("--imitate") + 1]) > 0 and args[args.index("--timesteps") + 1] == "0"
    i = args.index("--hyperparams")
    hp = parse_hyperparams(args[i + 1:i + 3])
    assert hp["policy"] == "agents.scorer_policy:ItemScorerPolicy"
    assert (hp["policy_kwargs"]["n_global"], hp["policy_kwargs"]["n_item"]) == (K.G, K.F)  # the observation's layout


def test_dagger_learns_the_routing_teacher():
    # DAgger (agents/imitation.py, the train.py --imitate path) into the per-replica scorer on a loaded
    # 4-replica cluster: the student's greedy choice, student driving, lands in the teacher's target set
    # more often after imitation than before.
    from agents.imitation import imitate
    from agents.training import make_model
    from envs.routing import kernels as K

    tr = chain_trace(n=512, rate=40.0, seed=5, convs=32)
    v = vec(tr, n_envs=4, window_requests=128, window_order="random")
    hp = {"policy": "agents.scorer_policy:ItemScorerPolicy", "policy_kwargs": {"n_global": K.G, "n_item": K.F}}
    model = make_model("maskable-ppo", "servegym/Routing-v0", v, 0, None, hp)

    def agreement(steps: int = 100) -> float:
        obs, hits = v.reset(), 0
        for _ in range(steps):
            a, _ = model.predict(obs, action_masks=v.action_masks(), deterministic=True)
            hits += int(v.teacher_targets()[np.arange(v.num_envs), a].sum())
            obs, *_ = v.step(a)
        return hits / (steps * v.num_envs)

    before = agreement()
    history = imitate(model, v, 4 * 6 * 80, rounds=6, epochs=6, batch_size=256, seed=0, log=lambda _: None)
    after = agreement()
    assert [h["round"] for h in history] == list(range(6))
    assert (1 - after) < 0.75 * (1 - before), (before, after)


def test_predicted_lengths_never_read_a_true_length():
    # Permuting the true output lengths among the requests of one predicted bucket keeps every
    # bucket's length distribution, so the predicted-length teachers' choices (mean lengths and
    # sampled lengths) stay the same at every
    # state; the true-length teacher's change (the test can fail: the permutation matters).
    c = chain_trace(n=160, rate=14.0, seed=5)
    rng = np.random.default_rng(0)
    tr = Trace(c.arrival_s, c.prompt_tokens, rng.choice([8, 40, 90, 200, 400, 900], len(c)).astype(np.int64), c.meta,
               block_ids=c.block_ids, block_offsets=c.block_offsets, block_size=BS)
    v = vec(tr, n_envs=2, teacher_samples=2)
    wl = v.scenario.workload
    wl.output.flags.writeable = True  # the test swaps the true lengths in place (the scenario is this test's)
    true_out = wl.output.copy()
    perm = true_out.copy()
    for b in np.unique(wl.pred_bucket):
        at = np.argwhere(wl.pred_bucket == b)
        perm[at[:, 0], at[:, 1]] = true_out[at[:, 0], at[:, 1]][rng.permutation(len(at))]
    assert (perm != true_out).mean() > 0.3
    v.reset()
    changed = 0
    for _ in range(120):
        both = {}
        for name, outputs in (("orig", true_out), ("perm", perm)):
            wl.output[:] = outputs
            v._teacher_cache = None
            both[name] = (v.teacher_actions(lengths="predicted"), v.teacher_actions(lengths="true"),
                          v.teacher_actions(lengths="sampled"))
        wl.output[:] = true_out
        np.testing.assert_array_equal(both["orig"][0], both["perm"][0])
        np.testing.assert_array_equal(both["orig"][2], both["perm"][2])
        changed += int((both["orig"][1] != both["perm"][1]).sum())
        v.step(both["orig"][0])
    assert changed > 0


def test_predicted_lengths_are_the_conditional_mean():
    # Bucket 2 (65..128 tokens) holds lengths 70, 100, 130 (one noisy): a fresh request is predicted
    # their mean, 100; one that has generated 80 tokens the mean of those longer than 80, 115; one
    # past every calibration length gets 1 more token.
    from envs.core import state as S
    from envs.routing import predicted as P
    out = np.array([[70, 100, 130, 5]], np.int32)
    wl = S.Workload(arrival_s=np.zeros((1, 4)), prompt=np.ones((1, 4), np.int32), output=out,
                    pred_bucket=np.array([[2, 2, 2, 0]], np.int8), n_requests=np.array([4], np.int32),
                    chain_ids=np.full((1, 4, 1), -1, np.int64), chain_len=np.zeros((1, 4), np.int16),
                    failed=np.zeros((1, 4), bool))
    t = P.length_table(wl)
    assert t.fresh[2] == 100 and t.fresh[0] == 5
    assert t.fresh[5] == round(out.mean())  # an empty bucket: the pooled mean
    np.testing.assert_array_equal(P.expected_length(t, np.array([2, 2, 0]), np.array([80, 500, 0])), [115, 501, 5])
    with pytest.raises(ValueError, match="teacher_lengths must be one of"):
        vec(chain_trace(n=8), teacher_lengths="oracle")
    with pytest.raises(ValueError, match="lengths must be one of"):
        vec(chain_trace(n=8)).teacher_actions(lengths="exact")
    with pytest.raises(ValueError, match="teacher_samples must be an integer >= 1"):
        vec(chain_trace(n=8), teacher_samples=0)
    # Sampled lengths: drawn from the bucket's lengths longer than those generated (70 is not > 80).
    draws = np.stack([P.sample_lengths(t, np.array([2, 2]), np.array([80, 0]), np.random.default_rng(k))
                      for k in range(200)])
    assert set(draws[:, 0]) == {100, 130} and set(draws[:, 1]) == {70, 100, 130}
