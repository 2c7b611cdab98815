"""Write traces/data/families.toml: the parameters of the workload families of traces/families.py.

    python -m traces.fit_families --code PATH [--out traces/data/families.toml] [--check]

Three families, each parameter with its source:

- ``azure_code_bursty``: fitted by this script to the Azure LLM inference trace 2023, code service
  (``AzureLLMInferenceTrace_code.csv`` of Azure/AzurePublicDataset, CC-BY 4.0, the trace the
  Splitwise paper characterizes): empirical quantile tables of prompt and output lengths, the
  prompt/output rank correlation, and an MMPP-2 fitted to its arrivals (mean rate, inter-arrival CV,
  index of dispersion at 1/10/60/300 s), with the Splitwise paper's published medians kept beside
  them as the reference a test checks the generator against. The file is not in
  ``../shared/traces``; ``--code`` names it (``git show`` of the repository's ``data/`` file).
- ``burstgpt_like``: the modelled workload of BurstGPT's own benchmark (Gamma inter-arrivals, Zipf
  prompt and output lengths), parameters from its code; written as published, nothing fitted.
- ``agentic``: multi-turn tool-calling agent sessions; the means come from the Mooncake FAST'25
  tool-and-agent trace's published statistics, the structure (turns, tool pauses, shared agent
  prefixes) is a modelling choice where no figure is published, and each such value says so.

``--check`` re-fits and fails if the data file differs (how a reader proves the shipped numbers
come from the file). Needs scipy (the MMPP least-squares fit of traces.fit); the generators do not.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from traces.fit import IDC_WINDOWS_S, fit_mmpp, sourced_quantiles, spearman, to_toml, write_fit
from traces.load import load_trace
from traces.trace import Trace

DEFAULT_OUT = Path(__file__).resolve().parent / "data" / "families.toml"
CODE_FILE = "AzureLLMInferenceTrace_code.csv"
CODE_ORIGIN = "Azure/AzurePublicDataset data/AzureLLMInferenceTrace_code.csv (blob 62bd8109)"

_BURSTGPT_CODE = "HPMLL/BurstGPT example/src/burstgpt/config.py (BurstGPT-Perf, commit 01131e1b), RunConfig"
_MOONCAKE_README = ("kvcache-ai/Mooncake FAST25-release/README.md, Workloads table (Mooncake, Qin et al., FAST 2025): "
                    "tool and agent trace")

PUBLISHED: dict[str, Any] = {
    "burstgpt_like": {
        "duration_s": (3600.0, "choice: one hour, like the other built-in request generators"),
        "rate_rps": (1.0, f"{_BURSTGPT_CODE}.qps = 1.0 (requests/s of the modelled workload)"),
        "gamma_shape": (0.5, f"{_BURSTGPT_CODE}.gamma_shape = 0.5: Gamma inter-arrival times, the arrival model "
                             "of the BurstGPT paper (Wang et al., arXiv 2401.17644, Sec. 'BurstGPT-Perf'); "
                             "inter-arrival CV = 1/sqrt(shape) = 1.414"),
        "zipf_a": (1.1, f"{_BURSTGPT_CODE}.zipf_param = 1.1: Zipf prompt and output lengths, the length model of the "
                        "BurstGPT paper; drawn as in BurstGPT-Perf's SyntheticWorkload._sample_len (np.random zipf, "
                        "values >= the limit redrawn), i.e. Zipf truncated to 1 .. limit - 1"),
        "max_prompt_tokens": (1024, f"{_BURSTGPT_CODE}.max_prompt_len = 1024 (lengths >= it are redrawn)"),
        "max_output_tokens": (1024, f"{_BURSTGPT_CODE}.max_gen_len = 1024 (lengths >= it are redrawn)"),
    },
    "agentic": {
        "duration_s": (3600.0, "one hour, like the Mooncake tool-and-agent trace (sampled from one hour of online "
                               f"requests: {_MOONCAKE_README})"),
        "rate_rps": (6.557778, f"{_MOONCAKE_README}: 23,608 requests in one hour = 6.5578 requests/s"),
        "prompt_mean": (8596.0, f"{_MOONCAKE_README}: average input length 8,596 tokens (the target the session "
                                "structure below is sized to; a test checks the generator's mean against it)"),
        "output_mean": (182.0, f"{_MOONCAKE_README}: average output length 182 tokens"),
        "output_median": (96.0, "modelling choice: a tool call or short answer; no median is published for the "
                                "tool-and-agent trace (lognormal with the published mean 182)"),
        "block_size": (512, "Mooncake FAST'25 trace README: hash_ids are 512-token blocks"),
        "agents": (8, "modelling choice: distinct agent applications (each a system prompt plus tool definitions "
                      "shared by all of its sessions); no figure is published"),
        "agent_prefix_blocks": ([4, 4, 6, 6, 8, 8, 10, 12], "modelling choice: system prompt + tool definitions of "
                                                           "each agent, in 512-token blocks (2,048-6,144 tokens)"),
        "task_tokens_median": (400.0, "modelling choice: the user's task in the first turn (lognormal)"),
        "task_tokens_mean": (800.0, "modelling choice: the user's task in the first turn (lognormal)"),
        "mean_turns": (4.0, "modelling choice: LLM calls per session (geometric); sized so that the mean input "
                            "matches the published 8,596 tokens"),
        "max_turns": (40, "modelling choice: an agent stops after this many calls (step budget)"),
        "tool_tokens_median": (500.0, "modelling choice: tokens a tool result adds to the context (lognormal)"),
        "tool_tokens_mean": (1200.0, "modelling choice: tokens a tool result adds to the context (lognormal)"),
        "tool_pause_median_s": (2.0, "modelling choice: tool execution time between an answer and the next call "
                                     "(lognormal)"),
        "tool_pause_mean_s": (6.0, "modelling choice: tool execution time between an answer and the next call "
                                   "(lognormal)"),
        "decode_s_per_token": (0.03, "modelling choice: the answer's generation time added to the pause "
                                     "(an open-loop trace cannot know the served TPOT; 30 ms/token is within "
                                     "MLPerf Inference's Llama-2-70B Server TPOT limit of 200 ms)"),
    },
}


def _fitted(what: str) -> str:
    return f"fitted to {CODE_ORIGIN} by traces/fit_families.py: {what}"


def fit_code(tr: Trace) -> dict[str, Any]:
    """The ``azure_code_bursty`` section fitted to the Azure 2023 code-service trace ``tr``."""
    t = tr.arrival_s
    mmpp, emp = fit_mmpp(t)
    rho = spearman(tr.prompt_tokens, tr.output_tokens)
    idc_txt = ", ".join(f"{w:g} s: {v:.3f}" for w, v in zip(IDC_WINDOWS_S, emp["idc"]))
    return {
        "duration_s": (3600.0, "one hour, like the released code trace (3,435.9 s from first to last request)"),
        "rate_rps": (round(float(emp["rate"]), 6), _fitted(f"{t.size} requests / {t[-1]:.3f} s")),
        "gamma_cv": (round(float(emp["cv"]), 6), _fitted("inter-arrival CV (std/mean), used when arrivals='gamma'")),
        "idc": ([round(float(v), 3) for v in emp["idc"]],
                _fitted(f"index of dispersion of counts at {', '.join(f'{w:g}' for w in IDC_WINDOWS_S)} s "
                        f"({idc_txt}): bursts of completions, far burstier than the conversation service")),
        "copula_r": (round(float(2 * np.sin(np.pi * rho / 6)), 6),
                     _fitted(f"Gaussian-copula correlation 2 sin(pi rho/6) from Spearman rho = {rho:.4f} "
                             "of prompt vs output")),
        "mmpp": {
            "rates": ([round(x, 6) for x in mmpp.rates],
                      _fitted("MMPP-2 arrival rate in each state (1/s), least squares on mean rate, inter-arrival CV "
                              "and IDC at 1/10/60/300 s (traces.fit.fit_mmpp)")),
            "switch": ([round(x, 8) for x in mmpp.switch], _fitted("rate of leaving each state (1/s), same fit")),
        },
        "prompt": sourced_quantiles(tr.prompt_tokens, _fitted("empirical quantiles of ContextTokens")),
        "output": sourced_quantiles(tr.output_tokens, _fitted("empirical quantiles of GeneratedTokens")),
        "reference": {
            "prompt_median": (1500.0, "Splitwise (Patel et al., ISCA 2024), Sec. III-B / Fig. 3: median prompt "
                                      "1,500 tokens for coding"),
            "output_median": (13.0, "Splitwise (Patel et al., ISCA 2024), Sec. III-B / Fig. 3: median output "
                                    "13 tokens for coding"),
        },
    }


def fit_all(code_path: Path) -> str:
    """The full text of families.toml, the code section fitted from ``code_path``."""
    text = to_toml({"azure_code_bursty": fit_code(load_trace(code_path, format="azure")), **PUBLISHED})
    header = ("# Parameters of the workload families (traces/families.py).\n"
              "# Written by `python -m traces.fit_families --code AzureLLMInferenceTrace_code.csv`; every value\n"
              "# carries its source. Do not edit by hand: change traces/fit_families.py and re-run it.\n")
    body = text.split("\n", 3)[3]  # drop traces.fit's header (it names synthetic.toml)
    return header + body


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--code", type=Path, required=True,
                    help=f"the Azure 2023 code-service trace ({CODE_FILE} of Azure/AzurePublicDataset)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--check", action="store_true", help="fail if --out differs from a fresh fit")
    a = ap.parse_args(argv)
    if not a.code.is_file():
        ap.error(f"--code {a.code}: no such file")
    return write_fit(fit_all(a.code), a.out, a.code, a.check)


if __name__ == "__main__":
    sys.exit(main())
