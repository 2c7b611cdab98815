"""Predict published engine measurements (hwmodels/data/published_results.toml) with the simulator.

Each published point is replayed through envs.core, configured as the benchmark was run: the same
catalogue model (linear-layer weights in the served dtype), GPU, TP degree, KV capacity at the run's
gpu_memory_utilization, max_num_seqs and token budget, and the same requests (the source's per-request
input and output lengths, in its order) under the same load:

  burst        every request sent at t = 0 (vLLM benchmark_serving --request-rate inf)
  concurrency  closed loop: `concurrency` requests in flight, the next one sent when one finishes
               (benchmark_serving --max-concurrency; TTFT counts from the send)
  rate         open loop, Poisson arrivals at `request_rate` (benchmark_serving's gamma process with
               burstiness 1), seeded

The metrics are computed as vLLM's benchmarks/benchmark_serving.py calculate_metrics does: TTFT per
request, TPOT = (E2E - TTFT) / (output_len - 1) over requests with output_len > 1, E2EL, their
np.median / np.mean / np.percentile(99), and throughputs = totals / duration (first send to last
completion). Bursts and closed loops measure from a cold engine, as the benchmark does (its one
warm-up request finishes before the clock starts), so there is no warm-up to discard.

The engine's scheduler is the point's: `prefill_first` points (vLLM V0, SGLang) run a batch of
prefills whenever a waiting request can start and decodes otherwise (whole prompts when chunked
prefill is off); the others mix decodes and prefill chunks under the budget (vLLM V1, Sarathi-Serve).
With `num_scheduler_steps` k > 1 (vLLM V0 multi-step scheduling) a decode batch runs k iterations
before the scheduler runs again. With `overlap_schedule` (SGLang's overlap scheduler) the scheduler
prepares each batch while the previous one runs, so it sees only requests that arrived before the
previous batch started. Requests of a serving benchmark pass the engine's API server first
(``ApiServer``: processor sharing of the profile's ``frontend_s_per_request``); TTFT and E2E count
from the client's send. What the simulator does not model (reported per point in `limits`): tokens
streamed in chunks of k under multi-step scheduling (ITL), detokenization, work that grows with the
prompt in the API server.

The step-time terms are an argument (`profile`), so an engine profile can be fitted against these
points: a hwmodels.EngineProfile (step-time terms and the API server), a hwmodels.Calibration, or a
callable (model, gpu, tp) -> coefficient vector (hwmodels.steptime layout, N_COEFFS floats).

This module imports envs.core (an upward import from hwmodels): only hwmodels.validate may.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

import hwmodels
from hwmodels.calibration import Calibration
from hwmodels.catalog import GPU, Model
from hwmodels.errors import HwModelError
from hwmodels.profiles import EngineProfile
from hwmodels.published import METRICS, WEIGHT_DTYPES, PublishedPoint, load_published
from hwmodels.steptime import N_COEFFS, build_coeffs

Profile = Calibration | EngineProfile | Callable[[Model, GPU, int], np.ndarray] | None

# vLLM defaults where a source does not state a setting (vllm/engine/arg_utils.py EngineArgs, v0.5-v0.6:
# max_num_seqs 256, block_size 16, gpu_memory_utilization 0.90; vllm/config.py SchedulerConfig: without
# chunked prefill, max_num_batched_tokens = max(max_model_len, 2048)).
DEFAULT_MAX_NUM_SEQS = 256
DEFAULT_BLOCK_SIZE = 16
DEFAULT_GPU_MEMORY_UTILIZATION = 0.9
NO_CHUNK_MIN_BATCHED_TOKENS = 2048


def served_model(point: PublishedPoint) -> Model:
    """The catalogue model with its linear-layer weights in the dtype the point served them in."""
    m = hwmodels.get_model(point.model)
    return dataclasses.replace(m, linear_dtype_bytes=WEIGHT_DTYPES[point.weight_dtype])


def point_coeffs(point: PublishedPoint, profile: Profile = None) -> np.ndarray:
    """Step-time coefficient vector (float64[N_COEFFS]) for the point's model, GPU and TP under `profile`."""
    m, g = served_model(point), hwmodels.get_gpu(point.gpu)
    if profile is None or isinstance(profile, Calibration):
        return build_coeffs(m, g, point.tp, profile)
    if isinstance(profile, EngineProfile):
        return build_coeffs(m, g, point.tp, None, profile)
    if not callable(profile):
        raise HwModelError(f"profile must be a hwmodels.Calibration, a hwmodels.EngineProfile, a callable "
                           f"(model, gpu, tp) -> coeffs, or None; got {type(profile).__name__}")
    c = np.asarray(profile(m, g, point.tp), dtype=np.float64)
    if c.shape != (N_COEFFS,) or not np.all(np.isfinite(c)) or np.any(c < 0):
        raise HwModelError(f"point '{point.id}': profile returned coefficients of shape {c.shape}; expected "
                           f"{N_COEFFS} finite values >= 0 (hwmodels.steptime layout)")
    return c


def token_budget(point: PublishedPoint) -> int:
    """Tokens one iteration may schedule (vLLM max_num_batched_tokens): stated; else, without chunked
    prefill, vLLM V0's max(max_model_len, 2048); else 2048, the smallest default of any vLLM version
    (V1 defaults are 2048 to 16384 by usage context), which limits() reports."""
    if point.max_num_batched_tokens is not None:
        return point.max_num_batched_tokens
    if point.chunked_prefill is False:
        return max(point.max_model_len or 0, NO_CHUNK_MIN_BATCHED_TOKENS)
    # not stated: the smallest budget any vLLM default gives (see limits())
    return NO_CHUNK_MIN_BATCHED_TOKENS


def limits(point: PublishedPoint) -> list[str]:
    """Ways the run differs from what the simulator models (empty when none are known)."""
    out = []
    if point.max_num_batched_tokens is None and point.chunked_prefill is None:
        out.append(f"token budget not stated: {NO_CHUNK_MIN_BATCHED_TOKENS} assumed (the smallest vLLM default)")
    if point.chunked_prefill is False and not point.prefill_first:
        out.append("no chunked prefill: vLLM V0 runs prefills alone, before decodes; the simulator mixes them")
    if point.load == "burst" and point.engine == "vllm" and point.dataset.startswith("ShareGPT"):
        out.append("requests reach the engine out of order in the source's records; the API server model "
                   "keeps the send order")
    if (point.num_scheduler_steps or 1) > 1:
        out.append(f"multi-step scheduling ({point.num_scheduler_steps} steps) streams tokens in chunks; "
                   "ITL is not modelled chunk by chunk")
    if point.engine == "sglang" and not point.prefill_first:
        out.append("SGLang runs prefill batches apart from decode batches (mixed chunks are opt-in); "
                   "the simulator mixes them")
    if point.max_num_seqs is None:
        out.append(f"max running requests not stated: {DEFAULT_MAX_NUM_SEQS} assumed (vLLM's default)")
    return out


def _engine(point: PublishedPoint, coeffs: np.ndarray):
    from envs.core.engine import EngineSpec

    spec = EngineSpec(
        model=served_model(point),  # EngineSpec resolves names through hwmodels.get_model, which takes a Model
        gpu=point.gpu, tp=point.tp,
        mem_frac=point.gpu_memory_utilization or DEFAULT_GPU_MEMORY_UTILIZATION,
        block_size=point.block_size or DEFAULT_BLOCK_SIZE,
        max_seqs=point.max_num_seqs or DEFAULT_MAX_NUM_SEQS,
        slo_ttft_s=math.inf, slo_tpot_s=math.inf,  # no SLO bookkeeping: only latencies are compared
    )
    try:
        eng = spec.build()
    except (HwModelError, ValueError) as exc:
        raise HwModelError(f"point '{point.id}' (row {point.row}): {exc}") from exc
    # the point's scheduler: prefill batches first (vLLM V0, SGLang) or mixed batches (vLLM V1);
    # prompts whole when chunked prefill is off
    return eng._replace(coeffs=np.ascontiguousarray(coeffs, dtype=np.float64), max_output=max(max(point.output_lens), 1),
                        prefill_first=bool(point.prefill_first), chunked_prefill=point.chunked_prefill is not False)


class ApiServer:
    """An engine's API server in front of its scheduler, as one egalitarian processor-sharing server.

    Each request costs ``work_s`` of CPU (HTTP, parsing, tokenization) before the scheduler sees it,
    and the requests in the server share its one event loop (an asyncio server interleaves its
    handlers): alone, a request waits ``work_s``; a burst of n sent together reaches the scheduler
    after about n x ``work_s``. With equal work, requests leave in the order they came.
    Times in seconds; ``add`` and ``advance`` take non-decreasing times (HwModelError otherwise).
    """

    def __init__(self, work_s: float):
        if not (math.isfinite(work_s) and work_s >= 0.0):
            raise HwModelError(f"ApiServer: work_s must be a finite number >= 0, got {work_s!r}")
        self.work_s = work_s
        self.t = 0.0
        self.jobs: list[list] = []  # [request index, remaining work], oldest first
        self.done: list[tuple[int, float]] = []  # left the server, not yet collected by advance()

    def add(self, t: float, idx: int) -> None:
        """Request `idx` sent at `t`."""
        self._run(t)
        self.jobs.append([idx, self.work_s])

    def next_done(self) -> float:
        """When the oldest request in the server reaches the scheduler (inf when none is in it)."""
        return self.t + self.jobs[0][1] * len(self.jobs) if self.jobs else math.inf

    def advance(self, t: float) -> list[tuple[int, float]]:
        """Run the server until `t`; returns (request index, time it reaches the scheduler) of every
        request that left since the last call, in order."""
        self._run(t)
        out, self.done = self.done, []
        return out

    def _run(self, t: float) -> None:
        if t < self.t:
            raise HwModelError(f"ApiServer: time {t} is before the server's clock {self.t}")
        while self.jobs and self.next_done() <= t:
            done_t, rem = self.next_done(), self.jobs[0][1]
            for j in self.jobs:
                j[1] -= rem
            self.t = done_t
            while self.jobs and self.jobs[0][1] <= 0.0:
                self.done.append((self.jobs.pop(0)[0], done_t))
        if self.jobs:
            share = (t - self.t) / len(self.jobs)
            for j in self.jobs:
                j[1] -= share
        self.t = t


def simulate(point: PublishedPoint, profile: Profile = None, seed: int = 0) -> dict[str, np.ndarray | float | int]:
    """Replay the point's requests through one simulated replica behind its API server.

    Requests pass the API server (``ApiServer`` with the profile's ``frontend_s_per_request`` when
    `profile` is an EngineProfile, else none; offline runs such as benchmark_latency.py have none) and then the engine. With ``num_scheduler_steps`` k > 1 the engine
    runs vLLM V0's multi-step scheduling: a decode batch runs k iterations back to back before the
    scheduler runs again (no admission in between; a prefill batch runs one iteration); requests
    leave the batch when they finish.

    Returns per-request arrays (seconds, in the point's request order): "send_s" (client send),
    "arrival_s" (reaches the scheduler), "ttft_s" and "e2e_s" (from the send, as the client measures);
    per-iteration arrays "iteration_s" (duration) and "iteration_decodes" (tokens decoded); and
    "iterations" (engine iterations run). Raises HwModelError if the model does not fit or a
    request could never be scheduled (e.g. a prompt larger than the KV pool).
    """
    from envs.core import replica
    from envs.core.state import C_DECODE_TOKENS, C_PREFILL_TOKENS, FINISHED, REJECTED, Workload, allocate

    eng = _engine(point, point_coeffs(point, profile))
    n = point.num_prompts
    prompt = np.asarray(point.input_lens, np.int32)
    # an output_len of 0 is a sequence that ended at its first token: the engine still ran one
    output = np.maximum(np.asarray(point.output_lens, np.int32), 1)
    need = -(-(prompt + output) // eng.block_size)
    if np.any(need > eng.capacity_blocks):
        i = int(np.argmax(need > eng.capacity_blocks))
        raise HwModelError(f"point '{point.id}': request {i} needs {int(need[i])} KV blocks, the pool has "
                           f"{eng.capacity_blocks}")
    if point.load == "burst":
        send = np.zeros(n)
    elif point.load == "rate" and point.send_s is not None:  # the source's own arrival draw
        send = np.asarray(point.send_s, np.float64)
    elif point.load == "rate":
        gaps = np.random.default_rng(seed).exponential(1.0 / point.request_rate, n)
        send = np.concatenate([[0.0], np.cumsum(gaps[:-1])])
    else:  # closed loop: the first `concurrency` at t=0, each later one when a request finishes
        send = np.full(n, np.inf)
        send[: point.concurrency] = 0.0
    closed = point.load == "concurrency"
    fe = profile.frontend_s_per_request if isinstance(profile, EngineProfile) else 0.0
    server = ApiServer(fe if served_online(point) else 0.0)
    unsent = 0  # requests [0, unsent) have been handed to the server
    slots = n if not closed else min(n, point.concurrency)
    wl = Workload(
        arrival_s=np.full((1, n), np.inf), prompt=prompt[None, :], output=output[None, :],
        pred_bucket=np.zeros((1, n), np.int8), n_requests=np.array([n], np.int32),
        chain_ids=np.full((1, n, 1), -1, np.int64), chain_len=np.zeros((1, n), np.int16),
        failed=np.zeros((1, n), np.bool_),
    )
    st = allocate(1, 1, slots, n)
    replica.reset_env_state(st, 0, 0, 1.0)
    replica.reset_replica(st, eng, 0, 0)
    budget = token_budget(point)
    steps = point.num_scheduler_steps or 1
    now, nxt, finished = 0.0, 0, 0
    run_left = 0  # iterations left in the current multi-step decode run
    # overlap scheduling: the batch starting now was scheduled when the previous one started
    prev_start = -math.inf
    iter_s: list[float] = []  # duration of each iteration
    iter_decodes: list[int] = []  # tokens it decoded (each one a gap between two tokens of a request)
    decoded = 0
    while finished < n:
        while unsent < n and send[unsent] <= now:
            server.add(float(send[unsent]), unsent)
            unsent += 1
        for q, t in server.advance(now):
            wl.arrival_s[0, q] = t
        seen = prev_start if point.overlap_schedule and prev_start > -math.inf else now
        while nxt < n and wl.arrival_s[0, nxt] <= seen:
            if not replica.enqueue(st, wl, eng, 0, 0, nxt):
                why = ("rejected: longer than max_model_len " f"{eng.max_model_len}"
                       if st.fate[0, nxt] == REJECTED else "dropped (no free slot)")
                raise HwModelError(f"point '{point.id}': request {nxt} {why}")
            nxt += 1
        prefilled = int(st.counters[0, C_PREFILL_TOKENS])
        admit = 0 if run_left > 0 else n
        dt = replica.run_iteration(st, wl, eng, 0, 0, admit, budget, False, replica.ORDER_FCFS, now)
        if dt == 0.0:
            run_left = 0
            if prev_start > -math.inf:  # the engine goes idle: it schedules afresh
                prev_start = -math.inf
                continue
            nxt_t = min(server.next_done(), float(send[unsent]) if unsent < n else math.inf,
                        float(wl.arrival_s[0, nxt]) if nxt < n else math.inf)
            if math.isfinite(nxt_t):
                now = max(now, nxt_t)
                continue
            raise HwModelError(f"point '{point.id}': the simulated engine stalled with {n - finished} requests "
                               "unfinished (nothing schedulable)")
        if run_left > 0:
            run_left -= 1
        elif int(st.counters[0, C_PREFILL_TOKENS]) == prefilled:  # a decode batch: k iterations
            run_left = steps - 1
        prev_start = now
        now += dt
        iter_s.append(dt)
        iter_decodes.append(int(st.counters[0, C_DECODE_TOKENS]) - decoded)
        decoded = int(st.counters[0, C_DECODE_TOKENS])
        done = int(np.count_nonzero(st.fate[0] == FINISHED))
        if closed:  # each finish frees one client, which sends the next unsent request now
            for _ in range(done - finished):
                if unsent < n:
                    send[unsent] = now
                    server.add(now, unsent)
                    unsent += 1
        finished = done
    lead = wl.arrival_s[0] - send  # time in the API server
    return {"send_s": send, "arrival_s": wl.arrival_s[0].copy(), "ttft_s": st.ttft[0] + lead,
            "e2e_s": st.e2e[0] + lead, "iteration_s": np.asarray(iter_s),
            "iteration_decodes": np.asarray(iter_decodes, np.int64), "iterations": len(iter_s)}


def served_online(point: PublishedPoint) -> bool:
    """Whether the point's requests went through the engine's API server (a serving benchmark) rather
    than straight into the engine (vLLM's offline benchmark_latency.py)."""
    return not point.dataset.startswith("random token ids (benchmark_latency.py")


def metrics_from_requests(send_s, ttft_s, e2e_s, input_lens, output_lens, iteration_s=None,
                          iteration_decodes=None) -> dict[str, float]:
    """vLLM benchmark_serving's metrics (METRICS names and units) from per-request times in seconds.

    All arrays have one entry per request. A request whose output_len is 0 (its text came back empty:
    the engine's first token ended the sequence) counts with TTFT 0.0, as benchmark_serving records
    it (the TTFT is set only when a streamed chunk carries text); it still counts in E2EL and duration.

    ITL (median/mean/p99_itl_ms) needs the per-iteration durations and decoded-token counts: a decode
    token's gap to its request's previous token is the duration of the iteration that produced it (a
    running request decodes in every iteration, back to back), so the pooled gaps are the iteration
    durations repeated by their decode counts. Gaps after a preemption are not told apart.
    """
    send, ttft, e2e = (np.asarray(a, np.float64) for a in (send_s, ttft_s, e2e_s))
    out = np.asarray(output_lens, np.float64)
    inp = np.asarray(input_lens, np.float64)
    if not (np.all(np.isfinite(ttft)) and np.all(np.isfinite(e2e))):
        raise HwModelError("metrics_from_requests: every request must have finished (finite TTFT and E2E)")
    ttft = np.where(out == 0, 0.0, ttft)
    multi = out > 1
    tpot = (e2e[multi] - ttft[multi]) / (out[multi] - 1.0)
    duration = float(np.max(send + e2e) - np.min(send))
    res: dict[str, float] = {}
    for name, vals in (("ttft", ttft), ("tpot", tpot), ("e2el", e2e)):
        if vals.size:
            res[f"median_{name}_ms"] = float(np.median(vals)) * 1e3
            res[f"mean_{name}_ms"] = float(np.mean(vals)) * 1e3
            res[f"p99_{name}_ms"] = float(np.percentile(vals, 99)) * 1e3
    if iteration_s is not None and iteration_decodes is not None:
        gaps = np.repeat(np.asarray(iteration_s, np.float64), np.asarray(iteration_decodes, np.int64))
        if gaps.size:
            res["median_itl_ms"] = float(np.median(gaps)) * 1e3
            res["mean_itl_ms"] = float(np.mean(gaps)) * 1e3
            res["p99_itl_ms"] = float(np.percentile(gaps, 99)) * 1e3
    res["median_batch_latency_ms"] = duration * 1e3  # one batch, so its median is its duration
    res["output_throughput"] = float(out.sum()) / duration
    res["request_throughput"] = len(out) / duration
    res["total_token_throughput"] = float(out.sum() + inp.sum()) / duration
    return res


def predict_point(point: PublishedPoint, profile: Profile = None, seed: int = 0) -> dict[str, Any]:
    """Simulated metrics for one point: {"id", "predicted": {metric: value}, "iterations", "limits"}.

    "predicted" holds every metric of METRICS (same names and units as the published ones).
    """
    sim = simulate(point, profile, seed)
    pred = metrics_from_requests(sim["send_s"], sim["ttft_s"], sim["e2e_s"], point.input_lens, point.output_lens,
                                 sim["iteration_s"], sim["iteration_decodes"])
    return {"id": point.id, "predicted": pred, "iterations": int(sim["iterations"]), "limits": limits(point)}


def predict_points(points: Iterable[PublishedPoint] | None = None, profile: Profile = None,
                   seed: int = 0) -> list[dict[str, Any]]:
    """predict_point for every point (default: every row of hwmodels/data/published_results.toml)."""
    pts = load_published() if points is None else list(points)
    return [predict_point(p, profile, seed) for p in pts]


def error_table(points: Sequence[PublishedPoint], predictions: Sequence[dict[str, Any]],
                metrics: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """One row per (point, published metric): published, predicted, signed error in percent.

    err_pct = 100 * (predicted - published) / published. `metrics` restricts the metric names
    (default: every metric each point published). Raises HwModelError when points and predictions
    do not line up or a metric name is unknown.
    """
    if len(points) != len(predictions):
        raise HwModelError(f"error_table: {len(points)} points but {len(predictions)} predictions")
    if metrics is not None:
        bad = [m for m in metrics if m not in METRICS]
        if bad:
            raise HwModelError(f"error_table: unknown metrics {bad}; known: {sorted(METRICS)}")
    rows = []
    for pt, pr in zip(points, predictions):
        if pr.get("id") != pt.id:
            raise HwModelError(f"error_table: prediction for '{pr.get('id')}' does not match point '{pt.id}'")
        for name, pub in pt.metrics.items():
            if metrics is not None and name not in metrics:
                continue
            pred = pr["predicted"][name]
            rows.append({"id": pt.id, "metric": name, "unit": METRICS[name], "published": pub,
                         "predicted": pred, "err_pct": 100.0 * (pred - pub) / pub, "excluded": pt.excluded})
    return rows


def error_summary(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Headline numbers over an error_table: median and max absolute error in percent, counts.

    Rows of points marked excluded (the data file's `excluded` reason) are left out of every figure
    and counted in "excluded_points"."""
    excluded = sorted({r["id"] for r in rows if r.get("excluded")})
    rows = [r for r in rows if not r.get("excluded")]
    if not rows:
        raise HwModelError("error_summary: no rows (no published metric matched, or every point is excluded)")
    abs_err = np.abs([r["err_pct"] for r in rows])
    by_metric = {}
    for name in sorted({r["metric"] for r in rows}):
        e = np.abs([r["err_pct"] for r in rows if r["metric"] == name])
        by_metric[name] = {"n": int(e.size), "median_abs_err_pct": float(np.median(e)),
                           "max_abs_err_pct": float(np.max(e))}
    return {
        "published_points": len({r["id"] for r in rows}),
        "published_comparisons": len(rows),
        "published_median_abs_err_pct": float(np.median(abs_err)),
        "published_max_abs_err_pct": float(np.max(abs_err)),
        "by_metric": by_metric,
        "excluded_points": excluded,
    }


def format_table(points: Sequence[PublishedPoint], rows: Sequence[dict[str, Any]]) -> str:
    """Markdown table of an error_table, with the point's engine, model, GPU and load."""
    by_id = {p.id: p for p in points}
    lines = ["| point | engine | model | GPU x TP | load | metric | published | predicted | error |",
             "| --- | --- | --- | --- | --- | --- | ---: | ---: | ---: |"]
    notes = []
    for r in rows:
        p = by_id[r["id"]]
        if p.excluded and p.id not in notes:
            notes.append(p.id)
        load = (f"burst {p.num_prompts}" if p.load == "burst" else f"conc {p.concurrency}"
                if p.load == "concurrency" else f"{p.request_rate:g} req/s")
        lines.append(f"| {p.id} | {p.engine} {p.engine_version} | {p.published_model} ({p.weight_dtype}) | "
                     f"{p.gpu} x{p.tp} | {load} | {r['metric']} | {r['published']:.4g} | {r['predicted']:.4g} | "
                     f"{r['err_pct']:+.1f}%{' (excluded)' if p.excluded else ''} |")
    for pid in notes:
        lines.append(f"\nExcluded from the summary: {pid}: {by_id[pid].excluded}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hwmodels.validate.published",
                                 description="Predict the published engine measurements with the simulator "
                                             "(current step-time calibration) and print the error per point.")
    ap.add_argument("--file", type=Path, default=None, help="published-results TOML (default: the catalogue's)")
    ap.add_argument("--metrics", nargs="+", default=None, help=f"metric names to compare (default: all published); "
                                                               f"known: {', '.join(METRICS)}")
    ap.add_argument("--json", type=Path, default=None, help="write the table and summary as JSON here")
    args = ap.parse_args(argv)
    bad = [m for m in args.metrics or [] if m not in METRICS]
    if bad:
        print(f"error: --metrics: unknown {bad}; known: {', '.join(METRICS)}", file=sys.stderr)
        return 2
    try:
        points = load_published(args.file)
        preds = predict_points(points)
        rows = error_table(points, preds, args.metrics)
        summary = error_summary(rows)
    except HwModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_table(points, rows))
    print(f"\n{summary['published_comparisons']} comparisons over {summary['published_points']} points: "
          f"median |error| {summary['published_median_abs_err_pct']:.1f}%, "
          f"max |error| {summary['published_max_abs_err_pct']:.1f}%")
    for name, s in summary["by_metric"].items():
        print(f"  {name}: n={s['n']}, median |error| {s['median_abs_err_pct']:.1f}%, max {s['max_abs_err_pct']:.1f}%")
    if args.json is not None:
        args.json.write_text(json.dumps({"summary": summary, "rows": rows,
                                         "predictions": preds}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
