"""Latency percentiles over requests that produced a first token; failed / rejected are counts (issue 19)."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from envs.core import state as S
from envs.metrics import episode_metrics, percentile

FATES = (S.PENDING, S.FINISHED, S.DROPPED, S.FAILED, S.REJECTED)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.sampled_from(FATES), min_size=1, max_size=60), st.integers(0, 2**31 - 1))
def test_percentiles_skip_failed_and_rejected_and_never_nan_because_of_them(fates: list[int], seed: int) -> None:
    rng = np.random.default_rng(seed)
    fate = np.asarray(fates, np.int8)
    n = fate.size
    done = fate == S.FINISHED
    ttft = np.where(done, rng.random(n) * 5, np.nan)  # only served requests have a first token
    e2e = np.where(done, ttft + rng.random(n), np.nan)
    tpot = np.where(done, rng.random(n) * 0.1, np.nan)
    tbt_episode = float(rng.random()) if done.any() else float("nan")  # no token gap without a first token
    met = done & (rng.random(n) < 0.5)
    m = episode_metrics(ttft=ttft, tpot=tpot, tbt_p99_episode=tbt_episode, e2e=e2e, fate=fate, slo_met=met,
                        output_tokens=np.full(n, 10, np.int64), duration_s=10.0,
                        counters=np.zeros(S.N_COUNTERS, np.int64), kv_block_s=1.0, capacity_blocks=10)
    assert m["failed"] == (fate == S.FAILED).sum() and m["rejected"] == (fate == S.REJECTED).sum()
    assert m["finished"] + m["dropped"] + m["unfinished"] + m["failed"] + m["rejected"] == n
    servable = n - m["failed"] - m["rejected"]
    assert m["slo_attainment"] == (met.sum() / servable if servable else 0.0)
    for q in (50, 90, 99):
        assert m[f"ttft_p{q}_s"] == percentile(ttft[done], q) or not done.any()
    nan = [k for k, v in m.items() if math.isnan(v)]
    # Only an episode in which no request produced a first token has no latency to report.
    want = set() if done.any() else {f"{k}_p{q}_s" for k in ("ttft", "tpot", "e2e") for q in (50, 90, 99)} | {"tbt_p99_s"}
    assert set(nan) == want
