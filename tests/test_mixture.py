"""Training on a distribution of workloads (envs.core.mixture): config field ``workloads``.

Checks: every part plays and is recorded in the episode info; a mixture of one part plays
exactly as that trace alone; same seed, same episodes; training sees only each part's training
split; clear errors for bad entries.
"""

from __future__ import annotations

import numpy as np
import pytest

from envs.kv_admission.env import KVAdmissionVecEnv, build_scenario
from envs.kv_admission.env import KVAdmissionConfig
from envs.prefix_eviction.env import PrefixEvictionVecEnv
from envs.routing.env import RoutingVecEnv

KV = dict(window_requests=128, drain_s=5.0)


def _episodes(vec, n: int, policy=None) -> list[dict]:
    """The first ``n`` finished episodes' (workload, metrics), acting with ``policy(mask)``."""
    vec.reset()
    out: list[dict] = []
    for _ in range(200_000):
        mask = vec.action_masks()
        a = policy(mask) if policy else np.argmax(mask, axis=1)
        _, _, done, infos = vec.step(a.astype(np.int64))
        for e in np.flatnonzero(done):
            out.append({"workload": infos[e].get("workload"), "metrics": infos[e]["metrics"]})
        if len(out) >= n:
            return out[:n]
    raise AssertionError("episodes did not end")


def _admit_all(mask: np.ndarray) -> np.ndarray:
    return np.full(mask.shape[0], mask.shape[1] - 1, np.int64)  # admit all, largest budget, edf


def test_kv_admission_mixture_records_every_part_and_is_deterministic():
    kw = dict(workloads=("azure_conv", "burstgpt_like-v1"), workload_seeds=2, load=(1.1, 1.5), **KV)
    a = _episodes(KVAdmissionVecEnv(4, seed=7, **kw), 16, _admit_all)
    b = _episodes(KVAdmissionVecEnv(4, seed=7, **kw), 16, _admit_all)
    assert a == b
    seen = {(ep["workload"]["name"], ep["workload"]["seed"]) for ep in a}
    assert seen == {("azure_conv-v1", 0), ("azure_conv-v1", 1), ("burstgpt_like-v1", 0), ("burstgpt_like-v1", 1)}
    c = _episodes(KVAdmissionVecEnv(4, seed=8, **kw), 16, _admit_all)
    assert c != a
    sc = build_scenario(KVAdmissionConfig(**{**kw, "load": (1.1,)}))
    assert len(sc.parts) == 4 and sc.groups[0] == 0 and sc.groups[-1] == sc.workload.arrival_s.shape[0]
    # Loads are relative to each part's own capacity: a short-request family has a far higher one.
    assert sc.part_capacity_rps[2] > 5 * sc.part_capacity_rps[0]


def test_mixture_of_one_part_plays_as_the_trace_alone():
    for w in (0, 3):
        opts = {"window": w, "load": 1.3}
        alone = KVAdmissionVecEnv(1, seed=1, trace="azure_conv", load=(1.3,), **KV)
        mixed = KVAdmissionVecEnv(1, seed=1, workloads=("azure_conv",), load=(1.3,), **KV)
        alone.set_options(opts)
        mixed.set_options({**opts, "workload": 0})
        ea, em = _episodes(alone, 1, _admit_all)[0], _episodes(mixed, 1, _admit_all)[0]
        assert ea["metrics"] == em["metrics"]
        assert em["workload"] == {"name": "azure_conv-v1", "seed": 0, "window": w}


def test_training_split_of_every_part():
    kw = dict(window_requests=128)
    mixed = build_scenario(KVAdmissionConfig(workloads=("azure_conv", "azure_code_bursty"), split="train", **kw))
    sizes = np.diff(mixed.groups)
    for i, name in enumerate(("azure_conv", "azure_code_bursty")):
        alone = build_scenario(KVAdmissionConfig(trace=name, split="train", **kw))
        assert sizes[i] == alone.workload.arrival_s.shape[0]
        assert np.array_equal(mixed.workload.prompt[mixed.groups[i]:mixed.groups[i + 1]], alone.workload.prompt)
    test = build_scenario(KVAdmissionConfig(workloads=("azure_conv",), split="test", **kw))
    train = build_scenario(KVAdmissionConfig(workloads=("azure_conv",), split="train", **kw))
    assert not np.array_equal(test.workload.prompt[:1], train.workload.prompt[:1])


def test_routing_mixture_plays_every_part_with_its_bound():
    kw = dict(workloads="mooncake_conv, azure_conv", window_requests=128, replicas=2, drain_s=5.0, load=(0.6,))
    a = _episodes(RoutingVecEnv(4, seed=3, **kw), 8)
    assert a == _episodes(RoutingVecEnv(4, seed=3, **kw), 8)
    names = {ep["workload"]["name"] for ep in a}
    assert names == {"mooncake_conv-v1", "azure_conv-v1"}
    vec = RoutingVecEnv(1, seed=3, **kw)
    bounds = {ep["workload"]["name"]: ep["metrics"]["capacity_bound_rps"] for ep in a}
    assert bounds["mooncake_conv-v1"] == pytest.approx(vec.scenario.part_bound_rps[0])
    assert bounds["azure_conv-v1"] == pytest.approx(vec.scenario.part_bound_rps[1])


def test_prefix_eviction_mixture_capacities_per_part_and_one_part_equivalence():
    kw = dict(window_requests=300, warmup_requests=300, capacity_frac=(0.05,))
    vec = PrefixEvictionVecEnv(4, seed=2, workloads=("mooncake_conv", "agentic"), **kw)
    eps = _episodes(vec, 12)
    assert eps == _episodes(PrefixEvictionVecEnv(4, seed=2, workloads=("mooncake_conv", "agentic"), **kw), 12)
    by = {}
    for ep in eps:
        by.setdefault(ep["workload"]["name"], set()).add(ep["metrics"]["capacity_blocks"])
    assert set(by) == {"mooncake_conv-v1", "agentic-v1"}
    blocks = vec.built.part_blocks
    assert by["mooncake_conv-v1"] == {float(round(0.05 * blocks[0]))}
    assert by["agentic-v1"] == {float(round(0.05 * blocks[1]))}
    # Windows never cross parts: every episode's requests lie inside its part.
    g = vec.built.request_groups
    for ep in eps:
        q = ep["workload"]["first_request"]
        p = int(np.searchsorted(g, q, side="right")) - 1
        assert q + kw["window_requests"] <= g[p + 1]
    # One part, sequential windows: exactly the trace alone.
    seq = dict(kw, window_order="sequential", split="test")
    alone = _episodes(PrefixEvictionVecEnv(2, seed=0, trace="agentic", **seq), 2)
    mixed = _episodes(PrefixEvictionVecEnv(2, seed=0, workloads=("agentic",), **seq), 2)
    assert [e["metrics"] for e in alone] == [e["metrics"] for e in mixed]


@pytest.mark.parametrize("kwargs, match", [
    ({"workloads": ("azure_conv", "azure_conv")}, "more than once"),
    ({"workloads": ("no_such_trace",)}, "no_such_trace"),
    ({"workloads": ("azure_conv-v9",)}, "version 9 is not available"),
    ({"workloads": ("azure_conv",), "trace_params": (("rate_rps", 2.0),)}, "trace_params cannot be combined"),
    ({"workloads": ("azure_conv",), "workload_seeds": 0}, "workload_seeds must be an integer >= 1"),
    # not of the field's type: the config's type check (envs.config_check), as --env-kwargs words it
    ({"workloads": 3}, r"^KVAdmission: workloads must be tuple\[str \| tuple\[str, .* \| str, got 3 \(int\)$"),
    ({"workloads": (("azure_conv", 3),)}, r"^KVAdmission: workloads must be .*, got \(\('azure_conv', 3\),\) \(tuple\)$"),
    ({"workloads": (("azure_conv", {"bogus": 1}),)}, "workloads entry 'azure_conv' .*unexpected keyword argument 'bogus'"),
])
def test_bad_workloads_are_named(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        KVAdmissionVecEnv(1, **{**KV, **kwargs})


@pytest.mark.parametrize("cls", [KVAdmissionVecEnv, RoutingVecEnv, PrefixEvictionVecEnv])
def test_workload_seeds_past_what_the_mixture_can_hold_is_refused_before_any_part_loads(cls, monkeypatch):
    # 2**40 hung building a list of 2**40 parts (no error for minutes); now one line naming the field and the bound.
    from envs import config_check

    where = cls.env_name
    two = ("azure_conv", "mooncake_conv")
    for n in (2**31, 2**40, 10**30):
        with pytest.raises(ValueError, match=rf"^{where}: workload_seeds must be at most 2,147,483,647 \(2\*\*31 - 1: "
                                             rf"a mixture's windows, one a part at least, are indexed with int32\), "
                                             rf"got {n}$"):
            cls(1, workloads=two, workload_seeds=n, window_requests=64)
    # Within int32, held to this machine's memory (here 1 MiB): 2 entries x 64 requests x 24 bytes a part
    monkeypatch.setattr(config_check, "memory_limit_bytes", lambda: 2**20)
    with pytest.raises(ValueError) as e:
        cls(1, workloads=two, workload_seeds=400, window_requests=64)
    assert str(e.value) == (f"{where}: the 2 built-in workloads entries' parts (one window of window_requests=64 "
                            f"requests each, at least) for workload_seeds=400 take 0.00114 GiB, more than this "
                            f"machine's memory (0.000977 GiB): workload_seeds at most 341 would fit with the others "
                            f"as given")


def test_an_entry_carries_its_own_trace_params():
    """(name, trace_params) loads that part as a single-trace config with those trace_params does,
    and the part records them; a dict and (key, value) pairs are the same entry."""
    four_h = {"duration_s": 14400.0}
    kw = dict(window_requests=256, split="test")
    mixed = build_scenario(KVAdmissionConfig(workloads=("azure_conv", ("burstgpt_like-v1", four_h)), **kw))
    alone = build_scenario(KVAdmissionConfig(trace="burstgpt_like-v1", trace_params=tuple(four_h.items()), **kw))
    part = slice(mixed.groups[1], mixed.groups[2])
    assert np.array_equal(mixed.workload.prompt[part], alone.workload.prompt)
    assert np.array_equal(mixed.workload.arrival_s[part], alone.workload.arrival_s)
    assert [p.info() for p in mixed.parts] == [
        {"name": "azure_conv-v1", "seed": 0}, {"name": "burstgpt_like-v1", "seed": 0, "trace_params": four_h}]
    as_pairs = KVAdmissionVecEnv(1, workloads=("azure_conv", ("burstgpt_like-v1", (("duration_s", 14400.0),))), **kw)
    assert as_pairs.config.workloads == ("azure_conv", ("burstgpt_like-v1", (("duration_s", 14400.0),)))
    assert as_pairs.scenario.parts == mixed.parts


def test_a_held_out_part_shorter_than_a_window_names_the_entry_and_what_to_set():
    """burstgpt_like's default hour at generator seed 1 leaves 947 held-out requests."""
    with pytest.raises(ValueError, match=r"^KVAdmission: workloads entry 'burstgpt_like-v1' \(seed 1\) has 947 requests "
                       r"in its held-out part \(split='test', held_out_frac=0.3\), fewer than one window of "
                       r"window_requests=1024; give the entry a longer trace, e\.g\. workloads entry "
                       r"\('burstgpt_like-v1', \{'duration_s': 7200\.0\}\) \(now \d+ s\), or set window_requests <= 947$"):
        KVAdmissionVecEnv(1, workloads=("azure_conv", "burstgpt_like-v1"), workload_seeds=2, split="test")
    with pytest.raises(ValueError, match=r"^PrefixEviction: workloads entry 'agentic' \(seed 0\) has \d+ requests "
                       r"in its held-out part .*window_requests=100000; give the entry a longer trace"):
        PrefixEvictionVecEnv(1, workloads=("agentic",), split="test", window_requests=100_000, warmup_requests=0)


def test_train_refuses_a_short_held_out_part_before_training(tmp_path, capsys):
    """The evaluation after training plays split='test': a part too short for one window is a one-line
    usage error before anything is built or trained, not a traceback after training."""
    from agents.train import main

    out = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_:
        main(["--env-kwargs", "workloads=azure_conv-v1,burstgpt_like-v1", "workload_seeds=2",
              "--timesteps", "64", "--n-envs", "2", "--no-progress", "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(err) == 1, err
    assert "the evaluation after training (split='test'; --no-eval skips it)" in err[0]
    assert "workloads entry 'burstgpt_like-v1' (seed 1) has 947 requests in its held-out part" in err[0]
    assert not out.exists()  # nothing trained, nothing written


def test_prefix_eviction_refuses_a_family_without_chains():
    with pytest.raises(ValueError, match="workloads entry 'azure_conv'.*no prefix block ids"):
        PrefixEvictionVecEnv(1, workloads=("mooncake_conv", "azure_conv"), window_requests=300, warmup_requests=300)


def test_reset_option_workload_names_a_part():
    vec = KVAdmissionVecEnv(1, seed=0, workloads=("azure_conv", "burstgpt_like"), load=(1.1,), **KV)
    vec.set_options({"workload": 1})
    assert _episodes(vec, 1, _admit_all)[0]["workload"]["name"] == "burstgpt_like-v1"
    vec.set_options({"workload": 2})
    with pytest.raises(ValueError, match=r"reset option workload must be an integer in \[0, 2\)"):
        vec.reset()


def test_run_record_lists_every_part_and_seed():
    from agents.train import workload_record

    vec = KVAdmissionVecEnv(1, workloads=("azure_conv", "burstgpt_like"), workload_seeds=2, trace_seed=5, **KV)
    assert workload_record(vec) == {"workload_parts": [
        {"name": "azure_conv-v1", "seed": 5}, {"name": "azure_conv-v1", "seed": 6},
        {"name": "burstgpt_like-v1", "seed": 5}, {"name": "burstgpt_like-v1", "seed": 6}]}
    assert workload_record(KVAdmissionVecEnv(1, trace="azure_conv", **KV)) == {}
    from agents.family_vec import FamilyVecEnv  # --slo-tiers: the same mixture in every family, one record

    other = KVAdmissionVecEnv(1, trace="azure_conv", **KV)
    assert workload_record(FamilyVecEnv([vec, vec])) == workload_record(vec)
    assert workload_record(FamilyVecEnv([vec, other], ["a", "b"])) == {
        "workload_parts_by_family": {"a": workload_record(vec), "b": {}}}


@pytest.mark.parametrize("cls", [KVAdmissionVecEnv])
def test_workload_seeds_without_a_builtin_entry_is_refused_not_ignored(cls):
    # workload_seeds=3 with no mixture (or one of trace files only) built the same env as 1, without a word
    where = "KVAdmission"
    with pytest.raises(ValueError, match=rf"^{where}: workload_seeds=3 sets how many generator seeds each built-in "
                                         r"workloads entry plays, and there is no workloads mixture \(workloads=\(\)\): "
                                         r"leave it at 1$"):
        cls(1, workload_seeds=3)
    with pytest.raises(ValueError, match=r"has no built-in generator entry"):
        cls(1, workloads=("/nonexistent/x.csv",), workload_seeds=2)
