"""Fit the built-in generators to the real traces and write traces/data/synthetic.toml.

    python -m traces.fit [--traces ../shared/traces] [--out traces/data/synthetic.toml] [--check]

Every number written carries its source: fitted ones name the file and this script; published
ones (which no file here can reproduce) name the paper/table. --check re-fits and fails if the
data file differs, which is how the test suite proves the shipped numbers come from the files.
Needs scipy (for the MMPP least-squares fit); the generators themselves do not.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from traces.arrivals import MMPP2
from traces.load import load_trace
from traces.trace import Trace

AZURE_FILE = "azure_llm_2023_conv.csv"
MOONCAKE_FILE = "mooncake_conversation.jsonl"
DEFAULT_TRACES = Path(__file__).resolve().parents[1].parent / "shared" / "traces"
DEFAULT_OUT = Path(__file__).resolve().parent / "data" / "synthetic.toml"
IDC_WINDOWS_S = (1.0, 10.0, 60.0, 300.0)


def _fitted(file: str, what: str) -> str:
    return f"fitted to ../shared/traces/{file} by traces/fit.py: {what}"


def quantile_probs(n: int) -> np.ndarray:
    """0.5% steps (0.1% in the top percent) for large samples, 2% steps for small ones."""
    if n >= 2000:
        return np.unique(np.round(np.concatenate([np.linspace(0, 0.99, 199), np.linspace(0.99, 1, 11)]), 6))
    return np.linspace(0, 1, 51)


def quantile_table(x: np.ndarray) -> dict[str, list[float]]:
    probs = quantile_probs(x.size)
    values = np.quantile(x.astype(np.float64), probs)
    return {"probs": [round(float(p), 6) for p in probs], "values": [round(float(v), 3) for v in values]}


def sourced_quantiles(x: np.ndarray, source: str) -> dict[str, tuple[list[float], str]]:
    """A TOML section of empirical quantiles of ``x``: ``probs`` and ``values`` of
    :func:`quantile_table`, each with ``source`` (the data file records where every number
    comes from)."""
    return {k: (v, source) for k, v in quantile_table(x).items()}


def write_fit(text: str, out: Path, fitted_from: Path, check: bool) -> int:
    """The end of a fitting command (``traces.fit``, ``traces.fit_families``): write ``text``
    (the fitted data file) to ``out`` and return 0; with ``check`` (``--check``) write nothing
    and return 0 if ``out`` already holds exactly ``text`` (a fresh fit of ``fitted_from``), else 1."""
    if check:
        same = out.is_file() and out.read_text() == text
        print(f"{out}: {'matches' if same else 'DIFFERS FROM'} a fresh fit of {fitted_from}")
        return 0 if same else 1
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"wrote {out}")
    return 0


def idc(t: np.ndarray, window_s: float) -> float:
    """Index of dispersion (Var/Mean) of counts in consecutive windows, last partial window dropped."""
    c = np.bincount((t // window_s).astype(np.int64))[:-1]
    return float(c.var() / c.mean())


def fit_mmpp(t: np.ndarray) -> tuple[MMPP2, dict[str, Any]]:
    """Least-squares MMPP-2 matching mean rate, inter-arrival CV and IDC at IDC_WINDOWS_S."""
    from scipy.optimize import least_squares

    rate = t.size / t[-1]
    gaps = np.diff(t)
    cv = float(gaps.std() / gaps.mean())
    target = np.array([idc(t, w) for w in IDC_WINDOWS_S])

    def model(x: np.ndarray) -> MMPP2:
        e = np.exp(x)
        return MMPP2((float(e[0]), float(e[1])), (float(e[2]), float(e[3])))

    def residual(x: np.ndarray) -> np.ndarray:
        m = model(x)
        return np.concatenate([
            [10 * np.log(m.mean_rate / rate)],
            np.log(m.idc(np.array(IDC_WINDOWS_S)) / target),
            [3 * np.log(m.interarrival_cv() / cv)],
        ])

    best = None
    for hi, lo, s0, s1 in ((1.5, 0.5, 1 / 300, 1 / 300), (2.0, 0.3, 1 / 100, 1 / 600), (1.2, 0.2, 1 / 1000, 1 / 200)):
        x0 = np.log([hi * rate, lo * rate, s0, s1])
        r = least_squares(residual, x0, method="lm", xtol=1e-12, ftol=1e-12)
        if best is None or r.cost < best.cost:
            best = r
    m = model(best.x)
    if m.rates[0] < m.rates[1]:  # report the busy state first
        m = MMPP2((m.rates[1], m.rates[0]), (m.switch[1], m.switch[0]))
    return m, {"rate": rate, "cv": cv, "idc": target}


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra = np.argsort(np.argsort(a, kind="stable"), kind="stable").astype(np.float64)
    rb = np.argsort(np.argsort(b, kind="stable"), kind="stable").astype(np.float64)
    return float(np.corrcoef(ra, rb)[0, 1])


def fit_azure_conv(tr: Trace) -> dict[str, Any]:
    t = tr.arrival_s
    mmpp, emp = fit_mmpp(t)
    rho = spearman(tr.prompt_tokens, tr.output_tokens)
    src = lambda what: _fitted(AZURE_FILE, what)  # noqa: E731
    idc_txt = ", ".join(f"{w:g} s: {v:.3f}" for w, v in zip(IDC_WINDOWS_S, emp["idc"]))
    return {
        "duration_s": (3600.0, "one hour, the length of the real trace (3,501.7 s from first to last request)"),
        "rate_rps": (round(emp["rate"], 6), src(f"{t.size} requests / {t[-1]:.3f} s")),
        "arrivals": ("mmpp", src(f"MMPP-2 reproduces the growth of the index of dispersion with window ({idc_txt}), "
                                 "which a renewal process cannot")),
        "gamma_cv": (round(emp["cv"], 6), src("inter-arrival CV (std/mean), used when arrivals='gamma'")),
        "copula_r": (round(2 * np.sin(np.pi * rho / 6), 6),
                     src(f"Gaussian-copula correlation 2 sin(pi rho/6) from Spearman rho = {rho:.4f} of prompt vs output")),
        "mmpp": {
            "rates": ([round(x, 6) for x in mmpp.rates], src("MMPP-2 arrival rate in each state (1/s), least squares "
                                                              "on mean rate, inter-arrival CV and IDC at 1/10/60/300 s")),
            "switch": ([round(x, 8) for x in mmpp.switch], src("rate of leaving each state (1/s), same fit")),
        },
        "prompt": sourced_quantiles(tr.prompt_tokens, src("empirical quantiles of ContextTokens")),
        "output": sourced_quantiles(tr.output_tokens, src("empirical quantiles of GeneratedTokens")),
    }


def mooncake_structure(tr: Trace) -> dict[str, np.ndarray | int]:
    """Parent links and child types of a block-chain trace (Python loop: fitting, not a hot path).

    A request's parent is the request that first introduced the last block of its reused prefix.
    Child types, matching traces/sessions.py: continue (reuses all full blocks the two prompts
    share), retry (also reuses the parent's partial last block: the same prompt sent again) and
    branch (reuses fewer blocks: an earlier turn edited or regenerated).
    """
    assert tr.block_ids is not None and tr.block_offsets is not None and tr.block_size is not None
    bs = tr.block_size
    chains = [tr.chain(i).tolist() for i in range(len(tr))]
    sys_blocks = 0
    while all(len(c) > sys_blocks and c[sys_blocks] == chains[0][sys_blocks] for c in chains):
        sys_blocks += 1
    owner: dict[int, int] = {}
    n = len(tr)
    parent = np.full(n, -1, dtype=np.int64)
    reused = np.zeros(n, dtype=np.int64)
    for i, c in enumerate(chains):
        k = 0
        while k < len(c) and c[k] in owner:
            k += 1
        reused[i] = k
        if k > sys_blocks:
            parent[i] = owner[c[k - 1]]
        for b in c:
            owner.setdefault(b, i)
    p = tr.prompt_tokens
    kind = np.full(n, "", dtype=object)
    fol = np.flatnonzero(parent >= 0)
    rule = np.minimum(p[parent[fol]] // bs, p[fol] // bs)
    kind[fol] = np.where(reused[fol] == rule, "continue", np.where(reused[fol] > rule, "retry", "branch"))
    return {"sys_blocks": sys_blocks, "parent": parent, "reused": reused, "kind": kind}


def fit_mooncake(tr: Trace) -> dict[str, Any]:
    s = mooncake_structure(tr)
    bs = int(tr.block_size or 0)
    t, p, o = tr.arrival_s, tr.prompt_tokens, tr.output_tokens
    parent, reused, kind = s["parent"], s["reused"], s["kind"]
    fol = np.flatnonzero(parent >= 0)
    par = parent[fol]
    gaps = t[fol] - t[par]
    horizon = float(t[-1])
    cut = horizon - float(np.quantile(gaps, 0.95))
    n_children = np.bincount(par, minlength=len(tr))
    early = t <= cut
    counts = np.bincount(n_children[early])
    probs = counts / counts.sum()
    mean_children = float((np.arange(probs.size) * probs).sum())
    roots = parent < 0
    root_rate = roots.sum() / horizon
    kinds = kind[fol]
    cont, br = kinds == "continue", kinds == "branch"
    nb_par = -(-p[par] // bs)
    growth = (p[fol] - p[par] - o[par])[cont]
    reuse_frac = (reused[fol] / nb_par)[br]
    new_tok = (p[fol] - reused[fol] * bs)[br]
    # 3-second timestamp bins: counts per distinct timestamp show whether roots are Poisson
    _, per_bin = np.unique(t, return_counts=True)
    src = lambda what: _fitted(MOONCAKE_FILE, what)  # noqa: E731
    qt = lambda x, what: sourced_quantiles(x, src(what))  # noqa: E731
    return {
        "duration_s": (3600.0, "one hour, the length of the real trace (3,537 s from first to last request)"),
        "rate_rps": (round(root_rate / (1 - mean_children), 6),
                     src(f"long-run request rate = root rate {root_rate:.4f}/s / (1 - mean children {mean_children:.4f}); "
                         "a one-hour trace starting empty has fewer follow-ups, as the real one does")),
        "arrivals": ("poisson", src(f"conversations start as a Poisson process: the file's timestamps come in 3-s bins "
                                    f"whose counts have variance/mean {per_bin.var() / per_bin.mean():.3f}")),
        "block_size": (bs, "Mooncake FAST'25 trace README: hash_ids are 512-token blocks"),
        "system_prompt_blocks": (int(s["sys_blocks"]), src("longest block prefix shared by every request")),
        "children_probs": ([round(float(x), 6) for x in probs],
                           src(f"distribution of follow-up requests per request, over requests at t <= {cut:.0f} s "
                               "(95% of follow-ups arrive within the remaining time)")),
        "p_retry": (round(float((kinds == "retry").mean()), 6),
                    src("share of follow-ups that also reuse the parent's partial last block (same prompt resent)")),
        "p_branch": (round(float(br.mean()), 6),
                     src("share of follow-ups that reuse fewer full blocks than parent and child share (edited turn)")),
        "root_prompt": qt(p[roots], "empirical quantiles of input_length of requests with no reused prefix beyond the system prompt"),
        "output": qt(o, "empirical quantiles of output_length"),
        "gap_s": qt(gaps, "empirical quantiles of seconds from parent to follow-up request"),
        "growth_tokens": qt(growth, "empirical quantiles of child input - parent input - parent output, continuing follow-ups"),
        "branch_reuse_frac": qt(reuse_frac, "empirical quantiles of reused blocks / parent blocks, branching follow-ups"),
        "branch_new_tokens": qt(new_tok, "empirical quantiles of child input - reused blocks x 512, branching follow-ups"),
    }


PUBLISHED: dict[str, Any] = {
    "azure_code": {
        "duration_s": (3600.0, "one hour, like the released code trace (2023-11-16 18:17:03.98 to 19:14:19.93)"),
        "rate_rps": (2.5667, "Azure/AzurePublicDataset analysis/AzureLLMInferenceDataset2023.ipynb: 8,819 rows between "
                             "18:17:03.979960 and 19:14:19.928016 (3,435.9 s)"),
        "arrivals": ("mmpp", "assumption: the code service is as bursty as the conversation service "
                             "(azure_conv.mmpp rescaled); the code file is not available here to fit"),
        "prompt_median": (1500.0, "Splitwise (Patel et al., ISCA 2024), Sec. III-B / Fig. 3: median prompt 1,500 tokens for coding"),
        "output_median": (13.0, "Splitwise (Patel et al., ISCA 2024), Sec. III-B / Fig. 3: median output 13 tokens for coding"),
        "prompt_mean": (2048.0, "mean ContextTokens of the released AzureLLMInferenceTrace_code.csv (8,819 rows) as reported "
                                "by third-party analyses of that file (secondary source; not re-measured here)"),
        "output_mean": (28.0, "mean GeneratedTokens of the released AzureLLMInferenceTrace_code.csv as reported by "
                              "third-party analyses of that file (secondary source; not re-measured here)"),
    },
    "diurnal": {
        "peak_to_trough": (2.0, "weekday hourly peak/trough request ratio 1.8-2.2 of the Azure LLM inference trace 2024 "
                                "conversation service (AzureLLMInferenceTrace_conv_1week.csv), from a public analysis "
                                "notebook of that file (secondary source; the file is not here)"),
        "peak_hour": (14.0, "assumption: afternoon peak in the service's local time; set it for your deployment"),
        "period_s": (86400.0, "one day"),
    },
    "bursty": {
        "duration_s": (86400.0, "choice: one day, so that an autoscaler sees a full diurnal cycle"),
        "rate_rps": (2.0, "choice: mean load small enough for fast episodes; rescale with rate_rps="),
        "arrivals": ("mmpp", "the azure_conv.mmpp process (see its source) rescaled to rate_rps and modulated by [diurnal]"),
    },
    "reference": {
        "azure_conv_prompt_median": (1020.0, "Splitwise (Patel et al., ISCA 2024), Sec. III-B: median prompt 1,020 tokens, conversation"),
        "azure_conv_output_median": (129.0, "Splitwise (Patel et al., ISCA 2024), Sec. III-B: median output 129 tokens, conversation"),
        "mooncake_conv_prompt_mean": (12035.0, "Mooncake (Qin et al., FAST 2025), Table 2 and ../shared/traces/README.md: "
                                               "mean input 12,035 tokens, conversation trace"),
        "mooncake_conv_output_mean": (343.0, "Mooncake (Qin et al., FAST 2025), Table 2: mean output 343 tokens, conversation trace"),
        "mooncake_conv_hit_ratio": (0.366, "../shared/traces/README.md: 288,500 block references, 182,790 distinct, so an "
                                           "infinite prefix cache hits 36.6% of blocks"),
    },
}


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        s = repr(float(v))
        return s if any(c in s for c in ".en") else s + ".0"
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v)}")


def to_toml(sections: dict[str, Any]) -> str:
    lines = [
        "# Parameters of the built-in trace generators (traces/synthetic.py, traces/sessions.py).",
        "# Written by `python -m traces.fit`; every value carries its source. Do not edit by hand:",
        "# change traces/fit.py and re-run it (tests check that the fit reproduces this file).",
    ]

    def emit(name: str, node: dict[str, Any]) -> None:
        leaves = {k: v for k, v in node.items() if isinstance(v, tuple)}
        tables = {k: v for k, v in node.items() if isinstance(v, dict)}
        lines.append("")
        lines.append(f"[{name}]")
        for k, (value, source) in leaves.items():
            lines.append(f"{k} = {{ value = {_fmt(value)}, source = {_fmt(source)} }}")
        for k, sub in tables.items():
            emit(f"{name}.{k}", sub)

    for name, node in sections.items():
        emit(name, node)
    return "\n".join(lines) + "\n"


def fit_all(traces_dir: Path) -> str:
    """The full text of synthetic.toml, fitted from the files in `traces_dir`."""
    azure = load_trace(traces_dir / AZURE_FILE)
    moon = load_trace(traces_dir / MOONCAKE_FILE)
    sections = {"azure_conv": fit_azure_conv(azure), **{k: PUBLISHED[k] for k in ("azure_code", "diurnal", "bursty")},
                "mooncake_conv": fit_mooncake(moon), "reference": PUBLISHED["reference"]}
    return to_toml(sections)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--traces", type=Path, default=DEFAULT_TRACES, help="folder with the real trace files")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--check", action="store_true", help="fail if --out differs from a fresh fit")
    a = ap.parse_args(argv)
    return write_fit(fit_all(a.traces), a.out, a.traces, a.check)


if __name__ == "__main__":
    sys.exit(main())
