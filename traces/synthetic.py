"""Built-in trace generators (no download): Azure conversation/code, bursty day, Mooncake sessions.

All parameters come from traces/data/synthetic.toml (each with its source); every generator is
vectorized numpy and deterministic given `seed` (one np.random.default_rng(seed) stream, drawn in
a fixed order). `duration_s` and `rate_rps` override the fitted defaults; `arrivals` selects the
arrival process ('poisson', 'gamma' with inter-arrival CV `cv`, 'mmpp'), and `diurnal=True`
modulates it with a daily profile (`peak_to_trough`, `peak_hour`).
"""

from __future__ import annotations

import numpy as np

from traces.arrivals import MMPP2, Diurnal, generate_arrivals
from traces.errors import TraceError
from traces.params import load_params
from traces.sampling import LogNormal, QuantileTable, correlated_uniforms
from traces.trace import Trace, TraceMeta
from traces.checks import is_integer, positive_real

__all__ = ["azure_conv", "azure_code", "bursty", "make_arrivals", "describe_call"]

PARAMS_FILE = "traces/data/synthetic.toml"


def make_arrivals(
    rng: np.random.Generator,
    duration_s: float,
    rate_rps: float,
    arrivals: str,
    *,
    cv: float | None,
    diurnal: bool,
    peak_to_trough: float | None,
    peak_hour: float | None,
) -> np.ndarray:
    """Arrival times from the shared, sourced parameters (MMPP and CV fitted on Azure conv)."""
    conv = load_params("azure_conv")
    mmpp = MMPP2(tuple(conv["mmpp"]["rates"]), tuple(conv["mmpp"]["switch"]))
    d = None
    if diurnal:
        dp = load_params("diurnal")
        hour = dp["peak_hour"] if peak_hour is None else peak_hour
        d = Diurnal(dp["peak_to_trough"] if peak_to_trough is None else peak_to_trough, float(hour) * 3600.0,
                    dp["period_s"])
    elif peak_to_trough is not None or peak_hour is not None:
        raise TraceError("peak_to_trough / peak_hour only apply with diurnal=True")
    return generate_arrivals(rng, duration_s, rate_rps, arrivals,
                             cv=conv["gamma_cv"] if cv is None else cv, mmpp=mmpp, diurnal=d)


def describe_call(name: str, seed: int, **kw: object) -> str:
    args = ", ".join(f"{k}={v!r}" for k, v in kw.items() if v is not None)
    return f"synthetic: traces.synthetic {name}(seed={seed}, {args}) with parameters from {PARAMS_FILE}"


def _positive(name: str, where: str, value: float | None, default: float) -> float:
    """``value`` (``default`` when None) as a float; ``TraceError`` naming ``where`` and ``name`` unless it
    is a finite number > 0."""
    return positive_real(default if value is None else value, f"{where}: {name}", TraceError)


def _seed(seed: int) -> int:
    if not is_integer(seed) or seed < 0:
        raise TraceError(f"seed must be an integer >= 0, got {seed!r}")
    return int(seed)


def _arrival_process(name: str, seed: int, duration_s: float | None, rate_rps: float | None,
                     arrivals: str | None, cv: float | None, diurnal: bool,
                     peak_to_trough: float | None, peak_hour: float | None,
                     described_diurnal: object) -> tuple[dict, np.random.Generator, np.ndarray, str]:
    """Parameters, generator, arrival times and call description shared by the generators."""
    seed = _seed(seed)
    p = load_params(name)
    duration_s = p["duration_s"] if duration_s is None else duration_s
    rate_rps = p["rate_rps"] if rate_rps is None else rate_rps
    arrivals = p["arrivals"] if arrivals is None else arrivals
    rng = np.random.default_rng(seed)
    t = make_arrivals(rng, duration_s, rate_rps, arrivals, cv=cv, diurnal=diurnal,
                      peak_to_trough=peak_to_trough, peak_hour=peak_hour)
    desc = describe_call(name, seed, duration_s=duration_s, rate_rps=rate_rps, arrivals=arrivals, cv=cv,
                         diurnal=described_diurnal, peak_to_trough=peak_to_trough, peak_hour=peak_hour)
    return p, rng, t, desc


def azure_conv(seed: int = 0, duration_s: float | None = None, rate_rps: float | None = None, *,
               arrivals: str | None = None, cv: float | None = None, diurnal: bool = False,
               peak_to_trough: float | None = None, peak_hour: float | None = None) -> Trace:
    """Azure 2023 conversation service: MMPP bursts, lengths from the file's quantile tables."""
    p, rng, t, desc = _arrival_process("azure_conv", seed, duration_s, rate_rps, arrivals, cv, diurnal,
                                       peak_to_trough, peak_hour, diurnal or None)
    prompt, output = _conv_lengths(rng, t.size, p)
    meta = TraceMeta("azure_conv", desc,
                     "generated; parameters fitted to the Azure LLM inference trace 2023 (CC-BY 4.0, Splitwise ISCA'24)")
    return Trace(t, prompt, output, meta)


def _conv_lengths(rng: np.random.Generator, n: int, p: dict) -> tuple[np.ndarray, np.ndarray]:
    u_prompt, u_output = correlated_uniforms(rng, n, p["copula_r"])
    prompt = QuantileTable.from_params(p["prompt"], "azure_conv.prompt").sample_int(u_prompt)
    output = QuantileTable.from_params(p["output"], "azure_conv.output").sample_int(u_output)
    return prompt, output


def azure_code(seed: int = 0, duration_s: float | None = None, rate_rps: float | None = None, *,
               arrivals: str | None = None, cv: float | None = None, diurnal: bool = False,
               peak_to_trough: float | None = None, peak_hour: float | None = None) -> Trace:
    """Azure 2023 code service: long prompts, very short outputs (lognormals from Splitwise medians)."""
    p, rng, t, desc = _arrival_process("azure_code", seed, duration_s, rate_rps, arrivals, cv, diurnal,
                                       peak_to_trough, peak_hour, diurnal or None)
    z = rng.standard_normal((2, t.size))
    prompt = LogNormal(p["prompt_median"], p["prompt_mean"]).sample_int(z[0])
    output = LogNormal(p["output_median"], p["output_mean"]).sample_int(z[1])
    meta = TraceMeta("azure_code", desc,
                     "generated; parameters from published statistics of the Azure LLM inference trace 2023 "
                     "code service (Splitwise ISCA'24; data CC-BY 4.0)")
    return Trace(t, prompt, output, meta)


def bursty(seed: int = 0, duration_s: float | None = None, rate_rps: float | None = None, *,
           arrivals: str | None = None, cv: float | None = None, diurnal: bool = True,
           peak_to_trough: float | None = None, peak_hour: float | None = None) -> Trace:
    """A day of conversation traffic: diurnal profile times MMPP bursts (for autoscaling)."""
    _, rng, t, desc = _arrival_process("bursty", seed, duration_s, rate_rps, arrivals, cv, diurnal,
                                       peak_to_trough, peak_hour, diurnal)
    prompt, output = _conv_lengths(rng, t.size, load_params("azure_conv"))
    meta = TraceMeta("bursty", desc,
                     "generated; parameters fitted to the Azure LLM inference trace 2023 (CC-BY 4.0, Splitwise ISCA'24)")
    return Trace(t, prompt, output, meta)

