"""Cut a Trace into fixed-size episode windows that kernels replay (``state.Workload``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

import traces
from envs.core.state import N_HIST_BINS, Workload
from traces.trace import Trace
from traces.checks import is_real

# Output-length buckets a noisy predictor reports (upper edges, tokens); the last is open.
BUCKET_EDGES = np.array([32, 64, 128, 256, 512, 1024, 2048], np.int64)
N_BUCKETS = len(BUCKET_EDGES) + 1


class TraceUnsuited(ValueError):
    """A readable trace that this environment cannot replay because of the kind of trace it is: it lacks
    data the environment needs (prefix block ids for PrefixEviction-v0) or is too short for one of its
    episodes (fewer requests than a window, a shorter span than Autoscale-v0's day). ``str()`` is the
    environment's own message; ``needs`` says what the environment needs (a phrase that follows "needs":
    ``"prefix block ids (...)"``, ``"at least 288,000 s of arrivals (...)"``) and ``has`` what the trace
    has instead (a phrase that follows "the file": ``"has none"``, ``"spans 3,600 s"``), so that a caller
    replaying one file on several environments (``agents.leaderboard --trace``) can say which to leave
    out and why. A ``ValueError``, so callers that catch those still do; pickles with its fields."""

    def __init__(self, message: str, needs: str, has: str):
        super().__init__(message)
        self.needs, self.has = str(needs), str(has)

    def __reduce__(self) -> tuple:
        return type(self), (str(self), self.needs, self.has)


class TooFewRequests(TraceUnsuited):
    """A trace (or the part of it a split keeps) holds fewer requests than one episode window:
    ``requests`` it has, ``window`` it needs (``has``: ``"has N"``, or the caller's phrase where it
    counts only some requests, e.g. those the engine serves). A ``ValueError``, so callers that catch
    those still do; a workload mixture catches it to name the entry and what to set
    (``envs.core.mixture.too_few_requests``)."""

    def __init__(self, message: str, requests: int, window: int, has: str | None = None):
        super().__init__(message, f"at least {int(window):,} requests (one window of window_requests={int(window)})",
                         has if has is not None else f"has {int(requests):,}")
        self.requests = int(requests)
        self.window = int(window)

    def __reduce__(self) -> tuple:
        return type(self), (str(self), self.requests, self.window, self.has)


def output_bucket(tokens: np.ndarray) -> np.ndarray:
    return np.searchsorted(BUCKET_EDGES, tokens, side="left").astype(np.int8)


def noisy_buckets(tokens: np.ndarray, accuracy: float, rng: np.random.Generator) -> np.ndarray:
    """True bucket with probability ``accuracy``, else a neighbouring one (a length predictor
    that is often one bucket off, as the learned predictors in the literature are)."""
    if not 0.0 <= accuracy <= 1.0:
        raise ValueError(f"predictor accuracy must be in [0, 1], got {accuracy}")
    true = output_bucket(tokens).astype(np.int64)
    wrong = rng.random(len(tokens)) >= accuracy
    step = np.where(rng.random(len(tokens)) < 0.5, -1, 1)
    step = np.where(true == 0, 1, np.where(true == N_BUCKETS - 1, -1, step))
    return np.where(wrong, true + step, true).astype(np.int8)


def output_histogram(tokens: np.ndarray) -> np.ndarray:
    """Counts of output lengths in the log2 bins Past-Future's estimator uses."""
    bins = np.minimum(np.floor(np.log2(np.maximum(tokens, 1))).astype(np.int64), N_HIST_BINS - 1)
    return np.bincount(bins, minlength=N_HIST_BINS).astype(np.float64)


def build_workload(
    trace: Trace,
    window_requests: int,
    predictor_accuracy: float,
    seed: int,
    accepted: np.ndarray | None = None,
) -> tuple[Workload, np.ndarray]:
    """Consecutive windows of ``window_requests`` requests; returns them and each one's
    natural arrival rate (requests/s), which load levels rescale. With ``accepted`` (bool
    [len(trace)], ``envs.core.replica.accepted_at_arrival``) a window's rate counts only the
    requests the engine accepts, over the span of their arrivals, so a request rejected at arrival
    does not speed up the others' replay (it still arrives, and is counted as rejected), and the
    window's arrival offsets start at its first accepted arrival, rejected requests before it arriving
    then and those after its last accepted one at that time, so that one opening or closing the window
    does not lengthen the episode (a window of one accepted request: every offset 0; of none: the
    offsets of all its arrivals); a window with fewer than two accepted requests, or all of them at
    one instant, keeps the rate of all its arrivals. Raises ``TooFewRequests`` (a ``ValueError``) for a trace shorter than one window,
    ``ValueError`` for ``window_requests`` < 2, ``accepted`` of another length, or a window whose
    arrivals are all at one instant."""
    n = len(trace)
    if window_requests < 2:
        raise ValueError(f"window_requests must be >= 2, got {window_requests}")
    W = n // window_requests
    if W < 1:
        part = f" ({trace.meta.transforms[-1]})" if trace.meta.transforms else ""
        raise TooFewRequests(
            f"trace {trace.meta.name!r}{part} has {n} request{'' if n == 1 else 's'}, fewer than one window of "
            f"window_requests={window_requests}" + (f"; set window_requests <= {n}" if n >= 2 else ""),
            n, window_requests, has=f"has {n:,}{part}")
    N = window_requests
    rng = np.random.default_rng(seed)
    used = W * N
    arr = trace.arrival_s[:used].reshape(W, N)
    span = arr[:, -1] - arr[:, 0]
    if np.any(span <= 0):
        bad = int(np.argmax(span <= 0))
        raise ValueError(
            f"trace {trace.meta.name!r}: window {bad} (requests {bad * N}..{bad * N + N - 1}) "
            "has all arrivals at one instant, so it has no arrival rate to rescale"
        )
    rate = (N - 1) / span
    arrival = (arr - arr[:, :1]).astype(np.float64)
    if accepted is not None:
        if np.shape(accepted) != (n,):
            raise ValueError(f"trace {trace.meta.name!r}: accepted must be a bool array of its {n} requests, "
                             f"got shape {np.shape(accepted)}")
        ok = np.asarray(accepted, np.bool_)[:used].reshape(W, N)
        if not ok.all():
            cnt = ok.sum(axis=1)
            first = np.where(ok, arr, np.inf).min(axis=1)
            last = np.where(ok, arr, -np.inf).max(axis=1)
            own = (cnt >= 2) & (last > first)
            rate = np.where(own, (cnt - 1) / np.where(own, last - first, 1.0), rate)
            # The episode's clock starts at the first accepted arrival and no rejected one arrives after the
            # last: a rejected request opening or closing a window would otherwise stretch the episode's
            # duration (goodput, throughput) by the idle time before or after it.
            some = cnt >= 1
            lo, hi = np.where(some, first, arr[:, 0])[:, None], np.where(some, last, arr[:, -1])[:, None]
            arrival = np.where(some[:, None], np.clip(arr, lo, hi) - lo, arrival).astype(np.float64)
    prompt = trace.prompt_tokens[:used].reshape(W, N).astype(np.int32)
    output = trace.output_tokens[:used].reshape(W, N).astype(np.int32)
    pred = noisy_buckets(trace.output_tokens[:used], predictor_accuracy, rng).reshape(W, N)

    if trace.block_ids is not None:
        lens = np.diff(trace.block_offsets)[:used]
        B = max(int(lens.max()), 1)
        chain_ids = np.full((used, B), -1, np.int64)
        cols = np.arange(B)
        mask = cols[None, :] < lens[:, None]
        starts = trace.block_offsets[:used]
        chain_ids[mask] = trace.block_ids[(starts[:, None] + cols[None, :])[mask]]
        chain_ids = chain_ids.reshape(W, N, B)
        chain_len = lens.reshape(W, N).astype(np.int16)
    else:
        chain_ids = np.full((W, N, 1), -1, np.int64)
        chain_len = np.zeros((W, N), np.int16)
    wl = Workload(
        arrival_s=np.ascontiguousarray(arrival),
        prompt=np.ascontiguousarray(prompt),
        output=np.ascontiguousarray(output),
        pred_bucket=np.ascontiguousarray(pred),
        n_requests=np.full(W, N, np.int32),
        chain_ids=chain_ids,
        chain_len=chain_len,
        failed=np.ascontiguousarray(
            (np.zeros(used, np.bool_) if trace.failed is None else trace.failed[:used]).reshape(W, N)),
    )
    return wl, rate


# The simulated clock is float64 seconds: at 2^32 s (136 years) one ulp is 2^-20 s (about a microsecond); an
# episode stretched further rounds iteration times away (Routing-v0 at load=1e-300 measured TTFTs of 0 s and an
# SLO attainment set by rounding, not by the cluster).
CLOCK_LIMIT_S = float(2**32)


def check_clock_span(last_s: np.ndarray, windows: np.ndarray, scales: np.ndarray, loads: np.ndarray | None,
                     where: str, knob: str = "load") -> None:
    """Raise ``ValueError`` (one line naming the knob, its value and the window) when a window
    ``windows[j]`` (int [J]) whose last arrival is ``last_s[j]`` trace seconds after its first (float [J],
    ``Workload.arrival_s[windows, -1]``), replayed at time scale ``scales[j]`` (simulated s per trace s,
    float [J]), would place an arrival beyond ``CLOCK_LIMIT_S``. ``loads``: the value of ``knob`` (the
    load level, ``ttft_load`` ...) of each draw (None: the scale is 1 / rate_scale)."""
    last = np.asarray(last_s, np.float64) * scales
    over = np.flatnonzero(~(last <= CLOCK_LIMIT_S))
    if over.size:
        j = int(over[0])
        name = "rate_scale" if loads is None else knob
        value = 1.0 / scales[j] if loads is None else loads[j]
        check_episode_span(last[j], where, f"{name} {value:g} replays window {int(windows[j])}", f"raise the {name}")


# The smallest normal float64 (2.2e-308): a gap between two arrivals scaled below it is subnormal or 0, so
# arrival instants that the trace keeps apart would no longer be distinct simulated times (KVAdmission-v0 at
# load=1e308 replayed every arrival at 0 s; Routing-v0 at rate_scale=1e308 offered 1.02e12 requests/s on its
# default scenario, every arrival at one instant). Above it float64 keeps a scaled gap's 53 bits.
MIN_GAP_S = float(np.finfo(np.float64).tiny)


def min_arrival_gaps(arrival_s: np.ndarray) -> np.ndarray:
    """float64 [W]: each window's smallest positive gap between consecutive arrivals of ``arrival_s`` (float
    [W, N], trace seconds; ``Workload.arrival_s``), inf for a window whose arrivals are all at one instant."""
    d = np.diff(np.asarray(arrival_s, np.float64), axis=1)
    return np.where(d > 0, d, np.inf).min(axis=1, initial=np.inf)


def check_arrival_gaps(gap_s: np.ndarray, scales: np.ndarray, per_unit: np.ndarray, value: float, where: str,
                       knob: str, windows: np.ndarray | None = None) -> None:
    """Raise ``ValueError`` (one line naming the knob, its value, a window and the largest value that works) when
    a window's smallest positive gap between arrivals ``gap_s`` (float [W], trace s; :func:`min_arrival_gaps`),
    replayed at time scale ``scales`` (float [W], simulated s per trace s), falls below ``MIN_GAP_S``: distinct
    arrivals would collapse onto one instant. ``per_unit``: float [W], each window's time scale times the knob's
    value (the scale is inversely proportional to a load or a rate_scale), from which the largest value follows.
    ``windows``: int [W], the window each entry names (default its index; PrefixEviction-v0 passes one entry per
    trace part, naming the first window a reset can draw that holds the part's closest arrivals)."""
    gap_s = np.asarray(gap_s, np.float64)
    real = np.isfinite(gap_s)
    bad = np.flatnonzero(real & ~(gap_s * scales >= MIN_GAP_S))
    if not bad.size:
        return
    j = int(bad[0])
    largest = float(np.min(per_unit[real] * (gap_s[real] / MIN_GAP_S))) * (1 - 1e-9)
    shown = float(f"{largest:.3e}")
    shown = shown if shown <= largest else float(f"{largest * (1 - 1e-3):.3e}")
    raise ValueError(f"{where}: {knob} {value:g} replays window {j if windows is None else int(windows[j])} "
                     f"with its closest arrivals {gap_s[j] * scales[j]:.3g} s apart, "
                     f"below float64's smallest normal number ({MIN_GAP_S:.3g} s), so distinct arrival instants would "
                     f"collapse onto one: {knob} at most {shown:.4g}")


def check_every_level(last_s: np.ndarray, scales_at: Callable[[float | None], np.ndarray],
                      levels: Sequence[float] | None, where: str, knob: str = "load",
                      gap_s: np.ndarray | None = None) -> None:
    """:func:`check_clock_span` when a scenario is built, for every window at every level of ``knob``, so
    that a level no reset has drawn yet is refused naming it (``load=(0.5, 1e-12)`` built, then failed at
    the resets that drew 1e-12). ``last_s``: float [W], each window's last arrival in trace seconds after
    its first; ``scales_at(level)``: the W windows' time scales at that level, the function the resets use
    (``level`` None when ``levels`` is None: rate_scale paces every window). With ``gap_s`` (float [W], each
    window's smallest positive gap between arrivals, :func:`min_arrival_gaps`) also :func:`check_arrival_gaps`:
    a level so high (or a rate_scale so large) that distinct arrivals would collapse onto one float64 instant."""
    windows = np.arange(len(last_s))
    # a load divides the time scale (per_unit: the scale at load 1, the same for every level); rate_scale is
    # 1 / the scale
    per_unit = None if gap_s is None else np.ones(len(windows)) if levels is None else scales_at(1.0)
    for x in (None,) if levels is None else levels:
        scales = scales_at(x)
        check_clock_span(last_s, windows, scales, None if x is None else np.full(len(windows), x), where, knob)
        if gap_s is not None:
            check_arrival_gaps(gap_s, scales, per_unit, 1.0 / float(scales[0]) if x is None else float(x), where,
                               "rate_scale" if x is None else knob)


def check_episode_span(span_s: float, where: str, what: str, fix: str) -> None:
    """Raise ``ValueError`` (``"WHERE: WHAT over SPAN s of simulated time; ...: FIX"``, one line) when an
    episode's simulated time ``span_s`` (s) passes ``CLOCK_LIMIT_S`` (or is not a number): the one
    statement of the float64 clock's limit, for windows rescaled by a load (:func:`check_clock_span`,
    :func:`check_every_level`)
    and for episodes whose length a config sets (Disaggregation-v0's phases, interval and drain)."""
    if not span_s <= CLOCK_LIMIT_S:
        raise ValueError(f"{where}: {what} over {span_s:.3g} s of simulated time; its float64 clock keeps "
                         f"microseconds only up to 2^32 s (136 years), so TTFTs would be rounded away: {fix}")


def check_held_out_frac(frac: object, where: str) -> None:
    """``ValueError`` naming ``where`` unless ``frac`` (a config's ``held_out_frac``, the held-out
    share of a trace's duration) is a number in (0, 1); checked whatever the split, before any trace
    is read, so that the error names the setting and not the trace (``traces.split``'s TraceError)."""
    if not is_real(frac) or not 0 < frac < 1:
        raise ValueError(f"{where}: held_out_frac must be in (0, 1), got {frac!r}")


def load_split(cfg, where: str) -> tuple[Trace, Trace]:
    """(history, episodes) of a config with ``trace`` (a ``Trace``, built-in name or path),
    ``trace_seed``, ``trace_params``, ``split`` and ``held_out_frac``: ``split="train"`` both the
    first ``1 - held_out_frac`` of the trace, ``"test"`` that part and the held-out rest, ``"all"``
    the whole trace twice. Raises ``ValueError`` naming ``where`` for another split or a
    ``held_out_frac`` outside (0, 1) (:func:`check_held_out_frac`, whatever the split)."""
    check_held_out_frac(cfg.held_out_frac, where)
    if isinstance(cfg.trace, Trace):
        trace = cfg.trace
    else:
        trace = traces.load_trace(cfg.trace, seed=cfg.trace_seed, **dict(cfg.trace_params))
    if cfg.split == "all":
        return trace, trace
    if cfg.split not in ("train", "test"):
        raise ValueError(f"{where}: split must be 'train', 'test' or 'all', got {cfg.split!r}")
    train, test = traces.split(trace, cfg.held_out_frac)
    return (train, train) if cfg.split == "train" else (train, test)


def max_window_gaps(wl: Workload) -> int:
    """Most gaps between tokens one episode window can produce: sum of (output - 1) over its
    requests, the largest over windows (sizes ``state.allocate(max_gaps=...)``)."""
    return int(np.maximum(wl.output.astype(np.int64) - 1, 0).sum(axis=1).max(initial=0))
