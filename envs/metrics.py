"""The one definition of the serving metrics (../shared/DESIGN.md, "Metrics").

Latency percentiles are over requests that finished (and so produced a first token); requests
that were dropped or had not finished when the episode ended count against SLO attainment and are
reported separately. Requests the trace marks failed (``failed``) and requests the engine rejects
at arrival (``rejected``: longer than the model's context or the KV pool) are counts of their own:
they never enter a percentile and are not in the denominator of SLO attainment (no policy could
serve them).

Which latency is which:

* ``ttft_p{50,90,99}_s``: time to first token, percentiles over requests.
* ``tpot_p{50,90,99}_s``: time per output token, TPOT = (E2E - TTFT) / (output - 1), one mean per
  request (MLPerf Inference LoadGen, DistServe), percentiles over the requests with >= 2 output
  tokens. This is what MLPerf's and DistServe's TPOT SLOs bound.
* ``tbt_p99_s``: time between tokens, the p99 over every gap between consecutive tokens of every
  request in the episode (as Sarathi-Serve reports TBT tail latency); one long stall of a long
  output counts once per gap, not once per request.
* ``e2e_p{50,90,99}_s``: end-to-end latency, percentiles over requests.

SLO attainment = share of the other requests that meet the SLO check the environment's
``slo_metric`` names (``envs/slo.py``): by default TTFT <= SLO_ttft and TPOT <= SLO_tpot (MLPerf
Inference, DistServe), or with ``"p99_tbt"`` TTFT <= SLO_ttft and the request's p99 gap <= the
same limit. Goodput = requests (and output tokens) per second meeting the SLO (DistServe).
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
    e2e: np.ndarray,
    tpot: np.ndarray,
    tbt_p99_episode: float,
    fate: np.ndarray,
    slo_met: np.ndarray,
    output_tokens: np.ndarray,
    duration_s: float,
    counters: np.ndarray,
    kv_block_s: float,
    capacity_blocks: int,
    extra: Mapping[str, float] | None = None,
) -> dict[str, float]:
    """Serving metrics of one episode from per-request arrays [N] (seconds; ``fate`` codes of
    envs.core.state, ``slo_met`` the per-request SLO check, ``tpot`` NaN for one-token outputs)
    and the episode's p99 over all gaps between tokens (``tbt_p99_episode``, seconds)."""
    n = int(fate.shape[0])
    done = fate == S.FINISHED
    met = slo_met & done
    dur = max(duration_s, 1e-9)
    failed, rejected, dropped = (int((fate == k).sum()) for k in (S.FAILED, S.REJECTED, S.DROPPED))
    servable = n - failed - rejected
    out: dict[str, float] = {
        "requests": float(n),
        "finished": float(done.sum()),
        "dropped": float(dropped),
        "failed": float(failed),
        "rejected": float(rejected),
        "unfinished": float(servable - done.sum() - dropped),
        "slo_attainment": float(met.sum()) / max(servable, 1),
        "goodput_rps": float(met.sum()) / dur,
        "goodput_tok_s": float(output_tokens[met].sum()) / dur,
        "throughput_tok_s": float(output_tokens[done].sum()) / dur,
        "preemptions": float(counters[S.C_PREEMPTIONS]),
        "recomputed_tokens": float(counters[S.C_RECOMPUTED_TOKENS]),
        "kv_use_mean": kv_block_s / (dur * capacity_blocks),
        "duration_s": duration_s,
    }
    first_token = done & np.isfinite(ttft)
    for name, x in (("ttft", ttft), ("e2e", e2e)):
        for q in PERCENTILES:
            out[f"{name}_p{q}_s"] = percentile(x[first_token], q)
    tp = tpot[first_token]
    tp = tp[~np.isnan(tp)]  # one-token outputs have no TPOT (MLPerf rejects them, DistServe: 0)
    for q in PERCENTILES:
        out[f"tpot_p{q}_s"] = percentile(tp, q)
    out["tbt_p99_s"] = float(tbt_p99_episode)
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


def placement_metrics(
    *,
    moe_s: float,
    ffn_s: float,
    a2a_s: float,
    imbalance: float,
    a2a_bytes: float,
    layer_steps: float,
    migration_bytes: float,
    migration_s: float,
    tokens_per_step: int,
    gpus: int,
    model_moe_layers: int,
    sim_layers: int,
    references: tuple[float, float] | None = None,
    extra: Mapping[str, float] | None = None,
) -> dict[str, float]:
    """MoE expert-placement metrics of one episode from sums over its (batch step, layer) pairs.

    imbalance = max / mean GPU token load; moe_layer_time_s = expert FFN of the slowest GPU +
    dispatch and combine all-to-all, per MoE layer and step; a2a_bytes = bytes the busiest GPU moves
    in one layer's dispatch + combine; migration_bytes = expert weights moved in the episode;
    tokens_per_gpu_s = tokens per second per GPU through the model's MoE layers at this layer time
    (migration blocking amortized). ``references`` = (naive, oracle) episode costs in seconds (MoE
    time + migration): normalized_score = 0 at the naive cost, 100 at the oracle's.
    """
    n = max(layer_steps, 1.0)
    layer_s = moe_s / n
    per_step = (moe_s + migration_s) / n * model_moe_layers  # whole model, amortized migration
    out = {
        "imbalance": imbalance / n,
        "moe_layer_time_s": layer_s,
        "ffn_time_s": ffn_s / n,
        "a2a_time_s": a2a_s / n,
        "tokens_per_gpu_s": tokens_per_step / gpus / per_step if per_step > 0 else float("nan"),
        "a2a_bytes": a2a_bytes / n,
        "migration_bytes": migration_bytes,
        "migration_s": migration_s,
        "cost_s": moe_s + migration_s,
    }
    if references is not None:
        naive, oracle = references
        gap = naive - oracle
        out["normalized_score"] = 100.0 * (naive - (moe_s + migration_s)) / gap if gap > 0 else float("nan")
    if extra:
        out.update(extra)
    return out
