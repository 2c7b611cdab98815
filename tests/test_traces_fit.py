"""The built-in generators against the real traces (skipped when ../shared/traces is absent) and
against the published statistics recorded in traces/data/synthetic.toml (always run)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import pytest

from traces import load_trace, trace_stats
from traces.fit import fit_all, idc
from traces.params import DATA_FILE, load_params
from traces.plot_fit import main as plot_main
from traces.stats import lru_block_hit_ratio

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "traces"
AZURE = "azure_llm_2023_conv.csv"
MOONCAKE = "mooncake_conversation.jsonl"


@pytest.fixture
def shared(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    if not (SHARED / AZURE).is_file() or not (SHARED / MOONCAKE).is_file():
        pytest.skip(f"real traces not found at {SHARED} (they live beside the project, not in it)")
    monkeypatch.setenv("SERVEGYM_CACHE", str(tmp_path_factory.mktemp("cache")))
    return SHARED


def close(syn: float, real: float, rel: float, what: str) -> None:
    assert abs(syn / real - 1) <= rel, f"{what}: synthetic {syn:.4g} vs real {real:.4g} (tolerance {rel:.0%})"


def _leaves(node: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for k, v in node.items():
        if isinstance(v, dict) and "value" in v:
            out[prefix + k] = v["value"]
        elif isinstance(v, dict):
            out.update(_leaves(v, f"{prefix}{k}."))
    return out


def test_fit_reproduces_the_shipped_data_file(shared: Path) -> None:
    fresh = _leaves(tomllib.loads(fit_all(shared)))
    shipped = _leaves(tomllib.loads(DATA_FILE.read_text()))
    assert fresh.keys() == shipped.keys()
    for key, value in shipped.items():
        if isinstance(value, (str, bool)):
            assert fresh[key] == value, key
        else:
            np.testing.assert_allclose(fresh[key], value, rtol=1e-5, atol=1e-9, err_msg=key)


def test_azure_conv_matches_real(shared: Path) -> None:
    real = trace_stats(load_trace(shared / AZURE))
    syn = trace_stats(load_trace("azure_conv", seed=0))
    for field in ("prompt", "output"):
        for stat in ("mean", "p50", "p90", "p99"):
            close(syn[f"{field}_{stat}"], real[f"{field}_{stat}"], 0.10, f"{field}_{stat}")
    close(syn["n"], real["n"], 0.15, "requests in one hour")


def test_azure_conv_burstiness_matches_real(shared: Path) -> None:
    real = load_trace(shared / AZURE)
    syn = load_trace("azure_conv", seed=0, duration_s=6 * 3600)  # long enough for the slow MMPP to mix
    cv = trace_stats(syn)["interarrival_cv"]
    assert cv > 1.0
    close(cv, trace_stats(real)["interarrival_cv"], 0.10, "inter-arrival CV")
    for w in (1.0, 10.0, 60.0):
        close(idc(syn.arrival_s, w), idc(real.arrival_s, w), 0.35, f"index of dispersion at {w:g} s")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mooncake_conv_matches_real(shared: Path, seed: int) -> None:
    real = trace_stats(load_trace(shared / MOONCAKE))
    syn = trace_stats(load_trace("mooncake_conv", seed=seed))
    assert abs(syn["infinite_cache_block_hit_ratio"] - real["infinite_cache_block_hit_ratio"]) <= 0.03
    close(syn["prompt_mean"], real["prompt_mean"], 0.10, "mean input")
    close(syn["output_mean"], real["output_mean"], 0.10, "mean output")
    for stat in ("p50", "p90"):
        close(syn[f"prompt_{stat}"], real[f"prompt_{stat}"], 0.15, f"input {stat}")
        close(syn[f"output_{stat}"], real[f"output_{stat}"], 0.10, f"output {stat}")
    close(syn["n"], real["n"], 0.10, "requests in one hour")
    close(syn["block_refs"], real["block_refs"], 0.10, "block references")


def test_mooncake_conv_lru_curve_matches_real(shared: Path) -> None:
    """Not fitted directly: finite-cache reuse follows from the session model's structure."""
    real, syn = load_trace(shared / MOONCAKE), load_trace("mooncake_conv", seed=0)
    for cap in (10_000, 30_000):
        assert abs(lru_block_hit_ratio(syn, cap) - lru_block_hit_ratio(real, cap)) <= 0.03, cap


def test_published_statistics() -> None:
    ref = load_params("reference")
    conv = trace_stats(load_trace("azure_conv", seed=0))
    close(conv["prompt_p50"], ref["azure_conv_prompt_median"], 0.10, "Splitwise conv prompt median")
    close(conv["output_p50"], ref["azure_conv_output_median"], 0.10, "Splitwise conv output median")
    moon = trace_stats(load_trace("mooncake_conv", seed=0))
    close(moon["prompt_mean"], ref["mooncake_conv_prompt_mean"], 0.10, "Mooncake mean input")
    close(moon["output_mean"], ref["mooncake_conv_output_mean"], 0.10, "Mooncake mean output")
    assert abs(moon["infinite_cache_block_hit_ratio"] - ref["mooncake_conv_hit_ratio"]) <= 0.03
    code_p = load_params("azure_code")
    code = trace_stats(load_trace("azure_code", seed=0, duration_s=4 * 3600))
    close(code["prompt_p50"], code_p["prompt_median"], 0.10, "Splitwise code prompt median")
    close(code["output_p50"], code_p["output_median"], 0.10, "Splitwise code output median")
    close(code["prompt_mean"], code_p["prompt_mean"], 0.15, "code prompt mean")
    close(code["output_mean"], code_p["output_mean"], 0.15, "code output mean")
    assert code["output_p50"] < 0.2 * conv["output_p50"]  # code answers are short (13 vs 129 tokens)


def test_plot_fit_writes_pngs(shared: Path, tmp_path: Path) -> None:
    assert plot_main(["--out", str(tmp_path), "--traces", str(shared)]) == 0
    for name in ("azure_conv_fit.png", "mooncake_conv_fit.png", "azure_code.png"):
        data = (tmp_path / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000, name


def test_plot_fit_without_real_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert plot_main(["--out", str(tmp_path / "out"), "--traces", str(tmp_path)]) == 0
    assert (tmp_path / "out" / "azure_code.png").is_file()
    assert "skipping azure_conv" in capsys.readouterr().out
