"""The Python API refuses what ``--env-kwargs`` refuses: every environment's config is checked against
its dataclass (``envs.config_check``), types and finite numbers, with the field named; and a load so small
that the float64 clock would round its times away is refused at reset."""

from __future__ import annotations

import re

import gymnasium as gym
import numpy as np
import pytest

import envs
from agents.env_kwargs import UsageError, parse_env_kwargs
from envs import options
from envs.config_check import check_types, conform
from envs.routing.env import RoutingConfig
from test_env_contract import SMALL

IDS = options.env_ids()  # the six single-agent ids and servegym/MultiCluster-v0


def _name(env_id: str) -> str:
    return "multi" if options.is_multi_agent(env_id) else options.short_name(env_id)


def _first(env_id: str, annotation: type) -> str:
    return next(f.name for f in options.config_fields(env_id) if f.annotation is annotation)


def _build(env_id: str, **kwargs):
    if options.is_multi_agent(env_id):
        return envs.make_parallel(env_id, **kwargs)
    return envs.make_vec(env_id, 1, seed=0, **kwargs)


@pytest.mark.parametrize("env_id", IDS)
@pytest.mark.parametrize("bad", [float("inf"), float("-inf"), float("nan")])
def test_a_non_finite_float_field_is_refused_naming_it(env_id, bad):
    field = _first(env_id, float)
    with pytest.raises(ValueError, match=rf"^{_name(env_id)}: {field} must be finite \(float\), got {bad!r}$"):
        _build(env_id, **{field: bad})


@pytest.mark.parametrize("env_id", IDS)
@pytest.mark.parametrize("bad", ["64", 64.0, True, None])
def test_a_wrong_type_for_an_int_field_is_refused_naming_it(env_id, bad):
    field = _first(env_id, int)
    says = rf"^{_name(env_id)}: {field} must be int, got {re.escape(repr(bad))} \({type(bad).__name__}\)$"
    with pytest.raises(TypeError, match=says):
        _build(env_id, **{field: bad})


def test_the_trial_cases_through_gymnasium_make():
    """gymnasium.make("servegym/Routing-v0", load=inf) ran; window_requests='64' was a bare TypeError."""
    with pytest.raises(ValueError, match=r"^Routing: load must be a finite number > 0 or a non-empty tuple of them, "
                                         r"got inf$"):
        gym.make("servegym/Routing-v0", load=float("inf"))
    with pytest.raises(ValueError, match=r"load must be a finite number > 0 .*got \(0\.6, nan\)"):
        gym.make("servegym/Routing-v0", load=(0.6, float("nan")))
    with pytest.raises(TypeError, match=r"^Routing: window_requests must be int, got '64' \(str\)"):
        gym.make("servegym/Routing-v0", window_requests="64")
    with pytest.raises(TypeError, match=r"^KVAdmission: prefix_caching must be bool, got 1 \(int\)"):
        gym.make("servegym/KVAdmission-v0", prefix_caching=1)
    # a config object built by hand is checked the same way
    with pytest.raises(ValueError, match=r"^Routing: drain_s must be finite \(float\), got inf$"):
        envs.make_vec("servegym/Routing-v0", 1, config=RoutingConfig(drain_s=float("inf")))
    with pytest.raises(TypeError, match=r"^multi: stale_s must be float, got 'x' \(str\)$"):
        envs.make_parallel("servegym/MultiCluster-v0", stale_s="x")


def test_the_cli_and_the_api_refuse_the_same_values():
    for raw, value in (("1e400", float("inf")), ("'64'", "64")):
        with pytest.raises(UsageError, match="window_requests|load"):
            parse_env_kwargs([f"load={raw}"], "servegym/Routing-v0")
        with pytest.raises((TypeError, ValueError), match="Routing: load must be"):
            envs.make_vec("servegym/Routing-v0", 1, load=value)


def test_numpy_scalars_lists_and_every_default_are_accepted():
    assert conform(np.int64(8), int) == (True, 8)
    assert conform(np.float32(0.5), float) == (True, 0.5)
    assert conform(np.bool_(True), bool) == (True, True)
    assert conform([0.6, 1], float | tuple[float, ...]) == (True, (0.6, 1.0))
    assert conform(np.float64("inf"), float) == (False, None)
    for env_id in IDS:
        check_types(options.config_class(env_id)(), env_id)
    for env_id, kw in SMALL.items():
        check_types(options.config_class(env_id)(**kw), env_id)


def test_a_load_too_small_for_the_float64_clock_is_refused_when_built():
    """load=1e-300 gave TTFTs of 0 s and an attainment set by rounding. A tiny load that the clock resolves
    (1e-6 here: a few million simulated seconds) is a legitimate, idle cluster and is played. Every level of a
    tuple is checked when the env is built (load=(0.5, 1e-12) built, then failed only at the resets that drew
    1e-12: a traceback from reset on the CLI), for every env that takes load levels."""
    kw = {k: v for k, v in SMALL["servegym/Routing-v0"].items() if k != "load"}
    envs.make_vec("servegym/Routing-v0", 1, seed=0, load=1e-6, **kw).reset()
    with pytest.raises(ValueError, match=r"^Routing: load 1e-300 replays window \d+ over .* s of simulated time; "
                                         r"its float64 clock keeps microseconds only up to 2\^32 s"):
        envs.make_vec("servegym/Routing-v0", 1, seed=0, load=1e-300, **kw)
    for env_id in ("servegym/Routing-v0", "servegym/KVAdmission-v0", "servegym/MultiCluster-v0"):
        kw = {k: v for k, v in SMALL.get(env_id, {}).items() if k != "load"}
        with pytest.raises(ValueError, match=rf"^{_name(env_id)}: load 1e-12 replays window 0 over .* s of simulated "
                                             r"time; .*: raise the load$"):
            _build(env_id, load=(0.5, 1e-12), **kw)
    kw = {k: v for k, v in SMALL["servegym/KVAdmission-v0"].items() if k != "load"}
    with pytest.raises(ValueError, match=r"^KVAdmission: rate_scale 1e-300 replays window"):
        envs.make_vec("servegym/KVAdmission-v0", 1, seed=0, rate_scale=1e-300, **kw)


def _episode(vec) -> dict:
    """The metrics of env 0's first episode of ``vec`` (already built), played with action 0 where legal."""
    vec.reset()
    while True:
        mask = vec.action_masks()
        _, _, done, infos = vec.step(mask.argmax(1))
        if done[0]:
            return infos[0]["metrics"]


def test_a_load_so_high_that_arrivals_collapse_onto_one_instant_is_refused_when_built():
    """KVAdmission at load=1e308 scaled every arrival to 0 s (the same episode as any load past the first
    iteration's), Routing at rate_scale=1e308 offered 1.02e12 requests/s from arrivals at one instant: a scaled gap
    between arrivals below float64's smallest normal number (envs.core.workload.MIN_GAP_S) is one line naming the
    knob and the largest value that works; that value builds and its arrivals stay distinct, every level of a tuple
    is checked when built, and a high load whose arrivals float64 still tells apart (1e6) is played."""
    from envs.core.workload import MIN_GAP_S, min_arrival_gaps
    from envs.routing.env import time_scales

    tail = r" s apart, below float64's smallest normal number \(2\.23e-308 s\), so distinct arrival instants would " \
           r"collapse onto one: {} at most ([\d.e+]+)$"
    for env_id, knob, bad in (("servegym/KVAdmission-v0", "load", 1e308),
                              ("servegym/KVAdmission-v0", "rate_scale", 1e308),
                              ("servegym/Routing-v0", "rate_scale", 1e308),
                              ("servegym/Routing-v0", "load", (0.5, 1e306)),
                              ("servegym/MultiCluster-v0", "load", 1e308)):
        kw = {k: v for k, v in SMALL.get(env_id, {}).items() if k != "load"}
        level = bad[-1] if isinstance(bad, tuple) else bad
        says = rf"^{_name(env_id)}: {knob} {re.escape(f'{level:g}')} replays window \d+ with its closest arrivals "
        with pytest.raises(ValueError, match=says + r"[\d.e+-]+" + tail.format(knob)) as err:
            _build(env_id, **{knob: bad}, **kw)
        if env_id == "servegym/MultiCluster-v0":
            continue
        largest = float(re.search(r"at most ([\d.e+]+)$", str(err.value)).group(1))
        vec = _build(env_id, **{knob: largest}, **kw)
        wl = vec.scenario.workload
        level = None if knob == "rate_scale" else largest
        W = np.arange(len(wl.n_requests))
        scales = (vec._time_scales(W, level) if env_id == "servegym/KVAdmission-v0"
                  else time_scales(vec.config, vec.scenario, W, level))
        gaps = min_arrival_gaps(wl.arrival_s)
        assert (gaps * scales >= MIN_GAP_S).all()
        times = wl.arrival_s * scales[:, None]  # the kernels' arrival times: distinct where the trace's are
        assert ((np.diff(times, axis=1) > 0) == (np.diff(wl.arrival_s, axis=1) > 0)).all()
        with pytest.raises(ValueError, match=r"collapse onto one"):
            _build(env_id, **{knob: largest * 1.01}, **kw)
    kw = {k: v for k, v in SMALL["servegym/KVAdmission-v0"].items() if k != "load"}
    high, higher = (_episode(envs.make_vec("servegym/KVAdmission-v0", 1, seed=0, load=x, **kw)) for x in (1e6, 1e12))
    assert high["duration_s"] > 0 and higher["duration_s"] > 0  # played, as is any overload float64 resolves


def test_a_ttft_load_so_high_that_arrivals_collapse_onto_one_instant_is_refused_when_built():
    """PrefixEviction's TTFT replay scales a window's arrivals by 1 / ttft_load: ttft_load=1e308 built and replayed
    them 1.5e-310 s apart (subnormal; the TTFT p50 of 1e300's episode). Windows are any contiguous range of the
    trace (random order) or its sequential windows, so the closest arrivals any drawable window holds, scaled, must
    stay at least envs.core.workload.MIN_GAP_S apart: one line (check_arrival_gaps' wording) naming ttft_load, a
    window that holds them and the largest value that works; that value builds and every drawable window's replayed
    arrivals stay distinct, for one trace and for a mixture (each part at its own time scale)."""
    from envs.core.workload import MIN_GAP_S
    from envs.prefix_eviction.env import PrefixEvictionVecEnv

    says = r"^PrefixEviction: ttft_load {} replays window (\d+) with its closest arrivals ([\d.e+-]+) s apart, " \
           r"below float64's smallest normal number \(2\.23e-308 s\), so distinct arrival instants would collapse " \
           r"onto one: ttft_load at most ([\d.e+]+)$"

    def drawable(vec):  # (start, end, time scale) of every window a reset can draw
        bt, wr = vec.built, vec.config.window_requests
        g = [0, len(bt.arrival_s)] if bt.request_groups is None else bt.request_groups
        scale = [bt.ttft_scale] if bt.part_ttft_scale is None else bt.part_ttft_scale
        if vec.config.window_order == "sequential":
            return [(s, e, scale[bt.part_of_request(s)]) for s, e in zip(bt.starts, bt.ends)]
        return [(s, s + wr, scale[p]) for p in range(len(g) - 1) for s in range(g[p], g[p + 1] - wr + 1)]

    kw = SMALL["servegym/PrefixEviction-v0"]
    for extra in ({"window_order": "random"}, {"window_order": "sequential"},
                  {"workloads": ("mooncake_conv", "agentic"), "trace": "default"}):
        with pytest.raises(ValueError, match=says.format(r"1e\+308")) as err:
            PrefixEvictionVecEnv(1, seed=0, **{**kw, **extra, "ttft_load": 1e308})
        window, apart, largest = re.search(says.format(r"1e\+308"), str(err.value)).groups()
        vec = PrefixEvictionVecEnv(1, seed=0, **{**kw, **extra, "ttft_load": float(largest)})
        arr = vec.built.arrival_s
        windows = drawable(vec)
        # the named window holds the closest arrivals, at 1e308's scale as stated, and is the one
        # reset(options={"window": w}) plays (random order: w counts every part's starts, part by part)
        s, e, scale = windows[int(window)]
        vec.set_options({"window": int(window)})
        vec.reset()
        assert tuple(vec._win[0]) == (s, e)
        d = np.diff(arr[s:e])
        assert float(apart) == pytest.approx(d[d > 0].min() * scale * float(largest) / 1e308, rel=5e-3)
        for s, e, scale in windows:  # the replay's arrival times (ttft.replay_ttft): distinct where the trace's are
            t = (arr[s:e] - arr[s]) * scale
            assert ((np.diff(t) > 0) == (np.diff(arr[s:e]) > 0)).all()
            d = np.diff(t)
            assert (d[d > 0] >= MIN_GAP_S).all()
        with pytest.raises(ValueError, match=says.format(r"[\d.e+]+")):
            PrefixEvictionVecEnv(1, seed=0, **{**kw, **extra, "ttft_load": float(largest) * 1.01})
    # A mixture whose second part fails alone: its window is named in the reset option's numbering (was the
    # request index, which the option read as a start window_requests - 1 requests later in that part).
    mix = {**kw, "workloads": ("mooncake_conv", "agentic"), "trace": "default"}
    bt = PrefixEvictionVecEnv(1, seed=0, **mix).built
    g = bt.request_groups
    limit = [bt.ttft_scale_per_load[p] * np.diff(bt.arrival_s[g[p]:g[p + 1]])[
        np.diff(bt.arrival_s[g[p]:g[p + 1]]) > 0].min() / MIN_GAP_S for p in range(2)]
    if limit[0] < limit[1]:
        mix["workloads"], limit = mix["workloads"][::-1], limit[::-1]
    load = float(np.exp(np.log(limit).mean()))  # between the two (their product overflows)
    with pytest.raises(ValueError, match=says.format(r"[\d.e+]+")) as err:
        PrefixEvictionVecEnv(1, seed=0, **{**mix, "ttft_load": load})
    window = int(re.search(says.format(r"[\d.e+]+"), str(err.value)).group(1))
    vec = PrefixEvictionVecEnv(1, seed=0, **mix)
    windows, g = drawable(vec), vec.built.request_groups
    s, e, _ = windows[window]
    assert s >= vec.built.request_groups[1]  # the second part's
    vec.set_options({"window": window})
    vec.reset()
    assert tuple(vec._win[0]) == (s, e)
    d = np.diff(vec.built.arrival_s[s:e])
    part = np.diff(vec.built.arrival_s[g[1]:g[2]])
    assert d[d > 0].min() == part[part > 0].min()  # it holds the part's closest arrivals


@pytest.mark.parametrize("env_id, field", [("servegym/Routing-v0", "load"), ("servegym/KVAdmission-v0", "load"),
                                           ("servegym/Disaggregation-v0", "load"), ("servegym/MultiCluster-v0", "load"),
                                           ("servegym/Autoscale-v0", "slo_penalty")])
def test_a_bad_load_reads_the_same_whatever_it_is(env_id, field):
    """A string was a TypeError ("must be float | tuple[float, ...]"), nan "must be finite", -1 "a finite number
    > 0": one wording (traces.checks.positive_levels through envs.config_check.check_load_field), in the API and
    in --env-kwargs alike."""
    tail = "must be a finite number > 0 or a non-empty tuple of them, got "
    for bad in ("x", float("nan"), -1, (0.5, "x"), ()):
        with pytest.raises(ValueError, match=rf"^{_name(env_id)}: {field} {tail}{re.escape(repr(bad))}$"):
            _build(env_id, **{field: bad})
    for raw in ("x", "nan", "-1"):
        with pytest.raises(UsageError, match=rf"^--env-kwargs '{field}={raw}': {field} {tail}"):
            parse_env_kwargs([f"{field}={raw}"], env_id)


def test_a_one_number_load_reads_the_same_whatever_it_is():
    for env_id, field, none in (("servegym/Routing-v0", "rate_scale", "None or "),
                                ("servegym/Autoscale-v0", "rate_scale", ""),
                                ("servegym/PrefixEviction-v0", "ttft_load", "")):
        for bad in ("x", float("nan"), -1):
            with pytest.raises(ValueError, match=rf"^{_name(env_id)}: {field} must be {none}a finite number > 0, "
                                                 rf"got {re.escape(repr(bad))}$"):
                _build(env_id, **{field: bad})


def test_load_lists_of_the_training_commands_read_the_same(capsys):
    """--slo-tiers TIER:LOADS said "load levels must be finite and > 0", train_multi's --loads "must be finite and
    > 0": the environments' wording (traces.checks.positive_levels)."""
    from agents import train_multi
    from agents.family_vec import slo_tier_specs

    tail = r"load must be a finite number > 0 or a non-empty tuple of them, got \(0\.9, -1\.0\)$"
    with pytest.raises(ValueError, match=r"^--slo-tiers mlperf_server:0\.9,-1: " + tail):
        slo_tier_specs("default", ["mlperf_server:0.9,-1"])
    with pytest.raises(SystemExit):
        train_multi.main(["--loads", "0.9", "nan", "--out", "x"])
    assert capsys.readouterr().err.strip().endswith(
        "error: --loads must be a finite number > 0 or a non-empty tuple of them, got [0.9, nan]")


def test_disaggregation_refuses_episodes_without_decisions_or_beyond_its_bounds():
    """interval_s=1e300 and phase_s=1e-300 (no decision) were ZeroDivisionErrors, interval_s=1e-300 a numba
    TypingError, phase_s=1e7 a 6.4 GiB MemoryError, load=1e9 a 150 TiB one: one-line ValueErrors naming the
    knobs, before anything is allocated."""
    from envs.disaggregation.config import MAX_DECISIONS, MAX_SCENARIO_REQUESTS, DisaggregationConfig

    none = r"holds no decision \(decisions = ceil of that ratio must be >= 1\): lower interval_s or raise phase_s$"
    for kw, says in (({"interval_s": 1e300}, r"phases=4 x phase_s=120 / interval_s=1e\+300 " + none),
                     ({"phase_s": 1e-300}, r"phases=4 x phase_s=1e-300 / interval_s=10 " + none),
                     ({"interval_s": 1e-300}, rf"phases=4 x phase_s=120 / interval_s=1e-300 holds 4\.8e\+302 "
                                              rf"decisions, more than {MAX_DECISIONS:,}: raise interval_s"),
                     ({"phase_s": 1e7}, r"phases=4 x phase_s=1e\+07 / interval_s=10 holds 4e\+06 decisions"),
                     # was an OverflowError at scenario.py:112 (int(rate * phase_s * 1.3))
                     ({"phase_s": 1e308}, r"phases=4 x phase_s=1e\+308 / interval_s=10 holds inf decisions")):
        with pytest.raises(ValueError, match=r"^Disaggregation: an episode of " + says):
            DisaggregationConfig(**kw).validate()
    DisaggregationConfig(interval_s=480.0).validate()  # one decision
    for kw, says in (({"load": 1e9}, r"load=\(1000000000\.0,\) x instances=8 x phase_s=120 x phases=4 x "
                                     r"episodes_per_load=8 at one instance's .* requests/s expects 5\.\d+e\+14 "),
                     ({"load": 1e6}, r"load=\(1000000\.0,\) x .* expects 5\.\d+e\+11 "),  # was 154 GiB
                     ({"load": 1e308}, r"load=\(1e\+308,\) x .* expects inf "),  # was an OverflowError
                     ({"phase_s": 1e7, "interval_s": 1e3}, r"load=\(0\.5, 0\.8\) x instances=8 x phase_s=1e\+07 ")):
        with pytest.raises(ValueError, match=rf"^Disaggregation: {says}.*more than {MAX_SCENARIO_REQUESTS:,} "
                                             r"\(about 0\.9 GiB of workload\): lower load, phase_s"):
            envs.make_vec("servegym/Disaggregation-v0", 1, **kw)


def test_disaggregation_expects_its_requests_before_drawing_them():
    from envs.disaggregation.scenario import build_scenario, expected_requests
    from envs.disaggregation.config import DisaggregationConfig

    kw = SMALL["servegym/Disaggregation-v0"]
    cfg = DisaggregationConfig(**kw)
    sc = build_scenario(cfg)
    drawn = int(sc.workload.n_requests.sum())
    expect = expected_requests(cfg, sc.capacity_rps, [1, 1], [1, 1])
    assert 0.8 * expect < drawn < 1.25 * expect, (drawn, expect)


def test_autoscale_refuses_a_slo_penalty_that_overflows_the_reward():
    """slo_penalty=1e308 made the objective inf and the normalized score NaN (shown as null); the float32 rewards
    were -inf long before. Just below the bound the message states, an episode's rewards and metrics are finite."""
    kw = SMALL["servegym/Autoscale-v0"]
    with pytest.raises(ValueError, match=r"^Autoscale: slo_penalty 1e\+308 \(dollars per missed request\) x the "
                                         r"busiest window's \d+ requests / the reward unit \(\$[\d.]+ a step\) passes "
                                         r"float32's range .*: at most [\d.]+e\+\d+, lower slo_penalty$") as err:
        envs.make_vec("servegym/Autoscale-v0", 1, seed=0, **{**kw, "slo_penalty": (0.01, 1e308)})
    bound = float(str(err.value).split("at most ")[1].split(",")[0])
    vec = envs.make_vec("servegym/Autoscale-v0", 1, seed=0, **{**kw, "slo_penalty": 0.99 * bound})
    vec.reset()
    done, rewards = False, []
    while not done:  # action 0: every type down by max_step each interval, so misses pile up
        obs, rew, dones, infos = vec.step(np.zeros(1, np.int64))
        rewards.append(rew[0])
        done = bool(dones[0])
    assert np.isfinite(rewards).all() and min(rewards) < -1e20
    m = infos[0]["metrics"]
    assert m["missed"] > 0 and all(np.isfinite(m[k]) for k in ("objective_usd", "static_peak_objective_usd"))


def test_expert_placement_zipf_s_zero_is_uniform_popularity():
    """zipf_s=0 was taken while the check said "must be a finite number > 0": 0 is valid (the generator's
    range, traces.moe: r^-0 = 1 for every rank, uniform popularity), and the error states that range."""
    from traces.moe import inclusion_probs

    p = inclusion_probs(16, 4, 0.0)
    assert np.allclose(p, p[0]) and p.sum() == pytest.approx(4.0)
    _build("servegym/ExpertPlacement-v0", zipf_s=0.0)
    for bad in (-0.5, -1):  # a bool or nan: the type check's error (test_a_non_finite_float_field_...)
        with pytest.raises(ValueError, match=rf"^ExpertPlacement: zipf_s must be a finite number >= 0 \(0: uniform "
                                             rf"popularity\), got {re.escape(repr(bad))}$"):
            _build("servegym/ExpertPlacement-v0", zipf_s=bad)


def test_a_ttft_load_too_small_for_the_float64_clock_is_refused_when_built():
    """PrefixEviction's TTFT replay stretches a window's arrivals by 1 / ttft_load: ttft_load=1e-300 reported
    a TTFT p50 of 0 s. A small ttft_load the clock still resolves (1e-7: an idle replica) is played. Every
    window a reset can draw is checked when the env is built (a ttft_load too small for some windows only
    failed at the resets that drew one)."""
    kw = SMALL["servegym/PrefixEviction-v0"]
    envs.make_vec("servegym/PrefixEviction-v0", 1, seed=0, ttft_load=1e-7, **kw).reset()
    for order in ("random", "sequential"):
        with pytest.raises(ValueError, match=r"^PrefixEviction: ttft_load 1e-300 replays window 0 over .* s of "
                                             r"simulated time; its float64 clock keeps microseconds only up to 2\^32 s "
                                             r".*: raise the ttft_load$"):
            envs.make_vec("servegym/PrefixEviction-v0", 1, seed=0, **{**kw, "ttft_load": 1e-300, "window_order": order})
    # ttft_load x capacity underflows to 0 at the smallest float (was a ZeroDivisionError while building)
    with pytest.raises(ValueError, match=r"^PrefixEviction: ttft_load 4\.94066e-324 replays window \d+ over inf s"):
        envs.make_vec("servegym/PrefixEviction-v0", 1, seed=0, ttft_load=5e-324, **kw)
    # the bound is the longest window's: a ttft_load that the shortest window passes but the longest does not is
    # refused (it built, then failed at the resets that drew a long window)
    from envs.core.workload import CLOCK_LIMIT_S

    vec = envs.make_vec("servegym/PrefixEviction-v0", 1, seed=0, **kw)
    bt, wr = vec.built, vec.config.window_requests
    spans = bt.arrival_s[wr - 1:] - bt.arrival_s[:len(bt.arrival_s) - wr + 1]  # of every random start
    assert bt.request_groups is None and spans.max() > 1.002 * spans.min() > 0
    load = vec.config.ttft_load * bt.ttft_scale * (spans.min() + spans.max()) / 2 / CLOCK_LIMIT_S
    with pytest.raises(ValueError, match=rf"^PrefixEviction: ttft_load {load:g} replays window \d+ over"):
        envs.make_vec("servegym/PrefixEviction-v0", 1, seed=0, **{**kw, "ttft_load": load})


def test_a_disaggregation_episode_longer_than_the_float64_clock_is_refused():
    """Disaggregation's load only thins a phase's arrivals (load=1e-300 plays one request a phase, a legitimate
    idle cluster); its phases, interval and drain set the episode's length: phase_s=1e15 reported TTFT and TPOT
    p50 of 0 s."""
    kw = {k: v for k, v in SMALL["servegym/Disaggregation-v0"].items() if k != "load"}
    vec = envs.make_vec("servegym/Disaggregation-v0", 1, seed=0, load=1e-300, **kw)
    vec.reset()
    assert vec.scenario.workload.n_requests.max() == kw["phases"]
    says = (r"^Disaggregation: an episode of 4 decisions x interval_s=2\.5e\+14 \(phases=2 x phase_s=5e\+14\) plus "
            r"drain_s=20 runs over 1e\+15 s of simulated time; its float64 clock keeps microseconds only up to 2\^32 s "
            r"\(136 years\), so TTFTs would be rounded away: lower phase_s, interval_s or drain_s$")
    with pytest.raises(ValueError, match=says):
        envs.make_vec("servegym/Disaggregation-v0", 1, seed=0, **{**kw, "load": 1e-14, "phase_s": 5e14,
                                                                  "interval_s": 2.5e14})
    with pytest.raises(ValueError, match=r"^Disaggregation: an episode .* plus drain_s=5e\+09 runs over"):
        envs.make_vec("servegym/Disaggregation-v0", 1, seed=0, **{**kw, "drain_s": 5e9})


def test_autoscale_refuses_a_rate_scale_whose_counts_lose_float64_precision():
    """Autoscale's clock is bins of fixed length (rate_scale scales counts, not times), so no clock check; a tiny
    rate_scale is a nearly idle day (1e-250 is played), until its counts turn subnormal: 5e-324 counted 3.432e-320
    requests for 3.473e-320 and overprovision_ratio overflowed to inf."""
    from envs.autoscale.env import COUNT_FLOOR

    kw = SMALL["servegym/Autoscale-v0"]
    envs.make_vec("servegym/Autoscale-v0", 1, seed=0, rate_scale=1e-250, **kw).reset()
    assert COUNT_FLOOR == 2.0 ** -970
    for bad in (1e-300, 5e-324):
        with pytest.raises(ValueError, match=rf"^Autoscale: rate_scale {bad:g} scales a bin's \d+ arrivals to .* "
                                             r"requests; float64 keeps the precision .* raise the rate_scale$"):
            envs.make_vec("servegym/Autoscale-v0", 1, seed=0, rate_scale=bad, **kw)


def test_the_clock_limit_is_stated_once():
    """Routing, KVAdmission, the multi-agent cluster, PrefixEviction and Disaggregation share
    envs.core.workload's check; the limit itself is accepted, the next float and nan are not."""
    from envs.core.workload import CLOCK_LIMIT_S, check_clock_span, check_episode_span

    check_episode_span(CLOCK_LIMIT_S, "X", "y", "z")
    for bad in (np.nextafter(CLOCK_LIMIT_S, np.inf), float("nan")):
        with pytest.raises(ValueError, match=r"^X: y over .* s of simulated time; .*: z$"):
            check_episode_span(bad, "X", "y", "z")
    check_clock_span(np.array([1.0, 2.0]), np.array([3, 4]), np.array([1.0, CLOCK_LIMIT_S / 2]), None, "R")
    over = np.array([1.0, CLOCK_LIMIT_S])
    with pytest.raises(ValueError, match=r"^R: rate_scale 2\.32831e-10 replays window 4 over 8\.59e\+09 s .*: raise the "
                                         r"rate_scale$"):
        check_clock_span(np.array([1.0, 2.0]), np.array([3, 4]), over, None, "R")
    with pytest.raises(ValueError, match=r"^R: ttft_load 0\.25 replays window 4 .*: raise the ttft_load$"):
        check_clock_span(np.array([1.0, 2.0]), np.array([3, 4]), over, np.array([0.5, 0.25]), "R", "ttft_load")


def test_levels_are_checked_by_one_helper():
    """Routing's, KVAdmission's and Disaggregation's loads() and Autoscale's penalties() were four twins in
    three wordings (Routing's raised a bare TypeError for a string level): traces.checks.positive_levels."""
    from envs.autoscale.env import AutoscaleConfig
    from envs.disaggregation.config import DisaggregationConfig
    from envs.kv_admission.env import KVAdmissionConfig

    assert RoutingConfig(load=0.5).loads() == (0.5,) and RoutingConfig(load=(1, np.float32(0.5))).loads() == (1.0, 0.5)
    tail = "must be a finite number > 0 or a non-empty tuple of them, got "
    for cls, field, where in ((RoutingConfig, "load", "Routing: load"),
                              (KVAdmissionConfig, "load", "KVAdmission: load"),
                              (DisaggregationConfig, "load", "Disaggregation: load"),
                              (AutoscaleConfig, "slo_penalty", "Autoscale: slo_penalty (dollars per missed request)")):
        method = "penalties" if field == "slo_penalty" else "loads"
        for bad in ((0.6, -1.0), (), (0.5, "x"), 0.0, (1.0, float("nan"))):
            with pytest.raises(ValueError, match=rf"^{re.escape(where)} {tail}{re.escape(repr(bad))}$"):
                getattr(cls(**{field: bad}), method)()


@pytest.mark.parametrize("env_id", IDS)
def test_split_and_window_order_are_checked_in_one_place_for_every_environment(env_id):
    """Six copies of these two checks (and one of the constant) became envs.config_check.check_episode_fields."""
    with pytest.raises(ValueError, match=rf"^{_name(env_id)}: split must be 'train', 'test' or 'all', got 'dev'$"):
        _build(env_id, split="dev")
    with pytest.raises(ValueError, match=rf"^{_name(env_id)}: window_order must be 'random' or 'sequential', "
                                         r"got 'shuffled'$"):
        _build(env_id, window_order="shuffled")


def test_the_shared_number_predicates():
    """traces.checks: the "a number, not a bool" test that argument checks in every layer repeated inline."""
    from hwmodels.errors import HwModelError
    from traces.checks import is_integer, is_real, positive_real

    assert [is_real(v) for v in (1, 1.5, np.float32(2), np.int8(3), True, np.bool_(True), "1", None)] == \
        [True, True, True, True, False, False, False, False]
    assert [is_real(v, finite=True) for v in (1e308, float("inf"), float("nan"), 10**400)] == [True, False, False, False]
    assert [is_integer(v) for v in (3, np.int64(3), 3.0, True)] == [True, True, False, False]
    assert positive_real(np.float32(2.5), "bw", HwModelError) == 2.5
    with pytest.raises(HwModelError, match="^bw must be a finite number > 0, got True$"):
        positive_real(True, "bw", HwModelError)


def test_one_positive_number_check_serves_every_layer():
    """Four helpers that differed only in wording (imitation._positive, synthetic._positive,
    transforms._finite_positive, hwmodels.infra.positive) became traces.checks.positive_real; each caller
    keeps its error class and names the argument and where it is given (imitate's: tests/test_imitation.py).
    generate_arrivals took True for 1 s; hwmodels took 10**400 and raised OverflowError."""
    from hwmodels import cold_start_time, kv_transfer_time
    from hwmodels.errors import HwModelError
    from traces import TraceError, load_trace, windows
    from traces.arrivals import generate_arrivals
    from traces.checks import positive_real

    assert positive_real(np.int64(3), "x") == 3.0 and positive_real(None, "x", none_ok=True) is None
    for bad in (0, -1.0, float("nan"), float("inf"), 10**400, True, "1", None):
        with pytest.raises(ValueError, match=rf"^x must be a finite number > 0, got {re.escape(repr(bad))}$"):
            positive_real(bad, "x")
    with pytest.raises(ValueError, match=r"^x must be None or a finite number > 0, got 0$"):
        positive_real(0, "x", none_ok=True)
    cases = (
        (lambda: kv_transfer_time(1e6, 0.0), HwModelError, r"^kv_transfer_time: bandwidth \(bytes/s\) must be a finite "
                                                            r"number > 0, got 0\.0$"),
        (lambda: cold_start_time("Llama-3.1-8B", "H100", storage_bw=10**400), HwModelError,
         r"^cold_start_time: storage_bw \(bytes/s\) must be a finite number > 0, got 1000"),
        (lambda: load_trace("burstgpt_like", rate_rps=-2.0), TraceError,
         r"^burstgpt_like: rate_rps must be a finite number > 0, got -2\.0$"),
        (lambda: windows(load_trace("burstgpt_like", duration_s=60.0), True), TraceError,
         r"^length_s must be a finite number > 0, got True$"),
        (lambda: generate_arrivals(np.random.default_rng(0), True, 1.0), TraceError,
         r"^duration_s must be a finite number > 0, got True$"),
    )
    for call, error, says in cases:
        with pytest.raises(error, match=says):
            call()


# Integer sizes: each over int32 (2**40 here) was numpy's "Unable to allocate ..." MemoryError (Autoscale's train_days
# a MemoryError building its list of seeds), naming no field; now one line naming the field, its value and the bound.
HUGE_SIZES = [("servegym/Routing-v0", "replicas"), ("servegym/Routing-v0", "queue_slots"),
              ("servegym/KVAdmission-v0", "candidates"), ("servegym/PrefixEviction-v0", "candidates"),
              ("servegym/ExpertPlacement-v0", "gpus"), ("servegym/ExpertPlacement-v0", "layers"),
              ("servegym/ExpertPlacement-v0", "intervals"), ("servegym/Autoscale-v0", "test_days"),
              ("servegym/Disaggregation-v0", "instances"), ("servegym/Disaggregation-v0", "queue_slots"),
              ("servegym/MultiCluster-v0", "replicas"), ("servegym/MultiCluster-v0", "candidates"),
              ("servegym/MultiCluster-v0", "n_routers")]


@pytest.mark.parametrize("env_id,field", HUGE_SIZES)
def test_a_huge_size_is_refused_naming_it_before_anything_is_allocated(env_id, field):
    where = _name(env_id)
    with pytest.raises(ValueError, match=rf"^{where}: {field} must be at most 2,147,483,647 \(2\*\*31 - 1: the "
                                         rf"kernels index it with int32\), got {2**40}$"):
        _build(env_id, **{field: 2**40})


def _count_fields() -> list[tuple[str, str]]:
    from envs.config_check import COUNT_FIELDS

    return [(env_id, f.name) for env_id in IDS for f in options.config_fields(env_id) if f.name in COUNT_FIELDS]


def test_every_bounded_count_field_is_some_environments():
    from envs.config_check import COUNT_FIELDS

    assert {name for _, name in _count_fields()} == set(COUNT_FIELDS)


@pytest.mark.parametrize("env_id,field", _count_fields())
def test_a_count_field_past_int32_is_refused_naming_it(env_id, field):
    # 10**30 was accepted and failed at the first step, numba's "Int value is too large" naming an argument
    # number (max_seqs, budget, hash_blocks, dispatch_queue) or numpy's OverflowError (Disaggregation's
    # gpus_per_node); 2**40 ran as if it were 2**31 - 1. Now refused when the env is built, naming the field.
    from envs.config_check import COUNT_FIELDS

    for value in (2**31, 2**62, 10**30):
        with pytest.raises(ValueError, match=rf"^{_name(env_id)}: {field} must be at most 2,147,483,647 \(2\*\*31 - 1: "
                                             rf"{re.escape(COUNT_FIELDS[field])}\), got {value}$"):
            _build(env_id, **{**SMALL.get(env_id, {}), field: value})


@pytest.mark.parametrize("env_id,field", [("servegym/Routing-v0", "max_seqs"), ("servegym/Routing-v0", "budget"),
                                          ("servegym/Routing-v0", "hash_blocks"),
                                          ("servegym/Disaggregation-v0", "dispatch_queue"),
                                          ("servegym/Disaggregation-v0", "gpus_per_node"),
                                          ("servegym/ExpertPlacement-v0", "gpus_per_node")])
def test_a_count_field_at_its_bound_runs(env_id, field):
    # the largest value taken plays (as any value above what the episode can reach: a limit that never binds)
    vec = envs.make_vec(env_id, 1, seed=0, **{**SMALL[env_id], field: 2**31 - 1})
    vec.reset()
    vec.action_space.seed(0)
    for _ in range(3):
        if hasattr(vec.action_space, "nvec"):
            action = np.array([vec.action_space.sample()])
        else:
            action = np.array([int(np.flatnonzero(m)[0]) for m in vec.action_masks()])
        vec.step(action)
    vec.close()


def test_disaggregation_overflow_tokens_stays_exact_in_float64():
    # 10**400 was OverflowError "int too large to convert to float" naming nothing; 2**53 + 1 was rounded to 2**53
    for value in (2**53 + 1, 10**30, 10**400):
        with pytest.raises(ValueError, match=rf"^Disaggregation: overflow_tokens must be at most 9,007,199,254,740,992 "
                                             rf"\(2\*\*53: the prefill backlog it is compared with is counted in "
                                             rf"float64, exact for integers up to 2\*\*53\), got {value}$"):
            envs.make_vec("servegym/Disaggregation-v0", 1, seed=0, **{**SMALL["servegym/Disaggregation-v0"],
                                                                      "overflow_tokens": value})
    vec = envs.make_vec("servegym/Disaggregation-v0", 1, seed=0, **{**SMALL["servegym/Disaggregation-v0"],
                                                                    "overflow_tokens": 2**53})
    assert vec.params.overflow_tokens == 2.0**53


@pytest.mark.parametrize("field", ["phases", "episodes_per_load"])
def test_disaggregation_phase_and_episode_counts_past_int32_are_refused_naming_them(field):
    # 10**400 was OverflowError "int too large to convert to float" naming nothing
    for value in (2**31, 10**400):
        with pytest.raises(ValueError, match=rf"^Disaggregation: {field} must be at most 2,147,483,647 \(2\*\*31 - 1: "):
            envs.make_vec("servegym/Disaggregation-v0", 1, seed=0, **{**SMALL["servegym/Disaggregation-v0"], field: value})


def test_autoscale_train_days_stay_below_the_held_out_seeds():
    from envs.autoscale.env import TEST_SEED_OFFSET

    for days in (TEST_SEED_OFFSET + 1, 2**40):
        with pytest.raises(ValueError, match=rf"^Autoscale: train_days must be at most 1,000,000 \(TEST_SEED_OFFSET: "
                                             rf".*got {days}$"):
            gym.make("servegym/Autoscale-v0", train_days=days)


@pytest.mark.parametrize("env_id", sorted(envs.VEC_ENVS))
def test_a_huge_num_envs_is_refused_naming_it(env_id):
    for make in (lambda: envs.make_vec(env_id, 2**40), lambda: gym.make_vec(env_id, 2**40)):
        with pytest.raises(ValueError, match=rf"^{_name(env_id)}: num_envs must be at most 2,147,483,647 .*got "
                                             rf"{2**40}$"):
            make()


def test_multi_num_envs_is_checked_like_the_others():
    from envs.multi.env import MultiCluster

    with pytest.raises(ValueError, match=rf"^multi: num_envs must be at most 2,147,483,647 .*got {2**40}$"):
        MultiCluster(2**40)
    with pytest.raises(ValueError, match=r"^multi: num_envs must be an integer >= 1, got 2.5$"):
        MultiCluster(2.5)


# Sizes within int32 whose arrays pass the machine's memory (here a limit of 1 MiB): refused naming every size, the
# memory they take and the largest value of each that fits.
OVER_MEMORY = [("servegym/Routing-v0", "replicas", 2**16), ("servegym/KVAdmission-v0", "candidates", 2**16),
               ("servegym/PrefixEviction-v0", "candidates", 2**16), ("servegym/ExpertPlacement-v0", "layers", 2**10),
               ("servegym/Autoscale-v0", "train_days", 2**12), ("servegym/Disaggregation-v0", "queue_slots", 2**16),
               ("servegym/MultiCluster-v0", "replicas", 2**16)]


@pytest.mark.parametrize("env_id,field,value", OVER_MEMORY)
def test_sizes_whose_arrays_pass_the_machines_memory_are_refused_naming_them(env_id, field, value, monkeypatch):
    from envs import config_check

    monkeypatch.setattr(config_check, "memory_limit_bytes", lambda: 2**20)
    with pytest.raises(ValueError, match=rf"^{_name(env_id)}: the .* for .*\b{field}={value}\b.* take [0-9.]+ GiB, "
                                         rf"more than this machine's memory \(0.000977 GiB\): .*{field} at most "
                                         rf"[0-9,]+ .*would fit with the others as given$"):
        _build(env_id, **{field: value})


def test_check_sizes_names_the_largest_value_of_each_size_that_fits(monkeypatch):
    from envs import config_check

    monkeypatch.setattr(config_check, "memory_limit_bytes", lambda: 1000)
    nbytes = lambda a, b: 10 * a * b + 7 * a  # noqa: E731
    config_check.check_sizes("X", {"a": 4, "b": 24}, nbytes, "arrays")  # 988 bytes: fits
    with pytest.raises(ValueError) as e:
        config_check.check_sizes("X", {"a": 4, "b": 25}, nbytes, "arrays")  # 1,028 bytes
    # a = 3: 777 <= 1000 < 1028 at a = 4; b = 24: 988 <= 1000 < 1028 at b = 25
    assert str(e.value) == ("X: arrays for a=4, b=25 take 9.57e-07 GiB, more than this machine's memory "
                            "(9.31e-07 GiB): a at most 3 or b at most 24 would fit with the others as given")
    with pytest.raises(ValueError, match=r"no one of them lowered alone fits$"):  # a = b = 1 would: 800 bytes
        config_check.check_sizes("X", {"a": 2, "b": 2}, lambda a, b: 400 * (a + b), "arrays")
    with pytest.raises(ValueError, match=r"this machine cannot hold even the smallest sizes \(a=1, b=1: "):
        config_check.check_sizes("X", {"a": 200, "b": 1}, lambda a, b: 10**4 * b, "arrays")
    with pytest.raises(ValueError, match=r"^X: b must be at most 2,147,483,647 .*got 2147483648$"):
        config_check.check_sizes("X", {"a": 1, "b": 2**31}, nbytes, "arrays")
    monkeypatch.undo()
    assert config_check.memory_limit_bytes() > 2**28  # this machine's memory, read from the OS


def test_check_sizes_never_suggests_a_value_under_the_sizes_minimum(monkeypatch):
    # On a small machine the hint said "a at most 1" for a size whose minimum is 2 (PrefixEviction's candidates,
    # Disaggregation's instances): a value the field itself refuses. Now only values >= each size's minimum.
    from envs import config_check

    monkeypatch.setattr(config_check, "memory_limit_bytes", lambda: 1000)
    nbytes = lambda a, b: 10 * a * b + 7 * a  # noqa: E731
    with pytest.raises(ValueError) as e:  # a = 3 fits with b = 25 (827 bytes), a >= 4 does not
        config_check.check_sizes("X", {"a": 5, "b": 25}, nbytes, "arrays", minimums={"a": 4})
    assert str(e.value).endswith(": b at most 19 would fit with the others as given"), str(e.value)
    with pytest.raises(ValueError) as e:  # even a = 4, b = 1 (68 bytes x 20 = 1,360 bytes) is too large
        config_check.check_sizes("X", {"a": 5, "b": 25}, lambda a, b: 20 * (10 * a * b + 7 * a), "arrays",
                                 minimums={"a": 4})
    assert str(e.value).endswith(": this machine cannot hold even the smallest sizes (a=4, b=1: 1.27e-06 GiB)"), \
        str(e.value)
    # a minimum of 0 (ExpertPlacement's redundant_slots) is offered as such
    with pytest.raises(ValueError, match=r": b at most 0 would fit with the others as given$"):
        config_check.check_sizes("X", {"a": 1, "b": 5}, lambda a, b: 950 * a + 100 * b, "arrays", minimums={"b": 0})


@pytest.mark.parametrize("env_id,field,least,hint", [
    ("servegym/PrefixEviction-v0", "candidates", 2,
     r"this machine cannot hold even the smallest sizes \(num_envs=1, candidates=2: [0-9.e+-]+ GiB\)"),
    ("servegym/Disaggregation-v0", "instances", 2, r"queue_slots at most [0-9,]+ would fit with the others as given")])
def test_the_memory_hint_respects_each_environments_minimum(env_id, field, least, hint, monkeypatch):
    # A machine that holds the arrays with the field at 1 but not at its minimum (the others as given): the hint said
    # "FIELD at most 1", a value the env itself refuses; now only what the env takes, or that nothing fits.
    import dataclasses

    from envs import config_check

    given = {**SMALL[env_id], field: 3}
    vec = envs.make_vec(env_id, 1, seed=0, **given)
    at_least = _estimate(env_id, 1, dataclasses.replace(vec.config, **{field: least}))
    vec.close()
    monkeypatch.setattr(config_check, "memory_limit_bytes", lambda: at_least - 1)
    with pytest.raises(ValueError) as e:
        envs.make_vec(env_id, 1, seed=0, **given)
    said = str(e.value)
    assert f"{field} at most" not in said, said
    assert re.search(rf"more than this machine's memory \([0-9.e+-]+ GiB\): {hint}$", said), said


def test_allocate_bytes_counts_what_allocate_takes():
    from envs.core import state as S

    for sizes, top in (((1, 1, 1, 1), 1), ((3, 5, 7, 11), 16), ((2, 8, 256, 1024), 4)):
        st = S.allocate(*sizes, top_gaps=top)
        assert S.allocate_bytes(*sizes, top_gaps=top) == sum(a.nbytes for a in st)
        # the prefix cache and the gap heap only add to it
        assert S.allocate_bytes(*sizes, top_gaps=top) < sum(a.nbytes for a in S.allocate(*sizes, 64, 10**5, top))


def _estimate(env_id: str, n: int, c) -> int:
    """The memory estimate check_sizes holds the batch of ``n`` envs of config ``c`` to."""
    from envs.autoscale import env as au
    from envs.disaggregation import env as dg
    from envs.expert_placement import env as ep
    from envs.kv_admission import env as kv
    from envs.multi import env as mu
    from envs.prefix_eviction import env as pe
    from envs.routing import env as rt

    if env_id == "servegym/Routing-v0":
        return rt.memory_bytes(n, c.replicas, c.queue_slots, c.window_requests)
    if env_id == "servegym/KVAdmission-v0":
        return kv.memory_bytes(n, c.candidates, c.window_requests, c.queue_slots)
    if env_id == "servegym/PrefixEviction-v0":
        return pe.memory_bytes(n, c.candidates)
    if env_id == "servegym/ExpertPlacement-v0":
        import hwmodels
        return ep.memory_bytes(n, c.gpus, c.layers, c.intervals, c.interval_steps, c.tokens_per_gpu, c.candidates,
                               hwmodels.get_model(c.model).experts, c.redundant_slots)
    if env_id == "servegym/Autoscale-v0":
        return au.days_bytes(c.train_days, c.test_days, c.split, round(c.episode_s / c.bin_s))
    if env_id == "servegym/Disaggregation-v0":
        return dg.memory_bytes(n, c.instances, c.queue_slots)
    r = c.routing
    return mu.memory_bytes(n, r.replicas, r.queue_slots, r.window_requests, c.n_routers, c.candidates)


@pytest.mark.parametrize("env_id", IDS)
def test_the_memory_estimates_stay_under_what_the_envs_allocate(env_id):
    # A lower bound: an estimate above what a config allocates would refuse one that runs. Measured by tracemalloc
    # (numpy reports its arrays to it) while the batch is built; trace_seed 4321 and 3 envs: nothing cached.
    import tracemalloc

    from test_multi import kw as multi_kw
    from test_routing import chain_trace

    kwargs = dict(multi_kw(chain_trace(24))) if options.is_multi_agent(env_id) else dict(SMALL[env_id])
    if env_id not in ("servegym/ExpertPlacement-v0",):
        kwargs["trace_seed"] = 4321
    tracemalloc.start()
    try:
        if options.is_multi_agent(env_id):
            from envs.multi.env import MultiCluster
            vec = MultiCluster(3, **kwargs)
        else:
            vec = envs.make_vec(env_id, 3, seed=0, **kwargs)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    estimate = _estimate(env_id, 3, vec.config)
    assert 0 < estimate <= peak, (estimate, peak)
