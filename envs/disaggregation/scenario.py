"""Built, read-only parts of a Disaggregation-v0 scenario: phased episode windows, the engine,
the KV link matrix and the per-trace capacities that load levels refer to.

An episode window is ``phases`` phases; phase k replays a contiguous segment of its source trace
(even k: ``trace``, odd k: ``shift_trace``) from a random start, its inter-arrival gaps rescaled
so that the phase arrives at ``load x instances x`` the rate one colocated instance sustains on
that source's requests. A segment that runs past the end of the (training or held-out) part
continues from its start (the part is replayed cyclically; counted in ``Scenario.wrapped``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cache
from typing import Any

import numpy as np

import hwmodels
import traces
from envs.core import state as S
from envs.core.capacity import measure_capacity_rps
from envs.core.replica import accepted_at_arrival, accepted_values, longest_accepted_output
from envs.core.workload import TraceUnsuited, build_workload, noisy_buckets
from envs.disaggregation.config import DEFAULT_TRACE, MAX_SCENARIO_REQUESTS, DisaggregationConfig
from envs.slo import default_slo
from hwmodels.infra import infra_default


@dataclass(frozen=True)
class Scenario:
    engine: Any  # envs.core.engine.Engine (slo_tbt off; TPOT scored by the env)
    workload: S.Workload  # W windows x N requests, +inf padded
    window_load: np.ndarray  # float64 [W], load level of each window
    phase_source: np.ndarray  # int8 [W, phases], 0 = trace, 1 = shift_trace
    capacity_rps: np.ndarray  # float64 [2], one colocated instance's sustained rate per source
    slo_ttft_s: float
    slo_tpot_s: float
    switch_s: float
    kv_bytes_per_token_gpu: float  # KV bytes per token on one GPU of an instance (hwmodels.memory)
    link_bw: np.ndarray  # float64 [R, R], bytes/s per GPU from instance a to b (achieved)
    link_latency_s: float
    layers: int
    n_gpus: int
    price_usd_per_gpu_hour: float
    trace_names: tuple[str, ...]
    wrapped: int  # phase segments that replayed their source part cyclically
    # One instance's step times at the training parts' mean request (hwmodels.iteration_time): a
    # whole-prompt prefill alone, and a decode iteration of one sequence at mid-output context. The
    # observation states the SLOs against them, so a policy can tell models and SLO tiers apart.
    ref_prefill_s: float
    ref_decode_s: float


def _load(cfg: DisaggregationConfig, spec) -> tuple[traces.Trace, traces.Trace]:
    """(history, played) parts of one source trace: history = training part (for capacity)."""
    trace = spec if isinstance(spec, traces.Trace) else traces.load_trace(spec, seed=cfg.trace_seed)
    if cfg.split == "all":
        return trace, trace
    train, test = traces.split(trace, cfg.held_out_frac)
    return train, (train if cfg.split == "train" else test)


def _check_parts(cfg: DisaggregationConfig, name: str, history: traces.Trace, played: traces.Trace) -> None:
    """``ValueError`` naming the trace and its part when the part cannot make episodes: the capacity
    measurement needs a window of >= 2 requests from the first half of the training part, and a
    phase rescales the played part's gaps to its arrival rate, so the part needs two distinct
    arrival times (with none, ``_phase_segment`` never reached the end of the phase)."""
    hist = "training" if cfg.split != "all" else "whole"
    if len(history) < 4:
        where = "" if cfg.split == "all" else f" in its training part (held_out_frac={cfg.held_out_frac})"
        frac = "" if cfg.split == "all" else f" (held_out_frac={cfg.held_out_frac})"
        n = f"{len(history)} request{'' if len(history) == 1 else 's'}"
        raise TraceUnsuited(f"Disaggregation: trace {name!r}: its {hist} part{frac} has {n}; the capacity "
                            "measurement needs at least 4",
                            f"at least 4 requests{where} to measure an instance's capacity",
                            f"has {len(history)}{' there' if where else ''}")
    for part, tr in ((hist, history), (cfg.split if cfg.split != "all" else "whole", played)):
        if len(tr) < 2 or not np.ptp(tr.arrival_s) > 0:
            raise ValueError(f"Disaggregation: trace {name!r}: its {part} part ({len(tr)} request"
                             f"{'' if len(tr) == 1 else 's'}) has all arrivals "
                             f"at one instant, so a phase has no arrival rate to rescale")


def link_matrix(cfg: DisaggregationConfig) -> tuple[np.ndarray, float]:
    """Achieved per-GPU bandwidth between instances [R, R] and the per-transfer latency.

    Same conventions as ``hwmodels.weight_transfer_time``: inside a node each GPU sends over its
    scale-up link at half the aggregate bidirectional bandwidth per direction; across nodes over
    its own NIC (``infra.toml`` inter_node_bw); both at ``comm_eff``; ``comm_latency_s`` per
    transfer. The tp GPUs of an instance each send their own KV shard in parallel.
    """
    g = hwmodels.get_gpu(cfg.gpu)
    cal = hwmodels.default_calibration()
    R = cfg.instances
    node = (np.arange(R) * cfg.tp) // cfg.gpus_per_node
    intra = 0.5 * g.scaleup_bw * cal.comm_eff
    inter = float(infra_default("network", "inter_node_bw")) * cal.comm_eff
    bw = np.where(node[:, None] == node[None, :], intra, inter).astype(np.float64)
    return bw, float(cal.comm_latency_s)


def _phase_segment(tr: traces.Trace, rate: float, phase_s: float, rng: np.random.Generator,
                   accepted: int | None = None) -> tuple[np.ndarray, np.ndarray, bool]:
    """(arrival offsets within the phase, request indices into ``tr``, wrapped?): ``tr``'s gaps from a
    random start, scaled so that ``rate`` requests/s arrive, counting only the ``accepted`` requests of
    ``tr`` (default all) the engine does not reject at arrival: a rejected one still arrives (and is
    counted as rejected) but does not take the place of offered load."""
    n = len(tr)
    gaps = np.diff(tr.arrival_s)
    gaps = np.append(gaps, gaps.mean())  # the gap from the part's last request back to its first
    n_rate = n if not accepted else accepted
    scale = (n_rate / max(tr.duration_s, 1e-9)) / rate
    start = int(rng.integers(n))
    want = int(rate * phase_s * 1.3) + 64
    while True:
        idx = (start + np.arange(want)) % n
        t = np.concatenate([[0.0], np.cumsum(gaps[idx[:-1]] * scale)])
        if t[-1] >= phase_s:
            break
        want *= 2
    keep = t < phase_s
    return t[keep], idx[keep], bool(keep.sum() > n)


def expected_requests(cfg: DisaggregationConfig, caps: np.ndarray, n_played: list[int],
                      n_accepted: list[int]) -> float:
    """Requests the scenario's windows hold together, expected from the knobs (``_phase_segment`` offers
    ``load x instances x caps[j]`` accepted requests/s on source j, and the part's rejected ones besides):
    episodes_per_load x sum(loads) x instances x phase_s x the sum over phases of caps[j] x n_played[j] /
    n_accepted[j] (j = phase k mod the sources). ``caps``: float64 [2], requests/s of one instance."""
    per_unit = 0.0
    for k in range(cfg.phases):
        j = k % len(n_played)
        per_unit += caps[j] * n_played[j] / (n_accepted[j] or n_played[j])
    return cfg.episodes_per_load * sum(cfg.loads()) * cfg.instances * cfg.phase_s * per_unit


def check_expected_requests(cfg: DisaggregationConfig, caps: np.ndarray, n_played: list[int],
                            n_accepted: list[int]) -> None:
    """``ValueError`` naming the knobs when :func:`expected_requests` passes ``MAX_SCENARIO_REQUESTS``
    (load=1e9 was a MemoryError for 150 TiB, phase_s=1e7 one for 6.4 GiB)."""
    n = expected_requests(cfg, caps, n_played, n_accepted)
    if not n <= MAX_SCENARIO_REQUESTS:
        raise ValueError(f"Disaggregation: load={cfg.load!r} x instances={cfg.instances} x phase_s={cfg.phase_s:g} x "
                         f"phases={cfg.phases} x episodes_per_load={cfg.episodes_per_load} at one instance's "
                         f"{caps.min():.3g}-{caps.max():.3g} requests/s expects {n:.3g} requests, more than "
                         f"{MAX_SCENARIO_REQUESTS:,} (about 0.9 GiB of workload): lower load, phase_s, phases, "
                         f"instances or episodes_per_load")


def build_scenario(cfg: DisaggregationConfig) -> Scenario:
    """The scenario of ``cfg``; fields that only steer episodes do not rebuild it."""
    return _build(replace(cfg, window_order="random", interval_s=10.0, switch_s=None, first_token="decode",
                          layerwise_transfer=True, overflow_tokens=1, dispatch_queue=1, drain_s=0.0,
                          slo_ttft_s=None, slo_tpot_s=None, load=tuple(cfg.loads())))


@cache
def _build(cfg: DisaggregationConfig) -> Scenario:
    sources = [DEFAULT_TRACE if cfg.trace == "default" else cfg.trace]
    if cfg.shift_trace is not None:
        sources.append(cfg.shift_trace)
    parts = [_load(cfg, s) for s in sources]
    for s, (h, pl) in zip(sources, parts):
        _check_parts(cfg, s if isinstance(s, str) else s.meta.name, h, pl)
    eng = cfg.engine_spec().build()
    # Requests the engine rejects at arrival leave the others served as if they were absent: max_tokens
    # and the reference step times over accepted requests only (envs.core.replica.accepted_at_arrival).
    max_out, ok = longest_accepted_output(eng, [p for h, pl in parts for p in (h, pl)])
    eng = eng._replace(max_output=max_out)
    # Requests longer than max_model_len or the KV pool are rejected at arrival by envs.core
    # (counted in the metric "rejected"); failed ones (Trace.failed) arrive and end at once.
    caps = []
    for s, (h, _) in zip(sources, parts):
        cap_wl, _ = build_workload(h, min(1024, len(h) // 2), cfg.predictor_accuracy, cfg.trace_seed)
        caps.append(measure_capacity_rps(eng, cap_wl, source=f"Disaggregation: training part of trace "
                                         f"{s if isinstance(s, str) else s.meta.name!r}"))
    caps = np.array(caps + caps[:1] * (2 - len(caps)), np.float64)

    n_accepted = [int(ok_pl.sum()) for ok_pl in ok[1::2]]  # each played part's requests the engine accepts
    check_expected_requests(cfg, caps, [len(pl) for _, pl in parts], n_accepted)
    loads = cfg.loads()
    W = cfg.episodes_per_load * len(loads)
    rng = np.random.default_rng(cfg.trace_seed)
    rows, src_rows, wrapped = [], [], 0
    for w in range(W):
        load = loads[w % len(loads)]
        t_all, p_all, o_all, f_all, src = [], [], [], [], []
        for k in range(cfg.phases):
            j = k % len(parts)
            tr = parts[j][1]
            t, idx, wr = _phase_segment(tr, load * cfg.instances * caps[j], cfg.phase_s, rng, n_accepted[j])
            wrapped += wr
            t_all.append(t + k * cfg.phase_s)
            p_all.append(tr.prompt_tokens[idx])
            o_all.append(tr.output_tokens[idx])
            f_all.append(np.zeros(len(idx), np.bool_) if tr.failed is None else tr.failed[idx])
            src.append(j)
        rows.append((np.concatenate(t_all), np.concatenate(p_all), np.concatenate(o_all), np.concatenate(f_all)))
        src_rows.append(src)
    N = max(len(r[0]) for r in rows)
    arrival = np.full((W, N), np.inf)
    prompt = np.ones((W, N), np.int32)
    output = np.ones((W, N), np.int32)
    pred = np.zeros((W, N), np.int8)
    failed = np.zeros((W, N), np.bool_)
    n_req = np.zeros(W, np.int32)
    for w, (t, p, o, f) in enumerate(rows):
        n = len(t)
        arrival[w, :n], prompt[w, :n], output[w, :n], failed[w, :n], n_req[w] = t, p, o, f, n
        pred[w, :n] = noisy_buckets(o, cfg.predictor_accuracy, rng)
    wl = S.Workload(arrival_s=arrival, prompt=prompt, output=output, pred_bucket=pred, n_requests=n_req,
                    chain_ids=np.full((W, N, 1), -1, np.int64), chain_len=np.zeros((W, N), np.int16),
                    failed=failed)
    model = hwmodels.get_model(cfg.model)
    slo_ttft, slo_tpot = default_slo(model.name)
    bw, lat = link_matrix(cfg)
    switch = hwmodels.cold_start_time(model, cfg.gpu, cfg.tp)
    names = tuple(s if isinstance(s, str) else s.meta.name for s in sources)
    ref_prefill, ref_decode = reference_step_times(eng, [h for h, _ in parts])
    return Scenario(
        engine=eng, workload=wl, window_load=np.array([loads[w % len(loads)] for w in range(W)]),
        phase_source=np.array(src_rows, np.int8), capacity_rps=caps, slo_ttft_s=slo_ttft, slo_tpot_s=slo_tpot,
        switch_s=float(switch), kv_bytes_per_token_gpu=float(hwmodels.kv_bytes_per_token(model, cfg.tp)),
        link_bw=bw, link_latency_s=lat, layers=int(model.layers), n_gpus=cfg.instances * cfg.tp,
        price_usd_per_gpu_hour=float(hwmodels.price_per_gpu_hour(cfg.gpu)), trace_names=names, wrapped=wrapped,
        ref_prefill_s=ref_prefill, ref_decode_s=ref_decode,
    )


def reference_step_times(eng, history: list[traces.Trace]) -> tuple[float, float]:
    """(prefill s, decode s) of one instance of ``eng`` at the mean request of ``history`` (the
    training parts; requests the engine accepts at arrival): prefill of one mean prompt alone (attention pairs P (P + 1) / 2), and a decode
    iteration of one sequence at the mean prompt plus half the mean output (hwmodels.iteration_time)."""
    prompts = np.concatenate([h.prompt_tokens for h in history])
    outputs = np.concatenate([h.output_tokens for h in history])
    ok = accepted_at_arrival(eng, prompts, outputs)
    p = float(accepted_values(prompts, ok).mean())
    o = float(accepted_values(outputs, ok).mean())
    ctx = p + 0.5 * o
    prefill = float(hwmodels.iteration_time(eng.coeffs, p, p * (p + 1.0) / 2.0, 0.0, 0.0, -1.0, p))
    decode = float(hwmodels.iteration_time(eng.coeffs, 0.0, 0.0, 1.0, ctx, ctx, -1.0))
    return prefill, decode
