"""KV bytes per token and vLLM-style KV capacity, checked against what vLLM itself logged."""

import dataclasses

import pytest

from hwmodels import HwModelError, get_gpu, get_model, kv_bytes_per_token, kv_capacity_blocks, memory_breakdown
from hwmodels._data import read_toml
from hwmodels.memory import GIB, usable_gpu_bytes


def test_kv_bytes_gqa():
    # 2 (K,V) * layers * kv_heads/tp * head_dim * 2 bytes
    assert kv_bytes_per_token("llama-3.1-8b") == 2 * 32 * 8 * 128 * 2 == 131072
    assert kv_bytes_per_token("llama-3.1-70b", tp=8) == 2 * 80 * 1 * 128 * 2 == 40960
    assert kv_bytes_per_token("llama-3.1-70b", tp=2) == 2 * 80 * 4 * 128 * 2
    assert kv_bytes_per_token("qwen3-30b-a3b") == 2 * 48 * 4 * 128 * 2
    # tp > kv_heads: heads are replicated, so per-GPU KV stops shrinking
    assert kv_bytes_per_token("qwen3-30b-a3b", tp=8) == kv_bytes_per_token("qwen3-30b-a3b", tp=4) == 2 * 48 * 1 * 128 * 2


def test_kv_bytes_mla_is_latent_and_not_split_by_tp():
    # DeepSeek-V3: 61 layers * (kv_lora_rank 512 + rope 64) * 2 bytes, every TP rank holds all of it
    assert kv_bytes_per_token("deepseek-v3") == 61 * 576 * 2 == 70272
    assert kv_bytes_per_token("deepseek-v3", tp=8) == 70272


def test_bad_tp_is_rejected():
    with pytest.raises(HwModelError, match="heads=32 must be divisible by tp"):
        kv_bytes_per_token("llama-3.1-8b", tp=3)
    with pytest.raises(HwModelError, match="positive integer"):
        kv_bytes_per_token("llama-3.1-8b", tp=0)


ANCHORS = read_toml("vllm_memory.toml")["anchor"]


@pytest.mark.parametrize("anchor", ANCHORS, ids=[a["name"][:40] for a in ANCHORS])
def test_kv_capacity_matches_vllm_logs(anchor):
    """Available KV memory and block count within 3% of the figure vLLM printed (source in the data file)."""
    model = dataclasses.replace(get_model(anchor["model"]), linear_dtype_bytes=anchor["linear_dtype_bytes"])
    b = memory_breakdown(model, anchor["gpu"], tp=anchor["tp"], mem_frac=anchor["mem_frac"])
    logged = anchor["available_kv_bytes"]["value"]
    assert b.kv_bytes == pytest.approx(logged, rel=0.03)
    logged_blocks = int(logged // (16 * kv_bytes_per_token(model, anchor["tp"])))
    blocks = kv_capacity_blocks(model, anchor["gpu"], tp=anchor["tp"], mem_frac=anchor["mem_frac"])
    assert blocks == pytest.approx(logged_blocks, rel=0.03)
    # the weight accounting alone is much tighter than the 3% (vLLM adds rotary caches, FP8 scales)
    assert b.weights_bytes == pytest.approx(anchor["weights_bytes"]["value"], rel=0.01)


def test_llama8b_h100_figures():
    # vLLM: 51.38 GiB -> 420,904 tokens = 26,306 blocks of 16 (llm-d empirical log, see vllm_memory.toml)
    blocks = kv_capacity_blocks("Llama-3.1-8B", "H100", tp=1, mem_frac=0.9)
    assert abs(blocks - 26306) / 26306 < 0.03


def test_llama70b_tp8_h100_prediction_is_physical():
    # No public vLLM log of bf16 Llama-3.1-70B at TP=8 on H100 was found; check the prediction is
    # bracketed by physics: below 0.9*HBM minus weights/8, above that minus 8 GiB of overheads.
    b = memory_breakdown("llama-3.1-70b", "h100", tp=8, mem_frac=0.9)
    upper = 0.9 * usable_gpu_bytes("h100") - get_model("llama-3.1-70b").weight_bytes() / 8
    assert upper - 8 * GIB < b.kv_bytes < upper
    assert b.blocks == kv_capacity_blocks("llama-3.1-70b", "h100", tp=8)


def test_capacity_grows_with_mem_frac_and_gpu_memory():
    lo = kv_capacity_blocks("llama-3.1-8b", "h100", mem_frac=0.8)
    hi = kv_capacity_blocks("llama-3.1-8b", "h100", mem_frac=0.95)
    assert hi > lo
    assert kv_capacity_blocks("llama-3.1-8b", "h200") > 2 * kv_capacity_blocks("llama-3.1-8b", "h100")
    # block_size trades count for size: same bytes (up to one block of rounding)
    b16 = kv_capacity_blocks("llama-3.1-8b", "h100", block_size=16)
    b32 = kv_capacity_blocks("llama-3.1-8b", "h100", block_size=32)
    assert b32 in (b16 // 2, b16 // 2 - 1)


def test_cudagraph_memory_reduces_capacity():
    base = kv_capacity_blocks("llama-3.1-8b", "h100")
    with_graphs = kv_capacity_blocks("llama-3.1-8b", "h100", cudagraph_bytes=0.67 * GIB)
    assert with_graphs < base


def test_model_that_does_not_fit_raises_with_breakdown():
    with pytest.raises(HwModelError, match=r"Llama-3.1-70B with tp=1 does not fit on H100-SXM.*weights 131\.4"):
        kv_capacity_blocks("llama-3.1-70b", "h100", tp=1)
    with pytest.raises(HwModelError, match="mem_frac"):
        kv_capacity_blocks("llama-3.1-8b", "h100", mem_frac=1.5)
    with pytest.raises(HwModelError, match="block_size"):
        kv_capacity_blocks("llama-3.1-8b", "h100", block_size=0)


def test_usable_memory_prefers_measurement():
    assert usable_gpu_bytes("h200") == get_gpu("h200").cuda_visible_bytes
    a100 = get_gpu("a100")
    assert a100.cuda_visible_bytes is None and 0.97 * a100.hbm_bytes < usable_gpu_bytes(a100) < a100.hbm_bytes
