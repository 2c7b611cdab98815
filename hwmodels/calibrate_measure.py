"""Micro-benchmarks that calibrate the step-time model on a real GPU.

Runs pure-PyTorch bf16 workloads and writes one CSV per category plus the environment:

- ``gemm.csv``        F.linear at the projection/FFN/lm-head shapes of the catalogue models
- ``attention.csv``   causal prefill (flash, with and without prior context) and GQA decode
- ``layer.csv``       whole decoder layers (RMSNorm, QKV, RoPE, KV write, attention, O,
                      RMSNorm, SwiGLU FFN), prefill / decode / mixed batches, time per layer
- ``expert_ffn.csv``  MoE expert FFNs (grouped GEMM, SwiGLU) at skewed per-expert token counts
- ``copy.csv``        host<->device copies, contiguous and KV-block-wise
- ``environment.json`` GPU, driver, CUDA, torch, clocks (nvidia-smi) for every run
- ``measure.log``     progress log

Timing: warm-up, CUDA events around each repeat, a 256 MiB L2-flush write between repeats,
median over >= 5 repeats (more for short kernels). Decoder layers and expert FFNs are captured
in a CUDA graph (as serving engines do for decode) so that host launch gaps stay out.
Every row carries its full shape, so fitting never needs the tables in this file.

Resumable: rows whose ``key`` is already in the CSV under ``--out`` are skipped; a
``--budget-s`` stops before starting a new point once that many seconds have passed.

Standalone (no imports from the package): ``python hwmodels/calibrate_measure.py --out DIR``
or ``python -m hwmodels.calibrate measure --out DIR``. ``--tiny`` runs a small grid at toy
dimensions (works on CPU) to check the script itself; its numbers are not calibration data.
"""

from __future__ import annotations

import argparse
import csv
import datetime as _dt
import gc
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

# --------------------------------------------------------------------------------------------
# Model dimensions (Hugging Face config.json of each model; every row records them again).


@dataclass(frozen=True)
class Dims:
    """Transformer dimensions of one model."""

    name: str
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    ffn: int  # dense FFN intermediate size (per expert for MoE models)
    vocab: int
    n_experts: int = 0
    top_k: int = 0
    source: str = ""


MODELS: dict[str, Dims] = {
    "llama-3.1-8b": Dims(
        "llama-3.1-8b", 4096, 32, 8, 128, 14336, 128256,
        source="https://huggingface.co/meta-llama/Llama-3.1-8B/blob/main/config.json",
    ),
    "llama-3.1-70b": Dims(
        "llama-3.1-70b", 8192, 64, 8, 128, 28672, 128256,
        source="https://huggingface.co/meta-llama/Llama-3.1-70B/blob/main/config.json",
    ),
    "mixtral-8x7b": Dims(
        "mixtral-8x7b", 4096, 32, 8, 128, 14336, 32000, n_experts=8, top_k=2,
        source="https://huggingface.co/mistralai/Mixtral-8x7B-v0.1/blob/main/config.json",
    ),
    "qwen3-30b-a3b": Dims(
        "qwen3-30b-a3b", 2048, 32, 4, 128, 768, 151936, n_experts=128, top_k=8,
        source="https://huggingface.co/Qwen/Qwen3-30B-A3B/blob/main/config.json "
        "(moe_intermediate_size 768)",
    ),
}

def shard(d: Dims, tp: int) -> Dims:
    """Per-GPU slice of a dense model under tensor parallelism (heads, KV heads, FFN split by tp)."""
    return Dims(f"{d.name}@tp{tp}", d.hidden, d.heads // tp, max(d.kv_heads // tp, 1), d.head_dim,
                d.ffn // tp, d.vocab // tp, source=f"{d.source} (tensor-parallel shard, tp={tp})")


for _name, _tp in (("llama-3.1-8b", 2), ("llama-3.1-8b", 4), ("llama-3.1-70b", 2), ("llama-3.1-70b", 4),
                   ("llama-3.1-70b", 8)):
    MODELS[f"{_name}@tp{_tp}"] = shard(MODELS[_name], _tp)

TINY: dict[str, Dims] = {  # toy dimensions for --tiny (script check only)
    "tiny-dense": Dims("tiny-dense", 256, 4, 2, 64, 512, 1000, source="toy"),
    "tiny-moe": Dims("tiny-moe", 128, 4, 2, 32, 64, 1000, n_experts=8, top_k=2, source="toy"),
}

CATEGORIES = ("layer", "gemm", "expert_ffn", "attention", "copy")

# --------------------------------------------------------------------------------------------
# Grids. Each generator yields (key, params) in a fixed order; the key is unique per point.


def _gemm_shapes(models: dict[str, Dims], tiny: bool) -> list[tuple[str, str, int, int, int]]:
    """(model, op, tp, k, n) for F.linear(x[m,k], w[n,k])."""
    out = []
    if tiny:
        d = models["tiny-dense"]
        q = (d.heads + 2 * d.kv_heads) * d.head_dim
        return [(d.name, "qkv", 1, d.hidden, q), (d.name, "down", 1, d.ffn, d.hidden)]
    for name, tps in (("llama-3.1-8b", (1,)), ("llama-3.1-70b", (1, 4)), ("qwen3-30b-a3b", (1,))):
        d = models[name]
        for tp in tps:
            qkv = (d.heads + 2 * d.kv_heads) * d.head_dim // tp
            out.append((name, "qkv", tp, d.hidden, qkv))
            out.append((name, "o", tp, d.heads * d.head_dim // tp, d.hidden))
            if d.n_experts == 0:
                out.append((name, "gate_up", tp, d.hidden, 2 * d.ffn // tp))
                out.append((name, "down", tp, d.ffn // tp, d.hidden))
            if tp == 1 and name != "qwen3-30b-a3b":
                out.append((name, "lm_head", tp, d.hidden, d.vocab))
    q = models["qwen3-30b-a3b"]  # one expert of the MoE as a dense GEMM
    out.append((q.name, "expert_gate_up", 1, q.hidden, 2 * q.ffn))
    out.append((q.name, "expert_down", 1, q.ffn, q.hidden))
    return out


GEMM_TOKENS = (1, 2, 3, 4, 8, 16, 24, 32, 64, 96, 128, 256, 384, 512, 1024, 1536, 2048,
               4096, 6144, 8192, 12288, 16384)


def grid_gemm(models, tiny):
    toks = (1, 5, 16, 64) if tiny else GEMM_TOKENS
    for model, op, tp, k, n in _gemm_shapes(models, tiny):
        for m in toks:
            yield f"gemm|{model}|{op}|tp={tp}|m={m}|k={k}|n={n}", dict(
                model=model, op=op, tp=tp, m=m, k=k, n=n)
    if tiny:
        return
    # off-grid validation (key suffix |val): shapes and token counts absent from the grid above
    d70, mx, qw = models["llama-3.1-70b"], models["mixtral-8x7b"], models["qwen3-30b-a3b"]
    val = [("llama-3.1-70b", "qkv", 8, d70.hidden, (d70.heads + 2 * d70.kv_heads) * d70.head_dim // 8),
           ("llama-3.1-70b", "o", 8, d70.heads * d70.head_dim // 8, d70.hidden),
           ("llama-3.1-70b", "gate_up", 8, d70.hidden, 2 * d70.ffn // 8),
           ("llama-3.1-70b", "down", 8, d70.ffn // 8, d70.hidden),
           ("mixtral-8x7b", "lm_head", 1, mx.hidden, mx.vocab),
           ("qwen3-30b-a3b", "lm_head", 1, qw.hidden, qw.vocab)]
    for model, op, tp, k, n in val:
        for m in (1, 7, 48, 200, 700, 3000, 10000):
            yield f"gemm|{model}|{op}|tp={tp}|m={m}|k={k}|n={n}|val", dict(
                model=model, op=op, tp=tp, m=m, k=k, n=n)


def grid_attention(models, tiny):
    names = ["tiny-dense"] if tiny else ["llama-3.1-8b", "llama-3.1-70b"]
    for name in names:
        seqs = (16, 64) if tiny else (128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768)
        for b in ((1, 2) if tiny else (1, 4, 16)):
            for s in seqs:
                if b * s > (128 if tiny else 65536):
                    continue
                yield f"attn|prefill|{name}|b={b}|q={s}|kv={s}", dict(
                    phase="prefill", model=name, batch=b, q_len=s, kv_len=s)
        chunks = (8,) if tiny else (256, 1024, 4096)
        priors = (32,) if tiny else (1024, 8192, 32768)
        for c in chunks:
            for p in priors:
                yield f"attn|prefill|{name}|b=1|q={c}|kv={p + c}", dict(
                    phase="prefill", model=name, batch=1, q_len=c, kv_len=p + c)
        for b in ((1, 4) if tiny else (1, 4, 16, 64, 256)):
            for ctx in ((32,) if tiny else (128, 1024, 4096, 16384, 65536)):
                if b * ctx > (1 << 22):
                    continue
                yield f"attn|decode|{name}|b={b}|kv={ctx}", dict(
                    phase="decode", model=name, batch=b, q_len=1, kv_len=ctx)


def grid_layer(models, tiny):
    names = ["tiny-dense"] if tiny else ["llama-3.1-8b", "llama-3.1-70b"]
    for name in names:
        yield from _grid_layer_full(name, tiny)
    if not tiny:  # per-GPU shards under tensor parallelism (a smaller grid)
        for name in ("llama-3.1-8b@tp2", "llama-3.1-70b@tp2", "llama-3.1-70b@tp4", "llama-3.1-70b@tp8"):
            for c in (128, 512, 2048, 8192):
                for p in (0, 4096):
                    yield f"layer|prefill|{name}|s=1|c={c}|p={p}", dict(
                        kind="prefill", model=name, pf_seqs=1, chunk=c, prior=p, dec_batch=0, ctx=0)
            for b in (1, 4, 16, 64, 256):
                for ctx in (512, 2048, 8192):
                    if b * ctx <= (1 << 20):
                        yield f"layer|decode|{name}|b={b}|ctx={ctx}", dict(
                            kind="decode", model=name, pf_seqs=0, chunk=0, prior=0, dec_batch=b, ctx=ctx)
        # off-grid validation (key suffix |val): sizes between/outside the grid, and a TP degree never fitted
        for name in ("llama-3.1-8b", "llama-3.1-70b"):
            for c in (384, 1536, 6144):
                for p in (0, 2048, 8192):
                    yield f"layer|prefill|{name}|s=1|c={c}|p={p}|val", dict(
                        kind="prefill", model=name, pf_seqs=1, chunk=c, prior=p, dec_batch=0, ctx=0)
            for b in (3, 24, 96, 192):
                for ctx in (1024, 4096, 16384):
                    if b * ctx <= (1 << 20):
                        yield f"layer|decode|{name}|b={b}|ctx={ctx}|val", dict(
                            kind="decode", model=name, pf_seqs=0, chunk=0, prior=0, dec_batch=b, ctx=ctx)
        name = "llama-3.1-8b@tp4"
        for c in (256, 1024, 4096):
            for p in (0, 2048):
                yield f"layer|prefill|{name}|s=1|c={c}|p={p}|val", dict(
                    kind="prefill", model=name, pf_seqs=1, chunk=c, prior=p, dec_batch=0, ctx=0)
        for b in (1, 16, 128):
            for ctx in (1024, 4096):
                yield f"layer|decode|{name}|b={b}|ctx={ctx}|val", dict(
                    kind="decode", model=name, pf_seqs=0, chunk=0, prior=0, dec_batch=b, ctx=ctx)


def _grid_layer_full(name, tiny):
    """Prefill, decode and mixed points of one model (full grid)."""
    # prefill: one sequence, chunk of new tokens after `prior` cached tokens
    chunks = (8, 32) if tiny else (128, 256, 512, 1024, 2048, 4096, 8192)
    priors = (0, 16) if tiny else (0, 1024, 4096, 16384)
    for c in chunks:
        for p in priors:
            yield f"layer|prefill|{name}|s=1|c={c}|p={p}", dict(
                kind="prefill", model=name, pf_seqs=1, chunk=c, prior=p, dec_batch=0, ctx=0)
    for s, c in (() if tiny else ((4, 128), (4, 512), (4, 2048), (16, 128), (16, 512))):
        yield f"layer|prefill|{name}|s={s}|c={c}|p=0", dict(
            kind="prefill", model=name, pf_seqs=s, chunk=c, prior=0, dec_batch=0, ctx=0)
    # decode: batch x context, at most 2^20 cached tokens per layer
    batches = (1, 4) if tiny else (1, 2, 4, 8, 16, 32, 64, 128, 256)
    ctxs = (16, 64) if tiny else (128, 512, 2048, 8192, 32768)
    for b in batches:
        for ctx in ctxs:
            if b * ctx > (1 << 20):
                continue
            yield f"layer|decode|{name}|b={b}|ctx={ctx}", dict(
                kind="decode", model=name, pf_seqs=0, chunk=0, prior=0, dec_batch=b, ctx=ctx)
    # mixed (chunked prefill + decode in one iteration)
    if tiny:
        mixed = [(8, 0, 2, 16)]
    else:
        mixed = [(c, p, b, ctx) for c in (512, 2048) for p in (0, 4096)
                 for b, ctx in ((16, 2048), (64, 1024), (64, 4096))]
    for c, p, b, ctx in mixed:
        yield f"layer|mixed|{name}|s=1|c={c}|p={p}|b={b}|ctx={ctx}", dict(
            kind="mixed", model=name, pf_seqs=1, chunk=c, prior=p, dec_batch=b, ctx=ctx)


def grid_expert(models, tiny):
    if tiny:
        cfgs = [("tiny-moe", 1)]
        toks = (1, 16, 64)
    else:
        cfgs = [("mixtral-8x7b", 1), ("qwen3-30b-a3b", 1), ("qwen3-30b-a3b", 8),
                ("mixtral-8x7b", 4), ("qwen3-30b-a3b", 2)]
        toks = (1, 4, 16, 64, 256, 1024, 4096, 16384)
    for name, ep in cfgs:
        for t in toks:
            for skew in (0.0, 1.0, 2.0):
                yield f"moe|{name}|ep={ep}|t={t}|skew={skew}", dict(
                    model=name, ep=ep, tokens=t, skew=skew)
    if not tiny:  # off-grid validation (key suffix |val)
        for name, ep in (("mixtral-8x7b", 2), ("qwen3-30b-a3b", 4)):
            for t in (8, 128, 2048, 8192):
                for skew in (0.5, 1.5):
                    yield f"moe|{name}|ep={ep}|t={t}|skew={skew}|val", dict(
                        model=name, ep=ep, tokens=t, skew=skew)


def grid_copy(models, tiny):
    sizes = [1 << e for e in (range(12, 21, 4) if tiny else range(12, 33, 2))]
    for nb in sizes[2:]:  # device-to-device: the memory-bandwidth ceiling (read + write)
        yield f"copy|d2d|contig|bytes={nb}", dict(
            direction="d2d", pinned=0, pattern="contiguous", bytes=nb, block_bytes=nb, n_blocks=1)
    for direction in ("h2d", "d2h"):
        for pinned in (1, 0):
            for nb in sizes:
                yield f"copy|{direction}|pinned={pinned}|contig|bytes={nb}", dict(
                    direction=direction, pinned=pinned, pattern="contiguous",
                    bytes=nb, block_bytes=nb, n_blocks=1)
        blocks = ((4096, 4),) if tiny else ((65536, 16), (65536, 256), (2 << 20, 16), (2 << 20, 256))
        for bb, n in blocks:
            yield f"copy|{direction}|pinned=1|blocks|bb={bb}|n={n}", dict(
                direction=direction, pinned=1, pattern="blocks", bytes=bb * n,
                block_bytes=bb, n_blocks=n)
    if tiny:
        return
    for direction in ("h2d", "d2h"):  # off-grid validation (key suffix |val)
        for nb in (3 << 20, 48 << 20, 700 << 20):
            yield f"copy|{direction}|pinned=1|contig|bytes={nb}|val", dict(
                direction=direction, pinned=1, pattern="contiguous", bytes=nb, block_bytes=nb, n_blocks=1)
        yield f"copy|{direction}|pinned=1|blocks|bb=262144|n=64|val", dict(
            direction=direction, pinned=1, pattern="blocks", bytes=262144 * 64, block_bytes=262144, n_blocks=64)


GRIDS = {"layer": grid_layer, "gemm": grid_gemm, "expert_ffn": grid_expert,
         "attention": grid_attention, "copy": grid_copy}

# --------------------------------------------------------------------------------------------
# Timing


def stable_seed(key: str) -> int:
    return int(hashlib.sha1(key.encode()).hexdigest()[:8], 16)


class Timer:
    """Median-of-repeats timer: CUDA events + L2 flush on a GPU, perf_counter on the CPU."""

    def __init__(self, device: torch.device, min_reps: int = 5, max_reps: int = 30,
                 target_s: float = 0.15):
        self.device = device
        self.cuda = device.type == "cuda"
        self.min_reps, self.max_reps, self.target_s = min_reps, max_reps, target_s
        self.flush_buf = torch.empty(256 << 20, dtype=torch.uint8, device=device) if self.cuda else None

    def flush(self) -> None:
        if self.flush_buf is not None:
            self.flush_buf.fill_(1)

    def _once(self, fn: Callable[[], object]) -> float:
        if not self.cuda:
            t = time.perf_counter()
            fn()
            return time.perf_counter() - t
        self.flush()
        e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        e0.record()
        fn()
        e1.record()
        e1.synchronize()
        return e0.elapsed_time(e1) / 1e3

    def run(self, fn: Callable[[], object], graph: bool = False, warmup: int = 2,
            min_reps: int | None = None) -> dict:
        """Time fn; with graph=True capture it in a CUDA graph and time the replays."""
        min_reps = self.min_reps if min_reps is None else min_reps
        mode = "eager"
        g = None
        if self.cuda:
            s = torch.cuda.Stream()
            s.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(s):
                for _ in range(warmup):
                    fn()
            torch.cuda.current_stream().wait_stream(s)
            torch.cuda.synchronize()
            if graph:
                g = torch.cuda.CUDAGraph()
                with torch.cuda.graph(g):
                    fn()
                fn = g.replay
                mode = "graph"
                fn()
        else:
            for _ in range(warmup):
                fn()
        t0 = self._once(fn)
        reps = max(min_reps, min(self.max_reps, int(self.target_s / max(t0, 1e-7))))
        if self.cuda:
            evs = []
            for _ in range(reps):
                self.flush()
                e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                e0.record()
                fn()
                e1.record()
                evs.append((e0, e1))
            torch.cuda.synchronize()
            ts = [a.elapsed_time(b) / 1e3 for a, b in evs]
        else:
            ts = [self._once(fn) for _ in range(reps)]
        del g
        return dict(median_s=statistics.median(ts), min_s=min(ts), max_s=max(ts),
                    repeats=reps, mode=mode, timer="cuda_event" if self.cuda else "perf_counter")


# --------------------------------------------------------------------------------------------
# Kernels (pure PyTorch)


def randn(shape, device, scale=1.0, dtype=torch.bfloat16):
    return (torch.randn(shape, device=device, dtype=torch.float32) * scale).to(dtype)


def rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate-half RoPE. x: (T, heads, d); cos/sin: (T, 1, d/2)."""
    h = x.shape[-1] // 2
    x1, x2 = x[..., :h], x[..., h:]
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)


def rope_tables(pos: torch.Tensor, d: int, theta: float = 500000.0):
    inv = 1.0 / (theta ** (torch.arange(0, d, 2, device=pos.device, dtype=torch.float32) / d))
    ang = pos.float()[:, None] * inv[None, :]
    return ang.cos().to(torch.bfloat16)[:, None, :], ang.sin().to(torch.bfloat16)[:, None, :]


class Attn:
    """Attention implementations chosen by a correctness probe at start-up."""

    def __init__(self, device: torch.device):
        self.device = device
        self.prefill_impl = self._probe_prefill()
        self.decode_impl = self._probe_decode()

    # prefill: q (B,H,C,d); k,v (B,KV,L,d) with L >= C, causal aligned to the bottom right
    def prefill(self, q, k, v):
        if self.prefill_impl == "flash_aten":
            return torch.ops.aten._scaled_dot_product_flash_attention(
                q, k, v, 0.0, True, False, scale=q.shape[-1] ** -0.5)[0]
        g = q.shape[1] // k.shape[1]
        k = k.repeat_interleave(g, dim=1)
        v = v.repeat_interleave(g, dim=1)
        if q.shape[2] == k.shape[2]:
            return F.scaled_dot_product_attention(q, k, v, is_causal=True)
        from torch.nn.attention.bias import causal_lower_right
        return F.scaled_dot_product_attention(q, k, v, attn_mask=causal_lower_right(q.shape[2], k.shape[2]))

    # decode: q (B,KV,G,d) = the G query heads sharing one KV head; k,v (B,KV,L,d); no mask
    def decode(self, q, k, v):
        if self.decode_impl == "flash_aten_grouped":
            return torch.ops.aten._scaled_dot_product_flash_attention(
                q, k, v, 0.0, False, False, scale=q.shape[-1] ** -0.5)[0]
        return F.scaled_dot_product_attention(q, k, v)

    @staticmethod
    def _ref(q, k, v, causal_offset):
        g = q.shape[1] // k.shape[1]
        k = k.double().repeat_interleave(g, 1)
        v = v.double().repeat_interleave(g, 1)
        s = q.double() @ k.transpose(-1, -2) * q.shape[-1] ** -0.5
        if causal_offset is not None:
            C, L = q.shape[2], k.shape[2]
            i = torch.arange(C, device=q.device)[:, None]
            j = torch.arange(L, device=q.device)[None, :]
            s = s.masked_fill(j > i + (L - C), float("-inf"))
        return s.softmax(-1) @ v

    def _probe_prefill(self) -> str:
        torch.manual_seed(0)
        B, H, KV, C, L, d = 2, 8, 2, 40, 104, 64
        q, k, v = (randn((B, n, t, d), self.device) for n, t in ((H, C), (KV, L), (KV, L)))
        ref = self._ref(q, k, v, L - C)
        for impl in ("flash_aten", "sdpa_expand"):
            self.prefill_impl = impl
            try:
                out = self.prefill(q, k, v).double()
            except Exception:  # noqa: BLE001 - backend not available here
                continue
            if torch.isfinite(out).all() and (out - ref).norm() / ref.norm() < 2e-2:
                return impl
        raise RuntimeError("no prefill attention implementation passed the correctness probe")

    def _probe_decode(self) -> str:
        torch.manual_seed(1)
        B, KV, G, L, d = 3, 2, 4, 77, 64
        q = randn((B, KV, G, d), self.device)
        k, v = randn((B, KV, L, d), self.device), randn((B, KV, L, d), self.device)
        ref = self._ref(q.reshape(B, KV * G, 1, d), k, v, None).reshape(B, KV, G, d)
        for impl in ("flash_aten_grouped", "sdpa_grouped"):
            self.decode_impl = impl
            try:
                out = self.decode(q, k, v).double()
            except Exception:  # noqa: BLE001 - backend not available here
                continue
            if torch.isfinite(out).all() and (out - ref).norm() / ref.norm() < 2e-2:
                return impl
        raise RuntimeError("no decode attention implementation passed the correctness probe")


class Layers:
    """A stack of decoder layers with random bf16 weights (Llama architecture)."""

    def __init__(self, d: Dims, n_layers: int, device: torch.device, attn: Attn):
        self.d, self.n, self.device, self.attn = d, n_layers, device, attn
        q = (d.heads + 2 * d.kv_heads) * d.head_dim
        s = 0.02
        self.w = []
        for _ in range(n_layers):
            self.w.append(dict(
                ln1=torch.ones(d.hidden, device=device, dtype=torch.bfloat16),
                qkv=randn((q, d.hidden), device, s),
                o=randn((d.hidden, d.heads * d.head_dim), device, s),
                ln2=torch.ones(d.hidden, device=device, dtype=torch.bfloat16),
                gate_up=randn((2 * d.ffn, d.hidden), device, s),
                down=randn((d.hidden, d.ffn), device, s),
            ))

    def weight_bytes_per_layer(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.w[0].values())

    def make_inputs(self, pf_seqs, chunk, prior, dec_batch, ctx):
        """Allocate activations and KV caches; returns a closure running all layers."""
        d, dev = self.d, self.device
        npf = pf_seqs * chunk
        T = npf + dec_batch
        x = randn((T, d.hidden), dev)
        pos = torch.cat([torch.arange(prior, prior + chunk, device=dev).repeat(pf_seqs),
                         torch.full((dec_batch,), ctx, device=dev)])
        cos, sin = rope_tables(pos, d.head_dim)
        caches = []
        for _ in range(self.n):
            c = {}
            if npf:
                c["pk"] = randn((pf_seqs, d.kv_heads, prior + chunk, d.head_dim), dev)
                c["pv"] = randn((pf_seqs, d.kv_heads, prior + chunk, d.head_dim), dev)
            if dec_batch:
                c["dk"] = randn((dec_batch, d.kv_heads, ctx + 1, d.head_dim), dev)
                c["dv"] = randn((dec_batch, d.kv_heads, ctx + 1, d.head_dim), dev)
            caches.append(c)
        H, KV, hd, G = d.heads, d.kv_heads, d.head_dim, d.heads // d.kv_heads
        attn = self.attn
        out = {}

        def layer(x, w, c):
            h = F.rms_norm(x, (d.hidden,), w["ln1"], 1e-5)
            qkv = F.linear(h, w["qkv"])
            q = qkv[:, : H * hd].view(T, H, hd)
            k = qkv[:, H * hd:(H + KV) * hd].view(T, KV, hd)
            v = qkv[:, (H + KV) * hd:].view(T, KV, hd)
            q, k = rope(q, cos, sin), rope(k, cos, sin)
            parts = []
            if npf:
                c["pk"][:, :, prior:] = k[:npf].view(pf_seqs, chunk, KV, hd).transpose(1, 2)
                c["pv"][:, :, prior:] = v[:npf].view(pf_seqs, chunk, KV, hd).transpose(1, 2)
                qp = q[:npf].view(pf_seqs, chunk, H, hd).transpose(1, 2)
                a = attn.prefill(qp, c["pk"], c["pv"])
                parts.append(a.transpose(1, 2).reshape(npf, H * hd))
            if dec_batch:
                c["dk"][:, :, ctx] = k[npf:]
                c["dv"][:, :, ctx] = v[npf:]
                qd = q[npf:].view(dec_batch, KV, G, hd)
                a = attn.decode(qd, c["dk"], c["dv"])
                parts.append(a.reshape(dec_batch, H * hd))
            a = parts[0] if len(parts) == 1 else torch.cat(parts)
            x = x + F.linear(a, w["o"])
            h = F.rms_norm(x, (d.hidden,), w["ln2"], 1e-5)
            gu = F.linear(h, w["gate_up"])
            h = F.silu(gu[:, : d.ffn]) * gu[:, d.ffn:]
            return x + F.linear(h, w["down"])

        def run():
            y = x
            for w, c in zip(self.w, caches):
                y = layer(y, w, c)
            out["y"] = y

        return run


def route_counts(n_experts: int, top_k: int, tokens: int, skew: float, seed: int) -> np.ndarray:
    """Per-expert token counts: each token picks top_k distinct experts (Gumbel top-k) from a
    Zipf popularity p_e ~ rank^-skew over a random expert order (skew 0 = uniform)."""
    rng = np.random.default_rng(seed)
    ranks = rng.permutation(n_experts) + 1
    logp = -skew * np.log(ranks)
    g = rng.gumbel(size=(tokens, n_experts)) + logp[None, :]
    pick = np.argpartition(-g, top_k - 1, axis=1)[:, :top_k]
    return np.bincount(pick.ravel(), minlength=n_experts).astype(np.int64)


class Experts:
    """Local experts of one MoE layer: grouped GEMM (torch._grouped_mm) or a loop of GEMMs."""

    def __init__(self, d: Dims, n_local: int, device: torch.device):
        self.d, self.n, self.device = d, n_local, device
        self.w13 = randn((n_local, d.hidden, 2 * d.ffn), device, 0.02)
        self.w2 = randn((n_local, d.ffn, d.hidden), device, 0.02)
        self.impl = self._probe()

    def _fwd(self, x, counts, offs, impl):
        f = self.d.ffn
        if impl == "grouped_mm":
            h = torch._grouped_mm(x, self.w13, offs=offs)
            h = F.silu(h[:, :f]) * h[:, f:]
            return torch._grouped_mm(h, self.w2, offs=offs)
        outs, start = [], 0
        for e, n in enumerate(counts):
            if n:
                h = x[start:start + n] @ self.w13[e]
                h = F.silu(h[:, :f]) * h[:, f:]
                outs.append(h @ self.w2[e])
            start += n
        return torch.cat(outs)

    def _probe(self) -> str:
        torch.manual_seed(2)
        counts = ([3, 0, 17] + [1] * self.n)[: self.n]
        x = randn((sum(counts), self.d.hidden), self.device)
        offs = torch.tensor(np.cumsum(counts), dtype=torch.int32, device=self.device)
        ref = self._fwd(x, counts, offs, "loop").double()
        try:
            out = self._fwd(x, counts, offs, "grouped_mm").double()
            if torch.isfinite(out).all() and (out - ref).norm() / ref.norm() < 2e-2:
                return "grouped_mm"
        except Exception:  # noqa: BLE001 - private op missing on this build
            pass
        return "loop"

    def make(self, counts: np.ndarray):
        x = randn((int(counts.sum()), self.d.hidden), self.device)
        offs = torch.tensor(np.cumsum(counts), dtype=torch.int32, device=self.device)
        cl = [int(c) for c in counts]
        return lambda: self._fwd(x, cl, offs, self.impl)


# --------------------------------------------------------------------------------------------
# Environment


def _sh(cmd: list[str]) -> str:
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        return (r.stdout + r.stderr).strip()
    except Exception as e:  # noqa: BLE001 - tool missing
        return f"unavailable: {e}"


SMI_FIELDS = ("name,driver_version,pstate,clocks.sm,clocks.mem,clocks.max.sm,clocks.max.mem,"
              "power.draw,power.limit,temperature.gpu,memory.total,memory.used")


def smi_snapshot(label: str) -> dict:
    """nvidia-smi reading: clocks, power, temperature, throttle reasons."""
    snap = {"label": label, "utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "query": _sh(["nvidia-smi", f"--query-gpu={SMI_FIELDS}", "--format=csv"])}
    thr = _sh(["nvidia-smi", "--query-gpu=clocks_event_reasons.active", "--format=csv,noheader"])
    if "not a valid field" in thr.lower() or "unavailable" in thr:
        thr = _sh(["nvidia-smi", "--query-gpu=clocks_throttle_reasons.active", "--format=csv,noheader"])
    snap["clock_event_reasons_active"] = thr
    return snap


def environment(device: torch.device, args) -> dict:
    env = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "torch_cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "device": str(device),
        "script_sha256": hashlib.sha256(Path(__file__).read_bytes()).hexdigest(),
        "argv": sys.argv,
        "tiny": bool(args.tiny),
    }
    try:
        env["cpu"] = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except Exception:  # noqa: BLE001
        env["cpu"] = platform.processor()
    env["cpu_count"] = os.cpu_count()
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        env["gpu"] = {"name": p.name, "total_memory_bytes": p.total_memory,
                      "multi_processor_count": p.multi_processor_count,
                      "capability": f"{p.major}.{p.minor}",
                      "l2_cache_bytes": getattr(p, "L2_cache_size", None)}
        env["nvidia_smi"] = _sh(["nvidia-smi"])
        env["nvidia_smi_q"] = _sh(["nvidia-smi", "-q", "-d", "CLOCK,PERFORMANCE,POWER,TEMPERATURE"])
    return env


# --------------------------------------------------------------------------------------------
# Runner


class Sink:
    """Append-only CSV with resumability by key."""

    def __init__(self, path: Path, fields: list[str]):
        self.path, self.fields = path, fields
        self.done: set[str] = set()
        if path.exists():
            with open(path, newline="") as f:
                r = csv.DictReader(f)
                if r.fieldnames != fields:
                    raise ValueError(f"{path}: header {r.fieldnames} differs from expected {fields}")
                self.done = {row["key"] for row in r}

    def write(self, row: dict) -> None:
        new = not self.path.exists()
        with open(self.path, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=self.fields, lineterminator="\n")
            if new:
                w.writeheader()
            w.writerow({k: _fmt(row.get(k, "")) for k in self.fields})


def _fmt(v):
    if isinstance(v, float):
        return repr(v)
    return v


TIME_FIELDS = ["median_s", "min_s", "max_s", "repeats", "mode", "timer"]
FIELDS = {
    "gemm": ["key", "run_id", "model", "op", "tp", "m", "k", "n", "flops", "bytes"] + TIME_FIELDS,
    "attention": ["key", "run_id", "phase", "model", "batch", "q_len", "kv_len", "heads", "kv_heads",
                  "head_dim", "impl", "attn_pairs", "flops", "bytes"] + TIME_FIELDS,
    "layer": ["key", "run_id", "kind", "model", "n_layers_timed", "hidden", "heads", "kv_heads",
              "head_dim", "ffn", "pf_seqs", "chunk", "prior", "dec_batch", "ctx",
              "prefill_tokens", "prefill_attn_pairs", "decode_seqs", "decode_kv_tokens",
              "weight_bytes", "prefill_attn_impl", "decode_attn_impl"] + TIME_FIELDS
             + ["total_median_s"],
    "expert_ffn": ["key", "run_id", "model", "hidden", "ffn", "n_experts", "top_k", "ep",
                   "n_local_experts", "tokens", "skew", "seed", "rows", "active_experts",
                   "max_count", "counts", "impl", "flops"] + TIME_FIELDS,
    "copy": ["key", "run_id", "direction", "pinned", "pattern", "bytes", "block_bytes",
             "n_blocks", "gbps"] + TIME_FIELDS,
}


class Runner:
    def __init__(self, args):
        self.args = args
        self.out = Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        want_cuda = torch.cuda.is_available() and not args.cpu
        if not want_cuda and not args.tiny:
            raise SystemExit("measure: no CUDA device visible; full calibration needs a GPU "
                             "(use --tiny for a CPU check of the script)")
        self.device = torch.device("cuda" if want_cuda else "cpu")
        self.models = TINY if args.tiny else MODELS
        self.tag = f"|rep={args.repeat_tag}" if args.repeat_tag else ""
        self.t_start = time.monotonic()
        self.run_id = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        self.log_f = open(self.out / "measure.log", "a")
        self.timer = Timer(self.device, min_reps=args.min_reps)
        self.attn = Attn(self.device)
        self.env_path = self.out / "environment.json"
        envs = json.loads(self.env_path.read_text()) if self.env_path.exists() else {"runs": []}
        if any(bool(r.get("tiny")) != bool(args.tiny) for r in envs["runs"]):
            raise SystemExit(f"measure: {self.env_path} holds {'full' if args.tiny else '--tiny'} runs; "
                             "use another --out so toy and real data never mix")
        self.env = environment(self.device, args)
        self.env.update(run_id=self.run_id, prefill_attn_impl=self.attn.prefill_impl,
                        decode_attn_impl=self.attn.decode_impl,
                        started_utc=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                        snapshots=[], points={}, failures=[])
        self.envs = envs
        envs["runs"].append(self.env)
        self.save_env()

    def log(self, msg: str) -> None:
        line = f"[{time.monotonic() - self.t_start:7.1f}s] {msg}"
        print(line, flush=True)
        self.log_f.write(line + "\n")
        self.log_f.flush()

    def save_env(self) -> None:
        tmp = self.env_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.envs, indent=1))
        tmp.replace(self.env_path)

    def over_budget(self) -> bool:
        return self.args.budget_s is not None and time.monotonic() - self.t_start > self.args.budget_s

    def snapshot(self, label: str) -> None:
        if self.device.type == "cuda":
            self.env["snapshots"].append(smi_snapshot(label))
            self.save_env()

    def warm_gpu(self) -> None:
        if self.device.type != "cuda":
            return
        a, b = randn((8192, 8192), self.device), randn((8192, 8192), self.device)
        t = time.monotonic()
        while time.monotonic() - t < self.args.warm_s:
            for _ in range(20):
                a @ b
            torch.cuda.synchronize()
        del a, b

    def run(self) -> None:
        cats = self.args.only or list(CATEGORIES)
        self.log(f"run {self.run_id} on {self.device}: prefill attn={self.attn.prefill_impl}, "
                 f"decode attn={self.attn.decode_impl}; categories {cats}")
        self.snapshot("start")
        self.warm_gpu()
        self.snapshot("after_warmup")
        for cat in cats:
            if self.over_budget():
                break
            n0 = time.monotonic()
            done, skipped = getattr(self, f"do_{cat}")()
            self.env["points"][cat] = done
            self.log(f"{cat}: {done} points measured, {skipped} already present, "
                     f"{time.monotonic() - n0:.1f}s")
            self.snapshot(f"after_{cat}")
        self.env["finished_utc"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        self.env["stopped_by_budget"] = self.over_budget()
        self.save_env()
        self.log("done" + (" (stopped by --budget-s; run again to resume)" if self.over_budget() else ""))

    def _loop(self, cat: str, per_point: Callable[[dict, int], dict | None], setup=None):
        sink = Sink(self.out / f"{cat}.csv", FIELDS[cat])
        grid = [(k + self.tag, p) for k, p in GRIDS[cat](self.models, self.args.tiny)]
        todo = [(k, p) for k, p in grid if k not in sink.done]
        skipped = len(grid) - len(todo)
        done = fails = 0
        for i, (key, p) in enumerate(todo):
            if self.over_budget():
                break
            torch.manual_seed(stable_seed(key))
            try:
                row = per_point(p, stable_seed(key))
            except Exception as e:  # noqa: BLE001 - recorded in environment.json, not in the CSV
                fails += 1
                self.env["failures"].append({"key": key, "error": f"{type(e).__name__}: {str(e)[:300]}"})
                self.log(f"  {key}: FAILED ({type(e).__name__}: {str(e)[:200]}), not recorded")
                self._free()
                if fails >= 3 and done == 0:
                    self.log(f"  {cat}: giving up after {fails} failures and no success")
                    break
                continue
            if row is None:
                continue
            row.update(key=key, run_id=self.run_id)
            sink.write(row)
            done += 1
            if self.args.verbose or i % 25 == 0 or i == len(todo) - 1:
                self.log(f"  {cat} {i + 1}/{len(todo)} {key}: {row['median_s'] * 1e3:.4f} ms")
        self._free()
        return done, skipped

    def _free(self) -> None:
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.empty_cache()

    # ---- categories

    def do_gemm(self):
        cache: dict = {}

        def point(p, seed):
            wkey = (p["model"], p["op"], p["tp"])
            if wkey not in cache:
                cache.clear()
                self._free()
                cache[wkey] = randn((p["n"], p["k"]), self.device, 0.02)
            w = cache[wkey]
            x = randn((p["m"], p["k"]), self.device)
            t = self.timer.run(lambda: F.linear(x, w))
            m, k, n = p["m"], p["k"], p["n"]
            return dict(p, flops=2 * m * k * n, bytes=2 * (m * k + k * n + m * n), **t)

        r = self._loop("gemm", point)
        cache.clear()
        return r

    def do_attention(self):
        def point(p, seed):
            d = self.models[p["model"]]
            B, C, L, H, KV, hd = p["batch"], p["q_len"], p["kv_len"], d.heads, d.kv_heads, d.head_dim
            if p["phase"] == "prefill":
                q = randn((B, H, C, hd), self.device)
                k, v = randn((B, KV, L, hd), self.device), randn((B, KV, L, hd), self.device)
                fn = lambda: self.attn.prefill(q, k, v)  # noqa: E731
                pairs = B * (C * (L - C) + C * (C + 1) // 2)
                impl = self.attn.prefill_impl
            else:
                q = randn((B, KV, H // KV, hd), self.device)
                k, v = randn((B, KV, L, hd), self.device), randn((B, KV, L, hd), self.device)
                fn = lambda: self.attn.decode(q, k, v)  # noqa: E731
                pairs = B * L
                impl = self.attn.decode_impl
            t = self.timer.run(fn)
            byts = 2 * (2 * q.numel() + k.numel() + v.numel())
            return dict(p, heads=H, kv_heads=KV, head_dim=hd, impl=impl, attn_pairs=pairs,
                        flops=4 * H * hd * pairs, bytes=byts, **t)

        return self._loop("attention", point)

    def do_layer(self):
        stacks: dict = {}

        def point(p, seed):
            name = p["model"]
            if name not in stacks:
                stacks.clear()
                self._free()
                stacks[name] = Layers(self.models[name], self.args.n_layers, self.device, self.attn)
            st = stacks[name]
            d = st.d
            fn = st.make_inputs(p["pf_seqs"], p["chunk"], p["prior"], p["dec_batch"], p["ctx"])
            t = self.timer.run(fn, graph=self.device.type == "cuda", min_reps=self.args.min_reps)
            del fn
            self._free()
            n = st.n
            s, c, pr = p["pf_seqs"], p["chunk"], p["prior"]
            row = dict(p, n_layers_timed=n, hidden=d.hidden, heads=d.heads, kv_heads=d.kv_heads,
                       head_dim=d.head_dim, ffn=d.ffn, prefill_tokens=s * c,
                       prefill_attn_pairs=s * (c * pr + c * (c + 1) // 2),
                       decode_seqs=p["dec_batch"], decode_kv_tokens=p["dec_batch"] * (p["ctx"] + 1),
                       weight_bytes=st.weight_bytes_per_layer(),
                       prefill_attn_impl=self.attn.prefill_impl if s else "",
                       decode_attn_impl=self.attn.decode_impl if p["dec_batch"] else "",
                       total_median_s=t["median_s"])
            for f in ("median_s", "min_s", "max_s"):
                row[f] = t[f] / n
            row.update(repeats=t["repeats"], mode=t["mode"], timer=t["timer"])
            return row

        r = self._loop("layer", point)
        stacks.clear()
        return r

    def do_expert_ffn(self):
        mods: dict = {}

        def point(p, seed):
            d = self.models[p["model"]]
            n_local = d.n_experts // p["ep"]
            mk = (p["model"], n_local)
            if mk not in mods:
                mods.clear()
                self._free()
                mods[mk] = Experts(d, n_local, self.device)
            ex = mods[mk]
            counts = route_counts(d.n_experts, d.top_k, p["tokens"], p["skew"], seed)[:n_local]
            if counts.sum() == 0:
                counts = counts.copy()
                counts[0] = 1  # an EP rank with no tokens still runs; keep one row (recorded)
            fn = ex.make(counts)
            t = self.timer.run(fn, graph=self.device.type == "cuda")
            rows = int(counts.sum())
            return dict(p, hidden=d.hidden, ffn=d.ffn, n_experts=d.n_experts, top_k=d.top_k,
                        n_local_experts=n_local, seed=seed, rows=rows,
                        active_experts=int((counts > 0).sum()), max_count=int(counts.max()),
                        counts=";".join(str(int(c)) for c in counts), impl=ex.impl,
                        flops=2 * rows * d.hidden * 3 * d.ffn, **t)

        r = self._loop("expert_ffn", point)
        mods.clear()
        return r

    def do_copy(self):
        cuda = self.device.type == "cuda"
        maxb = max(p["bytes"] for _, p in grid_copy(self.models, self.args.tiny))
        bufs: dict = {}

        def get(pinned: bool):
            if "dev" not in bufs:
                bufs["dev"] = torch.randint(0, 255, (maxb,), dtype=torch.uint8, device=self.device)
            if pinned not in bufs:
                h = torch.empty(maxb, dtype=torch.uint8, pin_memory=bool(pinned and cuda))
                h.copy_(bufs["dev"])
                bufs[pinned] = h
            return bufs["dev"], bufs[pinned]

        def point(p, seed):
            nb, bb, n = p["bytes"], p["block_bytes"], p["n_blocks"]
            if p["direction"] == "d2d":
                if "dev2" not in bufs:
                    bufs["dev2"] = torch.empty(maxb, dtype=torch.uint8, device=self.device)
                src, dst = get(True)[0][:nb], bufs["dev2"][:nb]
                t = self.timer.run(lambda: dst.copy_(src), warmup=1, min_reps=5)
                return dict(p, gbps=nb / t["median_s"] / 1e9, **t)
            dev, host = get(bool(p["pinned"]))
            nbk = bool(p["pinned"])
            if p["pattern"] == "contiguous":
                src, dst = (host[:nb], dev[:nb]) if p["direction"] == "h2d" else (dev[:nb], host[:nb])
                fn = lambda: dst.copy_(src, non_blocking=nbk)  # noqa: E731
            else:
                # n blocks at random slots of a device pool of 4n blocks, one copy per block
                rng = np.random.default_rng(seed)
                slots = rng.permutation(4 * n)[:n]
                dv = dev[: 4 * n * bb].view(4 * n, bb)
                hv = host[: n * bb].view(n, bb)
                pairs = [(hv[i], dv[int(s)]) for i, s in enumerate(slots)]
                if p["direction"] == "d2h":
                    pairs = [(b, a) for a, b in pairs]

                def fn():
                    for s_, d_ in pairs:
                        d_.copy_(s_, non_blocking=True)
            t = self.timer.run(fn, warmup=1, min_reps=5)
            return dict(p, gbps=nb / t["median_s"] / 1e9, **t)

        r = self._loop("copy", point)
        bufs.clear()
        return r


def build_parser(p: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    p = p or argparse.ArgumentParser(prog="python -m hwmodels.calibrate measure", description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="output folder (existing CSVs there are resumed)")
    p.add_argument("--only", nargs="+", choices=CATEGORIES, help="categories to run (default: all)")
    p.add_argument("--budget-s", type=float, default=None, help="stop starting new points after this many seconds")
    p.add_argument("--n-layers", type=int, default=4, help="decoder layers in the timed stack")
    p.add_argument("--min-reps", type=int, default=7, help="minimum timed repeats per point (>= 5)")
    p.add_argument("--warm-s", type=float, default=3.0, help="seconds of GEMM before measuring (clock ramp)")
    p.add_argument("--tiny", action="store_true", help="toy dims and grid (CPU ok): checks the script only")
    p.add_argument("--cpu", action="store_true", help="force CPU (only with --tiny)")
    p.add_argument("--verbose", action="store_true", help="log every point")
    p.add_argument("--repeat-tag", default="", help="measure the grid again with keys suffixed '|rep=TAG' "
                   "(repeatability check; such rows are never used for fitting or held-out error)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.min_reps < 5:
        raise SystemExit("--min-reps must be >= 5")
    Runner(args).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
