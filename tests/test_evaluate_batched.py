"""``agents.evaluate`` plays a row-independent policy's whole sweep in one batch where the environment
allows it; the episodes and every metric must be those of one batch per sweep value (the way every
other policy plays), on every single-agent environment, and Disaggregation (whose windows depend on the
loads listed) keeps one batch per value."""

from __future__ import annotations

import json

import numpy as np
import pytest

import envs
from agents import evaluate as ev
from agents.policy import make_policy
from agents.policy_base import HEURISTICS
from agents.rollout import run_episodes
from envs import options
from test_env_contract import SMALL

SINGLE = sorted(e for e in SMALL if e != "servegym/MultiCluster-v0")


class _Projected:
    """A deterministic policy whose action depends on its row's observation: the legal action (per
    component for MultiDiscrete) with the largest score of a fixed random projection of the row."""

    def __init__(self, env, seed: int = 0, row_independent: bool = True):
        self.name = "projected"
        self.row_independent = row_independent
        nvec = getattr(env.action_space, "nvec", None)
        self.cuts = np.cumsum([0, *np.asarray(nvec).reshape(-1)]) if nvec is not None else None
        n = int(env.action_space.n) if nvec is None else int(self.cuts[-1])
        self.w = np.random.default_rng(7).normal(size=(int(np.prod(env.observation_space.shape)), n))
        self.batches: list[int] = []

    def act(self, obs, action_mask):
        self.batches.append(obs.shape[0])
        keys = np.tanh(obs.reshape(obs.shape[0], -1).astype(np.float64)) @ self.w
        if action_mask is not None:
            keys[~action_mask] = -np.inf
        if self.cuts is None:
            return keys.argmax(1)
        return np.stack([keys[:, a:b].argmax(1) for a, b in zip(self.cuts[:-1], self.cuts[1:])], axis=1)


@pytest.fixture
def projected(monkeypatch):
    made: list[_Projected] = []

    def factory(row_independent):
        def make(env, seed=0):
            made.append(_Projected(env, seed, row_independent))
            return made[-1]
        return make

    for env_id in SINGLE:
        monkeypatch.setitem(HEURISTICS, env_id, {**HEURISTICS.get(env_id, {}), "projected": factory(True),
                                                 "projected_serial": factory(False)})
    return made


def _scenario(env_id):
    """The small scenario of ``env_id`` as evaluate plays it: ``(trace, env kwargs, knob, sweep values)``."""
    kwargs = dict(SMALL[env_id])
    trace = kwargs.pop("trace", "default")
    kwargs.setdefault("split", "test")
    kwargs["window_order"] = "sequential"
    probe = envs.make_vec(env_id, 1, seed=0, **{**kwargs, "trace": trace})
    knob, values = probe.sweep()
    probe.close()
    return trace, kwargs, knob, values


def _assert_as_per_value(result, reference, knob, values):
    """``result``'s metrics at each sweep value equal those of ``reference`` (episodes per value)."""
    for v, eps in zip(values, reference):
        want = json.loads(ev.report_json(ev.aggregate(eps)))
        assert json.loads(ev.report_json(result[f"by_{knob}"][ev.sweep_label(v)])) == want, (result["policy"], v)


def _per_value(env_id, spec, trace, episodes, seed, kwargs, knob, values):
    """Each sweep value in a batch of its own, as evaluate plays any policy that is not row-independent."""
    out = []
    for v in values:
        vec = envs.make_vec(env_id, episodes, seed=seed, **{**kwargs, "trace": trace, knob: v})
        eps, _ = run_episodes(vec, make_policy(spec, vec, env_id, seed=seed))
        vec.close()
        out.append(eps)
    return out


@pytest.mark.parametrize("env_id", SINGLE)
def test_one_batch_plays_the_episodes_of_one_batch_per_value(env_id, projected):
    trace, kwargs, knob, values = _scenario(env_id)
    if len(values) < 2:
        pytest.skip(f"{env_id}: its small scenario sweeps one {knob} value")
    episodes, seed = 3, 11
    report = ev.evaluate(env_id, ["projected", "projected_serial"], trace, episodes, seed, dict(kwargs),
                         kwargs["split"], progress=False)
    batched, serial = report["results"]
    one_batch = options.vec_class(env_id).episodes_independent_of_sweep
    assert set(projected[0].batches) == {episodes * len(values) if one_batch else episodes}
    assert set(projected[-1].batches) == {episodes}  # one batch per value
    reference = _per_value(env_id, "projected", trace, episodes, seed, kwargs, knob, values)
    for r in (batched, serial):
        _assert_as_per_value(r, reference, knob, values)


def test_number_episodes_numbers_sequential_episodes_and_refuses_bad_indices():
    kwargs = {**SMALL["servegym/KVAdmission-v0"], "window_order": "sequential"}
    one = envs.make_vec("servegym/KVAdmission-v0", 4, seed=0, **kwargs)
    one.reset()
    two = envs.make_vec("servegym/KVAdmission-v0", 2, seed=2, **kwargs)
    two.number_episodes([2, 3], 4)  # the last two envs of the batch of four
    two.reset()
    assert [two.episode_of(e) for e in range(2)] == [one.episode_of(e) for e in (2, 3)]
    with pytest.raises(ValueError, match="number_episodes needs 2 indices in \\[0, 4\\)"):
        two.number_episodes([0, 4], 4)
    with pytest.raises(ValueError, match="number_episodes needs 2 indices"):
        two.number_episodes([0], 4)


@pytest.mark.parametrize("env_id", SINGLE)
def test_every_row_independent_heuristic_plays_as_in_one_batch_per_value(env_id):
    from agents.policy import heuristic_names

    trace, kwargs, knob, values = _scenario(env_id)
    probe = envs.make_vec(env_id, 2, seed=0, **{**kwargs, "trace": trace})
    names = [n for n in heuristic_names(env_id) if getattr(make_policy(n, probe, env_id), "row_independent", False)]
    probe.close()
    if not names or len(values) < 2:
        pytest.skip(f"{env_id}: no row-independent heuristic, or one {knob} value")
    episodes, seed = 2, 4
    report = ev.evaluate(env_id, names, trace, episodes, seed, dict(kwargs), kwargs["split"], progress=False)
    for name, result in zip(names, report["results"]):
        reference = _per_value(env_id, name, trace, episodes, seed, kwargs, knob, values)
        _assert_as_per_value(result, reference, knob, values)


def test_number_episodes_and_batch_slice_refuse_non_integers_instead_of_truncating():
    vec = envs.make_vec("servegym/KVAdmission-v0", 2, seed=0, **SMALL["servegym/KVAdmission-v0"])
    for index, total, what in (([0, 1.5], 3, "indices must be integers, got 1.5"),
                               ([0, True], 3, "indices must be integers, got True"),
                               ([[0], [1]], 3, "indices must be integers, got \\[0\\]"),
                               ([0, 1], 2.7, "total must be an integer, got 2.7"),
                               ([0, 1], "3", "total must be an integer, got '3'")):
        with pytest.raises(TypeError, match=what):
            vec.number_episodes(index, total)
    with pytest.raises(ValueError, match="needs 2 indices in \\[0, 3\\)"):
        vec.number_episodes([0, 2**70], 3)  # not an OverflowError from numpy
    with pytest.raises(TypeError, match="batch_slice total must be an integer, got 2.5"):
        vec.batch_slice(0, 2.5)
    vec.number_episodes(np.array([1, 0]), np.int64(2))  # numpy integers are integers
    assert vec._seq_index.tolist() == [1, 0] and vec._seq_total == 2


def test_a_sweep_listing_a_value_twice_is_refused_by_evaluate_and_before_training(tmp_path, capsys):
    # by_load kept one "1.1" entry and the overall metrics counted its episodes twice
    from agents import train

    assert ev.repeated_sweep_values((1.1, 1.3, 1.1)) == ["1.1"] and ev.repeated_sweep_values(1.1) == []
    kv = "servegym/KVAdmission-v0"
    with pytest.raises(ev.RepeatedSweepValue, match="sweep value\\(s\\) 1.1 given more than once"):
        ev.evaluate(kv, ["vllm_fcfs"], episodes=1, env_kwargs={**SMALL[kv], "load": (1.1, 1.1)}, progress=False)
    for main, args in ((ev.main, ["--policy", "vllm_fcfs", "--episodes", "1"]),
                       (train.main, ["--timesteps", "64", "--n-envs", "2", "--no-progress", "--out", str(tmp_path)])):
        with pytest.raises(SystemExit) as exc:
            main([*args, "--env-kwargs", "load=1.1,1.1", "window_requests=64"])
        assert exc.value.code == 2
        assert "1.1" in capsys.readouterr().err.strip().splitlines()[-1]
    with pytest.raises(SystemExit) as exc:  # a tier's own loads, too
        train.main(["--timesteps", "64", "--n-envs", "2", "--no-progress", "--out", str(tmp_path),
                    "--slo-tiers", "mlperf_interactive:1.1,1.1", "--env-kwargs", "window_requests=64"])
    assert exc.value.code == 2 and "lists 1.1 twice" in capsys.readouterr().err
    assert not (tmp_path / "final.zip").exists()  # refused before training


@pytest.mark.parametrize("env_id", SINGLE)
def test_metric_names_read_without_playing_are_what_evaluate_reports(env_id):
    # agents.sweep checks --metric against these before Ray starts (it was a KeyError in every trial): the names a
    # freshly reset env gives must be those the evaluation reports after its episodes, and the played ones too.
    kw = dict(SMALL[env_id])
    trace = kw.pop("trace", "default")
    report = ev.evaluate(env_id, ["random"], trace, 1, 0, kw, "all", progress=False)
    reported = sorted(report["results"][0]["metrics"])
    assert ev.metric_names(env_id, trace, kw, 0, "all") == reported
    assert ev.metric_names(env_id, trace, kw, 0, "all", play=True) == reported
