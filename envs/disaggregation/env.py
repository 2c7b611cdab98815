"""servegym/Disaggregation-v0: the role of each instance (prefill / decode / colocated) over time.

Description
    N engine instances (default 8 x Llama-3.1-8B, one H100 each, one node) serve a workload whose
    mix shifts between output-heavy and prompt-heavy phases. Every ``interval_s`` (10 s) of
    simulated time the agent sets each instance's role and the dispatch rule. Prefill instances
    hand requests over to decode instances, moving the KV cache over NVLink or the network
    (``kernels`` module docstring); colocated instances serve both phases as vLLM does. A role
    change drains the instance (it takes no new work and finishes what it has) and then costs
    a warm-up (``switch_s``, default the engine restart of ``hwmodels.cold_start_time``). The
    first decision of an episode places the roles at no cost (the deployment starts that way).
Action Space
    ``MultiDiscrete([3] * R + [2])``: a role per instance (0 prefill, 1 decode, 2 colocated),
    then the dispatch rule (0 balance, 1 overflow; ``kernels.pick_prefill`` / ``pick_decode``).
    A role vector with no instance that prefills or none that decodes is rejected as a whole
    (roles unchanged; counted in the metric ``rejected_role_actions``). ``action_masks()``
    allows only the target role of an instance that is switching (draining or warming up: its
    observation shows the old role, not the target) and everything else; the environment still
    applies a masked action (a new target; back to the old role cancels a drain), so policies
    that ignore masks behave as before.
Observation Space
    ``Box`` of ``G + R * F`` floats: ``kernels.GLOBAL_FEATURES`` then ``INSTANCE_FEATURES`` per
    instance.
Rewards
    Per interval: (requests finished within both SLOs - requests finished outside one) /
    (interval_s x GPUs); on the last step requests that never finished count as outside. The
    SLO check is MLPerf Inference's and DistServe's: TTFT <= SLO_ttft and the request's mean
    TPOT = (E2E - TTFT) / (output - 1) <= SLO_tpot. An episode's return is therefore
    (goodput - badput) per GPU in requests/s x intervals.
Starting State
    Every instance colocated and empty; the first action sets the roles.
Episode End
    After ``decisions`` = phases x phase_s / interval_s steps; the last step lets requests in
    the system finish for up to ``drain_s``: terminated when all did, truncated otherwise.
Arguments
    ``DisaggregationConfig`` fields (``config.py``).
Version History
    v0: first version (``ttft_headroom`` / ``tpot_headroom`` added to the observation before the
    first zoo agent; results unchanged).
"""

from __future__ import annotations

from dataclasses import replace
from types import MappingProxyType
from typing import Any, NamedTuple

import numpy as np
from gymnasium import spaces

from envs.core import lazy
from envs.core import state as S
from envs.core.workload import max_window_gaps
from envs.config_check import check_sizes, make_config
from envs.disaggregation import kernels as K
from envs.disaggregation.config import MIN_INSTANCES, DisaggregationConfig
from envs.disaggregation.scenario import Scenario, build_scenario
from envs.metrics import episode_metrics
from envs.native_vec import NativeVecEnv, VecEnvView, item_features
from envs.vector import NativeVectorEnv

ENV_ID = "servegym/Disaggregation-v0"


class Params(NamedTuple):
    """Scalars and the link matrix, in the form numba kernels take."""

    budget: int
    dispatch_queue: int
    overflow_tokens: float
    kv_bytes_gpu: float
    link_bw: np.ndarray  # float64 [R, R]
    link_latency_s: float
    layerwise: bool
    layers: int
    tp: int
    first_token: int
    switch_s: float
    slo_ttft: float
    slo_tpot: float
    interval_s: float
    decisions: int
    drain_s: float
    n_gpus: int
    ref_rps: float  # instances x one colocated instance's capacity on the first trace
    ttft_headroom: float  # log2(SLO TTFT / Scenario.ref_prefill_s) / HEADROOM_SCALE (observation)
    tpot_headroom: float  # log2(SLO TPOT / Scenario.ref_decode_s) / HEADROOM_SCALE (observation)


class DState(NamedTuple):
    """Disaggregation state beside the core's ``ClusterState`` (E envs, R instances)."""

    role: np.ndarray  # int8 [E, R], role served now
    target: np.ndarray  # int8 [E, R], role asked for
    phase: np.ndarray  # int8 [E, R], ACTIVE / DRAINING / WARMING
    warm_until: np.ndarray  # float64 [E, R]
    stalled: np.ndarray  # bool [E, R], has work that cannot be scheduled until KV moves
    pending: np.ndarray  # float64 [E, R], prefill tokens not yet computed
    n_held: np.ndarray  # int32 [E, R], requests whose KV is held or being sent from here
    n_incoming: np.ndarray  # int32 [E, R], transfers into here in flight
    busy: np.ndarray  # float64 [E, R], seconds in iterations
    ho_r: np.ndarray  # int32 [E, Q], handover FIFO: instance, slot, prefill end, last iteration
    ho_s: np.ndarray
    ho_t: np.ndarray  # float64 [E, Q]
    ho_dt: np.ndarray
    ho_head: np.ndarray  # int32 [E]
    ho_len: np.ndarray  # int32 [E]
    xf_sr: np.ndarray  # int32 [E, X], transfers in flight: source instance and slot, destination
    xf_ss: np.ndarray
    xf_dr: np.ndarray
    xf_ds: np.ndarray
    xf_land: np.ndarray  # float64 [E, X]
    n_xf: np.ndarray  # int32 [E]
    rule: np.ndarray  # int32 [E]
    step_i: np.ndarray  # int32 [E], decisions taken
    blocked: np.ndarray  # bool [E], the next arrival found no instance (retried after any event)
    scored_lo: np.ndarray  # int32 [E], requests below are scored
    scored: np.ndarray  # bool [E, N]
    tpot: np.ndarray  # float64 [E, N]
    acc: np.ndarray  # float64 [E, N_ACC]


def allocate_dstate(E: int, R: int, slots: int, N: int) -> DState:
    Q = R * slots
    i32 = lambda *s: np.zeros(s, np.int32)  # noqa: E731
    f64 = lambda *s: np.zeros(s, np.float64)  # noqa: E731
    return DState(
        role=np.full((E, R), K.ROLE_COLOCATED, np.int8), target=np.full((E, R), K.ROLE_COLOCATED, np.int8),
        phase=np.zeros((E, R), np.int8), warm_until=f64(E, R), stalled=np.zeros((E, R), np.bool_),
        pending=f64(E, R), n_held=i32(E, R), n_incoming=i32(E, R), busy=f64(E, R),
        ho_r=i32(E, Q), ho_s=i32(E, Q), ho_t=f64(E, Q), ho_dt=f64(E, Q), ho_head=i32(E), ho_len=i32(E),
        xf_sr=i32(E, Q), xf_ss=i32(E, Q), xf_dr=i32(E, Q), xf_ds=i32(E, Q), xf_land=f64(E, Q), n_xf=i32(E),
        rule=i32(E), step_i=i32(E), blocked=np.zeros(E, np.bool_), scored_lo=i32(E),
        scored=np.zeros((E, N), np.bool_), tpot=np.full((E, N), np.nan), acc=f64(E, K.N_ACC),
    )


def make_params(cfg: DisaggregationConfig, sc: Scenario) -> Params:
    slo_ttft = float(sc.slo_ttft_s if cfg.slo_ttft_s is None else cfg.slo_ttft_s)
    slo_tpot = float(sc.slo_tpot_s if cfg.slo_tpot_s is None else cfg.slo_tpot_s)
    return Params(
        budget=int(cfg.budget), dispatch_queue=int(cfg.dispatch_queue), overflow_tokens=float(cfg.overflow_tokens),
        kv_bytes_gpu=sc.kv_bytes_per_token_gpu,
        link_bw=sc.link_bw, link_latency_s=sc.link_latency_s, layerwise=bool(cfg.layerwise_transfer),
        layers=sc.layers, tp=int(cfg.tp),
        first_token=K.FIRST_TOKEN_DECODE if cfg.first_token == "decode" else K.FIRST_TOKEN_PREFILL,
        switch_s=float(sc.switch_s if cfg.switch_s is None else cfg.switch_s),
        slo_ttft=slo_ttft, slo_tpot=slo_tpot,
        interval_s=float(cfg.interval_s), decisions=cfg.decisions, drain_s=float(cfg.drain_s),
        n_gpus=sc.n_gpus, ref_rps=float(cfg.instances * sc.capacity_rps[0]),
        ttft_headroom=float(np.log2(slo_ttft / sc.ref_prefill_s)) / K.HEADROOM_SCALE,
        tpot_headroom=float(np.log2(slo_tpot / sc.ref_decode_s)) / K.HEADROOM_SCALE,
    )


def observation_size(instances: int) -> int:
    """Features in one env's observation: ``G`` global ones then ``F`` per instance."""
    return K.G + instances * K.F


def memory_bytes(num_envs: int, instances: int, queue_slots: int) -> int:
    """A lower bound on the bytes a batch of ``num_envs`` takes: its cluster state (``state.allocate_bytes``: slots
    [E, instances, queue_slots]; the requests, known once the windows are built, not counted) and the observation
    ([E, n_obs] float32, and the space's bounds: 10 bytes a feature)."""
    n_obs = observation_size(instances)
    return S.allocate_bytes(num_envs, instances, queue_slots, 1, top_gaps=1) + (4 * num_envs + 10) * n_obs


class DisaggregationVecEnv(NativeVecEnv):
    """E copies of Disaggregation-v0 stepped by one kernel call (SB3 VecEnv, no per-env objects).

    Episode selection (``NativeVecEnv.draw_episode``): ``window`` indexes the
    ``episodes_per_load`` episode windows built at each load level, the knob is ``load``."""

    env_name = "Disaggregation"
    episode_knob = "load"

    table_metrics = (
        "goodput_per_gpu", "slo_attainment", "ttft_p99_s", "tpot_p99_s", "kv_bytes_transferred",
        "role_changes", "cost_usd", "return_mean",
    )

    def __init__(self, num_envs: int = 1, config: DisaggregationConfig | None = None, seed: int | None = None,
                 **kwargs: Any):
        cfg = make_config(DisaggregationConfig, config, kwargs, "Disaggregation")
        cfg.validate()
        check_sizes("Disaggregation", {"num_envs": num_envs, "instances": cfg.instances,
                                       "queue_slots": cfg.queue_slots}, memory_bytes, "the batch's arrays",
                    minimums={"instances": MIN_INSTANCES})
        cfg = replace(cfg, load=cfg.loads())
        self.config = cfg
        self.scenario = sc = build_scenario(cfg)
        self.params = make_params(cfg, sc)
        R = cfg.instances
        self.R = R
        n_obs = observation_size(R)
        super().__init__(num_envs, spaces.Box(-np.inf, np.inf, (n_obs,), np.float32),
                         spaces.MultiDiscrete([3] * R + [len(K.RULES)]))
        E = num_envs
        N = sc.workload.arrival_s.shape[1]
        # top_gaps=1: the SLO is TTFT + mean TPOT (DistServe) and the per-request records carry no p99
        # TBT, so a slot keeps only its largest gap (state.tbt_p99 then holds that upper bound, unread
        # here); the per-token insertion into 16 sorted gaps was a third of the kernel's time (issue 17).
        # The episode's TBT p99 comes from gap_heap, exact.
        self._state = S.allocate(E, R, cfg.queue_slots, N, 0, max_gaps=max_window_gaps(sc.workload), top_gaps=1)
        # Steady decoders of every instance kept lazily (envs.core.lazy, one row per instance, e * R + r):
        # an engine iteration then costs O(1) per steady decoder instead of its per-request updates.
        self._lazy = lazy.allocate_lazy(E * R, cfg.queue_slots, sc.engine.block_size, sc.engine.max_output)
        self.dstate = allocate_dstate(E, R, cfg.queue_slots, N)
        self._obs = np.zeros((E, n_obs), np.float32)
        self._mask = np.ones((E, self.n_actions), np.bool_)
        self._episode = np.zeros((E, 2))  # (window, load) of each env's episode
        self._roles_log: list[list[np.ndarray]] = [[] for _ in range(E)]
        if seed is not None:
            self.seed(seed)

    @property
    def state(self) -> S.ClusterState:
        """The batch's ``ClusterState`` with every lazily kept decoder written back
        (``kernels.materialize_all``), so that its per-slot fields are those of
        ``envs.core.replica.run_iteration``; the kernels go on from it with the same results."""
        K.materialize_all(self._state, self.scenario.engine, self._lazy)
        return self._state

    def sweep(self) -> tuple[str, tuple[float, ...]]:
        return "load", self.config.loads()

    def episode_of(self, e: int) -> dict[str, Any]:
        """Reset options that replay env ``e``'s current episode (privileged: oracles)."""
        return {"window": int(self._episode[e, 0]), "load": float(self._episode[e, 1])}

    # --- NativeVecEnv hooks
    def _reset_envs(self, envs: np.ndarray) -> None:
        loads = self.config.loads()
        rows = np.empty(len(envs), np.int32)
        for j, e in enumerate(envs):
            w, load = self.draw_episode(int(e), self.config.episodes_per_load, loads)
            rows[j] = w * len(loads) + loads.index(load)  # scenario windows cycle through the loads
            self._episode[e] = (w, load)
            self._roles_log[e] = []
        K.reset_all(self._state, self.scenario.workload, self.scenario.engine, self.dstate, self.params, self._lazy,
                    envs.astype(np.int64), rows, np.ones(len(envs)), self._obs)
        self._update_masks()

    def advance(self) -> None:
        """One kernel call: every env applies ``_actions`` (roles [R], rule) and runs one interval."""
        sc = self.scenario
        K.step_all(self._state, sc.workload, sc.engine, self.dstate, self.params, self._lazy, self._actions, self._obs,
                   self._rew, self._term, self._trunc)
        for e in range(self.num_envs):
            self._roles_log[e].append(self.dstate.role[e].copy())
        self._update_masks()

    def _update_masks(self) -> None:
        """Role columns of a switching instance: only its target is legal (see Action Space)."""
        ds, R = self.dstate, self.R
        switching = (ds.phase != K.ACTIVE) | (ds.target != ds.role)  # [E, R]
        target = np.arange(3)[None, None, :] == ds.target[:, :, None]  # [E, R, 3]
        self._mask[:, : 3 * R] = (~switching[:, :, None] | target).reshape(-1, 3 * R)

    def episode_extras(self, e: int) -> dict[str, Any]:
        return {"requests": self.request_records(e), "series": self.series(e)}

    def feature_names(self) -> list[str]:
        return item_features(K.GLOBAL_FEATURES, K.INSTANCE_FEATURES, self.R, "instance")

    def action_meanings(self) -> list[str]:
        return ([f"instance{r} {role}" for r in range(self.R) for role in K.ROLES]
                + [f"dispatch {rule}" for rule in K.RULES])

    def render_text(self, e: int = 0) -> str:
        st, ds = self._state, self.dstate  # counts and free blocks: exact without writing lazy decoders back
        phase = ("", " draining", " warming")
        lines = [f"Disaggregation env {e} (load {self._episode[e, 1]:g}): t = {float(st.clock[e]):.1f} s, "
                 f"decision {int(ds.step_i[e])}/{self.config.decisions}, rule {K.RULES[int(ds.rule[e])]}, "
                 f"handover backlog {int(ds.ho_len[e])}, transfers in flight {int(ds.n_xf[e])}, "
                 f"last reward {float(self._rew[e]):.4g}"]
        cap = self.scenario.engine.capacity_blocks
        for r in range(self.R):
            to = "" if ds.target[e, r] == ds.role[e, r] else f" -> {K.ROLES[int(ds.target[e, r])]}"
            lines.append(f"  instance {r}: {K.ROLES[int(ds.role[e, r])]}{to}{phase[int(ds.phase[e, r])]}, "
                         f"queued {int(st.n_queued[e, r])}, running {int(st.n_running[e, r])}, "
                         f"KV held {int(ds.n_held[e, r])}, incoming {int(ds.n_incoming[e, r])}, "
                         f"KV blocks {cap - int(st.free_blocks[e, r])}/{cap}")
        return "\n".join(lines)

    # --- domain metrics
    def _n(self, e: int) -> int:
        return int(self.scenario.workload.n_requests[self._state.window[e]])

    def request_records(self, e: int) -> dict[str, np.ndarray]:
        n = self._n(e)
        st = self._state  # per-request records: never lazy
        out = {k: getattr(st, k)[e, :n].copy() for k in ("ttft", "e2e", "fate", "slo_met")}
        out["tpot"] = self.dstate.tpot[e, :n].copy()
        return out

    def series(self, e: int) -> dict[str, np.ndarray]:
        roles = np.array(self._roles_log[e]) if self._roles_log[e] else np.zeros((0, self.R), np.int8)
        return {name: (roles == k).sum(axis=1).astype(np.float64) for k, name in
                ((K.ROLE_PREFILL, "prefill_instances"), (K.ROLE_DECODE, "decode_instances"),
                 (K.ROLE_COLOCATED, "colocated_instances"))}

    def episode_metrics(self, e: int) -> dict[str, float]:
        st, ds, sc, cfg = self._state, self.dstate, self.scenario, self.config  # per-request records, counters: never lazy
        n = self._n(e)
        w = int(st.window[e])
        span = cfg.phases * cfg.phase_s
        done = st.fate[e, :n] == S.FINISHED
        gpu_hours = sc.n_gpus * float(st.clock[e]) / 3600.0
        extra = {
            "goodput_per_gpu": float((st.slo_met[e, :n] & done).sum()) / span / sc.n_gpus,
            "kv_bytes_transferred": float(ds.acc[e, K.X_KV_BYTES]),
            "kv_transfers": float(ds.acc[e, K.X_TRANSFERS]),
            "kv_transfer_exposed_s_mean": float(ds.acc[e, K.X_TRANSFER_S] / max(ds.acc[e, K.X_TRANSFERS], 1.0)),
            "role_changes": float(ds.acc[e, K.X_ROLE_CHANGES]),
            "rejected_role_actions": float(ds.acc[e, K.X_REJECTED]),
            "warmup_gpu_s": float(ds.acc[e, K.X_WARM_GPU_S]),
            "gpu_hours": gpu_hours,
            "cost_usd": gpu_hours * sc.price_usd_per_gpu_hour,
            "gpus": float(sc.n_gpus),
            "load": float(sc.window_load[w]),
            "offered_rps": n / span,
        }
        return episode_metrics(
            ttft=st.ttft[e, :n], e2e=st.e2e[e, :n], tpot=ds.tpot[e, :n], fate=st.fate[e, :n],
            tbt_p99_episode=S.episode_tbt_p99(st.gap_heap[e], int(st.counters[e, S.C_GAPS])),
            slo_met=st.slo_met[e, :n], output_tokens=sc.workload.output[w, :n], duration_s=span,
            counters=st.counters[e], kv_block_s=float(st.accum[e, S.A_KV_BLOCK_S]),
            capacity_blocks=sc.engine.capacity_blocks * self.R, extra=extra,
        )


class DisaggregationEnv(VecEnvView):
    """The single-env Gymnasium view (E = 1) of :class:`DisaggregationVecEnv`."""

    vec_class = DisaggregationVecEnv


class DisaggregationVectorEnv(NativeVectorEnv):
    """The Gymnasium ``VectorEnv`` of :class:`DisaggregationVecEnv` (``gymnasium.make_vec``'s vector entry point).

    Episodes hold different numbers of requests, so ``infos["final_info"]["requests"][e]`` is
    each episode's read-only mapping of per-request arrays (an object array over envs), not
    arrays stacked over envs."""

    vec_class = DisaggregationVecEnv

    def _add_info(self, vector_infos: dict, env_info: dict, env_num: int) -> dict:
        final = env_info.get("final_info")
        if isinstance(final, dict) and "requests" in final:
            env_info = {**env_info, "final_info": {**final, "requests": MappingProxyType(final["requests"])}}
        return super()._add_info(vector_infos, env_info, env_num)
