"""Catalogue completeness, sources, lookups and parameter-count cross-checks for hwmodels."""

import pytest

import hwmodels
from hwmodels import HwModelError, get_gpu, get_model, list_gpus, list_models
from hwmodels._data import read_toml, sourced
from hwmodels.catalog import REQUIRED_GPU_FIELDS, REQUIRED_MODEL_FIELDS

REQUIRED_GPUS = ["A100-80GB-SXM", "H100-SXM", "H200-SXM", "B200", "L40S", "MI300X"]
REQUIRED_MODELS = ["Llama-3.1-8B", "Llama-3.1-70B", "Mixtral-8x7B", "Qwen3-30B-A3B", "DeepSeek-V3"]


def test_required_entries_present():
    assert set(REQUIRED_GPUS) <= set(list_gpus())
    assert set(REQUIRED_MODELS) <= set(list_models())


@pytest.mark.parametrize("fname,required", [("gpus.toml", REQUIRED_GPU_FIELDS), ("models.toml", REQUIRED_MODEL_FIELDS)])
def test_every_number_has_a_source(fname, required):
    raw = read_toml(fname)
    for name, table in raw.items():
        for key in required:
            entry = table[key]
            assert isinstance(entry, dict) and "value" in entry, f"{fname} [{name}] {key}"
            assert isinstance(entry.get("source"), str) and len(entry["source"]) > 15, f"{fname} [{name}] {key}"
        # no bare numbers anywhere: every numeric field is a sourced inline table
        for key, val in table.items():
            assert not isinstance(val, (int, float)) or isinstance(val, bool), f"{fname} [{name}] {key} lacks a source"
    for name in raw:
        rec = get_gpu(name) if fname == "gpus.toml" else get_model(name)
        assert set(required) <= set(rec.sources)


def test_prices_have_provider_and_date():
    for name in list_gpus():
        g = get_gpu(name)
        assert g.price_usd_per_hour > 0 and g.price_provider and g.price_date
        assert hwmodels.price_per_gpu_hour(name) == g.price_usd_per_hour


@pytest.mark.parametrize("alias,canonical", [
    ("H100", "H100-SXM"), ("h100", "H100-SXM"), ("NVIDIA H200", "H200-SXM"), ("mi300x", "MI300X"),
    ("a100_80gb", "A100-80GB-SXM"), ("L40S", "L40S"), ("b200", "B200"),
])
def test_gpu_aliases(alias, canonical):
    assert get_gpu(alias).name == canonical


@pytest.mark.parametrize("alias,canonical", [
    ("llama-3.1-8b", "Llama-3.1-8B"), ("meta-llama/Llama-3.1-70B-Instruct", "Llama-3.1-70B"),
    ("Mixtral-8x7B", "Mixtral-8x7B"), ("qwen/qwen3-30b-a3b", "Qwen3-30B-A3B"), ("DEEPSEEK-V3", "DeepSeek-V3"),
])
def test_model_aliases(alias, canonical):
    assert get_model(alias).name == canonical


def test_unknown_names_list_known_ones():
    with pytest.raises(HwModelError, match="unknown GPU 'V100'.*H100-SXM"):
        get_gpu("V100")
    with pytest.raises(HwModelError, match="unknown model 'gpt-5'.*Llama-3.1-8B"):
        get_model("gpt-5")
    with pytest.raises(HwModelError, match="must be a string"):
        get_gpu(100)


@pytest.mark.parametrize("name", REQUIRED_MODELS)
def test_parameter_count_matches_published(name):
    # The architecture fields reproduce the vendor's own total parameter count (within 0.5%),
    # which checks layers/hidden/heads/experts/intermediate sizes all at once.
    m = get_model(name)
    assert m.total_params() == pytest.approx(m.published_params, rel=5e-3)


def test_active_parameters_of_moe_models():
    # Published "activated" parameters (embedding gather excluded on our side, so allow 10%).
    assert get_model("Mixtral-8x7B").active_params() == pytest.approx(12.9e9, rel=0.02)
    assert get_model("Qwen3-30B-A3B").active_params() == pytest.approx(3.3e9, rel=0.10)
    assert get_model("DeepSeek-V3").active_params() == pytest.approx(37e9, rel=0.03)


def test_sourced_field_errors_name_file_table_and_field():
    where = "gpus.toml [X]"
    with pytest.raises(HwModelError, match=r"gpus.toml \[X\]: missing field 'hbm_bw'"):
        sourced({}, "hbm_bw", where)
    with pytest.raises(HwModelError, match="no source"):
        sourced({"hbm_bw": {"value": 1.0, "source": " "}}, "hbm_bw", where)
    with pytest.raises(HwModelError, match="inline table"):
        sourced({"hbm_bw": 3.35e12}, "hbm_bw", where)
    with pytest.raises(HwModelError, match="must be an integer"):
        sourced({"layers": {"value": 1.5, "source": "x"}}, "layers", where, int)
    with pytest.raises(HwModelError, match=">= 1"):
        sourced({"hbm_bw": {"value": 0.0, "source": "x"}}, "hbm_bw", where, float, minimum=1.0)


def test_malformed_model_table_is_rejected():
    from hwmodels.catalog import _parse_model
    good = read_toml("models.toml")["Mixtral-8x7B"]
    bad = dict(good, top_k={"value": 9, "source": "x"})
    with pytest.raises(HwModelError, match=r"models.toml \[Bad\].*top_k <= experts"):
        _parse_model("Bad", bad)
    bad = dict(good, attention="sliding")
    with pytest.raises(HwModelError, match="'attention' must be"):
        _parse_model("Bad", bad)


def test_context_length_in_the_catalogue_with_its_source() -> None:
    """Every model carries the context length vLLM serves it with (config.json max_position_embeddings)."""
    expected = {"Llama-3.1-8B": 131072, "Llama-3.1-70B": 131072, "Mixtral-8x7B": 32768,
                "Qwen3-30B-A3B": 40960, "DeepSeek-V3": 163840}
    for name, n in expected.items():
        m = hwmodels.get_model(name)
        assert m.context_length == n
        assert "max_position_embeddings" in m.sources["context_length"]
