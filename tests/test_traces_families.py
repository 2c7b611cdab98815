"""The workload families of traces/families.py: statistics match their cited figures, determinism.

Tolerances are stated per check; each compares a generated trace with the figure its data file
cites (traces/data/families.toml), never with the generator's own output.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from traces import TraceError, load_trace
from traces.builtin import TRACE_VERSIONS, versioned_name
from traces.families import FAMILIES_FILE, zipf_truncated_pmf
from traces.fit import idc
from traces.params import load_params, load_sources

FAMILIES = ("azure_code_bursty", "burstgpt_like", "agentic")
CODE_FILE = Path(__file__).resolve().parents[1].parent / "shared" / "traces" / "azure_llm_2023_code.csv"


@pytest.mark.parametrize("name", FAMILIES)
def test_registered_versioned_and_deterministic(name):
    assert TRACE_VERSIONS[name] == 1 and versioned_name(name) == f"{name}-v1"
    a = load_trace(f"{name}-v1", seed=3, duration_s=600.0)
    b = load_trace(name, seed=3, duration_s=600.0)
    c = load_trace(name, seed=4, duration_s=600.0)
    assert a.equals(b)
    assert not a.equals(c)
    with pytest.raises(TraceError, match="version 2 is not available"):
        load_trace(f"{name}-v2")
    with pytest.raises(TraceError, match="rate_rps must be a finite number > 0"):
        load_trace(name, rate_rps=0.0)


def test_every_family_parameter_has_a_source():
    sources = load_sources(FAMILIES_FILE)
    for name in FAMILIES:
        assert load_params(name, FAMILIES_FILE)  # raises for a value without a source
        assert any(k.startswith(f"{name}.") for k in sources)
    # A modelling choice says so; a published figure names where it is published.
    for key, src in sources.items():
        assert src.strip(), key


def test_code_bursty_matches_splitwise_and_the_code_file():
    p = load_params("azure_code_bursty", FAMILIES_FILE)
    trs = [load_trace("azure_code_bursty", seed=s, duration_s=36000.0) for s in range(2)]
    prompt = np.concatenate([t.prompt_tokens for t in trs])
    output = np.concatenate([t.output_tokens for t in trs])
    # Splitwise (ISCA'24) Sec. III-B: median prompt 1,500 and output 13 tokens for coding.
    assert abs(np.median(prompt) / p["reference"]["prompt_median"] - 1) < 0.05
    assert abs(np.median(output) - p["reference"]["output_median"]) <= 1
    # Burstiness fitted to the file: index of dispersion at 1 / 10 / 60 s within 25%, mean rate 10%.
    for tr in trs:
        for w, target in zip((1.0, 10.0, 60.0), p["idc"][:3]):
            assert abs(idc(tr.arrival_s, w) / target - 1) < 0.25, (w, idc(tr.arrival_s, w), target)
        assert abs(len(tr) / 36000.0 / p["rate_rps"] - 1) < 0.10
        gaps = np.diff(tr.arrival_s)
        assert abs(gaps.std() / gaps.mean() / p["gamma_cv"] - 1) < 0.15


def _zipf_mle(x: np.ndarray, limit: int) -> float:
    """Maximum-likelihood exponent of Zipf truncated below ``limit`` (bisection on the score)."""
    k = np.arange(1, limit, dtype=np.float64)
    target = np.log(x).mean()
    lo, hi = 1.001, 3.0
    for _ in range(60):
        a = (lo + hi) / 2
        w = k ** -a
        expect = (w * np.log(k)).sum() / w.sum()  # E[log X] falls as a grows
        lo, hi = (a, hi) if expect > target else (lo, a)
    return (lo + hi) / 2


def test_burstgpt_like_matches_burstgpt_perf_parameters():
    p = load_params("burstgpt_like", FAMILIES_FILE)
    tr = load_trace("burstgpt_like", seed=0, duration_s=20000.0)
    # Zipf exponent 1.1 (BurstGPT-Perf zipf_param) recovered within 0.03 from prompts and outputs.
    assert abs(_zipf_mle(tr.prompt_tokens, p["max_prompt_tokens"]) - p["zipf_a"]) < 0.03
    assert abs(_zipf_mle(tr.output_tokens, p["max_output_tokens"]) - p["zipf_a"]) < 0.03
    assert tr.prompt_tokens.max() < p["max_prompt_tokens"] and tr.prompt_tokens.min() >= 1
    # Gamma(shape 0.5) inter-arrivals: CV 1/sqrt(0.5) within 5%, mean rate within 3%.
    gaps = np.diff(tr.arrival_s)
    assert abs(gaps.std() / gaps.mean() - 1 / np.sqrt(p["gamma_shape"])) < 0.05 * np.sqrt(2)
    assert abs(len(tr) / 20000.0 / p["rate_rps"] - 1) < 0.03
    pmf = zipf_truncated_pmf(1.1, 1024)
    assert pmf.shape == (1023,) and abs(pmf.sum() - 1) < 1e-12 and pmf[0] > pmf[1]
    with pytest.raises(TraceError, match="a > 1"):
        zipf_truncated_pmf(1.0, 1024)


def test_agentic_matches_mooncake_toolagent_means_and_chains_are_prefixes():
    p = load_params("agentic", FAMILIES_FILE)
    tr = load_trace("agentic", seed=0)
    # Mooncake FAST'25 tool-and-agent trace: mean input 8,596 and output 182 tokens (within 5%);
    # 23,608 requests/hour (within 5%: the trace starts empty, as the real one does).
    assert abs(tr.prompt_tokens.mean() / p["prompt_mean"] - 1) < 0.05
    assert abs(tr.output_tokens.mean() / p["output_mean"] - 1) < 0.05
    assert abs(len(tr) / p["duration_s"] / p["rate_rps"] - 1) < 0.05
    assert tr.block_size == 512 and tr.parent is not None
    # Every later call re-sends its parent's context: the parent's full blocks lead its chain,
    # and it comes after the parent's answer plus a tool pause.
    kids = np.flatnonzero(tr.parent >= 0)
    assert kids.size > len(tr) // 2
    rng = np.random.default_rng(0)
    for i in rng.choice(kids, 200, replace=False):
        j = int(tr.parent[i])
        full = int(tr.prompt_tokens[j]) // 512
        assert np.array_equal(tr.chain(int(i))[:full], tr.chain(j)[:full])
        assert tr.prompt_tokens[i] > tr.prompt_tokens[j] + tr.output_tokens[j]
        assert tr.arrival_s[i] > tr.arrival_s[j] and tr.turn[i] == tr.turn[j] + 1
    # First calls of one agent share that agent's prefix blocks (a long shared prefix).
    first = np.flatnonzero(tr.turn == 1)
    heads = {int(tr.chain(int(i))[0]) for i in first}
    assert len(heads) == len(p["agent_prefix_blocks"])


@pytest.mark.skipif(not CODE_FILE.is_file(), reason=f"{CODE_FILE} absent (the Azure 2023 code trace is not in "
                    "../shared/traces; traces/data/families.toml was fitted to Azure/AzurePublicDataset's copy)")
def test_families_file_reproduces_from_the_code_trace():
    from traces.fit_families import fit_all

    assert FAMILIES_FILE.read_text() == fit_all(CODE_FILE)
