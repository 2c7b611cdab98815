"""The one definition of the serving metrics (../shared/DESIGN.md, "Metrics").

Latency percentiles are over requests that finished; requests that were dropped or had not
finished when the episode ended count against SLO attainment and are reported separately.
SLO attainment = share of the episode's requests with TTFT <= SLO_ttft and p99-of-request
TBT <= SLO_tbt; goodput = requests (and output tokens) per second meeting the SLO.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from envs.core import state as S

PERCENTILES = (50, 90, 99)


def percentile(x: np.ndarray, q: float) -> float:
    """Nearest-rank percentile (NaN for no data), the definition used for per-request TBT too."""
    x = np.sort(np.asarray(x, dtype=np.float64))
    if x.size == 0:
        return float("nan")
    rank = int(np.ceil(q / 100.0 * x.size))
    return float(x[max(rank, 1) - 1])


def episode_metrics(
    *,
    ttft: np.ndarray,
    tbt_p99: np.ndarray,
    e2e: np.ndarray,
    fate: np.ndarray,
    slo_met: np.ndarray,
    output_tokens: np.ndarray,
    duration_s: float,
    counters: np.ndarray,
    kv_block_s: float,
    capacity_blocks: int,
    extra: Mapping[str, float] | None = None,
) -> dict[str, float]:
    n = int(fate.shape[0])
    done = fate == S.FINISHED
    met = slo_met & done
    dur = max(duration_s, 1e-9)
    out: dict[str, float] = {
        "requests": float(n),
        "finished": float(done.sum()),
        "dropped": float((fate == S.DROPPED).sum()),
        "unfinished": float(n - done.sum() - (fate == S.DROPPED).sum()),
        "slo_attainment": float(met.sum()) / n,
        "goodput_rps": float(met.sum()) / dur,
        "goodput_tok_s": float(output_tokens[met].sum()) / dur,
        "throughput_tok_s": float(output_tokens[done].sum()) / dur,
        "preemptions": float(counters[S.C_PREEMPTIONS]),
        "recomputed_tokens": float(counters[S.C_RECOMPUTED_TOKENS]),
        "kv_use_mean": kv_block_s / (dur * capacity_blocks),
        "duration_s": duration_s,
    }
    for name, x in (("ttft", ttft), ("tbt", tbt_p99), ("e2e", e2e)):
        for q in PERCENTILES:
            out[f"{name}_p{q}_s"] = percentile(x[done], q)
    lookups = counters[S.C_CACHE_LOOKUP_BLOCKS]
    if lookups > 0:
        out["block_hit_ratio"] = float(counters[S.C_CACHE_HIT_BLOCKS]) / float(lookups)
        out["token_hit_ratio"] = float(counters[S.C_CACHED_TOKENS]) / float(counters[S.C_PROMPT_TOKENS])
    if extra:
        out.update(extra)
    return out


def aggregate(episodes: list[dict[str, float]]) -> dict[str, float]:
    """Mean of each metric over episodes (each episode is one scenario draw)."""
    keys = episodes[0].keys()
    return {k: float(np.nanmean([ep[k] for ep in episodes])) for k in keys}
