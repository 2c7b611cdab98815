"""Published measurements of real serving engines (vLLM, SGLang), read from data/published_results.toml.

Why: the step-time model and the simulator claim to behave like vLLM; the only outside check of that
claim that needs no GPU is what the engines' own users published. Each row of the data file is one
benchmark run as its authors ran it (model, GPU, TP, weight dtype, engine version and scheduler
settings, the load: a burst of N requests, a closed loop at fixed concurrency, or an open loop at a
request rate, with the request lengths) and the numbers they measured, with the exact place they were
read (repository + path + commit, or paper + table). hwmodels.validate.published predicts each row
with the simulator and reports the error.

Schema of one row (``[[point]]``; the file header says the same):

    id                 unique, lower-case [a-z0-9._-]
    engine             "vllm" | "sglang"
    engine_version     e.g. "0.6.0"; engine_version_source says where it was read or how it was inferred
    published_model    the checkpoint the source names (HF repo id)
    model              the catalogue model (hwmodels/data/models.toml) with the same architecture
    model_note         why `model` stands for `published_model` (config.json fields that match)
    weight_dtype       "bf16" | "fp16" | "fp8": dtype of the linear-layer weights as served
    gpu, tp            catalogue GPU name; tensor-parallel degree
    published_gpu      the GPU as the source names it
    load               "burst" (all requests at t=0, benchmark_serving --request-rate inf),
                       "concurrency" (closed loop, --max-concurrency), "rate" (Poisson, --request-rate)
    num_prompts        requests in the run
    concurrency        closed-loop clients (load = "concurrency" only)
    request_rate       requests/s (load = "rate" only)
    input_lens, output_lens   per-request token counts as the source lists them (arrays of num_prompts;
                       vLLM's benchmark counts output tokens by re-tokenizing the returned text, so an
                       immediate end-of-sequence shows as 0 and its TTFT is recorded as 0.0),
                       or input_len, output_len: one length for every request (random dataset)
    total_input_tokens, total_output_tokens   the source's totals, checked against the lists' sums
    lens_from          instead of lists: "sglang-random" re-draws sglang.bench_serving's random dataset from
                       random_input_len, random_output_len, random_range_ratio, seed (and, for load "rate",
                       its Poisson send times); the totals are then required and must match the draw
    max_model_len, max_num_seqs, max_num_batched_tokens, gpu_memory_utilization, block_size,
    num_scheduler_steps, chunked_prefill   engine settings (as run; config_source says where read)
    prefill_first      true: the engine's scheduler runs a batch of prefills whenever a waiting request
                       can start and decodes only otherwise (vLLM V0, SGLang); false or absent: decodes
                       and prefill chunks share each batch (vLLM V1); scheduler_source (required with
                       prefill_first) names the engine code (repository, file, function) that does it
    overlap_schedule   true: the scheduler prepares the next batch while the current one runs (SGLang's
                       overlap scheduler, on by default since v0.4), so a request arriving during batch
                       k joins batch k + 2 at the earliest; overlap_source (required) says where read
    excluded           why the point is left out of the summary (median / max error): the run measured
                       something the simulator does not model, with the evidence (source file + line);
                       the report still lists the point, marked excluded
    source             where the measured numbers were read: repo + path + commit, or paper + table
    config_source      where the settings above were read (if not in `source`)
    [point.metrics]    measured values, names in vLLM benchmark_serving's terms (METRICS below)

Units: milliseconds for latencies (as vLLM's benchmark prints them), tokens/s and requests/s for
throughputs. Values are stored exactly as published.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ._data import DATA_DIR, read_toml
from .catalog import get_gpu, get_model
from .errors import HwModelError
from traces.checks import is_integer, is_real

PUBLISHED_FILE = DATA_DIR / "published_results.toml"

ENGINES = ("vllm", "sglang")
WEIGHT_DTYPES = {"bf16": 2, "fp16": 2, "fp8": 1}  # bytes per linear-layer weight
LOADS = ("burst", "concurrency", "rate")

# Metric name -> unit. Definitions follow vLLM benchmarks/benchmark_serving.py (calculate_metrics):
# TTFT from send to first token; TPOT = (E2E - TTFT) / (output_len - 1) per request with output_len > 1;
# E2EL = send to last token; throughputs = totals / benchmark duration (first send to last completion).
METRICS: dict[str, str] = {
    "median_ttft_ms": "ms", "mean_ttft_ms": "ms", "p99_ttft_ms": "ms",
    "median_tpot_ms": "ms", "mean_tpot_ms": "ms", "p99_tpot_ms": "ms",
    "median_e2el_ms": "ms", "mean_e2el_ms": "ms", "p99_e2el_ms": "ms",
    # ITL: every gap between consecutive streamed tokens of a request, pooled over requests
    "median_itl_ms": "ms", "mean_itl_ms": "ms", "p99_itl_ms": "ms",
    "output_throughput": "tok/s", "request_throughput": "req/s", "total_token_throughput": "tok/s",
    # vLLM benchmarks/benchmark_latency.py: wall time of one LLM.generate over the whole batch (all
    # requests at once, ignore_eos), median over its timed iterations
    "median_batch_latency_ms": "ms",
}

_ID_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_REQUIRED_STR = ("id", "engine", "engine_version", "engine_version_source", "published_model", "model",
                 "model_note", "weight_dtype", "gpu", "published_gpu", "load", "source")
_OPTIONAL_INT = ("max_model_len", "max_num_seqs", "max_num_batched_tokens", "block_size", "num_scheduler_steps")
_KNOWN = set(_REQUIRED_STR) | set(_OPTIONAL_INT) | {
    "tp", "num_prompts", "concurrency", "request_rate", "input_lens", "output_lens", "input_len", "output_len",
    "gpu_memory_utilization", "chunked_prefill", "config_source", "dataset", "metrics", "note",
    "total_input_tokens", "total_output_tokens", "lens_from", "random_input_len", "random_output_len",
    "random_range_ratio", "seed", "prefill_first", "scheduler_source", "excluded", "overlap_schedule",
    "overlap_source"}
LENS_FROM = ("sglang-random",)


@dataclass(frozen=True)
class PublishedPoint:
    """One published benchmark run and what it measured (see the module docstring for the fields).

    input_lens / output_lens: tuples of num_prompts ints (tokens), one per request in the source's
    order (expanded from input_len / output_len when the source used one length for all).
    metrics: metric name (METRICS) -> value in the metric's unit, exactly as published.
    """

    id: str
    engine: str
    engine_version: str
    engine_version_source: str
    published_model: str
    model: str
    model_note: str
    weight_dtype: str
    gpu: str
    published_gpu: str
    tp: int
    load: str
    num_prompts: int
    input_lens: tuple[int, ...]
    output_lens: tuple[int, ...]
    metrics: dict[str, float]
    source: str
    concurrency: int | None = None
    request_rate: float | None = None
    max_model_len: int | None = None
    max_num_seqs: int | None = None
    max_num_batched_tokens: int | None = None
    gpu_memory_utilization: float | None = None
    block_size: int | None = None
    num_scheduler_steps: int | None = None
    chunked_prefill: bool | None = None
    prefill_first: bool = False
    scheduler_source: str = ""
    overlap_schedule: bool = False
    excluded: str = ""  # non-empty: left out of the error summary, with this reason
    config_source: str = ""
    dataset: str = ""
    note: str = ""
    send_s: tuple[float, ...] | None = None  # per-request send times (s) where the source's draw is known
    row: int = field(default=0, compare=False)  # 1-based position in the file, for error messages


def _err(where: str, msg: str) -> HwModelError:
    return HwModelError(f"{where}: {msg}")


def _int(t: dict[str, Any], key: str, where: str, minimum: int = 1) -> int:
    v = t[key]
    if not is_integer(v) or v < minimum:
        raise _err(where, f"field '{key}' must be an integer >= {minimum}, got {v!r}")
    return v


def _lens(t: dict[str, Any], key: str, n: int, where: str, minimum: int) -> tuple[int, ...]:
    scalar = key[:-1]  # input_lens -> input_len
    if key in t and scalar in t:
        raise _err(where, f"give either '{key}' or '{scalar}', not both")
    if scalar in t:
        return (_int(t, scalar, where, minimum),) * n
    if key not in t:
        raise _err(where, f"missing field '{key}' (per-request list) or '{scalar}' (one length for all)")
    v = t[key]
    if not isinstance(v, list) or len(v) != n:
        got = len(v) if isinstance(v, list) else type(v).__name__
        raise _err(where, f"field '{key}' must be a list of num_prompts = {n} integers, got {got}")
    for i, x in enumerate(v):
        if not is_integer(x) or x < minimum:
            raise _err(where, f"field '{key}'[{i}] must be an integer >= {minimum}, got {x!r}")
    return tuple(v)


def _drawn_lens(t: dict[str, Any], n: int, where: str) -> tuple[tuple[int, ...], tuple[int, ...], tuple[float, ...] | None]:
    """Per-request lengths (and, for load 'rate', send times) re-drawn as the source's benchmark drew them.

    "sglang-random": sglang.bench_serving's random dataset (sgl-project/sglang python/sglang/bench_serving.py,
    sample_random_requests; commit 0033168f0f58b2bc05aa0273bd475d9c01bafb1c): after np.random.seed(seed),
    input_lens = np.random.randint(max(int(L_in * ratio), 1), L_in + 1, n), output_lens =
    np.random.randint(int(L_out * ratio), L_out + 1, n); with --request-rate, get_request then sleeps
    np.random.exponential(1 / rate) after each request (the first is sent at t = 0). The published totals
    must equal the drawn sums, which proves the draw.
    """
    if t["lens_from"] not in LENS_FROM:
        raise _err(where, f"field 'lens_from' must be one of {LENS_FROM}, got {t['lens_from']!r}")
    for k in ("input_lens", "output_lens", "input_len", "output_len"):
        if k in t:
            raise _err(where, f"field '{k}' conflicts with lens_from (the lengths are drawn)")
    for k in ("random_input_len", "random_output_len", "seed", "total_input_tokens", "total_output_tokens"):
        if k not in t:
            raise _err(where, f"lens_from '{t['lens_from']}' needs field '{k}'")
    lin, lout = _int(t, "random_input_len", where), _int(t, "random_output_len", where)
    seed = _int(t, "seed", where, minimum=0)
    ratio = t.get("random_range_ratio", 0.0)
    if not is_real(ratio) or not 0.0 <= ratio <= 1.0:
        raise _err(where, f"field 'random_range_ratio' must be in [0, 1], got {ratio!r}")
    rs = np.random.RandomState(seed)  # the legacy global generator np.random.seed() seeds
    inp = rs.randint(max(int(lin * ratio), 1), lin + 1, size=n)
    out = rs.randint(int(lout * ratio), lout + 1, size=n)
    send = None
    if t.get("load") == "rate" and isinstance(t.get("request_rate"), (int, float)) and t["request_rate"] > 0:
        gaps = rs.exponential(1.0 / float(t["request_rate"]), size=n)
        send = tuple(float(x) for x in np.concatenate([[0.0], np.cumsum(gaps[:-1])]))
    return tuple(int(x) for x in inp), tuple(int(x) for x in out), send


def _parse_point(t: Any, row: int, path: Path) -> PublishedPoint:
    where = f"{path.name} point {row}"
    if not isinstance(t, dict):
        raise _err(where, f"must be a table, got {type(t).__name__}")
    if isinstance(t.get("id"), str):
        where = f"{path.name} point {row} (id '{t['id']}')"
    unknown = sorted(set(t) - _KNOWN)
    if unknown:
        raise _err(where, f"unknown fields {unknown}")
    for k in _REQUIRED_STR:
        if not isinstance(t.get(k), str) or not t[k].strip():
            raise _err(where, f"missing or empty text field '{k}'")
    if not _ID_RE.match(t["id"]):
        raise _err(where, f"field 'id' must match {_ID_RE.pattern}, got {t['id']!r}")
    if t["engine"] not in ENGINES:
        raise _err(where, f"field 'engine' must be one of {ENGINES}, got {t['engine']!r}")
    if t["weight_dtype"] not in WEIGHT_DTYPES:
        raise _err(where, f"field 'weight_dtype' must be one of {tuple(WEIGHT_DTYPES)}, got {t['weight_dtype']!r}")
    if t["load"] not in LOADS:
        raise _err(where, f"field 'load' must be one of {LOADS}, got {t['load']!r}")
    try:
        model = get_model(t["model"]).name
        gpu = get_gpu(t["gpu"]).name
    except HwModelError as exc:
        raise _err(where, str(exc)) from exc
    for k in ("tp", "num_prompts"):
        if k not in t:
            raise _err(where, f"missing field '{k}'")
    tp, n = _int(t, "tp", where), _int(t, "num_prompts", where)
    send_s = None
    if "lens_from" in t:
        input_lens, output_lens, send_s = _drawn_lens(t, n, where)
    else:
        for k in ("random_input_len", "random_output_len", "random_range_ratio", "seed"):
            if k in t:
                raise _err(where, f"field '{k}' is only meaningful with lens_from")
        input_lens = _lens(t, "input_lens", n, where, minimum=1)
        output_lens = _lens(t, "output_lens", n, where, minimum=0)  # 0: the text came back empty (see below)
    # Where the source prints totals too, they must equal the per-request sums (catches a mistyped list).
    for key, lens in (("total_input_tokens", input_lens), ("total_output_tokens", output_lens)):
        if key in t and _int(t, key, where) != sum(lens):
            raise _err(where, f"field '{key}' = {t[key]} but the per-request lengths sum to {sum(lens)}")

    concurrency = request_rate = None
    if t["load"] == "concurrency":
        if "concurrency" not in t:
            raise _err(where, "load 'concurrency' needs field 'concurrency' (closed-loop clients)")
        concurrency = _int(t, "concurrency", where)
    elif "concurrency" in t:
        raise _err(where, f"field 'concurrency' is only meaningful with load 'concurrency', not {t['load']!r}")
    if t["load"] == "rate":
        r = t.get("request_rate")
        if not is_real(r) or not (math.isfinite(r) and r > 0):
            raise _err(where, f"load 'rate' needs a finite 'request_rate' > 0 (requests/s), got {r!r}")
        request_rate = float(r)
    elif "request_rate" in t:
        raise _err(where, f"field 'request_rate' is only meaningful with load 'rate', not {t['load']!r}")

    opt: dict[str, Any] = {k: _int(t, k, where) for k in _OPTIONAL_INT if k in t}
    if "gpu_memory_utilization" in t:
        g = t["gpu_memory_utilization"]
        if not is_real(g) or not 0.0 < g <= 1.0:
            raise _err(where, f"field 'gpu_memory_utilization' must be in (0, 1], got {g!r}")
        opt["gpu_memory_utilization"] = float(g)
    if "chunked_prefill" in t:
        if not isinstance(t["chunked_prefill"], bool):
            raise _err(where, f"field 'chunked_prefill' must be true/false, got {t['chunked_prefill']!r}")
        opt["chunked_prefill"] = t["chunked_prefill"]
    if "prefill_first" in t:
        if not isinstance(t["prefill_first"], bool):
            raise _err(where, f"field 'prefill_first' must be true/false, got {t['prefill_first']!r}")
        opt["prefill_first"] = t["prefill_first"]
    if t.get("prefill_first") and not (isinstance(t.get("scheduler_source"), str) and t["scheduler_source"].strip()):
        raise _err(where, "prefill_first = true needs 'scheduler_source' (the engine code that schedules so)")
    if "overlap_schedule" in t:
        if not isinstance(t["overlap_schedule"], bool):
            raise _err(where, f"field 'overlap_schedule' must be true/false, got {t['overlap_schedule']!r}")
        if t["overlap_schedule"] and not (isinstance(t.get("overlap_source"), str) and t["overlap_source"].strip()):
            raise _err(where, "overlap_schedule = true needs 'overlap_source' (where the setting was read)")
        opt["overlap_schedule"] = t["overlap_schedule"]
    if "scheduler_source" in t and "prefill_first" not in t:
        raise _err(where, "field 'scheduler_source' is only meaningful with 'prefill_first'")
    if "excluded" in t and not (isinstance(t["excluded"], str) and t["excluded"].strip()):
        raise _err(where, f"field 'excluded' must be a non-empty reason with its evidence, got {t['excluded']!r}")
    for k in ("config_source", "dataset", "note", "scheduler_source", "excluded"):
        if k in t:
            if not isinstance(t[k], str):
                raise _err(where, f"field '{k}' must be text, got {t[k]!r}")
            opt[k] = t[k]

    metrics = t.get("metrics")
    if not isinstance(metrics, dict) or not metrics:
        raise _err(where, "missing [point.metrics] table (at least one measured value)")
    parsed: dict[str, float] = {}
    for k, v in metrics.items():
        if k not in METRICS:
            raise _err(where, f"metric '{k}' is not one of {sorted(METRICS)}")
        if not is_real(v) or not (math.isfinite(v) and v > 0):
            raise _err(where, f"metric '{k}' must be a finite number > 0, got {v!r}")
        parsed[k] = float(v)

    return PublishedPoint(
        id=t["id"], engine=t["engine"], engine_version=t["engine_version"],
        engine_version_source=t["engine_version_source"], published_model=t["published_model"], model=model,
        model_note=t["model_note"], weight_dtype=t["weight_dtype"], gpu=gpu, published_gpu=t["published_gpu"],
        tp=tp, load=t["load"], num_prompts=n, input_lens=input_lens, output_lens=output_lens, metrics=parsed,
        source=t["source"], concurrency=concurrency, request_rate=request_rate, send_s=send_s, row=row, **opt)


def load_published(path: str | Path | None = None) -> list[PublishedPoint]:
    """All rows of a published-results file (default: hwmodels/data/published_results.toml).

    Raises HwModelError naming the file, the row (1-based, and its id) and the field for any missing,
    unknown or malformed field, an unknown catalogue model or GPU, or a duplicate id.
    """
    p = PUBLISHED_FILE if path is None else Path(path)
    raw = read_toml(p)
    unknown = sorted(set(raw) - {"point"})
    if unknown:
        raise HwModelError(f"{p.name}: unknown top-level keys {unknown} (rows are [[point]] tables)")
    rows = raw.get("point")
    if not isinstance(rows, list) or not rows:
        raise HwModelError(f"{p.name}: no [[point]] rows")
    points = [_parse_point(t, i + 1, p) for i, t in enumerate(rows)]
    seen: dict[str, int] = {}
    for pt in points:
        if pt.id in seen:
            raise HwModelError(f"{p.name} point {pt.row}: duplicate id '{pt.id}' (first at point {seen[pt.id]})")
        seen[pt.id] = pt.row
    return points
