"""Workload families beyond the conversation traces: bursty code completion, BurstGPT-like, agentic.

Every parameter comes from traces/data/families.toml with its source (``python -m
traces.fit_families`` writes it); each generator is vectorized numpy and deterministic given
``seed`` (one ``np.random.default_rng(seed)`` stream drawn in a fixed order).

- ``azure_code_bursty``: the Azure 2023 code service (the trace the Splitwise paper, Patel et al.
  ISCA'24, characterizes: median prompt 1,500 and output 13 tokens): lengths from the file's
  quantile tables, arrivals from an MMPP-2 fitted to the file (bursts of ~15 requests/s lasting
  ~8 s, idle ~40 s in between: index of dispersion 13 at 1 s, 164 at 60 s).
- ``burstgpt_like``: BurstGPT's modelled workload (Wang et al., arXiv 2401.17644; parameters of
  its BurstGPT-Perf generator): Gamma inter-arrival times (shape 0.5, CV 1.41) and Zipf(1.1)
  prompt and output lengths truncated below 1,024 tokens.
- ``agentic``: tool-calling agent sessions with 512-token prefix-block chains: each session
  belongs to one of a few agents whose system prompt and tool definitions every session of that
  agent shares; each later call re-sends the whole context (previous prompt + answer + the tool's
  result) after the tool's pause, so it reuses every full block of the previous prompt. Means
  from the Mooncake FAST'25 tool-and-agent trace (8,596 input, 182 output tokens, 23,608
  requests/hour); the session structure is a modelling choice (stated in the data file).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from traces.arrivals import MMPP2, generate_arrivals
from traces.errors import TraceError
from traces.params import load_params
from traces.sampling import LogNormal, QuantileTable, correlated_uniforms
from traces.sessions import _chains
from traces.synthetic import _positive, _seed
from traces.trace import Trace, TraceMeta, _gather_csr

__all__ = ["azure_code_bursty", "burstgpt_like", "agentic", "zipf_truncated_pmf", "FAMILIES_FILE"]

FAMILIES_FILE = Path(__file__).resolve().parent / "data" / "families.toml"
_FILE_TEXT = "traces/data/families.toml"


def _params(name: str) -> dict:
    return load_params(name, FAMILIES_FILE)


def _describe(name: str, seed: int, **kw: object) -> str:
    args = ", ".join(f"{k}={v!r}" for k, v in kw.items() if v is not None)
    return f"synthetic: traces.families {name}(seed={seed}, {args}) with parameters from {_FILE_TEXT}"


def azure_code_bursty(seed: int = 0, duration_s: float | None = None, rate_rps: float | None = None) -> Trace:
    """Azure 2023 code service, fitted to its file: bursty MMPP arrivals, long prompts, short outputs.

    ``duration_s`` (s) and ``rate_rps`` (requests/s, the long-run mean; the bursts keep their
    length) override the fitted one hour and 2.57 requests/s. Raises ``TraceError`` for a bad
    seed, duration or rate.
    """
    seed = _seed(seed)
    p = _params("azure_code_bursty")
    duration_s = _positive("duration_s", "azure_code_bursty", duration_s, p["duration_s"])
    rate_rps = _positive("rate_rps", "azure_code_bursty", rate_rps, p["rate_rps"])
    rng = np.random.default_rng(seed)
    mmpp = MMPP2(tuple(p["mmpp"]["rates"]), tuple(p["mmpp"]["switch"]))
    t = generate_arrivals(rng, duration_s, rate_rps, "mmpp", mmpp=mmpp)
    u_prompt, u_output = correlated_uniforms(rng, t.size, p["copula_r"])
    prompt = QuantileTable.from_params(p["prompt"], "azure_code_bursty.prompt").sample_int(u_prompt)
    output = QuantileTable.from_params(p["output"], "azure_code_bursty.output").sample_int(u_output)
    meta = TraceMeta("azure_code_bursty", _describe("azure_code_bursty", seed, duration_s=duration_s, rate_rps=rate_rps),
                     "generated; parameters fitted to the Azure LLM inference trace 2023, code service "
                     "(CC-BY 4.0, Splitwise ISCA'24)")
    return Trace(t, prompt, output, meta)


def zipf_truncated_pmf(a: float, limit: int) -> np.ndarray:
    """Probabilities of lengths 1 .. limit - 1 under Zipf(a) truncated below ``limit`` (shape
    [limit - 1]): what drawing ``np.random.zipf(a)`` and redrawing values >= limit yields."""
    if not a > 1 or limit < 2:
        raise TraceError(f"Zipf needs a > 1 and limit >= 2, got a={a!r}, limit={limit!r}")
    w = np.arange(1, int(limit), dtype=np.float64) ** -float(a)
    return w / w.sum()


def _zipf_sample(u: np.ndarray, a: float, limit: int) -> np.ndarray:
    cdf = np.cumsum(zipf_truncated_pmf(a, limit))
    return (np.minimum(np.searchsorted(cdf, u, side="right"), limit - 2) + 1).astype(np.int64)


def burstgpt_like(seed: int = 0, duration_s: float | None = None, rate_rps: float | None = None) -> Trace:
    """BurstGPT's modelled workload: Gamma(shape 0.5) inter-arrivals, Zipf(1.1) lengths below 1,024.

    ``duration_s`` (s) and ``rate_rps`` (requests/s) override one hour at 1 request/s; the
    inter-arrival CV stays 1/sqrt(shape). Raises ``TraceError`` for a bad seed, duration or rate.
    """
    seed = _seed(seed)
    p = _params("burstgpt_like")
    duration_s = _positive("duration_s", "burstgpt_like", duration_s, p["duration_s"])
    rate_rps = _positive("rate_rps", "burstgpt_like", rate_rps, p["rate_rps"])
    rng = np.random.default_rng(seed)
    t = generate_arrivals(rng, duration_s, rate_rps, "gamma", cv=1.0 / np.sqrt(p["gamma_shape"]))
    u = rng.random((2, t.size))
    prompt = _zipf_sample(u[0], p["zipf_a"], int(p["max_prompt_tokens"]))
    output = _zipf_sample(u[1], p["zipf_a"], int(p["max_output_tokens"]))
    meta = TraceMeta("burstgpt_like", _describe("burstgpt_like", seed, duration_s=duration_s, rate_rps=rate_rps),
                     "generated; the Gamma/Zipf workload model of BurstGPT (Wang et al., arXiv 2401.17644) with "
                     "its BurstGPT-Perf parameters (HPMLL/BurstGPT, CC-BY 4.0)")
    return Trace(t, prompt, output, meta)


def _truncated_geometric_mean(p: float, m: int) -> float:
    """E[min(G, m)] for G geometric on 1, 2, ... with success probability p."""
    return (1.0 - (1.0 - p) ** m) / p


def agentic(seed: int = 0, duration_s: float | None = None, rate_rps: float | None = None) -> Trace:
    """Tool-calling agent sessions with shared agent prefixes and growing contexts (module docstring).

    ``rate_rps`` is the long-run request rate including later calls of a session (the Mooncake
    tool-and-agent trace's 6.56 requests/s by default); a trace starts empty, so its first
    minutes hold fewer later calls. The result has 512-token block chains and multi-turn
    structure (``parent``: the session's previous call, ``turn``: the call's number). Raises
    ``TraceError`` for a bad seed, duration or rate.
    """
    seed = _seed(seed)
    P = _params("agentic")
    duration_s = _positive("duration_s", "agentic", duration_s, P["duration_s"])
    rate_rps = _positive("rate_rps", "agentic", rate_rps, P["rate_rps"])
    bs = int(P["block_size"])
    prefix_blocks = np.asarray(P["agent_prefix_blocks"], np.int64)
    if prefix_blocks.size != int(P["agents"]) or (prefix_blocks < 1).any():
        raise TraceError(f"{FAMILIES_FILE}: agentic.agent_prefix_blocks must hold agents = {P['agents']} "
                         f"values >= 1, got {prefix_blocks.tolist()}")
    max_turns = int(P["max_turns"])
    p_stop = 1.0 / float(P["mean_turns"])
    task = LogNormal(P["task_tokens_median"], P["task_tokens_mean"])
    tool = LogNormal(P["tool_tokens_median"], P["tool_tokens_mean"])
    out_len = LogNormal(P["output_median"], P["output_mean"])
    pause = LogNormal(P["tool_pause_median_s"], P["tool_pause_mean_s"])

    rng = np.random.default_rng(seed)
    session_rate = rate_rps / _truncated_geometric_mean(p_stop, max_turns)
    t = generate_arrivals(rng, duration_s, session_rate, "poisson")
    n = t.size
    turns = np.minimum(rng.geometric(p_stop, n), max_turns)
    agent = rng.integers(0, prefix_blocks.size, n)
    z = rng.standard_normal((2, n))
    prompt = prefix_blocks[agent] * bs + task.sample_int(z[0])
    output = out_len.sample_int(z[1])
    # Block ids 0 .. sum(prefix_blocks) - 1 are the agents' shared prefixes.
    agent_off = np.zeros(prefix_blocks.size + 1, np.int64)
    np.cumsum(prefix_blocks, out=agent_off[1:])
    ids, off, next_id = _chains(np.arange(agent_off[-1], dtype=np.int64), agent_off, agent, prefix_blocks[agent],
                                -(-prompt // bs), int(agent_off[-1]))
    gen_index = np.arange(n, dtype=np.int64)  # index of each request in the concatenated generations
    gens = [(t, prompt, output, ids, off, np.full(n, -1, np.int64), np.ones(n, np.int32))]
    k, total = 1, n
    while t.size:
        more = turns > k  # sessions that make another call
        par = np.flatnonzero(more)
        m = par.size
        z = rng.standard_normal((2, m))
        gap = output[par] * float(P["decode_s_per_token"]) + pause.median * np.exp(pause.sigma * z[0])
        tc = t[par] + gap
        pc = prompt[par] + output[par] + tool.sample_int(z[1])
        oc = out_len.sample_int(rng.standard_normal(m))
        inside = tc < duration_s  # calls after the end of the trace are outside the window
        par, tc, pc, oc = par[inside], tc[inside], pc[inside], oc[inside]
        ids, off, next_id = _chains(ids, off, par, prompt[par] // bs, -(-pc // bs), next_id)
        k += 1
        parent_global = gen_index[par]
        gen_index = total + np.arange(par.size, dtype=np.int64)
        total += par.size
        turns = turns[par]
        t, prompt, output = tc, pc, oc
        gens.append((t, prompt, output, ids, off, parent_global, np.full(par.size, k, np.int32)))
    return _assemble(gens, bs, seed, duration_s, rate_rps)


def _assemble(gens: list, bs: int, seed: int, duration_s: float, rate_rps: float) -> Trace:
    """Concatenate the generations, sort by arrival (a call after its parent) and remap parents."""
    t = np.concatenate([g[0] for g in gens])
    p = np.concatenate([g[1] for g in gens])
    o = np.concatenate([g[2] for g in gens])
    shift = np.cumsum([0] + [g[4][-1] for g in gens[:-1]])
    ids = np.concatenate([g[3] for g in gens])
    off = np.concatenate([[0]] + [g[4][1:] + s for g, s in zip(gens, shift)]).astype(np.int64)
    parent = np.concatenate([g[5] for g in gens])
    turn = np.concatenate([g[6] for g in gens])
    order = np.argsort(t, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    parent = np.where(parent >= 0, rank[np.maximum(parent, 0)], -1)[order]
    ids, off = _gather_csr(ids, off, order)
    meta = TraceMeta("agentic", _describe("agentic", seed, duration_s=duration_s, rate_rps=rate_rps),
                     "generated; means from the Mooncake FAST'25 tool-and-agent trace's published statistics "
                     "(Apache-2.0), session structure a modelling choice (traces/data/families.toml)")
    return Trace(t[order], p[order], o[order], meta, block_ids=ids, block_offsets=off, block_size=bs,
                 parent=parent.astype(np.int64), turn=turn[order].astype(np.int32))
