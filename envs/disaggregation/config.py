"""Configuration of servegym/Disaggregation-v0: one frozen dataclass; ``--env-kwargs`` set its fields."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

import traces
from envs.config_check import check_count
from envs.core.capacity import VLLM_BUDGET
from envs.core.engine import EngineSpec
from envs.core.workload import check_episode_span
from traces.checks import is_integer, is_real, positive_levels

DEFAULT_TRACE = "azure_conv"  # output-heavy phases: Azure conversation (median prompt 1,020, output 129)
DEFAULT_SHIFT_TRACE = "azure_code"  # prompt-heavy phases: Azure code (median prompt 1,500, output 13)
DEFAULT_LOADS = (0.5, 0.8)

FIRST_TOKEN = ("decode", "prefill")
MIN_INSTANCES = 2  # one prefill instance and one decode instance
# The largest overflow_tokens: the kernels compare it, as float64, with an instance's prefill backlog in tokens
# (float64), exact for integers up to 2**53; past that the threshold was rounded without a word, and past float64's
# range (10**400) building the env raised OverflowError "int too large to convert to float", naming nothing.
MAX_OVERFLOW_TOKENS = 2**53
# Smallest SLO accepted (1 us, far below any engine iteration): an infinite SLO made the
# observation's ttft_headroom / tpot_headroom infinite, and one near 1e-300 s overflowed
# ttft_recent / tpot_recent (TTFT / SLO) to infinity in the float32 observation.
MIN_SLO_S = 1e-6
# Most decisions (steps) an episode may hold: ceil(phases x phase_s / interval_s) is checked against it before
# anything is built (interval_s=1e-300 made a count beyond int64, a numba TypingError at the first step). The
# default episode holds 48; 100,000 steps at 10 s is 11.6 days of simulated time.
MAX_DECISIONS = 100_000
# Most requests the scenario's windows may hold together, expected from the knobs before any is drawn:
# episodes_per_load x sum over load levels of (load x instances x phase_s x the sum over phases of one
# instance's capacity on the phase's trace), ``scenario.expected_requests``. The default scenario expects
# 0.83 million; at the bound its workload arrays take about 0.9 GiB (28 bytes a request: arrival, prompt,
# output, predicted bucket, failed, chain id and length) and each env's records 34 bytes a request of its
# window (phase_s=1e7 was a 6.4 GiB MemoryError, load=1e9 a 150 TiB one, neither naming a knob).
MAX_SCENARIO_REQUESTS = 2**25


@dataclass(frozen=True)
class DisaggregationConfig:
    """Everything that defines a scenario.

    Workload: an episode is ``phases`` phases of ``phase_s`` seconds; even phases replay a segment
    of ``trace``, odd phases a segment of ``shift_trace`` (None: every phase from ``trace``), each
    at ``load`` x (instances x the request rate one colocated instance sustains on that trace's
    mix, ``envs.core.capacity``), so a prompt-heavy and an output-heavy phase load the cluster
    equally and only the mix shifts. ``split`` picks the training or held-out part of both traces.

    Cluster: ``instances`` engine instances of ``model`` at tensor parallelism ``tp`` on ``gpu``,
    ``gpus_per_node`` GPUs per node (instance i on node i * tp // gpus_per_node); KV moves over
    NVLink inside a node and over the NIC across nodes (hwmodels.comm conventions).

    Decisions every ``interval_s`` of simulated time: a role per instance and the dispatch rule.
    A role change drains the instance, then costs ``switch_s`` seconds of warm-up (None: the
    engine restart of hwmodels.cold_start_time: weight load + vLLM start-up).

    Bounds, refused with a ``ValueError`` naming the knobs before anything is allocated: an episode holds
    1 to ``MAX_DECISIONS`` decisions (:meth:`check_decisions`), runs within the float64 clock
    (``envs.core.workload.check_episode_span``), and the scenario's windows expect at most
    ``MAX_SCENARIO_REQUESTS`` requests together (``scenario.check_expected_requests``, once the
    capacities are measured), so its memory is about 28 bytes a request at most.
    """

    trace: str | traces.Trace = "default"
    shift_trace: str | traces.Trace | None = DEFAULT_SHIFT_TRACE
    split: str = "train"  # "train" | "test" (held-out) | "all"
    held_out_frac: float = 0.3
    trace_seed: int = 0
    phases: int = 4
    phase_s: float = 120.0
    load: float | tuple[float, ...] = DEFAULT_LOADS
    episodes_per_load: int = 8  # distinct episode windows built per load level
    window_order: str = "random"
    instances: int = 8
    model: str = "Llama-3.1-8B"
    gpu: str = "H100"
    tp: int = 1
    gpus_per_node: int = 8
    mem_frac: float = 0.9
    capacity_blocks: int | None = None  # KV blocks per instance; None: hwmodels.kv_capacity_blocks
    max_seqs: int = 1024
    budget: int = VLLM_BUDGET  # chunked-prefill token budget per iteration
    queue_slots: int = 512  # request slots per instance (queued + running + KV held or in flight)
    # Requests an instance may have queued (not started) before new arrivals wait in the
    # dispatcher's FIFO instead: DistServe's controller and llm-d's scheduler hold requests and
    # dispatch to the shortest queue; a long engine queue would only hide the backlog from them.
    dispatch_queue: int = 32
    slo_ttft_s: float | None = None  # None: the model's default (envs/data/slo.toml)
    slo_tpot_s: float | None = None  # None: the model's default TPOT (MLPerf tpot_latency)
    interval_s: float = 10.0
    switch_s: float | None = None
    first_token: str = "decode"  # "decode": the client gets the first token with the handover
    layerwise_transfer: bool = True  # KV streamed layer by layer during the prefill (Splitwise)
    overflow_tokens: int = 2 * VLLM_BUDGET  # Splitwise rule: prefill backlog that spills to the mixed pool
    drain_s: float = 120.0  # after the last phase, time for requests in the system to finish
    predictor_accuracy: float = 0.7
    # Not a field: the environment always scores MLPerf's / DistServe's per-request TTFT + mean
    # TPOT check (Params), so the engine's own check is fixed to the same one.
    slo_metric: ClassVar[str] = "tpot"

    def loads(self) -> tuple[float, ...]:
        return positive_levels(self.load, "Disaggregation: load")

    def validate(self) -> None:
        for name in ("instances", "tp", "gpus_per_node", "phases", "episodes_per_load", "max_seqs",
                     "budget", "queue_slots", "overflow_tokens", "dispatch_queue"):
            v = getattr(self, name)
            if not is_integer(v) or v < 1:
                raise ValueError(f"Disaggregation: {name} must be an integer >= 1, got {v!r}")
        check_count("Disaggregation", "phases", self.phases, "an episode's phases are indexed with int32")
        check_count("Disaggregation", "episodes_per_load", self.episodes_per_load,
                    "the episode windows are indexed with int32")
        if self.overflow_tokens > MAX_OVERFLOW_TOKENS:
            raise ValueError(f"Disaggregation: overflow_tokens must be at most {MAX_OVERFLOW_TOKENS:,} (2**53: the "
                             f"prefill backlog it is compared with is counted in float64, exact for integers up to "
                             f"2**53), got {self.overflow_tokens!r}")
        if self.instances < MIN_INSTANCES:
            raise ValueError(f"Disaggregation: instances must be >= {MIN_INSTANCES} (one prefill, one decode), "
                             f"got {self.instances}")
        if self.gpus_per_node % self.tp:
            raise ValueError(f"Disaggregation: tp={self.tp} must divide gpus_per_node={self.gpus_per_node}")
        for name in ("phase_s", "interval_s"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and v > 0):
                raise ValueError(f"Disaggregation: {name} must be a number > 0, got {v!r}")
        for name in ("drain_s",):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and v >= 0):
                raise ValueError(f"Disaggregation: {name} must be a number >= 0, got {v!r}")
        if self.switch_s is not None and not (isinstance(self.switch_s, (int, float)) and self.switch_s >= 0):
            raise ValueError(f"Disaggregation: switch_s must be None or a number >= 0, got {self.switch_s!r}")
        for name in ("slo_ttft_s", "slo_tpot_s"):
            v = getattr(self, name)
            if v is not None and (not is_real(v, finite=True) or not v >= MIN_SLO_S):
                raise ValueError(f"Disaggregation: {name} must be None or a finite number of seconds >= {MIN_SLO_S:g} "
                                 f"(the observation divides TTFT and TPOT by it and states log2 of it), got {v!r}")
        if self.first_token not in FIRST_TOKEN:
            raise ValueError(f"Disaggregation: first_token must be one of {FIRST_TOKEN}, got {self.first_token!r}")
        if not 0.0 < self.held_out_frac < 1.0:
            raise ValueError(f"Disaggregation: held_out_frac must be in (0, 1), got {self.held_out_frac!r}")
        self.loads()
        self.check_decisions()
        # The episode's length is set here, not by the load (a small load only thins each phase's arrivals).
        check_episode_span(self.decisions * self.interval_s + self.drain_s, "Disaggregation",
                           f"an episode of {self.decisions} decisions x interval_s={self.interval_s:g} (phases="
                           f"{self.phases} x phase_s={self.phase_s:g}) plus drain_s={self.drain_s:g} runs",
                           "lower phase_s, interval_s or drain_s")

    def engine_spec(self) -> EngineSpec:
        """The engine of every instance (``EngineSpec.SHARED_FIELDS`` taken from this config).

        Its per-request check is envs.core's ``slo_metric="tpot"`` (MLPerf / DistServe); the
        environment re-scores each finished request with its own SLOs (``Params``), because a
        request's TTFT may be set at the handover (``first_token="decode"``)."""
        return EngineSpec.from_config(self)

    def check_decisions(self) -> None:
        """``ValueError`` naming phases, phase_s and interval_s unless an episode holds 1 to ``MAX_DECISIONS``
        decisions (:attr:`decisions`): none (interval_s=1e300, phase_s=1e-300) divided by zero in the kernels."""
        ratio = self.phases * self.phase_s / self.interval_s
        knobs = f"phases={self.phases} x phase_s={self.phase_s:g} / interval_s={self.interval_s:g}"
        if not ratio > 1e-9:
            raise ValueError(f"Disaggregation: an episode of {knobs} holds no decision (decisions = ceil of that "
                             f"ratio must be >= 1): lower interval_s or raise phase_s")
        if not ratio <= MAX_DECISIONS:
            raise ValueError(f"Disaggregation: an episode of {knobs} holds {ratio:.3g} decisions, more than "
                             f"{MAX_DECISIONS:,}: raise interval_s or lower phase_s or phases")

    @property
    def decisions(self) -> int:
        """Decisions per episode: ceil(phases x phase_s / interval_s), 1 to ``MAX_DECISIONS`` in a validated
        config (:meth:`check_decisions`)."""
        return int(np.ceil(self.phases * self.phase_s / self.interval_s - 1e-9))
