"""servegym/KVAdmission-v0: admission, prefill budget and preemption on one replica under load.

One decision per engine iteration. The action is one Discrete index that packs four choices:

* admit: how many queued requests may start this iteration (``ADMIT_LEVELS``; ``all`` = as
  many as fit, vLLM's behaviour),
* budget: the prefill token budget of the iteration (``BUDGET_LEVELS``),
* preempt: on a KV shortage, 0 = preempt the newest request (recompute), 1 = defer (requests
  that cannot grow wait; the oldest still preempts, so the batch cannot deadlock),
* order: which queued requests go first: 0 = FCFS, 1 = shortest predicted output, 2 = oldest
  that can still meet its TTFT SLO.

Action masks (``action_masks()``) mark the admit levels that would change nothing or only let time
pass; the budget, shortage and order parts are never masked. A masked action is applied as given, never
refused or remapped (as Disaggregation-v0 and Routing-v0 apply theirs; the fixed-action heuristics play
masked ones routinely, e.g. ``vllm_fcfs``'s "admit all" whenever a smaller level admits everything):

* a level above what can be admitted (min(queued, ``max_seqs`` - running)) admits what the largest
  unmasked level admits;
* a level > 0 with nothing admissible admits nothing, except at an empty replica (nothing queued or
  running), whose iteration first takes the requests arriving at its start and admits up to the level
  (admit 0, the only unmasked level there, waits for them one decision);
* admit 0 while requests wait and none runs schedules nothing and lets time pass (one idle tick, or up to
  the next arrival).

(``tests/test_kv_admission_api.py`` plays each case.)

Output lengths are never observed: the observation carries a noisy length bucket per queued
request and Past-Future's estimate from the history of finished outputs. Reward: +1 for each
request that finishes within the SLO, -1 for each request the moment it can no longer meet it
(its wait passes the TTFT SLO; with ``slo_metric="tpot"``, the default, the time since its first
token passes SLO_tpot x (output - 1), so that even instant remaining tokens cannot bring its mean
TPOT back, while a request still recovers from one long gap; with ``"p99_tbt"``, more gaps over the
limit than its p99 tolerates; or it is dropped), minus ``recompute_penalty`` per 1000 recomputed
tokens. Over an episode this is
2 * met - requests (for requests that end), so it ranks policies as SLO attainment does, but
it tells the agent about a miss when it happens instead of when the request finishes. Episodes are
windows of a trace (the training or the held-out part) rescaled to a load level, a fraction of
the replica's measured capacity (``envs.core.capacity``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cache
from typing import Any

import numpy as np
from gymnasium import spaces

import traces
from envs.kv_admission import kernels as K
from envs.core import lazy
from envs.core import state as S
from envs.core.capacity import CAPACITY_REQUESTS, MAX_STREAM, count_unit, measure_capacity_rps
from envs.core.engine import EngineSpec
from envs.core.mixture import (
    episode_extras as mixture_extras,
    Part,
    WorkloadEntry,
    build_mixture,
    normalize_workloads,
    part_index,
)
from envs.core.replica import accepted_at_arrival, accepted_values, longest_accepted_output
from envs.core.workload import (build_workload, check_clock_span, check_every_level, load_split, max_window_gaps,
                                min_arrival_gaps, output_histogram)
from envs.config_check import check_mixture, check_sizes, make_config
from envs.metrics import episode_metrics
from envs.native_vec import NativeVecEnv, VecEnvView, item_features
from envs.vector import NativeVectorEnv
from envs.render import render_replicas
from traces.checks import is_integer, is_real, positive_levels, positive_real

ENV_ID = "servegym/KVAdmission-v0"
ALL = 1 << 30
ADMIT_LEVELS = (0, 1, 2, 4, 8, ALL)
BUDGET_LEVELS = (512, 2048, 8192)
N_ORDERS = 3
N_ACTIONS = len(ADMIT_LEVELS) * len(BUDGET_LEVELS) * 2 * N_ORDERS
# Overload levels, where admission, budget and preemption decide SLO attainment: under MLPerf's
# TTFT/TPOT limits every heuristic meets the SLO for >= 96% of requests at 0.7-1.1 (README).
DEFAULT_LOADS = (1.1, 1.3, 1.5)


def encode_action(admit: int, budget: int, defer: bool, order: int) -> int:
    """Action index of (admit level index, budget level index, defer, order)."""
    return ((admit * len(BUDGET_LEVELS) + budget) * 2 + int(defer)) * N_ORDERS + order


def decode_action(a: int) -> tuple[int, int, bool, int]:
    order = a % N_ORDERS
    a //= N_ORDERS
    defer = bool(a % 2)
    a //= 2
    return a // len(BUDGET_LEVELS), a % len(BUDGET_LEVELS), defer, order


@dataclass(frozen=True)
class KVAdmissionConfig:
    """Everything that defines a scenario; ``--env-kwargs`` set these fields."""

    trace: str | traces.Trace = "default"  # built-in name, file path, or a Trace object
    split: str = "train"  # "train" | "test" (held-out) | "all"
    held_out_frac: float = 0.3
    load: float | tuple[float, ...] = DEFAULT_LOADS
    rate_scale: float | None = None  # if set: replay at this multiple of the trace's own rate
    model: str = "Llama-3.1-8B"
    gpu: str = "H100"
    tp: int = 1
    mem_frac: float = 0.9
    capacity_blocks: int | None = None
    max_seqs: int = 1024  # vLLM's default on GPUs with >= 70 GiB (EngineArgs.get_batch_defaults)
    slo_ttft_s: float | None = None
    slo_tpot_s: float | None = None
    slo_metric: str = "tpot"  # SLO check: "tpot" (MLPerf Inference, DistServe) or "p99_tbt" (envs/slo.py)
    window_requests: int = 1024
    queue_slots: int = 2048
    # Requests in the capacity measurement's stream (the load unit; envs.core.capacity): 2,048 unless the
    # workload needs a longer stream to reach steady state (burstgpt_like: 32,768; docs/scripts/capacity_stream_length.py).
    capacity_requests: int = CAPACITY_REQUESTS
    predictor_accuracy: float = 0.7
    recompute_penalty: float = 0.05
    candidates: int = 8
    drain_s: float = 120.0
    trace_seed: int = 0
    prefix_caching: bool = False
    trace_params: tuple[tuple[str, Any], ...] = ()  # forwarded to traces.load_trace
    window_order: str = "random"  # "random" | "sequential" (env e replays windows e, e+E, ...)
    # Training on a distribution (envs.core.mixture): built-in trace names and file paths (each may be a
    # (name, trace_params) pair: its own traces.load_trace parameters) that replace
    # trace; each episode draws a family (and generator seed) uniformly, then a window, then a load.
    workloads: tuple[WorkloadEntry, ...] | str = ()
    workload_seeds: int = 1  # generator seeds per built-in family in workloads (trace_seed, trace_seed + 1, ...)

    def loads(self) -> tuple[float, ...]:
        return positive_levels(self.load, "KVAdmission: load")

    def engine_spec(self) -> EngineSpec:
        if self.slo_ttft_s is not None and not np.isfinite(self.slo_ttft_s):
            raise ValueError(f"KVAdmission: slo_ttft_s must be finite (the observation counts requests in units of "
                             f"capacity x TTFT SLO), got {self.slo_ttft_s!r}")
        return EngineSpec.from_config(self)


@dataclass(frozen=True)
class Scenario:
    """Built, read-only parts shared by every env of a batch (and cached across batches)."""

    engine: Any
    workload: S.Workload
    natural_rate: np.ndarray
    capacity_rps: float
    hist_prior: np.ndarray
    trace_name: str
    # A workload mixture (config.workloads; envs.core.mixture), else empty / None:
    parts: tuple[Part, ...] = ()  # each part's family and generator seed
    groups: np.ndarray | None = None  # int64 [P + 1], window offsets of the parts
    part_capacity_rps: np.ndarray | None = None  # float64 [P], capacity measured on each part's history
    part_hist_prior: np.ndarray | None = None  # float64 [P, bins], each part's Past-Future prior

    def part_of(self, window: int) -> int:
        """Index of the part that holds ``window`` (0 for a single trace)."""
        return part_index(self.groups, window)


def build_scenario(cfg: KVAdmissionConfig) -> Scenario:
    """The scenario of ``cfg``; fields that only steer episodes do not rebuild it. ``ValueError``
    for a bad ``workloads`` value (``envs.core.mixture.normalize_workloads``)."""
    return _build_scenario(
        replace(cfg, load=DEFAULT_LOADS, rate_scale=None, window_order="random",
                recompute_penalty=0.0, candidates=1, drain_s=0.0,
                workloads=normalize_workloads(cfg.workloads, "KVAdmission"))
    )


@cache
def _build_scenario(cfg: KVAdmissionConfig) -> Scenario:
    if cfg.workloads:
        return _build_mixture(cfg)
    history, trace = load_split(cfg, "KVAdmission")
    chain_tokens = trace.block_size or 1
    cache_on = cfg.prefix_caching and trace.block_ids is not None
    if cfg.prefix_caching and trace.block_ids is None:
        raise ValueError(f"KVAdmission: prefix_caching=True but trace {cfg.trace!r} has no block ids")
    eng = cfg.engine_spec().build(cache_on=cache_on, chain_block_tokens=chain_tokens)
    # Requests longer than the model's context or the KV pool are rejected at arrival by the
    # engine (envs.core.replica.rejected_at_arrival) and counted as `rejected`; the others are
    # served as if they were absent: rates, max_tokens and Past-Future's prior over accepted requests only
    # (the prior also leaves out those the trace marks failed: hist_prior).
    max_out, (ok_t, ok_h) = longest_accepted_output(eng, (trace, history))
    eng = eng._replace(max_output=max_out)
    wl, rate = build_workload(trace, cfg.window_requests, cfg.predictor_accuracy, cfg.trace_seed, ok_t)
    cap_wl, _ = build_workload(history, cfg.window_requests, cfg.predictor_accuracy, cfg.trace_seed)
    capacity = measure_capacity_rps(eng, cap_wl, cfg.capacity_requests,
                                    source=f"KVAdmission: training part of trace {trace.meta.name!r}")
    return Scenario(eng, wl, rate, capacity, hist_prior(eng, history, ok_h), trace.meta.name)


def _build_mixture(cfg: KVAdmissionConfig) -> Scenario:
    """The scenario of a workload mixture: every part's windows, natural rates, capacity and prior."""
    m = build_mixture(cfg, "KVAdmission", lambda eng, history, trace: hist_prior(eng, history), cache_needs_chains=True,
                      capacity_requests=cfg.capacity_requests)
    return Scenario(m.engine, m.workload, m.natural_rate, float(np.mean(m.part_capacity_rps)), m.per_part[0],
                    m.name, m.parts, m.groups, m.part_capacity_rps, np.array(m.per_part))


def hist_prior(eng: Any, history: traces.Trace, accepted: np.ndarray | None = None) -> np.ndarray:
    """Past-Future's prior, float64 [N_HIST_BINS]: the output lengths (tokens) of the requests of the
    training part ``history`` that the engine ``eng`` serves, in the estimator's log2 bins
    (``envs.core.workload.output_histogram``), weighted as 100 requests (summing to 100). Past-Future
    (ASPLOS'25) starts its distribution of output lengths from the history of finished requests, and two
    kinds of request never finish: one the engine rejects at arrival (``envs.core.replica.rejected_at_arrival``)
    and one the trace marks failed (``Trace.failed``: BurstGPT's and Mooncake's output 0; the simulator ends
    it at arrival, ``envs.core.replica.enqueue``), whatever output it records. All of them when none is
    served (``envs.core.replica.accepted_values``). Every episode's estimator starts from this one
    (KVAdmission-v0 and MultiCluster-v0's admission seats). ``accepted``: bool [len(history)], the engine's
    mask when the caller has it (``envs.core.replica.accepted_at_arrival``), else computed; the trace's
    failed flags are applied on top of it. ``ValueError`` for a mask of another length."""
    out = np.asarray(history.output_tokens)
    if accepted is None:
        accepted = accepted_at_arrival(eng, history.prompt_tokens, out)
    elif np.shape(accepted) != out.shape:
        raise ValueError(f"hist_prior: accepted must be a bool array of the history's {len(out)} requests, "
                         f"got shape {np.shape(accepted)}")
    served = np.asarray(accepted, np.bool_)
    if history.failed is not None:
        served = served & ~history.failed
    hist = output_histogram(accepted_values(out, served))
    return hist * (100.0 / hist.sum())


def observation_size(candidates: int) -> int:
    """Features in one env's observation: ``GLOBAL_FEATURES`` then ``CANDIDATE_FEATURES`` per candidate."""
    return len(K.GLOBAL_FEATURES) + candidates * len(K.CANDIDATE_FEATURES)


def memory_bytes(num_envs: int, candidates: int, window_requests: int, queue_slots: int) -> int:
    """A lower bound on the bytes a batch of ``num_envs`` takes: its cluster state (``state.allocate_bytes``: one
    replica of min(queue_slots, window_requests) slots, requests [E, window_requests]) and the observation
    ([E, n_obs] float32, and the space's bounds: 10 bytes a feature)."""
    n_obs = observation_size(candidates)
    return (S.allocate_bytes(num_envs, 1, min(queue_slots, window_requests), window_requests)
            + (4 * num_envs + 10) * n_obs)


class KVAdmissionVecEnv(NativeVecEnv):
    """E copies of KVAdmission stepped by one kernel call (SB3 VecEnv, no per-env objects).

    Episode selection (``NativeVecEnv.draw_episode``): ``window`` indexes the trace's windows,
    the knob is ``load``."""

    env_name = "KVAdmission"
    episode_knob = "load"
    episodes_independent_of_sweep = True  # the scenario is built for DEFAULT_LOADS, a load rescales a window
    # Evaluation contract (see envs/__init__.py): the printed table's columns and the swept knob.
    table_metrics = (
        "slo_attainment", "goodput_rps", "ttft_p50_s", "ttft_p99_s", "tpot_p99_s", "tbt_p99_s", "e2e_p99_s",
        "throughput_tok_s", "preemptions", "return_mean",
    )

    def sweep(self) -> tuple[str, tuple[float, ...]]:
        return "load", self.config.loads()

    def episode_of(self, e: int) -> dict[str, Any]:
        """Reset options that replay env ``e``'s current episode, ``{"window": w, "load": v}``
        (``w`` indexes every window of the scenario, across the parts of a workload mixture);
        privileged: teachers replay it (agents.kv_admission_teacher). ``IndexError`` for an env
        out of range; before the first ``reset()`` the values are those of no episode."""
        if not 0 <= e < self.num_envs:
            raise IndexError(f"KVAdmission: env {e} out of range [0, {self.num_envs})")
        return {"window": int(self._state.window[e]), "load": float(self._episode_load[e])}

    def __init__(self, num_envs: int = 1, config: KVAdmissionConfig | None = None, seed: int | None = None,
                 **kwargs: Any):
        cfg = make_config(KVAdmissionConfig, config, kwargs, "KVAdmission")
        cfg = replace(cfg, load=cfg.loads(), trace_params=tuple(dict(cfg.trace_params).items()),
                      workloads=normalize_workloads(cfg.workloads, "KVAdmission"))
        check_mixture(cfg, "KVAdmission")
        positive_real(cfg.rate_scale, "KVAdmission: rate_scale", none_ok=True)
        # drain_s < 0 truncated episodes before their last arrival; a recompute_penalty < 0 paid for preemptions
        for name in ("drain_s", "recompute_penalty"):
            v = getattr(cfg, name)
            if not is_real(v) or not v >= 0:
                raise ValueError(f"KVAdmission: {name} must be a number >= 0, got {v!r}")
        # was the state allocator's 'n_envs, n_replicas, n_slots, n_requests must be >= 1', naming no field
        if not is_integer(cfg.queue_slots) or cfg.queue_slots < 1:
            raise ValueError(f"KVAdmission: queue_slots must be an integer >= 1, got {cfg.queue_slots!r}")
        if not is_integer(cfg.capacity_requests) or not 1 <= cfg.capacity_requests <= MAX_STREAM:
            raise ValueError(f"KVAdmission: capacity_requests must be an integer in [1, {MAX_STREAM}] (the capacity "
                             f"measurement's stream; envs.core.capacity.MAX_STREAM), got {cfg.capacity_requests!r}")
        if cfg.candidates < 1:
            raise ValueError(f"KVAdmission: candidates must be >= 1, got {cfg.candidates}")
        check_sizes("KVAdmission", {"num_envs": num_envs, "candidates": cfg.candidates,
                                    "window_requests": cfg.window_requests},
                    lambda **sizes: memory_bytes(queue_slots=cfg.queue_slots, **sizes), "the batch's arrays")
        self.config = cfg
        self.scenario = build_scenario(cfg)
        # every window at every level within the float64 clock, before any reset draws one
        check_every_level(self.scenario.workload.arrival_s[:, -1],
                          lambda x: self._time_scales(np.arange(len(self.scenario.natural_rate)), x),
                          None if cfg.rate_scale is not None else cfg.loads(), "KVAdmission",
                          gap_s=min_arrival_gaps(self.scenario.workload.arrival_s))
        self.K = int(cfg.candidates)
        n_obs = observation_size(self.K)
        obs_space = spaces.Box(-np.inf, np.inf, (n_obs,), np.float32)
        super().__init__(num_envs, obs_space, spaces.Discrete(N_ACTIONS))
        E = num_envs
        eng = self.scenario.engine
        # The prefix cache indexes what the KV pool can hold, in the trace's chain blocks.
        cache_entries = eng.capacity_blocks * eng.block_size // eng.chain_block_tokens if eng.cache_on else 0
        # Arrays sized by what the scenario can use: no more request slots than requests in a
        # window (a window of N requests never has more than N in the replica, so a queue
        # limit above N never drops one), and per slot only as many top gaps as the longest
        # output's p99 needs (S.top_gaps_needed); the hot per-slot fields packed side by side
        # (S.PACKED_SLOT_FIELDS). Results are the same as at full size, unpacked.
        slots = min(cfg.queue_slots, self.scenario.workload.arrival_s.shape[1])
        self._state = S.allocate(E, 1, slots, cfg.window_requests, cache_entries,
                                 max_window_gaps(self.scenario.workload), S.top_gaps_needed(eng.max_output),
                                 packed=True)
        # Steady decoders kept lazily between steps (envs.core.lazy; the mixed scheduler only).
        if eng.prefill_first:
            raise ValueError("KVAdmission: the engine must use the mixed scheduler (prefill_first=False)")
        self._lazy = lazy.allocate_lazy(E, slots, eng.block_size, eng.max_output)
        self._obs = np.zeros((E, n_obs), np.float32)
        self._mask = np.ones((E, N_ACTIONS), np.bool_)
        self._scratch = K.obs_scratch(E, eng.max_seqs, slots, self.K)
        self._admit = np.array(ADMIT_LEVELS, np.int64)
        self._budget = np.array(BUDGET_LEVELS, np.int64)
        self._episode_load = np.zeros(E)
        if seed is not None:
            self.seed(seed)

    @property
    def state(self) -> S.ClusterState:
        """The batch's ``ClusterState`` with every lazily kept decoder written back
        (``envs.core.lazy.materialize``), so that its per-slot fields are those of
        ``envs.core.replica.run_iteration``; the kernels keep going from it with the same results."""
        lazy.materialize_all(self._state, self.scenario.engine, self._lazy)
        return self._state

    @state.setter
    def state(self, st: S.ClusterState) -> None:
        """Replace the batch's state (other sizes, other layouts: tests compare them); the lazy set
        starts empty, sized to it. Call ``reset`` after."""
        eng = self.scenario.engine
        self._state = st
        self._lazy = lazy.allocate_lazy(self.num_envs, st.status.shape[2], eng.block_size, eng.max_output)

    # --- NativeVecEnv hooks
    def _reset_envs(self, envs: np.ndarray) -> None:
        sc = self.scenario
        loads = self.config.loads()
        W = sc.workload.arrival_s.shape[0]
        windows = np.empty(len(envs), np.int32)
        scales = np.empty(len(envs), np.float64)
        if sc.groups is not None:
            return self._reset_mixture(envs, loads, W)
        for j, e in enumerate(envs):
            windows[j], load = self.draw_episode(int(e), W, loads)
            self._episode_load[e] = load
            scales[j] = self._time_scales(windows[j:j + 1], None if self.config.rate_scale is not None else load)[0]
        check_clock_span(sc.workload.arrival_s[windows, -1], windows, scales, self._knob_levels(envs), "KVAdmission")
        units = np.full(len(envs), count_unit(sc.capacity_rps, sc.engine.slo_ttft))
        K.reset_all(self._state, sc.workload, sc.engine, envs.astype(np.int64), windows, scales,
                    sc.hist_prior, self.K, self._obs, self._mask, self._admit, len(BUDGET_LEVELS),
                    self._scratch, self._lazy, units)

    def _time_scales(self, windows: np.ndarray, load: float | None) -> np.ndarray:
        """Simulated seconds per trace second (float64 [len(windows)]) of ``windows`` at ``load`` (a fraction
        of the capacity measured on the window's part), or at ``config.rate_scale`` (``load`` None)."""
        sc = self.scenario
        if load is None:
            return np.full(len(windows), 1.0 / self.config.rate_scale)
        if sc.groups is None:
            return sc.natural_rate[windows] / (load * sc.capacity_rps)
        caps = sc.part_capacity_rps[[sc.part_of(int(w)) for w in windows]]
        return sc.natural_rate[windows] / (load * caps)

    def _knob_levels(self, envs: np.ndarray) -> np.ndarray | None:
        """The load of each of ``envs``' drawn episodes (None where rate_scale sets the pace)."""
        return None if self.config.rate_scale is not None else self._episode_load[envs]

    def _reset_mixture(self, envs: np.ndarray, loads: tuple[float, ...], W: int) -> None:
        """Reset of a workload mixture: part, window and load per env; each part's envs reset
        with the part's Past-Future prior, and loads and the observation's count unit relative to
        the part's capacity."""
        sc = self.scenario
        windows = np.empty(len(envs), np.int32)
        scales = np.empty(len(envs), np.float64)
        part = np.empty(len(envs), np.int64)
        for j, e in enumerate(envs):
            windows[j], load = self.draw_episode(int(e), W, loads, sc.groups)
            self._episode_load[e] = load
            part[j] = sc.part_of(int(windows[j]))
            scales[j] = self._time_scales(windows[j:j + 1], None if self.config.rate_scale is not None else load)[0]
        check_clock_span(sc.workload.arrival_s[windows, -1], windows, scales, self._knob_levels(envs), "KVAdmission")
        for p in np.unique(part):
            sel = part == p
            units = np.full(int(sel.sum()), count_unit(sc.part_capacity_rps[p], sc.engine.slo_ttft))
            K.reset_all(self._state, sc.workload, sc.engine, envs[sel].astype(np.int64), windows[sel], scales[sel],
                        sc.part_hist_prior[p], self.K, self._obs, self._mask, self._admit, len(BUDGET_LEVELS),
                        self._scratch, self._lazy, units)

    def advance(self) -> None:
        """One kernel call: every env applies its action in ``_actions`` and runs an iteration."""
        sc = self.scenario
        K.step_all(self._state, sc.workload, sc.engine, self._actions, self._admit, self._budget,
                   self.config.drain_s, self.config.recompute_penalty, self.K, self._obs, self._mask,
                   self._rew, self._term, self._trunc, self._scratch, self._lazy)

    def run_fixed(self, action: int, max_steps: int) -> tuple[int, tuple]:
        """``step(np.full(num_envs, action))`` up to ``max_steps`` times in one kernel call (a
        fixed-action policy such as vLLM's needs no Python between steps), stopping after the
        first step in which an episode ends. Returns the number of steps and ``step``'s
        ``(obs, rewards, dones, infos)`` of the last one; every episode record is what stepping one
        at a time gives. ``ValueError`` for ``max_steps`` < 1 or an action outside the space."""
        if max_steps < 1:
            raise ValueError(f"KVAdmission: run_fixed max_steps must be >= 1, got {max_steps}")
        self.step_async(np.full(self.num_envs, action))
        sc = self.scenario
        n = K.step_repeat(self._state, sc.workload, sc.engine, self._actions, self._admit, self._budget,
                          self.config.drain_s, self.config.recompute_penalty, self.K, self._obs, self._mask,
                          self._rew, self._term, self._trunc, self._scratch, self._lazy, self._returns,
                          self._lengths, int(max_steps))
        return int(n), self._after_advance()

    def episode_extras(self, e: int) -> dict[str, Any]:
        return mixture_extras(self.request_records(e), self.scenario.parts, self.scenario.groups,
                              int(self._state.window[e]))

    def feature_names(self) -> list[str]:
        return item_features(K.GLOBAL_FEATURES, K.CANDIDATE_FEATURES, self.K, "cand")

    def action_meanings(self) -> list[str]:
        orders = ("fcfs", "sjf", "edf")
        out = []
        for a in range(N_ACTIONS):
            admit, budget, defer, order = decode_action(a)
            level = ADMIT_LEVELS[admit]
            out.append(f"admit={'all' if level == ALL else level} budget={BUDGET_LEVELS[budget]} "
                       f"shortage={'defer' if defer else 'preempt'} order={orders[order]}")
        return out

    def render_text(self, e: int = 0) -> str:
        return render_replicas(self.state, e, self.scenario.engine.capacity_blocks, float(self._rew[e]),
                               f"KVAdmission env {e} (load {self._episode_load[e]:g})")

    # --- domain metrics
    def request_records(self, e: int) -> dict[str, np.ndarray]:
        """Per-request outcomes of env ``e``'s episode (copies, in window order)."""
        st = self._state  # per-request records and counters: never lazy
        return {k: getattr(st, k)[e].copy() for k in ("ttft", "tpot", "tbt_p99", "e2e", "fate", "slo_met")}

    def episode_metrics(self, e: int) -> dict[str, float]:
        st, sc = self._state, self.scenario  # per-request records, counters, clocks: never lazy
        from envs.core.replica import (
            arrival_time,  # numba function, callable from Python
        )

        t0 = float(arrival_time(st, sc.workload, e, 0))
        c = st.counters[e]
        return episode_metrics(
            ttft=st.ttft[e], e2e=st.e2e[e], tpot=st.tpot[e], fate=st.fate[e],
            tbt_p99_episode=S.episode_tbt_p99(st.gap_heap[e], int(st.counters[e, S.C_GAPS])),
            slo_met=st.slo_met[e], output_tokens=sc.workload.output[st.window[e]],
            duration_s=float(st.clock[e]) - t0, counters=c,
            kv_block_s=float(st.accum[e, S.A_KV_BLOCK_S]), capacity_blocks=sc.engine.capacity_blocks,
            extra={"load": float(self._episode_load[e])},
        )


class KVAdmissionEnv(VecEnvView):
    """The single-env Gymnasium view (E = 1) of :class:`KVAdmissionVecEnv`."""

    vec_class = KVAdmissionVecEnv


class KVAdmissionVectorEnv(NativeVectorEnv):
    """The Gymnasium ``VectorEnv`` of :class:`KVAdmissionVecEnv` (``gymnasium.make_vec``'s vector entry point)."""

    vec_class = KVAdmissionVecEnv
