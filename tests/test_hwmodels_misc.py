"""MoE expert time, interconnect, KV transfer, cold start and price."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwmodels import (Calibration, HwModelError, alltoall_time, cold_start_time, expected_experts_touched,
                      expert_ffn_time, get_gpu, get_model, kv_transfer_time, price_per_gpu_hour)
from hwmodels.comm import allreduce_time


def test_expert_ffn_time_shape_zero_and_roofline():
    n = np.array([0, 1, 8, 64, 512, 4096])
    t = expert_ffn_time("Mixtral-8x7B", "H100", n)
    assert t.shape == n.shape and t[0] == 0.0
    assert np.all(np.diff(t) >= 0)
    m, g = get_model("Mixtral-8x7B"), get_gpu("H100")
    # one expert = 3 * 4096 * 14336 bf16 weights = 352 MB: >= 105 us at 3.35 TB/s even for one token
    assert t[1] >= m.expert_params * 2 / g.hbm_bw
    # 4096 tokens are compute-bound: >= 2 * params * tokens at peak FLOP/s
    assert t[-1] >= 2 * m.expert_params * 4096 / g.bf16_flops
    ideal = expert_ffn_time("Mixtral-8x7B", "H100", n, Calibration.ideal())
    assert np.all(ideal <= t)
    assert isinstance(expert_ffn_time("DeepSeek-V3", "H200", 3), float)


def test_expert_ffn_time_errors():
    with pytest.raises(HwModelError, match="dense model"):
        expert_ffn_time("Llama-3.1-8B", "H100", [1])
    with pytest.raises(HwModelError, match="tokens_per_expert must be finite and >= 0"):
        expert_ffn_time("Mixtral-8x7B", "H100", [-1])


@settings(max_examples=100, deadline=None)
@given(tokens=st.integers(0, 100000))
def test_expected_experts_touched_bounds(tokens):
    m = get_model("DeepSeek-V3")
    e = expected_experts_touched(m, tokens)
    assert 0.0 <= e <= min(m.experts, m.top_k * tokens) + 1e-9
    assert expected_experts_touched(m, tokens + 1) >= e


def test_alltoall_intra_and_inter_node():
    g = get_gpu("H100")
    cal = Calibration.ideal()
    # 8 GPUs on one NVSwitch: 1 GB leaves each GPU at 450 GB/s per direction
    assert alltoall_time(1e9, g, 8, calibration=cal) == pytest.approx(1e9 / 450e9)
    # 16 GPUs on 2 nodes: 8/15 of the bytes leave through the 50 GB/s NIC and dominate
    t = alltoall_time(1e9, g, 16, intra_node=False, nodes=2, calibration=cal)
    assert t == pytest.approx(1e9 * 8 / 15 / 50e9)
    assert t > alltoall_time(1e9, g, 8, calibration=cal)
    assert alltoall_time(1e9, g, 16, intra_node=False, nodes=2, inter_node_bw=400e9, calibration=cal) < t
    np.testing.assert_array_equal(alltoall_time(np.array([0.0, 0.0]), g, 1), [0.0, 0.0])
    assert np.all(np.diff(alltoall_time(np.linspace(0, 1e9, 20), g, 8)) > 0)


def test_alltoall_errors():
    with pytest.raises(HwModelError, match="intra_node=True needs nodes=1"):
        alltoall_time(1e6, "h100", 16, nodes=2)
    with pytest.raises(HwModelError, match="nodes >= 2 dividing n_gpus"):
        alltoall_time(1e6, "h100", 12, intra_node=False, nodes=5)
    with pytest.raises(HwModelError, match="n_gpus must be a positive integer"):
        alltoall_time(1e6, "h100", 0)
    with pytest.raises(HwModelError, match="inter_node_bw"):
        alltoall_time(1e6, "h100", 16, intra_node=False, nodes=2, inter_node_bw=-1)


def test_weight_transfer_time_links():
    from hwmodels import weight_transfer_time

    g = get_gpu("H100")
    cal = Calibration.ideal()
    # one DeepSeek-V3 FP8 expert (44 MB) over NVLink (450 GB/s per direction) and a 50 GB/s NIC
    b = get_model("DeepSeek-V3").expert_params * 1.0
    assert weight_transfer_time(b, g, calibration=cal) == pytest.approx(b / 450e9)
    assert weight_transfer_time(b, g, intra_node=False, calibration=cal) == pytest.approx(b / 50e9)
    assert weight_transfer_time(b, g, intra_node=False, inter_node_bw=100e9, calibration=cal) == pytest.approx(b / 100e9)
    np.testing.assert_array_equal(weight_transfer_time(np.zeros(3), g), 0.0)  # nothing moves: no latency
    assert weight_transfer_time(1.0, g) > 0.0
    with pytest.raises(HwModelError, match="bytes_per_gpu"):
        weight_transfer_time(-1.0, g)


def test_expert_groups_catalogue():
    assert get_model("DeepSeek-V3").expert_groups == 8
    assert get_model("Qwen3-30B-A3B").expert_groups == 1 and get_model("Mixtral-8x7B").expert_groups == 1
    assert get_model("Llama-3.1-8B").expert_groups == 1  # dense: the default, no grouping


def test_allreduce_ring():
    cal = Calibration.ideal()
    assert allreduce_time(1e9, "h100", 8, cal) == pytest.approx(2 * 7 / 8 * 1e9 / 450e9)
    assert allreduce_time(1e9, "h100", 1, cal) == 0.0


def test_kv_transfer_time():
    assert kv_transfer_time(1e9, 50e9) == pytest.approx(0.02)
    assert kv_transfer_time(1e9, 50e9, latency_s=1e-3) == pytest.approx(0.021)
    np.testing.assert_allclose(kv_transfer_time(np.array([0, 5e9]), 50e9), [0.0, 0.1])
    with pytest.raises(HwModelError, match="bandwidth"):
        kv_transfer_time(1e9, 0)
    with pytest.raises(HwModelError, match="bytes must be finite and >= 0"):
        kv_transfer_time(-1, 1e9)


def test_cold_start_time():
    m = get_model("Llama-3.1-8B")
    # 16.06 GB from a 7 GB/s NVMe = 2.3 s, plus the 20 s vLLM engine start-up default
    t = cold_start_time(m, "H100")
    assert t == pytest.approx(m.weight_bytes() / 7.0e9 + 20.0)
    assert cold_start_time(m, "H100", storage_bw=1e9, engine_init_s=0) == pytest.approx(m.weight_bytes() / 1e9)
    # fast storage: the per-GPU PCIe copy becomes the bound, and TP spreads it
    fast = cold_start_time("Llama-3.1-70B", "H100", tp=8, storage_bw=1e12, engine_init_s=0)
    assert fast == pytest.approx(get_model("Llama-3.1-70B").weight_bytes() / 8 / 64e9)
    assert cold_start_time("DeepSeek-V3", "H200", tp=8) > cold_start_time("Llama-3.1-8B", "H200")
    with pytest.raises(HwModelError, match="storage_bw"):
        cold_start_time(m, "H100", storage_bw=0)
    with pytest.raises(HwModelError, match="engine_init_s"):
        cold_start_time(m, "H100", engine_init_s=-5)


def test_price_per_gpu_hour():
    assert price_per_gpu_hour("H100") == 2.69
    # newer, bigger GPUs cost more per hour in the catalogue
    assert price_per_gpu_hour("L40S") < price_per_gpu_hour("A100") < price_per_gpu_hour("H100") \
        < price_per_gpu_hour("H200") < price_per_gpu_hour("B200")
    with pytest.raises(HwModelError, match="unknown GPU"):
        price_per_gpu_hour("TPUv5")
