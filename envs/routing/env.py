"""servegym/Routing-v0: which replica serves each arriving request (prefix affinity vs load).

R replicas (default 8 x Llama-3.1-8B on one H100 each), each with its own queue, paged KV pool
and prefix cache, run vLLM's FCFS scheduling. One decision per arriving request: the replica
that gets it (``Discrete(R)``, masked where a replica is down or its queue is full). Between
decisions every replica runs its iterations up to the next arrival.

A request the engine rejects at arrival (longer than the model's context or a replica's KV pool,
``envs.core.replica.rejected_at_arrival``) is still a decision: the router routes it and the
replica it is sent to rejects it (counted in ``rejected``; it takes no slot, KV or time). Real
routers do the same: they forward before the engine validates the length (vLLM's production-stack
``RoundRobinRouter.route_request`` advances its counter for every request; vLLM's OpenAI server then
answers a context-length error), so a rejected request takes a round-robin turn and shifts which
replica each later request gets, while a load-based router (jsq) routes the rest as if it were
absent (tests/test_trace_cases.py, ../shared/cases/edge_prompt_200k.jsonl).

The observation is the pending request (prompt length, noisy output bucket, a hash of its
first prefix blocks) and, per replica, what a router knows: load reports (queue, running batch,
outstanding prefill tokens, KV use, recent TTFT; refreshed every ``stale_s`` seconds, fresh at
every decision when 0, as P/D-Serve found reports lag in production), the prefix-hit length this
request would get there and the cache's fill (router-side state, exact as with KV-cache events),
an estimated TTFT and the requests sent there since its last report. See
``envs.routing.kernels.REPLICA_FEATURES``.

Reward: +1 when a request finishes within its SLO, -1 the moment one can no longer meet it (its
wait passes the TTFT SLO, its gaps pass the TBT allowance, or it is dropped); over an episode
2 * met - requests, so it ranks routers as SLO goodput does, with the miss signalled when it
happens. A TTFT tail bound (``ttft_bound_x`` x the TTFT SLO) keeps a router from buying that by
starving a few requests: every bound-length of TTFT a request accrues beyond the bound costs
``ttft_bound_penalty`` more, charged as it accrues (so a wait that grows without limit costs
without limit), and the episode metric ``slo_attainment_bounded`` (the leaderboard's main
metric) is the SLO attainment if at most 1% of the requests exceed the bound or got no first
token (the TTFT p99 with unserved requests counted as infinitely late is within the bound),
else 0. Episodes are windows of a trace (training or held-out part) replayed at a load level:
a fraction of the cluster's capacity without prefix reuse (``load``), or at ``rate_scale``
times the trace's own rate. Every window at every load level must fit the float64 clock and keep
its arrivals distinct float64 instants (``check_levels``, when the env is built: ``ValueError`` naming
the level, and for too high a load or rate_scale the largest that works).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cache
from typing import Any

import numpy as np
from gymnasium import spaces

import traces
from traces.checks import positive_levels, positive_real
from envs.routing import kernels as K
from envs.routing import predicted as P
from envs.routing import teacher as T
from envs.core import state as S
from envs.core.capacity import VLLM_BUDGET, measure_capacity_rps
from envs.core.engine import EngineSpec, step_time
from envs.core.mixture import (
    episode_extras as mixture_extras,
    Part,
    WorkloadEntry,
    build_mixture,
    normalize_workloads,
    part_index,
)
from envs.core.replica import accepted_at_arrival, accepted_values, arrival_time, longest_accepted_output
from envs.core.workload import (build_workload, check_clock_span, check_every_level, load_split, max_window_gaps,
                                min_arrival_gaps)
from envs.config_check import check_mixture, check_sizes, make_config
from envs.metrics import episode_metrics
from envs.native_vec import NativeVecEnv, VecEnvView, draw_episode, item_features
from envs.vector import NativeVectorEnv
from envs.render import render_replicas

ENV_ID = "servegym/Routing-v0"
DEFAULT_TRACE = "mooncake_conv"  # what trace "default" means here: multi-turn, prefix chains
DEFAULT_LOADS = (0.6, 0.9, 1.2)


@dataclass(frozen=True)
class RoutingConfig:
    """Everything that defines a scenario; ``--env-kwargs`` set these fields."""

    trace: str | traces.Trace = "default"  # built-in name, file path, or a Trace object
    split: str = "train"  # "train" | "test" (held-out) | "all"
    held_out_frac: float = 0.3
    replicas: int = 8
    load: float | tuple[float, ...] = DEFAULT_LOADS  # fraction of R x one replica's capacity
    rate_scale: float | None = None  # if set: replay at this multiple of the trace's own rate
    stale_s: float = 0.0  # load reports refresh every stale_s seconds (0 = at every decision)
    model: str = "Llama-3.1-8B"
    gpu: str = "H100"
    tp: int = 1
    mem_frac: float = 0.9
    capacity_blocks: int | None = None
    max_seqs: int = 1024
    budget: int = VLLM_BUDGET  # chunked-prefill token budget per iteration (vLLM default)
    slo_ttft_s: float | None = None
    slo_tpot_s: float | None = None
    slo_metric: str = "tpot"  # SLO check: "tpot" (MLPerf Inference, DistServe) or "p99_tbt" (envs/slo.py)
    window_requests: int = 1024
    queue_slots: int = 256  # per replica; arrivals beyond are dropped (and counted)
    predictor_accuracy: float = 0.7
    drain_s: float = 120.0
    trace_seed: int = 0
    prefix_caching: bool = True  # on where the trace has prefix chains
    hash_blocks: int = 2  # prefix blocks the prefix_key hashes (Mooncake: system prompt + 1)
    trace_params: tuple[tuple[str, Any], ...] = ()
    window_order: str = "random"
    # Training on a distribution (envs.core.mixture): built-in trace names and file paths (each may be a
    # (name, trace_params) pair: its own traces.load_trace parameters) that replace
    # trace; each episode draws a family (and generator seed) uniformly, then a window, then a load.
    workloads: tuple[WorkloadEntry, ...] | str = ()
    workload_seeds: int = 1  # generator seeds per built-in family in workloads (trace_seed, trace_seed + 1, ...)
    # The TTFT tail bound (issue 21): ttft_bound_x x the TTFT SLO. Reward: -ttft_bound_penalty per
    # bound-length of TTFT beyond it; score: slo_attainment_bounded (0 if > 1% of requests exceed it).
    ttft_bound_x: float = 5.0
    ttft_bound_penalty: float = 2.0
    # The privileged teacher (imitation targets only; envs/routing/teacher.py): seconds each replica is
    # replayed after the arrival (20 s covers the TTFT SLO and the decode of most outputs at the TPOT
    # SLO's pace; 60 s routed the agentic family at load 2.0 to within 0.001 SLO attainment, one held-out
    # episode 0.993 vs 0.994, at about 3x the cost), and the slack (in TTFT SLOs) within which
    # replicas are equally good targets (0: exact ties only, e.g. idle replicas; 0.05 taught worse, the
    # agentic family at load 2.0 0.883 against 0.936 at 0, one seed, 32,768 decisions).
    teacher_horizon_s: float = 20.0
    teacher_ttft_slack: float = 0.0
    teacher_threads: int = 1  # threads replaying the batch's envs (the same labels for any number)
    # The output lengths the teacher replays with: "true" (privileged), "predicted" or "sampled" (what a
    # router can know: each request's expected length, or draws of it, given its predicted bucket and the
    # tokens generated so far, envs/routing/predicted.py, calibrated on this env's workload, every family
    # of a mixture pooled; issue 21's test of whether the teacher's edge is the true lengths).
    teacher_lengths: str = "true"
    # "sampled": the reward deltas averaged over this many draws of every length from its bucket's
    # calibration distribution (E[outcome], not the outcome of E[length]: an SLO miss is not linear in it).
    teacher_samples: int = 8

    def loads(self) -> tuple[float, ...]:
        return positive_levels(self.load, "Routing: load")

    def validate(self) -> None:
        for name in ("replicas", "queue_slots", "hash_blocks", "budget", "window_requests"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"Routing: {name} must be an integer >= 1, got {v!r}")
        positive_real(self.rate_scale, "Routing: rate_scale", none_ok=True)
        if not (isinstance(self.stale_s, (int, float)) and self.stale_s >= 0):
            raise ValueError(f"Routing: stale_s must be a number >= 0, got {self.stale_s!r}")
        if not self.drain_s >= 0:
            raise ValueError(f"Routing: drain_s must be >= 0, got {self.drain_s!r}")
        if not (isinstance(self.ttft_bound_x, (int, float)) and self.ttft_bound_x >= 1.0):
            raise ValueError(f"Routing: ttft_bound_x (the TTFT tail bound in TTFT SLOs) must be a number >= 1, "
                             f"got {self.ttft_bound_x!r}")
        if not (isinstance(self.ttft_bound_penalty, (int, float)) and self.ttft_bound_penalty >= 0):
            raise ValueError(f"Routing: ttft_bound_penalty must be a number >= 0, got {self.ttft_bound_penalty!r}")
        if not (isinstance(self.teacher_horizon_s, (int, float)) and self.teacher_horizon_s > 0):
            raise ValueError(f"Routing: teacher_horizon_s must be a number > 0, got {self.teacher_horizon_s!r}")
        if not (isinstance(self.teacher_ttft_slack, (int, float)) and self.teacher_ttft_slack >= 0):
            raise ValueError(f"Routing: teacher_ttft_slack must be a number >= 0, got {self.teacher_ttft_slack!r}")
        if not isinstance(self.teacher_threads, (int, np.integer)) or self.teacher_threads < 1:
            raise ValueError(f"Routing: teacher_threads must be an integer >= 1, got {self.teacher_threads!r}")
        if not isinstance(self.teacher_samples, (int, np.integer)) or self.teacher_samples < 1:
            raise ValueError(f"Routing: teacher_samples must be an integer >= 1, got {self.teacher_samples!r}")
        if self.teacher_lengths not in T.LENGTHS:
            raise ValueError(f"Routing: teacher_lengths must be one of {', '.join(T.LENGTHS)}, "
                             f"got {self.teacher_lengths!r}")
        self.loads()

    def engine_spec(self) -> EngineSpec:
        return EngineSpec.from_config(self)


@dataclass(frozen=True)
class Scenario:
    """Built, read-only parts shared by every env of a batch (and cached across batches)."""

    engine: Any
    workload: S.Workload
    natural_rate: np.ndarray  # requests/s of each window at the trace's own pace
    replica_capacity_rps: float  # one replica, saturated, no prefix reuse
    bound_rps: float  # R replicas, saturated, every reusable prefix hit (an upper bound)
    sec_per_prefill_token: float
    cache_entries: int
    trace_name: str
    # A workload mixture (config.workloads; envs.core.mixture), else empty / None:
    parts: tuple[Part, ...] = ()  # each part's family and generator seed
    groups: np.ndarray | None = None  # int64 [P + 1], window offsets of the parts
    part_capacity_rps: np.ndarray | None = None  # float64 [P], one replica on each part's history
    part_bound_rps: np.ndarray | None = None  # float64 [P], the capacity bound of each part's windows

    def part_of(self, window: int) -> int:
        """Index of the part that holds ``window`` (0 for a single trace)."""
        return part_index(self.groups, window)

    def bound_of(self, window: int) -> float:
        """The capacity bound (requests/s) of the windows ``window`` belongs to."""
        return self.bound_rps if self.part_bound_rps is None else float(self.part_bound_rps[self.part_of(window)])

    def capacity_of(self, window: int) -> float:
        """One replica's capacity (requests/s, no prefix reuse) on the part ``window`` belongs to."""
        return (self.replica_capacity_rps if self.part_capacity_rps is None
                else float(self.part_capacity_rps[self.part_of(window)]))


def reusable_tokens(trace: traces.Trace) -> np.ndarray:
    """Prompt tokens of each request that an infinite prefix cache holding every earlier
    request's blocks could serve: its leading blocks already seen, at most prompt - 1 tokens."""
    n = len(trace)
    if trace.block_ids is None:
        return np.zeros(n, np.int64)
    lens = np.diff(trace.block_offsets)
    owner = np.repeat(np.arange(n), lens)
    _, first, inverse = np.unique(trace.block_ids, return_index=True, return_inverse=True)
    seen = owner[first][inverse] < owner  # the block appeared in an earlier request
    pos = np.arange(owner.size) - np.repeat(trace.block_offsets[:-1], lens)
    # Leading run of seen blocks: the first unseen position of each chain (or its length).
    unseen_pos = np.where(seen, np.iinfo(np.int64).max, pos)
    lead = lens.astype(np.int64)
    nz = lens > 0
    if nz.any():  # segments of the non-empty chains only (empty ones hold no elements)
        lead[nz] = np.minimum(np.minimum.reduceat(unseen_pos, trace.block_offsets[:-1][nz]), lens[nz])
    return np.minimum(lead * int(trace.block_size), trace.prompt_tokens - 1).astype(np.int64)


def _prefill_seconds_per_token(eng, prompt: float, budget: int) -> float:
    """Seconds per prompt token to prefill a ``prompt``-token request alone in budget chunks."""
    done, t = 0.0, 0.0
    while done < prompt:
        c = min(float(budget), prompt - done)
        t += step_time(eng.coeffs, c, c * (done + (c + 1) / 2.0), 0.0, 0.0)
        done += c
    return t / max(prompt, 1.0)


def build_scenario(cfg: RoutingConfig) -> Scenario:
    """The scenario of ``cfg``; fields that only steer episodes do not rebuild it. ``ValueError``
    for a bad ``workloads`` value (``envs.core.mixture.normalize_workloads``)."""
    return _build_scenario(replace(cfg, load=DEFAULT_LOADS, rate_scale=None, stale_s=0.0,
                                   workloads=normalize_workloads(cfg.workloads, "Routing"),
                                   window_order="random", drain_s=0.0, ttft_bound_x=RoutingConfig.ttft_bound_x,
                                   ttft_bound_penalty=RoutingConfig.ttft_bound_penalty,
                                   teacher_horizon_s=RoutingConfig.teacher_horizon_s,
                                   teacher_ttft_slack=RoutingConfig.teacher_ttft_slack,
                                   teacher_threads=RoutingConfig.teacher_threads,
                                   teacher_lengths=RoutingConfig.teacher_lengths,
                                   teacher_samples=RoutingConfig.teacher_samples))


@cache
def _build_scenario(cfg: RoutingConfig) -> Scenario:
    if cfg.workloads:
        return _build_mixture(cfg)
    cfg = replace(cfg, trace=DEFAULT_TRACE if cfg.trace == "default" else cfg.trace)
    history, trace = load_split(cfg, "Routing")
    cache_on = cfg.prefix_caching and trace.block_ids is not None
    chain_tokens = trace.block_size or 1
    eng = cfg.engine_spec().build(cache_on=cache_on, chain_block_tokens=chain_tokens)
    # Requests longer than the model's context or a replica's KV pool are rejected at arrival
    # (envs.core.replica.rejected_at_arrival) and counted as `rejected`; the others are served as
    # if they were absent: rates, max_tokens and the mean prompt over accepted requests only.
    max_out, (ok_t, ok_h) = longest_accepted_output(eng, (trace, history))
    eng = eng._replace(max_output=max_out)
    wl, rate = build_workload(trace, cfg.window_requests, cfg.predictor_accuracy, cfg.trace_seed, ok_t)
    cap_wl, _ = build_workload(history, cfg.window_requests, cfg.predictor_accuracy, cfg.trace_seed)
    capacity = measure_capacity_rps(eng, cap_wl, source=f"Routing: training part of trace {trace.meta.name!r}")
    bound = _bound_rps(cfg, eng, trace)
    spt = _prefill_seconds_per_token(eng, float(accepted_values(history.prompt_tokens, ok_h).mean()), cfg.budget)
    entries = eng.capacity_blocks * eng.block_size // eng.chain_block_tokens if cache_on else 0
    return Scenario(eng, wl, rate, capacity, bound, spt, entries, trace.meta.name)


def _build_mixture(cfg: RoutingConfig) -> Scenario:
    """The scenario of a workload mixture: every part's windows, natural rates, capacity and bound.

    The prefill speed the observation's wait estimates use (``sec_per_prefill_token``) is one
    number for the mixture: measured at the mean prompt of all parts' histories together (the
    requests the engine accepts)."""
    m = build_mixture(cfg, "Routing", lambda eng, history, trace: _bound_rps(cfg, eng, trace))
    eng = m.engine
    prompts = np.concatenate([h.prompt_tokens for h, _ in m.loaded])
    outputs = np.concatenate([h.output_tokens for h, _ in m.loaded])
    mean_prompt = float(accepted_values(prompts, accepted_at_arrival(eng, prompts, outputs)).mean())
    spt = _prefill_seconds_per_token(eng, mean_prompt, cfg.budget)
    entries = eng.capacity_blocks * eng.block_size // eng.chain_block_tokens if m.cache_on else 0
    return Scenario(eng, m.workload, m.natural_rate, float(np.mean(m.part_capacity_rps)), float(np.mean(m.per_part)),
                    spt, entries, m.name, m.parts, m.groups, m.part_capacity_rps, np.array(m.per_part, np.float64))


def _bound_rps(cfg: RoutingConfig, eng: Any, trace: traces.Trace) -> float:
    """The bound on ``trace``'s windows: every reusable prefix served from cache (an infinite
    cache that saw every earlier request), the work spread perfectly over R saturated replicas."""
    reuse = reusable_tokens(trace)
    bound_trace = trace.replace(prompt_tokens=trace.prompt_tokens - reuse, block_ids=None,
                                block_offsets=None, block_size=None)
    bound_wl, _ = build_workload(bound_trace, cfg.window_requests, cfg.predictor_accuracy, cfg.trace_seed)
    return cfg.replicas * measure_capacity_rps(eng, bound_wl,
                                               source=f"Routing: bound of trace {trace.meta.name!r} without reuse")


def episode_draws(where: str, cfg: RoutingConfig, sc: Scenario, rngs: list, envs: np.ndarray, started: np.ndarray,
                  num_envs: int, options: list[dict[str, Any]] | None = None,
                  index: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Window, time scale and load level of each env's next episode (``started`` counts episodes
    per env and is advanced; ``draw_episode`` picks the window and load: random, in turn, or
    named by ``options[e]``). ``num_envs``, ``index``: env e numbers its episodes as env
    ``index[e]`` (default e) of a batch of ``num_envs`` (``NativeVecEnv.number_episodes``)."""
    loads = cfg.loads()
    W = sc.workload.arrival_s.shape[0]
    windows = np.empty(len(envs), np.int32)
    scales = np.empty(len(envs), np.float64)
    levels = np.empty(len(envs), np.float64)
    for j, e in enumerate(envs):
        windows[j], load = draw_episode(where, cfg.window_order, rngs[e], int(started[e]),
                                        int(e if index is None else index[e]), num_envs, W,
                                        "load", loads, options[e] if options else {}, sc.groups)
        started[e] += 1
        levels[j] = load
        scales[j] = time_scales(cfg, sc, windows[j:j + 1], None if cfg.rate_scale is not None else load)[0]
    check_clock_span(sc.workload.arrival_s[windows, -1], windows, scales, None if cfg.rate_scale is not None else levels, where)
    return windows, scales, levels


def time_scales(cfg: RoutingConfig, sc: Scenario, windows: np.ndarray, load: float | None) -> np.ndarray:
    """Simulated seconds per trace second (float64 [len(windows)]) of ``windows`` played at ``load`` (a
    fraction of R x one replica's capacity on the window's part), or at ``cfg.rate_scale`` (``load`` None)."""
    if load is None:
        return np.full(len(windows), 1.0 / cfg.rate_scale)
    caps = np.array([sc.capacity_of(int(w)) for w in windows], np.float64)
    return sc.natural_rate[windows] / (load * cfg.replicas * caps)


def observation_size(replicas: int) -> int:
    """Features in one env's observation: ``G`` global ones then ``F`` per replica."""
    return K.G + replicas * K.F


def memory_bytes(num_envs: int, replicas: int, queue_slots: int, window_requests: int) -> int:
    """A lower bound on the bytes a batch of ``num_envs`` takes: its cluster state (``state.allocate_bytes``: slots
    [E, replicas, queue_slots], requests [E, window_requests]), the TTFT-bound charges [E, window_requests]
    float64 and the observation ([E, n_obs] float32, and the space's bounds: 10 bytes a feature)."""
    n_obs = observation_size(replicas)
    return (S.allocate_bytes(num_envs, replicas, queue_slots, window_requests) + 8 * num_envs * window_requests
            + (4 * num_envs + 10) * n_obs)


def check_levels(where: str, cfg: RoutingConfig, sc: Scenario) -> None:
    """Every window at every load level (or at rate_scale) within the float64 clock, its arrivals distinct
    float64 instants, checked when the env is built (``envs.core.workload.check_every_level`` with the
    windows' arrival gaps): ``ValueError`` naming the level and a window."""
    check_every_level(sc.workload.arrival_s[:, -1], lambda x: time_scales(cfg, sc, np.arange(len(sc.natural_rate)), x),
                      None if cfg.rate_scale is not None else cfg.loads(), where,
                      gap_s=min_arrival_gaps(sc.workload.arrival_s))


class RoutingVecEnv(NativeVecEnv):
    """E copies of Routing-v0 stepped by one kernel call (SB3 VecEnv, no per-env objects).

    Episode selection (``NativeVecEnv.draw_episode``): ``window`` indexes the trace's windows,
    the knob is ``load``."""

    env_name = "Routing"
    episode_knob = "load"
    episodes_independent_of_sweep = True  # a load rescales a window's time

    # Led by metrics every run defines; effective_capacity_rps exists only with --capacity.
    # slo_attainment_bounded is the leaderboard's main metric (agents.scenarios.SCORING).
    table_metrics = (
        "slo_attainment_bounded", "slo_attainment", "ttft_p99_s", "ttft_over_bound", "goodput_rps", "ttft_p50_s",
        "tpot_p99_s", "token_hit_ratio", "load_imbalance", "offered_rps", "effective_capacity_rps", "return_mean",
    )
    capacity_knob = "rate_scale"  # what agents.capacity_search varies (offered_rps is the rate)

    def sweep(self) -> tuple[str, tuple[float, ...]]:
        if self.config.rate_scale is not None:
            return "rate_scale", (float(self.config.rate_scale),)
        return "load", self.config.loads()

    def capacity_start(self) -> float:
        """A rate_scale near the cluster's capacity without prefix reuse (where search starts)."""
        sc = self.scenario
        return float(self.config.replicas * sc.replica_capacity_rps / np.median(sc.natural_rate))

    def __init__(self, num_envs: int = 1, config: RoutingConfig | None = None, seed: int | None = None,
                 **kwargs: Any):
        cfg = make_config(RoutingConfig, config, kwargs, "Routing")
        cfg = replace(cfg, load=cfg.loads(), trace_params=tuple(dict(cfg.trace_params).items()),
                      workloads=normalize_workloads(cfg.workloads, "Routing"))
        cfg.validate()
        check_sizes("Routing", {"num_envs": num_envs, "replicas": cfg.replicas, "queue_slots": cfg.queue_slots,
                                "window_requests": cfg.window_requests}, memory_bytes, "the batch's arrays")
        check_mixture(cfg, "Routing")
        self.config = cfg
        self.scenario = build_scenario(cfg)
        check_levels("Routing", cfg, self.scenario)
        R = cfg.replicas
        self.R = R
        n_obs = observation_size(R)
        super().__init__(num_envs, spaces.Box(-np.inf, np.inf, (n_obs,), np.float32), spaces.Discrete(R))
        E = num_envs
        # The hot per-slot fields packed side by side (S.PACKED_SLOT_FIELDS: one request's share a cache
        # line instead of lying in seven arrays); the same results as unpacked.
        self.state = S.allocate(E, R, cfg.queue_slots, cfg.window_requests, self.scenario.cache_entries,
                                max_window_gaps(self.scenario.workload), packed=True)
        self.up = np.ones((E, R), np.float32)
        self._ttft_ema = np.zeros((E, R))
        self._busy = np.zeros((E, R))
        self._snap = np.zeros((E, R, K.N_REPORTED))
        self._snap_t = np.full(E, -np.inf)
        self._sent = np.zeros((E, R), np.int64)
        self._obs = np.zeros((E, n_obs), np.float32)
        self._mask = np.ones((E, R), np.bool_)
        self._episode_load = np.zeros(E)
        self._cap_rps = np.full(E, self.scenario.replica_capacity_rps)  # of each env's workload part
        self._charged = np.zeros((E, cfg.window_requests))  # TTFT beyond the bound charged (s)
        self._first_open = np.zeros(E, np.int64)
        self.ttft_bound_s = cfg.ttft_bound_x * self.scenario.engine.slo_ttft
        if seed is not None:
            self.seed(seed)

    # --- NativeVecEnv hooks
    def _episode_draws(self, envs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # numbered as envs of a larger batch where asked (a worker's slice: envs.subproc_vec)
        windows, scales, loads = episode_draws(self.env_name, self.config, self.scenario, self._rngs, envs,
                                               self._episodes_started, self._seq_total, self._reset_opts,
                                               self._seq_index)
        self._episode_load[envs] = loads
        return windows, scales

    def _reset_envs(self, envs: np.ndarray) -> None:
        sc, cfg = self.scenario, self.config
        windows, scales = self._episode_draws(envs)
        for e, w in zip(envs, windows):
            self._cap_rps[e] = sc.capacity_of(int(w))
        K.reset_all(self.state, sc.workload, sc.engine, envs.astype(np.int64), windows, scales,
                    self.up, cfg.stale_s, cfg.hash_blocks, sc.sec_per_prefill_token, self._cap_rps,
                    self._charged, self._first_open, self._ttft_ema, self._busy, self._snap, self._snap_t,
                    self._sent, self._obs, self._mask)

    def advance(self) -> None:
        """One kernel call: every env routes its pending request by ``_actions``."""
        sc, cfg = self.scenario, self.config
        K.step_all(self.state, sc.workload, sc.engine, self._actions, self.up, cfg.budget, cfg.drain_s,
                   cfg.stale_s, cfg.hash_blocks, sc.sec_per_prefill_token, self._cap_rps, self.ttft_bound_s,
                   float(cfg.ttft_bound_penalty), self._charged, self._first_open, self._ttft_ema, self._busy,
                   self._snap, self._snap_t, self._sent, self._obs, self._mask, self._rew, self._term,
                   self._trunc)

    def episode_extras(self, e: int) -> dict[str, Any]:
        return mixture_extras(self.request_records(e), self.scenario.parts, self.scenario.groups,
                              int(self.state.window[e]))

    def feature_names(self) -> list[str]:
        return item_features(K.REQUEST_FEATURES, K.REPLICA_FEATURES, self.R, "replica")

    def action_meanings(self) -> list[str]:
        return [f"route to replica{r}" for r in range(self.R)]

    def render_text(self, e: int = 0) -> str:
        load = "" if self.config.rate_scale is not None else f" (load {self._episode_load[e]:g})"
        return render_replicas(self.state, e, self.scenario.engine.capacity_blocks, float(self._rew[e]),
                               f"Routing env {e}{load}", up=self.up[e])

    def teacher_actions(self, mode: str = T.DEFAULT_MODE, horizon_s: float | None = None,
                        lengths: str | None = None) -> np.ndarray:
        """The privileged teacher's replica for every env's pending request [E] (int64):
        ``envs.routing.teacher`` replays each replica alone from now with and without the request,
        knowing the true output lengths (``lengths`` ``"true"``) or only their prediction
        (``"predicted"``: conditional means, ``"sampled"``: outcomes averaged over ``teacher_samples``
        draws, seeded by the state; ``envs.routing.predicted``; default the config's ``teacher_lengths``)
        (``mode`` ``"marginal"``: the fewest SLO outcomes lost, ``"ttft"``: the soonest first token;
        ``horizon_s``: seconds replayed after the arrival, default the config's ``teacher_horizon_s``).
        For imitation targets and as a reference policy, never for the observation.
        ``ValueError`` for an unknown ``mode`` or ``lengths`` or a ``horizon_s`` <= 0."""
        out = self._teacher_outcomes(mode, self.config.teacher_horizon_s if horizon_s is None else horizon_s,
                                     self.config.teacher_lengths if lengths is None else lengths)
        return np.array([T.choose(out[e], self._mask[e], mode) for e in range(self.num_envs)], np.int64)

    def teacher_targets(self, slack: float | None = None) -> np.ndarray:
        """Every replica the default teacher accepts [E, R] (bool): the legal replicas with its best
        reward delta whose first token for the request comes within ``slack`` (default the config's
        ``teacher_ttft_slack``) x the TTFT SLO of the
        soonest among them (``envs.routing.teacher.targets``; equally good replicas, e.g. idle ones,
        are all right, so imitation does not learn an arbitrary tie-break). Privileged, as
        :meth:`teacher_actions` (whose replays it reuses while the state has not moved)."""
        out = self._teacher_outcomes(T.DEFAULT_MODE, self.config.teacher_horizon_s, self.config.teacher_lengths)
        slack_s = float(self.config.teacher_ttft_slack if slack is None else slack) * self.scenario.engine.slo_ttft
        return np.stack([T.targets(out[e], self._mask[e], slack_s) for e in range(self.num_envs)])

    def _teacher_outcomes(self, mode: str, horizon_s: float, lengths: str) -> np.ndarray:
        """``envs.routing.teacher.play_candidates``' rows of every env [E, 2R, 2], kept until the
        batch steps (one replay serves ``teacher_actions`` and ``teacher_targets``)."""
        if mode not in T.MODES:
            raise ValueError(f"Routing teacher_actions: mode must be one of {', '.join(T.MODES)}, got {mode!r}")
        if not (isinstance(horizon_s, (int, float)) and horizon_s > 0):
            raise ValueError(f"Routing teacher_actions: horizon_s must be > 0, got {horizon_s!r}")
        if lengths not in T.LENGTHS:
            raise ValueError(f"Routing teacher_actions: lengths must be one of {', '.join(T.LENGTHS)}, got {lengths!r}")
        st = self.state
        key = (mode, float(horizon_s), lengths, st.window.tobytes(), st.next_arrival.tobytes(), st.clock.tobytes())
        cached = getattr(self, "_teacher_cache", None)
        if cached is not None and cached[0] == key:
            return cached[1]
        sc, cfg = self.scenario, self.config
        threads = min(int(cfg.teacher_threads), self.num_envs)
        if getattr(self, "_teacher_rows", None) is None:  # scratch rows per thread
            self._teacher_rows = [(T.scratch_like(st), np.zeros((2 * self.R, self.R))) for _ in range(threads)]
        out = np.zeros((self.num_envs, 2 * self.R, 2))
        table = None
        if lengths != "true":
            if getattr(self, "_length_table", None) is None:  # calibrated on this env's workload
                self._length_table = P.length_table(sc.workload)
            table = self._length_table

        def replay(k: int) -> None:
            rows, busy = self._teacher_rows[k]
            for e in range(k, self.num_envs, threads):  # each env's replay is independent of the others
                if lengths == "sampled":  # the mean outcome over draws (seeded by the state: same state, same draws)
                    rng = np.random.default_rng([int(st.window[e]), int(st.next_arrival[e]), int(cfg.trace_seed)])
                    acc = np.zeros((2 * self.R, 2))
                    for _ in range(int(cfg.teacher_samples)):
                        T.load_rows(rows, st, e)
                        wl = P.believed_window(table, sc.workload, st, e, rng)
                        rows.window[:] = 0
                        T.play_candidates(rows, wl, sc.engine, int(st.next_arrival[e]), cfg.budget, float(horizon_s),
                                          mode == "ttft", self.ttft_bound_s, float(cfg.ttft_bound_penalty), busy, out[e])
                        acc += out[e]
                    out[e] = acc / int(cfg.teacher_samples)
                    continue
                T.load_rows(rows, st, e)
                wl = sc.workload
                if table is not None:  # one window whose outputs are the predicted lengths, as row 0
                    wl = P.believed_window(table, wl, st, e)
                    rows.window[:] = 0
                T.play_candidates(rows, wl, sc.engine, int(st.next_arrival[e]), cfg.budget, float(horizon_s),
                                  mode == "ttft", self.ttft_bound_s, float(cfg.ttft_bound_penalty), busy, out[e])

        if threads == 1:
            replay(0)
        else:
            from concurrent.futures import ThreadPoolExecutor

            if getattr(self, "_teacher_pool", None) is None:
                self._teacher_pool = ThreadPoolExecutor(threads)
            list(self._teacher_pool.map(replay, range(threads)))
        self._teacher_cache = (key, out)
        return out

    def close(self) -> None:
        pool = getattr(self, "_teacher_pool", None)
        if pool is not None:
            pool.shutdown()
            self._teacher_pool = None
        super().close()

    # --- domain metrics
    def request_records(self, e: int) -> dict[str, np.ndarray]:
        st = self.state
        return {k: getattr(st, k)[e].copy() for k in ("ttft", "tpot", "tbt_p99", "e2e", "fate", "slo_met")}

    def episode_metrics(self, e: int) -> dict[str, float]:
        extra = {} if self.config.rate_scale is not None else {"load": float(self._episode_load[e])}
        m = cluster_metrics(self.state, self.scenario, self._busy, e, extra)
        m.update(tail_bound_metrics(self.state.ttft[e], self.state.fate[e], m["slo_attainment"], self.ttft_bound_s))
        return m


# The share of servable requests allowed past the TTFT tail bound: the bound is on the p99.
BOUND_SHARE = 0.01


def tail_bound_metrics(ttft: np.ndarray, fate: np.ndarray, slo_attainment: float, bound_s: float) -> dict[str, float]:
    """The TTFT tail-bound metrics of one episode from per-request TTFT [N] (s, NaN without a first
    token) and fates [N] (``envs.core.state`` codes): ``ttft_bound_s``; ``ttft_over_bound``, the share
    of servable requests (not failed, not rejected) whose TTFT exceeds ``bound_s`` or that never
    produced a first token (dropped, or unfinished at the episode's end); ``slo_attainment_bounded``
    = ``slo_attainment`` when ``ttft_over_bound`` <= ``BOUND_SHARE`` (the p99 of TTFT, an unserved
    request counting as infinitely late, is within the bound), else 0."""
    servable = (fate != S.FAILED) & (fate != S.REJECTED)
    n = int(servable.sum())
    with np.errstate(invalid="ignore"):
        over = servable & ~(ttft <= bound_s)  # NaN (no first token) counts as over
    share = float(over.sum()) / max(n, 1)
    return {"ttft_bound_s": float(bound_s), "ttft_over_bound": share,
            "slo_attainment_bounded": slo_attainment if share <= BOUND_SHARE else 0.0}


def cluster_metrics(st: S.ClusterState, sc: Scenario, busy: np.ndarray, e: int,
                    extra: dict[str, float] | None = None) -> dict[str, float]:
    """Episode metrics of env ``e`` of a multi-replica cluster (Routing-v0 and ``envs.multi.env``)."""
    wl = sc.workload
    w = int(st.window[e])
    n = int(wl.n_requests[w])
    R = st.n_queued.shape[1]
    t0 = float(arrival_time(st, wl, e, 0))
    t_last = float(arrival_time(st, wl, e, n - 1))
    b = busy[e]
    more = {
        "offered_rps": (n - 1) / max(t_last - t0, 1e-9),
        # max / mean replica busy time: 1 = perfectly even
        "load_imbalance": float(b.max() / b.mean()) if b.mean() > 0 else 1.0,
        "capacity_bound_rps": sc.bound_of(w),
        "replicas": float(R),
        **(extra or {}),
    }
    m = episode_metrics(
        ttft=st.ttft[e], e2e=st.e2e[e], tpot=st.tpot[e], fate=st.fate[e],
        tbt_p99_episode=S.episode_tbt_p99(st.gap_heap[e], int(st.counters[e, S.C_GAPS])),
        slo_met=st.slo_met[e], output_tokens=wl.output[w], duration_s=float(st.clock[e]) - t0,
        counters=st.counters[e], kv_block_s=float(st.accum[e, S.A_KV_BLOCK_S]),
        capacity_blocks=sc.engine.capacity_blocks * R, extra=more,
    )
    m.setdefault("token_hit_ratio", 0.0)  # no prefix chains: nothing can hit
    m.setdefault("block_hit_ratio", 0.0)
    return m


class RoutingEnv(VecEnvView):
    """The single-env Gymnasium view (E = 1) of :class:`RoutingVecEnv`."""

    vec_class = RoutingVecEnv


class RoutingVectorEnv(NativeVectorEnv):
    """The Gymnasium ``VectorEnv`` of :class:`RoutingVecEnv` (``gymnasium.make_vec``'s vector entry point)."""

    vec_class = RoutingVecEnv
