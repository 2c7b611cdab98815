"""Reference engine hook: a serving scheduler asks an exported KVAdmission policy what to admit.

    python -m agents.export --policy zoo --onnx kv.onnx          # once, offline (needs torch)
    python -m examples.engine_hook --onnx kv.onnx [--requests 400] [--rate 8]   # from the repo root

An engine author wires four things; each is marked ``WIRE`` below:

1. ``EngineView``: per iteration, the arrays the scheduler already keeps (waiting queue in
   priority order, running batch, free KV blocks, a few running averages).
2. ``KVAdmissionObserver(engine, capacity_rps=...)``, then ``.build(view)``: the replica's measured
   capacity (requests/s) sets the observation's unit of request counts; ``build`` turns the view
   into the policy's observation and action mask
   by calling the environment's own kernel (``envs.kv_admission.kernels.write_obs``) on a
   one-env state filled from the view, so the features are computed by the very code the policy
   was trained on, not by a copy.
3. ``GuardedPolicy(OnnxPolicy(path), fallback)``: onnxruntime inference within a 500 us budget,
   else the vLLM FCFS heuristic decides (Cold-RL's pattern); ``counters`` for monitoring.
   ``OnnxPolicy`` reads the observation version the export recorded (``metadata_props``
   ``observation_version``, ``agents.obs_version``) and refuses, in one line, a model trained on
   another version than the observer builds (``KVAdmissionObserver.OBS_VERSION``); a model that
   records none gets a warning.
4. ``decode_action``: the action sets the scheduler's knobs for this iteration: how many waiting
   requests may start, the prefill token budget, preempt-or-defer on a KV shortage, queue order.

``ToyEngine`` stands in for the engine (paged KV, continuous batching, chunked prefill,
recompute preemption, iteration times from servegym's step-time model); in vLLM the same calls
sit in ``Scheduler.schedule()`` before the waiting queue is walked.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import traces
from agents.guarded import GuardedPolicy
from agents.onnx_policy import OnnxPolicy
from agents.policy import make_policy
from envs.kv_admission import env as kva
from envs.kv_admission import kernels as kern
from envs.core import state as S
from envs.core.capacity import count_unit
from envs.core.engine import Engine, EngineSpec, step_time
from envs.core.replica import EMA, ORDER_EDF, ORDER_FCFS, ORDER_SJF, ceil_div, hist_bin
from envs.core.workload import noisy_buckets

N_PROGRESS = 1 << 20  # denominator of the "arrived" feature (see EngineView.progress)


@dataclass
class EngineView:
    """What the policy sees of the engine at one iteration (WIRE 1: fill from your scheduler)."""

    now: float  # engine clock, seconds
    # Waiting queue in the order the engine would serve it (preempted requests first, then FCFS).
    wait_arrival_s: np.ndarray  # float64 [Q]
    wait_prompt: np.ndarray  # int [Q] prompt tokens
    wait_target: np.ndarray  # int [Q] tokens to prefill: prompt, plus generated ones if preempted
    wait_generated: np.ndarray  # int [Q] output tokens produced so far (> 0: was preempted)
    wait_pred_bucket: np.ndarray  # int [Q] predicted output-length bucket 0..7 (your predictor)
    # Running batch in admission order.
    run_prompt: np.ndarray  # int [R]
    run_target: np.ndarray  # int [R] tokens to prefill before decoding
    run_kv_tokens: np.ndarray  # int [R] tokens whose KV is stored
    run_generated: np.ndarray  # int [R]
    free_blocks: int  # free paged-KV blocks
    ttft_ema: float  # running averages with weight envs.core.replica.EMA on the newest sample:
    gap_ema: float  # TTFT of first tokens, largest token gap per iteration,
    last_iter_s: float  # the last iteration's duration,
    recompute_ema: float  # preempted KV tokens (decayed each iteration)
    out_hist: np.ndarray  # float64 [16]: finished output lengths in log2 bins (Past-Future)
    # Share of the episode's requests that have arrived: a training-episode feature with no
    # engine analogue; hold it at mid-episode.
    progress: float = 0.5


class KVAdmissionObserver:
    """Observation and mask for an ``EngineView`` (WIRE 2), through the environment's kernel."""

    OBS_VERSION = kern.OBS_VERSION  # the observation version it builds (kern.OBS_VERSIONS says what it means)

    def __init__(self, engine: Engine, candidates: int = 8, slots: int = 4096, *, capacity_rps: float):
        # WIRE 2: capacity_rps, the replica's sustained completions per second on its traffic (a saturation
        # benchmark, or envs.core.capacity.measure_capacity_rps as the environment measures it): the
        # observation counts requests in units of what the replica serves in one TTFT SLO.
        real = isinstance(capacity_rps, (int, float, np.integer, np.floating)) and not isinstance(capacity_rps, bool)
        cap = float(capacity_rps) if real else float("nan")
        if not np.isfinite(cap) or cap <= 0:
            raise ValueError(f"KVAdmissionObserver: capacity_rps must be a positive number of requests/s, "
                             f"got {capacity_rps!r}")
        if not np.isfinite(engine.slo_ttft):
            raise ValueError(f"KVAdmissionObserver: the engine's TTFT SLO must be finite, got {engine.slo_ttft}")
        self.eng, self.K, self.slots = engine, candidates, slots
        self.unit = count_unit(cap, engine.slo_ttft)
        self.st = S.allocate(1, 1, slots, slots)
        self.wl = S.Workload(
            arrival_s=np.full((1, slots), np.inf), prompt=np.zeros((1, slots), np.int32),
            output=np.zeros((1, slots), np.int32), pred_bucket=np.zeros((1, slots), np.int8),
            n_requests=np.full(1, N_PROGRESS, np.int32), chain_ids=np.full((1, slots, 1), -1, np.int64),
            chain_len=np.zeros((1, slots), np.int16), failed=np.zeros((1, slots), np.bool_),
        )
        n_obs = len(kern.GLOBAL_FEATURES) + candidates * len(kern.CANDIDATE_FEATURES)
        self.obs = np.zeros((1, n_obs), np.float32)
        self.mask = np.zeros((1, kva.N_ACTIONS), np.bool_)
        self.admit_levels = np.array(kva.ADMIT_LEVELS, np.int64)

    def build(self, v: EngineView) -> tuple[np.ndarray, np.ndarray]:
        st, wl = self.st, self.wl
        Q, R = len(v.wait_arrival_s), len(v.run_prompt)
        if Q + R > self.slots:
            raise ValueError(f"EngineView: {Q} waiting + {R} running requests exceed the observer's "
                             f"{self.slots} slots")
        if not 0.0 <= v.progress <= 1.0:
            raise ValueError(f"EngineView.progress must be in [0, 1], got {v.progress}")
        # Waiting requests in slots [0, Q) with FCFS keys 0..Q-1, running ones in [Q, Q+R).
        st.status[0, 0, :] = S.FREE
        st.status[0, 0, :Q] = S.QUEUED
        st.status[0, 0, Q:Q + R] = S.RUNNING
        st.req[0, 0, :Q + R] = np.arange(Q + R)
        st.seq[0, 0, :Q] = np.arange(Q)
        st.run_list[0, 0, :R] = np.arange(Q, Q + R)
        wl.arrival_s[0, :Q] = v.wait_arrival_s
        wl.prompt[0, :Q] = v.wait_prompt
        wl.prompt[0, Q:Q + R] = v.run_prompt
        wl.pred_bucket[0, :Q] = v.wait_pred_bucket
        st.target[0, 0, :Q] = v.wait_target
        st.target[0, 0, Q:Q + R] = v.run_target
        st.generated[0, 0, :Q] = v.wait_generated
        st.generated[0, 0, Q:Q + R] = v.run_generated
        st.kv_tokens[0, 0, :Q] = 0
        st.kv_tokens[0, 0, Q:Q + R] = v.run_kv_tokens
        st.n_queued[0, 0], st.n_running[0, 0] = Q, R
        st.free_blocks[0, 0] = v.free_blocks
        st.clock[0], st.time_scale[0], st.window[0] = v.now, 1.0, 0
        st.next_arrival[0] = round(v.progress * N_PROGRESS)
        st.accum[0, [S.A_TTFT_EMA, S.A_GAP_EMA, S.A_LAST_ITER_S, S.A_RECOMPUTE_EMA]] = (
            v.ttft_ema, v.gap_ema, v.last_iter_s, v.recompute_ema)
        st.out_hist[0] = v.out_hist
        kern.write_obs(st, wl, self.eng, 0, self.K, self.obs, self.mask, self.admit_levels,
                       len(kva.BUDGET_LEVELS), self.unit)
        return self.obs, self.mask


@dataclass
class Request:
    arrival: float
    prompt: int
    output: int  # true output length: the engine learns it only when the request ends
    bucket: int
    generated: int = 0
    kv: int = 0
    blocks: int = 0
    target: int = 0
    ttft: float = float("nan")


@dataclass
class ToyEngine:
    """A stand-in serving engine (see the module docstring); replace it with yours."""

    eng: Engine
    pending: list[Request]  # future arrivals, in time order
    now: float = 0.0
    waiting: list[Request] = field(default_factory=list)
    running: list[Request] = field(default_factory=list)
    finished: list[Request] = field(default_factory=list)
    ema: dict[str, float] = field(default_factory=lambda: dict.fromkeys(("ttft", "gap", "last", "recompute"), 0.0))
    out_hist: np.ndarray = field(default_factory=lambda: np.zeros(S.N_HIST_BINS))
    free: int = 0

    def __post_init__(self) -> None:
        self.free = self.eng.capacity_blocks

    def view(self) -> EngineView:
        w, r = sorted(self.waiting, key=lambda q: q.arrival), self.running  # FCFS, as the env
        return EngineView(
            self.now, np.array([q.arrival for q in w]), np.array([q.prompt for q in w]),
            np.array([q.target for q in w]), np.array([q.generated for q in w]),
            np.array([q.bucket for q in w]), np.array([q.prompt for q in r]),
            np.array([q.target for q in r]), np.array([q.kv for q in r]),
            np.array([q.generated for q in r]), self.free, self.ema["ttft"], self.ema["gap"],
            self.ema["last"], self.ema["recompute"], self.out_hist)

    def arrive(self) -> None:
        if not self.waiting and not self.running and self.pending:
            self.now = max(self.now, self.pending[0].arrival)
        while self.pending and self.pending[0].arrival <= self.now:
            q = self.pending.pop(0)
            q.target = q.prompt
            self.waiting.append(q)

    def _grow(self, q: Request, tokens: int) -> bool:
        need = ceil_div(q.kv + tokens, self.eng.block_size) - q.blocks
        if need > self.free:
            return False
        self.free -= need
        q.blocks += need
        return True

    def iterate(self, admit: int, budget: int, defer: bool, order: int) -> None:
        """One iteration under the policy's knobs (WIRE 4: your scheduler reads these)."""
        left, p_tok, d_seqs, d_kv, short = budget, 0, 0, 0, False
        decodes = []
        for i, q in enumerate(list(self.running)):  # decodes, oldest first
            if q.kv < q.target or left == 0 or q not in self.running:
                continue
            while not self._grow(q, 1) and not (defer and i > 0) and self.running[-1] is not q:
                v = self.running.pop()  # vLLM: preempt the newest by recompute
                self.free += v.blocks
                self.ema["recompute"] += v.kv
                v.kv, v.blocks, v.target = 0, 0, v.prompt + v.generated
                self.waiting.append(v)
            if q.kv + 1 > q.blocks * self.eng.block_size:
                short = True
                continue
            decodes.append(q)
            left -= 1
            d_seqs, d_kv = d_seqs + 1, d_kv + q.kv
        for q in self.running:  # ongoing prefill chunks
            if q.kv < q.target and left > 0:
                chunk = min(q.target - q.kv, left)
                if self._grow(q, chunk):
                    q.kv, left, p_tok = q.kv + chunk, left - chunk, p_tok + chunk
        # Preempted requests first, then the policy's order: FCFS, shortest predicted, or
        # oldest that can still meet its TTFT SLO.
        keys = {ORDER_FCFS: lambda q: (q.generated == 0, q.arrival),
                ORDER_SJF: lambda q: (q.generated == 0, q.bucket, q.arrival),
                ORDER_EDF: lambda q: (q.generated == 0, self.now - q.arrival > self.eng.slo_ttft, q.arrival)}
        queue = sorted(self.waiting, key=keys[order])
        started = 0
        for q in queue:
            if short or started >= admit or left == 0 or len(self.running) >= self.eng.max_seqs:
                break
            chunk = min(q.target, left)
            if not self._grow(q, chunk):
                break
            self.waiting.remove(q)
            q.kv, left, p_tok, started = chunk, left - chunk, p_tok + chunk, started + 1
            self.running.append(q)
        dt = step_time(self.eng.coeffs, float(p_tok), p_tok * (p_tok + 1) / 2.0, float(d_seqs), float(d_kv))
        self.now += max(dt, self.eng.idle_tick_s if not p_tok + d_seqs else 0.0)
        for q in decodes:
            q.kv += 1
            q.generated += 1
        for q in self.running:
            if q.kv == q.target and q.generated == 0:  # prefill done: first token
                q.generated, q.ttft = 1, self.now - q.arrival
                self.ema["ttft"] += EMA * (q.ttft - self.ema["ttft"])
        for q in [q for q in self.running if q.generated >= q.output]:
            self.running.remove(q)
            self.free += q.blocks
            self.out_hist[hist_bin(q.output)] += 1
            self.finished.append(q)
        self.ema["last"] = dt
        if d_seqs:
            self.ema["gap"] += EMA * (dt - self.ema["gap"])
        self.ema["recompute"] *= 1.0 - EMA


def run(onnx: Path, requests: int = 400, rate: float = 8.0, capacity_blocks: int = 4000,
        budget_us: float = 500.0, seed: int = 0) -> dict[str, float]:
    """Serve ``requests`` of the default trace at ``rate`` requests/s under the guarded policy."""
    trace = traces.load_trace("default", seed=seed)
    n = min(requests, len(trace))
    arrival = (trace.arrival_s[:n] - trace.arrival_s[0]) * (len(trace) / trace.arrival_s[-1]) / rate
    bucket = noisy_buckets(trace.output_tokens[:n], 0.7, np.random.default_rng(seed))
    eng = EngineSpec(capacity_blocks=capacity_blocks).build()
    engine = ToyEngine(eng, [Request(float(a), int(p), int(o), int(b)) for a, p, o, b in zip(
        arrival, trace.prompt_tokens[:n], trace.output_tokens[:n], bucket)])
    # The capacity the environment measures for this engine on the default trace's training part.
    observer = KVAdmissionObserver(eng, capacity_rps=kva.build_scenario(
        kva.KVAdmissionConfig(capacity_blocks=capacity_blocks)).capacity_rps)
    # WIRE 3: the learned policy, guarded by a budget and the engine's own heuristic.
    policy = GuardedPolicy(OnnxPolicy(onnx, env_id=kva.ENV_ID),
                           make_policy("vllm_fcfs", None, kva.ENV_ID), budget_us)
    recorded = policy.policy.observation  # None: an export that records no version (OnnxPolicy warned)
    if recorded is not None and recorded["observation_version"] != observer.OBS_VERSION:
        raise ValueError(f"{onnx}: observation v{recorded['observation_version']}, the observer builds "
                         f"v{observer.OBS_VERSION} ({kern.OBS_VERSIONS[observer.OBS_VERSION]}); retrain")
    if len(policy.policy.observation_features) != observer.obs.shape[1]:
        raise ValueError(f"{onnx}: observation of {len(policy.policy.observation_features)} features, "
                         f"the observer builds {observer.obs.shape[1]}")
    iterations = 0
    while engine.pending or engine.waiting or engine.running:
        engine.arrive()
        obs, mask = observer.build(engine.view())
        action = int(policy.act(obs, mask)[0])
        admit, budget, defer, order = kva.decode_action(action)
        engine.iterate(kva.ADMIT_LEVELS[admit], kva.BUDGET_LEVELS[budget], defer, order)
        iterations += 1
    ttft = np.array([q.ttft for q in engine.finished])
    return {"observation_version": "unknown" if recorded is None else recorded["observation_version"],
            "iterations": iterations, "finished": len(engine.finished),
            "ttft_p50_s": float(np.median(ttft)), "ttft_p99_s": float(np.percentile(ttft, 99)),
            **{f"guard_{k}": v for k, v in policy.counters.as_dict().items()}}


def main(argv: list[str] | None = None) -> int:
    from envs.options import Parser  # argparse whose errors are one line (no usage block), exit status 2

    p = Parser(prog="python -m examples.engine_hook", description=__doc__,
               formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--onnx", type=Path, required=True, help="a KVAdmission policy from agents.export")
    p.add_argument("--requests", type=int, default=400)
    p.add_argument("--rate", type=float, default=8.0, help="arrival rate, requests/s")
    p.add_argument("--capacity-blocks", type=int, default=4000)
    p.add_argument("--budget-us", type=float, default=500.0)
    a = p.parse_args(argv)
    import math

    for flag, v, ok, allowed in (("--requests", a.requests, a.requests >= 1, ">= 1"),
                                 ("--rate", a.rate, math.isfinite(a.rate) and a.rate > 0, "finite and > 0"),
                                 ("--capacity-blocks", a.capacity_blocks, a.capacity_blocks >= 1, ">= 1"),
                                 ("--budget-us", a.budget_us, math.isfinite(a.budget_us) and a.budget_us > 0,
                                  "finite and > 0")):
        if not ok:
            p.error(f"{flag}: must be {allowed}, got {v}")
    try:
        result = run(a.onnx, a.requests, a.rate, a.capacity_blocks, a.budget_us)
    except (ValueError, FileNotFoundError) as err:  # e.g. a model of another observation version
        p.error(str(err))
    for k, v in result.items():
        print(f"{k}: {v:.4g}" if isinstance(v, float) else f"{k}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
