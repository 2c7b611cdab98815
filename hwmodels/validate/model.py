"""A Llama decoder with random weights, built from the hwmodels catalogue, over a flat KV cache.

The reference engine's model (Llama-3.1-8B by default): RMSNorm, fused QKV projection, rotary
position embedding (rotate-half, theta 500000), grouped-query attention, SwiGLU MLP, untied LM
head. Weights are random (normal, std 0.02, seeded): timing does not depend on their values, and
nothing is downloaded. Llama 3.1's long-context RoPE frequency scaling is left out (it changes the
rotation angles, not the work); the CPU test builds `transformers`' LlamaForCausalLM with the same
weights and no rope scaling and checks that both produce the same greedy tokens.

The KV cache is one flat buffer per layer, ``k_cache[layer]`` of shape [slots + 1, kv_heads,
head_dim] (the last row is a scratch row that padded tokens write to). Each request owns a
contiguous range of rows (see ``engine.KVAllocator``); attention reads it through
``cu_seqlens_k`` (start row of each sequence) and ``seqused_k`` (its length): the varlen
FlashAttention-2 interface, ``torch.ops.aten._flash_attention_forward``, on CUDA. On CPU (tests)
the same layout is read by a per-sequence reference attention.

Sources: Llama architecture, Hugging Face ``transformers/models/llama/modeling_llama.py``; rope
theta 500000 and RMSNorm eps 1e-5, HF config.json of meta-llama/Llama-3.1-8B; FlashAttention-2
varlen interface, Dao, "FlashAttention-2" (2023) and PyTorch ``aten/src/ATen/native/transformers/
cuda/flash_attn/flash_api.cpp``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

ROPE_THETA = 500000.0  # HF config.json meta-llama/Llama-3.1-8B: rope_theta
RMS_EPS = 1e-5  # HF config.json meta-llama/Llama-3.1-8B: rms_norm_eps
INIT_STD = 0.02  # HF config.json: initializer_range


@dataclass(frozen=True)
class ModelDims:
    """Decoder dimensions (a Llama-architecture dense model)."""

    name: str
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int

    @classmethod
    def from_catalog(cls, name: str) -> "ModelDims":
        """Dimensions of a dense GQA model of the hwmodels catalogue (ValueError otherwise)."""
        from hwmodels.catalog import get_model

        m = get_model(name)
        if m.is_moe or m.is_mla:
            raise ValueError(f"reference engine: model {m.name!r} is MoE or MLA; only dense GQA "
                             "Llama-architecture models are built")
        return cls(m.name, m.layers, m.hidden, m.heads, m.kv_heads, m.head_dim, m.intermediate, m.vocab)

    @property
    def kv_bytes_per_token(self) -> int:
        return 2 * self.layers * self.kv_heads * self.head_dim * 2  # K and V, bf16


class LlamaWeights:
    """Random weights (normal(0, INIT_STD), norms = 1) on `device` in `dtype`, drawn from `seed` by
    the device's own generator (fast on a GPU; the same seed gives the same weights on one device)."""

    def __init__(self, dims: ModelDims, device: torch.device, dtype: torch.dtype, seed: int = 0):
        self.dims, self.device, self.dtype = dims, device, dtype
        d = dims
        gen = torch.Generator(device=device).manual_seed(seed)

        def rnd(*shape):
            out = torch.empty(shape, dtype=dtype, device=device)
            rows = max(1, (1 << 26) // max(1, shape[-1]))  # float32 temporaries of <= 256 MiB
            flat = out.view(-1, shape[-1])
            for i in range(0, flat.shape[0], rows):
                n = min(rows, flat.shape[0] - i)
                flat[i:i + n].copy_(torch.randn((n, shape[-1]), generator=gen, device=device) * INIT_STD)
            return out

        qkv = (d.heads + 2 * d.kv_heads) * d.head_dim
        self.embed = rnd(d.vocab, d.hidden)
        self.layers = []
        for _ in range(d.layers):
            self.layers.append(dict(
                ln1=torch.ones(d.hidden, device=device, dtype=dtype),
                qkv=rnd(qkv, d.hidden),
                o=rnd(d.hidden, d.heads * d.head_dim),
                ln2=torch.ones(d.hidden, device=device, dtype=dtype),
                gate_up=rnd(2 * d.intermediate, d.hidden),
                down=rnd(d.hidden, d.intermediate),
            ))
        self.norm = torch.ones(d.hidden, device=device, dtype=dtype)
        self.lm_head = rnd(d.vocab, d.hidden)
        inv = 1.0 / (ROPE_THETA ** (torch.arange(0, d.head_dim, 2, dtype=torch.float64) / d.head_dim))
        self.inv_freq = inv.to(device)


def rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate-half RoPE (HF Llama). x: [T, heads, d]; cos, sin: [T, 1, d/2]."""
    h = x.shape[-1] // 2
    x1, x2 = x[..., :h], x[..., h:]
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)


def rope_tables(w: LlamaWeights, max_pos: int) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin tables [max_pos, 1, head_dim/2] in the model dtype."""
    pos = torch.arange(max_pos, dtype=torch.float64, device=w.device)
    ang = pos[:, None] * w.inv_freq[None, :]
    return ang.cos().to(w.dtype)[:, None, :], ang.sin().to(w.dtype)[:, None, :]


@dataclass
class Batch:
    """Device tensors of one iteration, for a batch laid out as [decode tokens | prefill tokens].

    ids, pos, slot: int64 [T]: token ids, positions, KV row each token's K/V is written to.
    dec_cu_k, dec_used: int32 [Dp + 1], [Dp]: KV start row and length of each decode sequence.
    pf_cu_q: int32 [Np + 1] cumulative query lengths of the prefill sequences (relative to the
    prefill part); pf_cu_k, pf_used: int32 [Np + 1], [Np]: KV start rows and lengths.
    sample: int64 [Dp + Np]: row of the token whose logits are sampled, per sequence.
    n_dec = Dp and n_pf_tokens = Pp: sizes of the two parts (static within a CUDA graph);
    max_q_pf: static largest prefill query length; max_k: static largest KV length.
    host_lens: only for the CPU attention path: (decode kv lengths, prefill (q, kv) lengths).
    """

    ids: torch.Tensor
    pos: torch.Tensor
    slot: torch.Tensor
    dec_cu_q: torch.Tensor
    dec_cu_k: torch.Tensor
    dec_used: torch.Tensor
    pf_cu_q: torch.Tensor
    pf_cu_k: torch.Tensor
    pf_used: torch.Tensor
    sample: torch.Tensor
    n_dec: int
    n_pf_tokens: int
    max_q_pf: int
    max_k: int
    host_lens: tuple | None = None


def _attn_flash(q, kc, vc, cu_q, cu_k, used, max_q, max_k, scale):
    return torch.ops.aten._flash_attention_forward(
        q, kc, vc, cu_q, cu_k, max_q, max_k, 0.0, True, False, scale=scale, seqused_k=used)[0]


def _attn_reference(q, kc, vc, q_lens, k_starts, k_lens, scale):
    """Per-sequence causal attention (bottom-right aligned), any device/dtype: q [T, H, d]."""
    H, KV = q.shape[1], kc.shape[1]
    g = H // KV
    out = torch.zeros_like(q)
    qo = 0
    for ql, ks, kl in zip(q_lens, k_starts, k_lens):
        if ql == 0:
            continue
        qs = q[qo:qo + ql].transpose(0, 1)  # [H, ql, d]
        k = kc[ks:ks + kl].transpose(0, 1).repeat_interleave(g, 0)
        v = vc[ks:ks + kl].transpose(0, 1).repeat_interleave(g, 0)
        s = (qs @ k.transpose(1, 2)) * scale
        i = torch.arange(ql, device=q.device)[:, None]
        j = torch.arange(kl, device=q.device)[None, :]
        s = s.masked_fill(j > i + (kl - ql), float("-inf"))
        out[qo:qo + ql] = (s.softmax(-1) @ v).transpose(0, 1)
        qo += ql
    return out


def forward(w: LlamaWeights, k_cache: list, v_cache: list, cos_t, sin_t, b: Batch, flash: bool) -> torch.Tensor:
    """One iteration: writes the batch's K/V into the cache and returns greedy next tokens
    (int64 [Dp + Np], one per sampled row of ``b.sample``). No host synchronisation."""
    d = w.dims
    H, KV, hd = d.heads, d.kv_heads, d.head_dim
    T = b.ids.shape[0]
    D = b.n_dec
    scale = hd ** -0.5
    x = w.embed[b.ids]
    cos, sin = cos_t[b.pos], sin_t[b.pos]
    for li, lw in enumerate(w.layers):
        h = F.rms_norm(x, (d.hidden,), lw["ln1"], RMS_EPS)
        qkv = F.linear(h, lw["qkv"])
        q = qkv[:, : H * hd].view(T, H, hd)
        k = qkv[:, H * hd:(H + KV) * hd].view(T, KV, hd)
        v = qkv[:, (H + KV) * hd:].view(T, KV, hd)
        q, k = rope(q, cos, sin), rope(k, cos, sin)
        kc, vc = k_cache[li], v_cache[li]
        kc.index_copy_(0, b.slot, k)
        vc.index_copy_(0, b.slot, v)
        parts = []
        if flash:
            if D:
                parts.append(_attn_flash(q[:D], kc, vc, b.dec_cu_q, b.dec_cu_k, b.dec_used, 1, b.max_k, scale))
            if b.n_pf_tokens:
                parts.append(_attn_flash(q[D:], kc, vc, b.pf_cu_q, b.pf_cu_k, b.pf_used, b.max_q_pf, b.max_k, scale))
        else:
            dec_k, pf = b.host_lens
            if D:
                parts.append(_attn_reference(q[:D], kc, vc, [1] * D, dec_k[0], dec_k[1], scale))
            if b.n_pf_tokens:
                parts.append(_attn_reference(q[D:], kc, vc, pf[0], pf[1], pf[2], scale))
        a = parts[0] if len(parts) == 1 else torch.cat(parts)
        x = x + F.linear(a.reshape(T, H * hd), lw["o"])
        h = F.rms_norm(x, (d.hidden,), lw["ln2"], RMS_EPS)
        gu = F.linear(h, lw["gate_up"])
        h = F.silu(gu[:, : d.intermediate]) * gu[:, d.intermediate:]
        x = x + F.linear(h, lw["down"])
    hs = F.rms_norm(x[b.sample], (d.hidden,), w.norm, RMS_EPS)
    return F.linear(hs, w.lm_head).argmax(-1)
