"""Trace validation, transforms, stats, arrival processes and built-in generators."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import traces
from traces import (BUILTIN_TRACES, Trace, TraceError, TraceMeta, load_trace, rescale_rate, split, subsample,
                    trace_stats, window, windows)
from traces.arrivals import MMPP2, Diurnal, generate_arrivals
from traces.bench import DURATIONS
from traces.params import DATA_FILE, load_params, load_sources
from traces.stats import lru_block_hit_ratio

META = TraceMeta("t", "test", "none")


def make(t, p, o, chains=None, bs=4, **kw) -> Trace:
    blocks = {}
    if chains is not None:
        off = np.concatenate([[0], np.cumsum([len(c) for c in chains])]).astype(np.int64)
        ids = np.asarray([b for c in chains for b in c], dtype=np.int64)
        blocks = dict(block_ids=ids, block_offsets=off, block_size=bs)
    return Trace(np.asarray(t, dtype=np.float64), np.asarray(p, dtype=np.int64), np.asarray(o, dtype=np.int64),
                 META, **blocks, **kw)


# ---------------------------------------------------------------- Trace validation

def test_public_api_names() -> None:
    assert set(traces.__all__) == {"Trace", "TraceMeta", "TraceError", "load_trace", "BUILTIN_TRACES", "rescale_rate",
                                   "window", "windows", "split", "subsample", "trace_stats", "ExpertLoadGenerator",
                                   "load_expert_counts"}
    assert issubclass(TraceError, ValueError)


def test_valid_trace_and_properties() -> None:
    tr = make([0.5, 1.0, 2.0], [5, 8, 1], [1, 2, 3], chains=[[0, 1], [0, 1], [2]])
    assert len(tr) == 3 and tr.duration_s == 2.0 and tr.rate_rps == 1.5
    assert tr.chain(1).tolist() == [0, 1] and tr.chain(-1).tolist() == [2]
    with pytest.raises(IndexError):
        tr.chain(3)
    empty = make([], [], [])
    assert len(empty) == 0 and empty.duration_s == 0.0 and empty.rate_rps == 0.0


def test_a_trace_at_one_instant_cannot_split_and_says_what_plays_it() -> None:
    """One request (or several at one instant) has no duration to split by time; the error says how many and that
    split='all' plays it whole (it said only 'cannot split by time')."""
    with pytest.raises(TraceError, match=r"zero duration \(2 request\(s\), all at one instant\); cannot split by "
                       r"time \(split='all' plays it whole\)"):
        split(make([0.0, 0.0], [5, 8], [1, 2]))


@pytest.mark.parametrize("kwargs, match", [
    (dict(t=[1.0, 0.5], p=[1, 1], o=[1, 1]), r"arrival_s\[1\].*sorted"),
    (dict(t=[0.0, np.nan], p=[1, 1], o=[1, 1]), r"arrival_s\[1\].*finite"),
    (dict(t=[-1.0], p=[1], o=[1]), r"arrival_s\[0\].*>= 0"),
    (dict(t=[0.0, 1.0], p=[1, 0], o=[1, 1]), r"prompt_tokens\[1\] = 0"),
    (dict(t=[0.0], p=[1], o=[0]), r"output_tokens\[0\] = 0.*failed"),
    (dict(t=[0.0], p=[1, 2], o=[1]), r"prompt_tokens: expected length 1"),
])
def test_invalid_traces(kwargs, match) -> None:
    with pytest.raises(TraceError, match=match):
        make(**kwargs)


def test_dtype_and_block_validation() -> None:
    with pytest.raises(TraceError, match="expected dtype int64, got int32"):
        Trace(np.zeros(1), np.ones(1, dtype=np.int32), np.ones(1, dtype=np.int64), META)
    with pytest.raises(TraceError, match="numpy array"):
        Trace([0.0], np.ones(1, dtype=np.int64), np.ones(1, dtype=np.int64), META)
    with pytest.raises(TraceError, match=r"request 0 has 1 block ids but prompt_tokens = 5 needs ceil\(5 / 4\) = 2"):
        make([0.0], [5], [1], chains=[[0]])
    with pytest.raises(TraceError, match="given together"):
        Trace(np.zeros(1), np.ones(1, dtype=np.int64), np.ones(1, dtype=np.int64), META, block_size=4)
    with pytest.raises(TraceError, match="block ids must be >= 0"):
        make([0.0], [1], [1], chains=[[-3]])
    ok = make([0.0], [1], [0], failed=np.array([True]))  # zero output allowed only when flagged failed
    assert ok.failed.tolist() == [True]
    with pytest.raises(TraceError, match="tenant"):
        make([0.0], [1], [1], tenant=np.array([-1], dtype=np.int32))


def test_select_keeps_csr_consistent() -> None:
    tr = make([0, 1, 2, 3], [4, 9, 1, 5], [1, 1, 1, 1], chains=[[0], [0, 1, 2], [3], [0, 4]],
              tenant=np.arange(4, dtype=np.int32), failed=np.zeros(4, dtype=bool))
    sub = tr.select(np.array([False, True, False, True]))
    assert sub.chain(0).tolist() == [0, 1, 2] and sub.chain(1).tolist() == [0, 4]
    assert sub.tenant.tolist() == [1, 3] and sub.block_offsets.tolist() == [0, 3, 5]
    assert tr.select([0, 2]).block_ids.tolist() == [0, 3]
    assert tr.select(slice(2, None)).prompt_tokens.tolist() == [1, 5]
    with pytest.raises(TraceError, match="sorted"):
        tr.select([3, 0])


# ---------------------------------------------------------------- hypothesis: random valid traces

@st.composite
def random_traces(draw, with_blocks: bool | None = None) -> Trace:
    n = draw(st.integers(0, 40))
    gaps = draw(st.lists(st.floats(0, 100, allow_nan=False), min_size=n, max_size=n))
    t = np.cumsum(np.asarray(gaps, dtype=np.float64)) + draw(st.floats(0, 10))
    p = np.asarray(draw(st.lists(st.integers(1, 50), min_size=n, max_size=n)), dtype=np.int64)
    o = np.asarray(draw(st.lists(st.integers(1, 50), min_size=n, max_size=n)), dtype=np.int64)
    blocks = draw(st.booleans()) if with_blocks is None else with_blocks
    if not blocks:
        return Trace(t, p, o, META)
    bs = draw(st.integers(1, 16))
    chains = [draw(st.lists(st.integers(0, 30), min_size=-(-int(x) // bs), max_size=-(-int(x) // bs))) for x in p]
    return make(t, p, o, chains=chains, bs=bs)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_traces(), st.data())
def test_property_select_matches_chains(tr: Trace, data) -> None:
    mask = np.asarray(data.draw(st.lists(st.booleans(), min_size=len(tr), max_size=len(tr))), dtype=bool)
    sub = tr.select(mask)
    kept = np.flatnonzero(mask)
    assert len(sub) == kept.size
    assert np.array_equal(sub.prompt_tokens, tr.prompt_tokens[kept])
    if tr.has_blocks:
        for j, i in enumerate(kept):
            assert np.array_equal(sub.chain(j), tr.chain(int(i)))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_traces(), st.floats(0, 200), st.floats(0.1, 200))
def test_property_window(tr: Trace, t0: float, length: float) -> None:
    w = window(tr, t0, t0 + length)
    inside = (tr.arrival_s >= t0) & (tr.arrival_s < t0 + length)
    assert len(w) == int(inside.sum())
    assert np.allclose(w.arrival_s, tr.arrival_s[inside] - t0)
    assert (w.arrival_s >= 0).all() and (w.arrival_s < length + 1e-9).all()
    assert w.meta.transforms[-1].startswith("window(")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_traces(), st.floats(0.01, 100))
def test_property_rescale_rate(tr: Trace, target: float) -> None:
    if not (math.isfinite(tr.rate_rps) and tr.rate_rps > 0):
        with pytest.raises(TraceError):
            rescale_rate(tr, target)
        return
    r = rescale_rate(tr, target)
    assert r.rate_rps == pytest.approx(target, rel=1e-9)
    assert np.array_equal(r.prompt_tokens, tr.prompt_tokens) and "rescale_rate" in r.meta.transforms[-1]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_traces(), st.floats(0.05, 0.95))
def test_property_split_partitions(tr: Trace, frac: float) -> None:
    if tr.duration_s <= 0:
        with pytest.raises(TraceError):
            split(tr, frac)
        return
    cut = tr.duration_s * (1 - frac)
    n_train = int(np.searchsorted(tr.arrival_s, cut, side="left"))
    if n_train == 0 or n_train == len(tr):
        with pytest.raises(TraceError, match=r"part empty \(training \d+, held-out \d+ of \d+ requests"):
            split(tr, frac)
        return
    train, held = split(tr, frac)
    assert len(train) + len(held) == len(tr)
    assert np.allclose(np.concatenate([train.arrival_s, held.arrival_s + cut]), tr.arrival_s)
    assert "training" in train.meta.transforms[-1] and "held-out" in held.meta.transforms[-1]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_traces(), st.floats(0.01, 1.0), st.integers(0, 3))
def test_property_subsample(tr: Trace, frac: float, seed: int) -> None:
    if len(tr) and round(frac * len(tr)) == 0:  # keeps none: refused (was an empty trace)
        with pytest.raises(TraceError, match=r"keeps none of its \d+ requests"):
            subsample(tr, frac, seed)
        return
    a, b = subsample(tr, frac, seed), subsample(tr, frac, seed)
    assert a.equals(b) and len(a) == round(frac * len(tr))
    assert set(a.arrival_s.tolist()) <= set(tr.arrival_s.tolist())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_traces(with_blocks=True))
def test_property_hit_ratio_counts_repeat_ids(tr: Trace) -> None:
    s = trace_stats(tr)
    if len(tr) == 0:
        return
    seen: set[int] = set()
    hits = 0
    for i in range(len(tr)):
        for b in tr.chain(i).tolist():
            hits += b in seen
            seen.add(b)
    assert s["block_refs"] == tr.block_ids.size and s["distinct_blocks"] == len(seen)
    assert s["infinite_cache_block_hit_ratio"] == pytest.approx(hits / tr.block_ids.size)


@settings(max_examples=40, deadline=None)
@given(random_traces(with_blocks=False), st.integers(0, 39))
def test_property_corruptions_rejected(tr: Trace, j: int) -> None:
    if len(tr) < 2:
        return
    j %= len(tr)
    p = tr.prompt_tokens.copy()
    p[j] = 0
    with pytest.raises(TraceError, match=rf"prompt_tokens\[{j}\]"):
        tr.replace(prompt_tokens=p)
    t = tr.arrival_s.copy()
    if j and t[j - 1] > 0:
        t[j] = -1.0 if j == 0 else t[j - 1] / 2 - 1
        with pytest.raises(TraceError, match="arrival_s"):
            tr.replace(arrival_s=t)


# ---------------------------------------------------------------- transforms (fixed cases)

def test_windows_and_split_examples() -> None:
    tr = make(np.arange(10, dtype=float), [1] * 10, [1] * 10)
    ws = windows(tr, 3.0)
    assert [len(w) for w in ws] == [3, 3, 3] and ws[1].arrival_s.tolist() == [0.0, 1.0, 2.0]
    assert [len(w) for w in windows(tr, 4.0, stride_s=2.0)] == [4, 4, 4]
    with pytest.raises(TraceError, match="shorter than one window"):
        windows(tr, 100.0)
    train, held = split(tr, 0.3)
    assert train.arrival_s.tolist() == [0, 1, 2, 3, 4, 5, 6] and held.arrival_s[0] == pytest.approx(0.7)
    with pytest.raises(TraceError):
        window(tr, 5.0, 5.0)
    with pytest.raises(TraceError):
        rescale_rate(tr, 0.0)
    with pytest.raises(TraceError):
        subsample(tr, 0.0)
    # seeds and a frac that keeps nothing: were numpy's 'expected non-negative integer' / a SeedSequence
    # TypeError, and an empty trace; a start time that is not a number was math.isfinite's TypeError
    for seed in (-1, 1.5, "3", True):
        with pytest.raises(TraceError, match=rf"^subsample: seed must be an integer >= 0, got {seed!r}$"):
            subsample(tr, 0.5, seed=seed)
    with pytest.raises(TraceError, match=r"keeps none of its 10 requests \(round\(frac x 10\) = 0\); frac must be above 0.05$"):
        subsample(tr, 0.04)
    assert len(subsample(tr, 0.051)) == 1
    for t0, t1 in (("a", 5.0), (0.0, "b"), (None, 5.0)):
        with pytest.raises(TraceError, match=r"^window needs 0 <= t0_s < t1_s"):
            window(tr, t0, t1)
    r = rescale_rate(tr, 2 * tr.rate_rps)
    assert np.allclose(r.arrival_s, tr.arrival_s / 2)


@pytest.mark.parametrize("name", ["azure_conv", "mooncake_conv", "agentic"])
@pytest.mark.parametrize("params", [{"duration_s": 1e12}, {"duration_s": 600.0, "rate_rps": 1e300}])
def test_a_generator_asked_for_more_arrivals_than_a_trace_holds_refuses_at_once(name, params) -> None:
    """duration_s=1e12 of azure_conv asked for 5.5e12 arrivals and grew past 13 GiB before it was stopped."""
    from traces.arrivals import MAX_ARRIVALS

    with pytest.raises(TraceError, match=rf"asks for about .* arrivals, more than a trace holds \({MAX_ARRIVALS}, "
                                         r"2\*\*31 - 1\); lower duration_s or rate_rps$"):
        load_trace(name, **params)


def test_transforms_keep_chains_on_generated_trace() -> None:
    tr = load_trace("mooncake_conv", duration_s=900)
    for sub in (window(tr, 100, 500), subsample(tr, 0.5, seed=1), *split(tr))[:4]:
        assert sub.block_size == 512
        assert np.array_equal(np.diff(sub.block_offsets), -(-sub.prompt_tokens // 512))


# ---------------------------------------------------------------- arrivals

def test_arrival_processes() -> None:
    rng = np.random.default_rng(1)
    for kind, kw, lo, hi in (("poisson", {}, 0.97, 1.03), ("gamma", {"cv": 1.5}, 1.42, 1.58)):
        t = generate_arrivals(rng, 20000.0, 5.0, kind, **kw)
        g = np.diff(t)
        assert lo < g.std() / g.mean() < hi and abs(t.size / 20000.0 - 5.0) < 0.2
    with pytest.raises(TraceError, match="unknown arrival process"):
        generate_arrivals(rng, 10.0, 1.0, "weibull")
    with pytest.raises(TraceError, match="rate_rps"):
        generate_arrivals(rng, 10.0, -1.0)


def test_mmpp_matches_its_formulas() -> None:
    """The analytic IDC and inter-arrival CV used by traces/fit.py agree with simulation."""
    m = MMPP2((8.0, 1.0), (1 / 50, 1 / 30))
    t = generate_arrivals(np.random.default_rng(0), 200000.0, m.mean_rate, "mmpp", mmpp=m)
    g = np.diff(t)
    assert t.size / 200000.0 == pytest.approx(m.mean_rate, rel=0.03)
    assert g.std() / g.mean() == pytest.approx(m.interarrival_cv(), rel=0.03)
    for w in (1.0, 10.0, 60.0):
        c = np.bincount((t // w).astype(int))[:-1]
        assert c.var() / c.mean() == pytest.approx(float(m.idc(np.array([w]))[0]), rel=0.12)


def test_diurnal_profile() -> None:
    d = Diurnal(peak_to_trough=3.0, peak_s=14 * 3600.0)
    t = generate_arrivals(np.random.default_rng(2), 86400.0 * 4, 2.0, "poisson", diurnal=d)
    hourly = np.bincount(((t % 86400) // 3600).astype(int), minlength=24)
    assert int(np.argmax(hourly)) in (13, 14) and int(np.argmin(hourly)) in (1, 2)
    assert hourly.max() / hourly.min() == pytest.approx(3.0, rel=0.15)
    assert t.size / (4 * 86400) == pytest.approx(2.0, rel=0.02)


# ---------------------------------------------------------------- built-in generators

def test_every_builtin_loads_and_default_is_azure_conv() -> None:
    assert set(BUILTIN_TRACES) >= {"default", "azure_conv", "azure_code", "mooncake_conv", "bursty"}
    for name in (n for n in BUILTIN_TRACES if "-v" not in n):
        tr = load_trace(name, duration_s=600)
        assert len(tr) > 100 and tr.duration_s < 600
    assert load_trace("default").equals(load_trace("azure_conv"))
    assert load_trace("default", seed=3, rate_rps=9.0).equals(load_trace("azure_conv", seed=3, rate_rps=9.0))


def test_builtin_names_carry_versions() -> None:
    from traces.builtin import TRACE_VERSIONS, versioned_name

    assert versioned_name("default") == f"azure_conv-v{TRACE_VERSIONS['azure_conv']}"
    assert versioned_name("bursty") == versioned_name(versioned_name("bursty")) == f"bursty-v{TRACE_VERSIONS['bursty']}"
    assert versioned_name("../some/file.csv") == "../some/file.csv"
    assert load_trace(versioned_name("bursty"), duration_s=600).equals(load_trace("bursty", duration_s=600))
    old = f"bursty-v{TRACE_VERSIONS['bursty'] + 1}"
    with pytest.raises(TraceError, match=f"{old}.*bursty is at version {TRACE_VERSIONS['bursty']}"):
        load_trace(old)


@pytest.mark.parametrize("name", ["azure_conv", "azure_code", "mooncake_conv", "bursty"])
def test_generators_deterministic(name: str) -> None:
    a, b = load_trace(name, seed=7, duration_s=1800), load_trace(name, seed=7, duration_s=1800)
    assert a.equals(b)
    assert not np.array_equal(load_trace(name, seed=8, duration_s=1800).arrival_s[:50], a.arrival_s[:50])


@pytest.mark.parametrize("name", sorted(DURATIONS))
def test_generators_build_a_large_trace(name: str) -> None:
    # Their speed is measured by `python -m traces.bench` (a benchmark, not a timed test).
    tr = load_trace(name, duration_s=DURATIONS[name])
    assert len(tr) > 90_000, len(tr)
    assert np.all(np.diff(tr.arrival_s) >= 0) and tr.arrival_s[-1] <= DURATIONS[name]


def test_generator_options() -> None:
    g = load_trace("azure_conv", arrivals="gamma", cv=2.0, duration_s=20000)
    gaps = np.diff(g.arrival_s)
    assert gaps.std() / gaps.mean() == pytest.approx(2.0, rel=0.08)
    assert trace_stats(load_trace("azure_conv", arrivals="poisson", duration_s=20000))["interarrival_cv"] == \
        pytest.approx(1.0, abs=0.03)
    r = load_trace("azure_conv", rate_rps=20.0, duration_s=3600)
    assert len(r) / 3600 == pytest.approx(20.0, rel=0.3)
    d = load_trace("bursty", peak_to_trough=4.0, peak_hour=3.0, rate_rps=3.0)
    hourly = np.bincount((d.arrival_s // 3600).astype(int), minlength=24)
    assert int(np.argmax(hourly)) in range(1, 6) and hourly.max() > 2.5 * hourly.min()
    with pytest.raises(TraceError, match="accepted parameters"):
        load_trace("azure_conv", bogus=1)
    with pytest.raises(TraceError, match="diurnal=True"):
        load_trace("azure_conv", peak_hour=3.0)
    with pytest.raises(TraceError, match="seed"):
        load_trace("azure_conv", seed=-1)


def test_mooncake_conv_chain_semantics() -> None:
    tr = load_trace("mooncake_conv", seed=1)
    assert np.array_equal(np.diff(tr.block_offsets), -(-tr.prompt_tokens // 512))
    assert (tr.block_ids[tr.block_offsets[:-1]] == 0).all()  # shared system-prompt block
    # equal ids imply equal prefixes: an id never appears at two different chain positions,
    # and the block before it is always the same one
    pos = np.arange(tr.block_ids.size) - np.repeat(tr.block_offsets[:-1], np.diff(tr.block_offsets))
    prev = np.where(pos > 0, tr.block_ids[np.maximum(np.arange(tr.block_ids.size) - 1, 0)], -1)
    for arr in (pos, prev):
        order = np.lexsort((arr, tr.block_ids))
        same_id = np.diff(tr.block_ids[order]) == 0
        assert (np.diff(arr[order])[same_id] == 0).all()


def _median_reuse_interval_s(tr) -> float:
    """Median seconds between consecutive references to the same block (the system prompt's
    block, referenced by every request, left out)."""
    n = np.diff(tr.block_offsets)
    t = np.repeat(tr.arrival_s, n)
    ids = tr.block_ids
    keep = ids != 0
    order = np.lexsort((t[keep], ids[keep]))
    i, tt = ids[keep][order], t[keep][order]
    same = np.diff(i) == 0
    return float(np.median(np.diff(tt)[same]))


def test_mooncake_conv_think_time_scale() -> None:
    base = load_trace("mooncake_conv", seed=3, duration_s=1800)
    same = load_trace("mooncake_conv", seed=3, duration_s=1800, think_time_scale=1.0)
    assert np.array_equal(base.arrival_s, same.arrival_s) and np.array_equal(base.block_ids, same.block_ids)
    fast = load_trace("mooncake_conv", seed=3, duration_s=1800, think_time_scale=0.1)
    # the same conversations (root arrivals) with every think time a tenth as long, so blocks come
    # back ten times sooner, and more follow-ups fall inside the window
    assert len(fast) >= len(base)
    ratio = _median_reuse_interval_s(fast) / _median_reuse_interval_s(base)
    assert 0.08 < ratio < 0.12, ratio
    assert "think_time_scale=0.1" in fast.meta.source
    for bad in (0, -1.0, float("nan"), float("inf"), "0.5", True):
        with pytest.raises(TraceError, match="think_time_scale"):
            load_trace("mooncake_conv", think_time_scale=bad)


def test_lru_hit_ratio_bounds() -> None:
    tr = load_trace("mooncake_conv", duration_s=600)
    inf = trace_stats(tr)["infinite_cache_block_hit_ratio"]
    small, big = lru_block_hit_ratio(tr, 50), lru_block_hit_ratio(tr, 10**7)
    assert small < big and big == pytest.approx(inf)
    tiny = make([0, 1, 2], [8, 8, 8], [1, 1, 1], chains=[[0, 1], [0, 1], [0, 2]])
    assert lru_block_hit_ratio(tiny, 10) == pytest.approx(3 / 6)
    # one slot: the tail is evicted first, so the shared head block 0 survives and hits twice
    assert lru_block_hit_ratio(tiny, 1) == pytest.approx(2 / 6)


# ---------------------------------------------------------------- the data file

def test_every_parameter_has_a_source() -> None:
    sources = load_sources()
    assert len(sources) > 30
    for key, src in sources.items():
        assert src.strip(), key
        if "fitted" in src:
            assert "traces/fit.py" in src and "../shared/traces/" in src, key
    assert load_params("azure_conv")["arrivals"] == "mmpp"
    assert DATA_FILE.name == "synthetic.toml"


def test_unsourced_parameter_rejected(tmp_path) -> None:
    p = tmp_path / "bad.toml"
    p.write_text('[x]\nrate = { value = 1.0 }\n')
    with pytest.raises(TraceError, match="x.rate has no source"):
        load_params("x", p)


def test_trace_arrays_are_read_only_views() -> None:
    t = np.array([0.0, 1.0])
    tr = Trace(t, np.ones(2, dtype=np.int64), np.ones(2, dtype=np.int64), META)
    with pytest.raises(ValueError):
        tr.arrival_s[0] = 5.0
    t[0] = 0.5  # the caller's own array stays writable
    with pytest.raises(TraceError, match="transforms"):
        TraceMeta("x", "y", "z", transforms=["not a tuple"])
