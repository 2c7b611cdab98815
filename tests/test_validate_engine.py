"""The reference engine (hwmodels/validate) against transformers' Llama on CPU: same greedy tokens
on every code path (prefill, chunked prefill, mixed prefill+decode, decode, preemption+recompute,
with and without graph-shape padding), and the scheduler's records."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hwmodels.validate.engine import Engine, KVAllocator, Request, graph_shapes, padded_shape
from hwmodels.validate.model import ROPE_THETA, RMS_EPS, ModelDims

transformers = pytest.importorskip("transformers", reason="transformers is not installed (pip install -e .[test])")

DIMS = ModelDims("tiny-llama", layers=2, hidden=64, heads=4, kv_heads=2, head_dim=16, intermediate=96, vocab=101)


def hf_model(eng: Engine):
    from transformers import LlamaConfig, LlamaForCausalLM

    d = DIMS
    cfg = LlamaConfig(vocab_size=d.vocab, hidden_size=d.hidden, intermediate_size=d.intermediate,
                      num_hidden_layers=d.layers, num_attention_heads=d.heads, num_key_value_heads=d.kv_heads,
                      head_dim=d.head_dim, rms_norm_eps=RMS_EPS, max_position_embeddings=4096,
                      tie_word_embeddings=False, rope_theta=ROPE_THETA)
    rp = getattr(cfg, "rope_parameters", None)
    if isinstance(rp, dict):
        rp["rope_theta"] = ROPE_THETA
    m = LlamaForCausalLM(cfg).to(torch.float64).eval()
    w = eng.w
    H, KV, hd = d.heads * d.head_dim, d.kv_heads * d.head_dim, d.head_dim
    with torch.no_grad():
        m.model.embed_tokens.weight.copy_(w.embed)
        for lw, L in zip(w.layers, m.model.layers):
            L.self_attn.q_proj.weight.copy_(lw["qkv"][:H])
            L.self_attn.k_proj.weight.copy_(lw["qkv"][H:H + KV])
            L.self_attn.v_proj.weight.copy_(lw["qkv"][H + KV:])
            L.self_attn.o_proj.weight.copy_(lw["o"])
            L.mlp.gate_proj.weight.copy_(lw["gate_up"][:d.intermediate])
            L.mlp.up_proj.weight.copy_(lw["gate_up"][d.intermediate:])
            L.mlp.down_proj.weight.copy_(lw["down"])
            L.input_layernorm.weight.copy_(lw["ln1"])
            L.post_attention_layernorm.weight.copy_(lw["ln2"])
        m.model.norm.weight.copy_(w.norm)
        m.lm_head.weight.copy_(w.lm_head)
    return m


def hf_greedy(m, prompt: np.ndarray, n: int) -> list[int]:
    ids = torch.tensor(prompt[None, :], dtype=torch.long)
    out = []
    with torch.no_grad():
        for _ in range(n):
            tok = int(m(ids).logits[0, -1].argmax())
            out.append(tok)
            ids = torch.cat([ids, torch.tensor([[tok]])], 1)
    return out


def make_requests(seed: int, n: int, max_prompt: int, max_out: int, spacing: float) -> list[Request]:
    rng = np.random.default_rng(seed)
    reqs = []
    for i in range(n):
        p = int(rng.integers(1, max_prompt + 1))
        reqs.append(Request(idx=i, arrival_s=float(i * spacing), prompt_ids=rng.integers(0, DIMS.vocab, p),
                            output_len=int(rng.integers(1, max_out + 1))))
    return reqs


@pytest.mark.parametrize("pad,order", [(True, "longest_first"), (False, "longest_first"), (True, "scheduler")])
def test_same_greedy_tokens_as_transformers_on_every_path(pad, order):
    torch.manual_seed(0)
    eng = Engine(DIMS, device="cpu", dtype=torch.float64, budget=24, block_size=4, capacity_blocks=40,
                 max_seqs=16, max_context=256, seed=3, pad=pad, decode_order=order, log=lambda *_: None)
    reqs = make_requests(1, 14, 60, 12, spacing=1.5)
    res = eng.run(reqs, clock="virtual")
    it = res["iterations"]
    P, D = np.array(it["prefill_tokens"]), np.array(it["decode_seqs"])
    assert np.any((P > 0) & (D > 0)), "no mixed prefill+decode iteration"
    assert np.any((P == 0) & (D > 0)), "no decode-only iteration"
    assert np.any(P == 24), "no budget-limited (chunked) prefill"
    assert res["preemptions"] > 0, "no preemption: capacity too large for this test"
    assert res["phys_stalls"] == 0
    assert all(res["requests"]["finished"])
    m = hf_model(eng)
    for r in reqs:
        assert len(r.generated) == r.output_len
        assert r.generated == hf_greedy(m, r.prompt_ids, r.output_len), f"request {r.idx} (preempted {r.preemptions}x)"
    # the KV accounting returned every block
    assert eng.free_blocks == eng.capacity_blocks and eng.alloc.free == [(0, eng.rows)]


def test_records_match_the_schedule():
    eng = Engine(DIMS, device="cpu", budget=16, block_size=4, capacity_blocks=1000, max_seqs=8,
                 max_context=128, seed=0, log=lambda *_: None)
    reqs = make_requests(2, 6, 40, 5, spacing=0.0)
    res = eng.run(reqs, clock="virtual")
    it = res["iterations"]
    # every prompt token computed once, every output token after the first decoded once
    assert sum(it["prefill_tokens"]) == sum(len(r.prompt_ids) for r in reqs)
    assert sum(it["decode_seqs"]) == sum(r.output_len - 1 for r in reqs)
    assert all(p + d <= 16 for p, d in zip(it["prefill_tokens"], it["decode_seqs"]))
    # each request's tokens come in time order, the first at or after its arrival
    for ts, a in zip(res["requests"]["token_s"], res["requests"]["arrival_s"]):
        assert ts[0] >= a and all(x <= y for x, y in zip(ts, ts[1:]))


def test_decode_order_changes_the_kernel_layout_only():
    """longest_first hands the kernels the decodes longest context first (the staged dec_used is
    non-increasing) and gives the same tokens and records as the scheduler's order."""
    runs = {}
    for order in ("longest_first", "scheduler"):
        eng = Engine(DIMS, device="cpu", budget=24, block_size=4, capacity_blocks=400, max_seqs=16,
                     max_context=256, seed=3, decode_order=order, log=lambda *_: None)
        staged = []
        fill = eng._fill_stage

        def spy(dec, pf, dp, pp, npf, fill=fill, staged=staged):
            lay, host = fill(dec, pf, dp, pp, npf)
            staged.append(host[0][1][:len(dec)])
            return lay, host
        eng._fill_stage = spy
        reqs = make_requests(4, 10, 60, 12, spacing=0.5)
        res = eng.run(reqs, clock="virtual")
        runs[order] = (res, [r.generated for r in reqs], staged)
    lf, sc = runs["longest_first"], runs["scheduler"]
    assert lf[1] == sc[1]
    assert {k: v for k, v in lf[0]["iterations"].items() if k != "gpu_s"} == \
        {k: v for k, v in sc[0]["iterations"].items() if k != "gpu_s"}  # gpu_s: nan on CPU
    assert all(list(u) == sorted(u, reverse=True) for u in lf[2])
    assert any(list(u) != sorted(u, reverse=True) for u in sc[2]), "no batch where the orders differ"


def test_padding_rules_and_graph_set():
    assert padded_shape(1, 0, 256, 2048) == (8, 0)
    assert padded_shape(9, 0, 256, 2048) == (16, 0)
    assert padded_shape(0, 5, 256, 2048) == (0, 128)
    assert padded_shape(9, 300, 256, 2048) == (16, 512)
    shapes = set(graph_shapes(256, 2048))
    for d in range(0, 257):
        for p in (0, 1, 129, 2048 - d):
            if d == 0 and p == 0:
                continue
            assert padded_shape(d, p, 256, 2048) in shapes


def test_kv_allocator_first_fit_and_merge():
    a = KVAllocator(100)
    x, y, z = a.alloc(30), a.alloc(30), a.alloc(30)
    assert (x, y, z) == (0, 30, 60) and a.alloc(20) == -1
    a.release(y, 30)
    a.release(x, 30)
    assert a.free == [(0, 60), (90, 10)]
    a.release(z, 30)
    assert a.free == [(0, 100)]


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="capacity_blocks"):
        Engine(DIMS, device="cpu", capacity_blocks=0)
    with pytest.raises(ValueError, match="decode_order"):
        Engine(DIMS, device="cpu", capacity_blocks=10, decode_order="shortest_first")
    eng = Engine(DIMS, device="cpu", capacity_blocks=10, max_context=32, log=lambda *_: None)
    with pytest.raises(ValueError, match="max_context"):
        eng.enqueue(Request(0, 0.0, np.zeros(30, np.int64), 5))
