"""GPU and model catalogues: typed records built from data/gpus.toml and data/models.toml.

Why a catalogue: every cost in servegym (step time, KV capacity, cold start, price) derives from a
handful of datasheet and config.json numbers; keeping them in data files with a source per number
makes the cost model auditable, and the dataclasses give the rest of the code typed access.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from ._data import read_toml, sourced
from .errors import HwModelError

GPU_FILE = "gpus.toml"
MODEL_FILE = "models.toml"


@dataclass(frozen=True)
class GPU:
    """One accelerator: dense peak FLOP/s, memory, links and price (all per GPU)."""

    name: str
    vendor: str
    bf16_flops: float  # dense BF16 tensor FLOP/s
    fp8_flops: float  # dense FP8 tensor FLOP/s (BF16 rate where no FP8 units exist)
    hbm_bytes: float  # device memory capacity, bytes
    hbm_bw: float  # device memory bandwidth, bytes/s
    scaleup_bw: float  # NVLink / xGMI (or PCIe when none) per GPU, aggregate bidirectional, bytes/s
    pcie_bw: float  # host link, bidirectional, bytes/s
    price_usd_per_hour: float  # typical on-demand price of one GPU for one hour
    price_provider: str
    price_date: str
    cuda_visible_bytes: float | None = None  # total memory CUDA reports, where measured
    aliases: tuple[str, ...] = ()
    sources: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    def flops(self, dtype_bytes: int) -> float:
        """Dense tensor FLOP/s for GEMMs whose weights are `dtype_bytes` wide (1 = FP8, 2 = BF16)."""
        return self.fp8_flops if dtype_bytes == 1 else self.bf16_flops


@dataclass(frozen=True)
class Model:
    """One LLM architecture, as in its Hugging Face config.json, plus checkpoint dtypes."""

    name: str
    hf_repo: str
    attention: str  # "gqa" or "mla"
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int  # dense MLP width (0 when every layer is MoE)
    vocab: int
    tie_word_embeddings: bool
    experts: int  # routed experts per MoE layer (0 = dense model)
    top_k: int
    shared_experts: int
    moe_intermediate: int
    first_dense_layers: int  # leading layers with a dense MLP (= layers for dense models)
    q_lora_rank: int
    kv_lora_rank: int
    qk_nope_head_dim: int
    qk_rope_head_dim: int
    v_head_dim: int
    dtype_bytes: int  # activations and KV cache
    linear_dtype_bytes: int  # linear-layer weights in the checkpoint (1 = FP8)
    # Longest sequence (prompt + output tokens) the model serves: config.json
    # max_position_embeddings, which vLLM takes as max_model_len by default.
    context_length: int
    published_params: float
    aliases: tuple[str, ...] = ()
    sources: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)
    # Routed experts are split into this many groups for group-limited routing (DeepSeek-V3's
    # n_group); EPLB packs groups to nodes when it divides the node count. 1 = no grouping.
    expert_groups: int = 1

    # ---- structure -------------------------------------------------------------------------
    @property
    def is_moe(self) -> bool:
        return self.experts > 0

    @property
    def is_mla(self) -> bool:
        return self.attention == "mla"

    @property
    def n_dense_layers(self) -> int:
        return self.first_dense_layers

    @property
    def n_moe_layers(self) -> int:
        return self.layers - self.first_dense_layers if self.is_moe else 0

    # ---- parameter counts (per layer unless said otherwise) --------------------------------
    @property
    def attn_params(self) -> int:
        """Attention projection weights of one layer."""
        h = self.hidden
        if self.is_mla:
            qk = self.qk_nope_head_dim + self.qk_rope_head_dim
            q = (h * self.q_lora_rank + self.q_lora_rank * self.heads * qk) if self.q_lora_rank else h * self.heads * qk
            kv_a = h * (self.kv_lora_rank + self.qk_rope_head_dim)
            kv_b = self.kv_lora_rank * self.heads * (self.qk_nope_head_dim + self.v_head_dim)
            o = self.heads * self.v_head_dim * h
            return q + kv_a + kv_b + o
        return h * self.heads * self.head_dim * 2 + h * self.kv_heads * self.head_dim * 2

    @property
    def dense_mlp_params(self) -> int:
        """Gated (SwiGLU) dense MLP of one dense layer: gate, up, down."""
        return 3 * self.hidden * self.intermediate

    @property
    def expert_params(self) -> int:
        """One routed expert (gate, up, down)."""
        return 3 * self.hidden * self.moe_intermediate

    @property
    def shared_params(self) -> int:
        """Shared experts of one MoE layer (always active)."""
        return self.shared_experts * self.expert_params

    @property
    def router_params(self) -> int:
        return self.hidden * self.experts

    @property
    def norm_params(self) -> int:
        """RMSNorm weights of one layer (MLA adds its two latent norms)."""
        extra = self.q_lora_rank + self.kv_lora_rank if self.is_mla else 0
        return 2 * self.hidden + extra

    @property
    def embed_params(self) -> int:
        return self.vocab * self.hidden

    @property
    def lm_head_params(self) -> int:
        return 0 if self.tie_word_embeddings else self.vocab * self.hidden

    def total_params(self) -> int:
        """All weights (the MTP head of DeepSeek-V3 excluded, as vLLM does by default)."""
        per_layer = self.attn_params + self.norm_params
        moe = self.n_moe_layers * (self.experts * self.expert_params + self.shared_params + self.router_params)
        dense = self.n_dense_layers * self.dense_mlp_params
        return self.layers * per_layer + moe + dense + self.embed_params + self.lm_head_params + self.hidden

    def active_params(self) -> int:
        """Weights one token touches (routed experts: top_k of them)."""
        per_layer = self.attn_params + self.norm_params
        moe = self.n_moe_layers * (self.top_k * self.expert_params + self.shared_params + self.router_params)
        dense = self.n_dense_layers * self.dense_mlp_params
        return self.layers * per_layer + moe + dense + self.lm_head_params + self.hidden

    def linear_params(self) -> int:
        """Weights stored in linear_dtype_bytes (projections, MLPs, experts, router)."""
        moe = self.n_moe_layers * (self.experts * self.expert_params + self.shared_params + self.router_params)
        return self.layers * self.attn_params + moe + self.n_dense_layers * self.dense_mlp_params

    def weight_bytes(self) -> int:
        """Checkpoint bytes on the GPUs: linear layers in linear_dtype_bytes, the rest in dtype_bytes."""
        other = self.total_params() - self.linear_params()
        return self.linear_params() * self.linear_dtype_bytes + other * self.dtype_bytes


def _norm(name: str) -> str:
    """Canonical lookup key: lower case, '_'/spaces -> '-', vendor prefix dropped."""
    key = re.sub(r"[\s_]+", "-", name.strip().lower())
    return re.sub(r"^(nvidia|amd)-", "", key)


_GPU_NUM = ("bf16_flops", "fp8_flops", "hbm_bytes", "hbm_bw", "scaleup_bw", "pcie_bw")
_MODEL_INT = ("layers", "hidden", "heads", "kv_heads", "head_dim", "intermediate", "vocab", "experts", "top_k",
              "shared_experts", "moe_intermediate", "first_dense_layers", "q_lora_rank", "kv_lora_rank",
              "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim", "dtype_bytes", "linear_dtype_bytes",
              "context_length")
REQUIRED_GPU_FIELDS = _GPU_NUM + ("price_usd_per_hour",)
REQUIRED_MODEL_FIELDS = _MODEL_INT + ("tie_word_embeddings", "published_params")


def _aliases(table: dict[str, Any], where: str) -> tuple[str, ...]:
    raw = table.get("aliases", [])
    if not isinstance(raw, list) or not all(isinstance(a, str) for a in raw):
        raise HwModelError(f"{where}: 'aliases' must be a list of strings")
    return tuple(raw)


def _parse_gpu(name: str, t: dict[str, Any]) -> GPU:
    where = f"{GPU_FILE} [{name}]"
    vals = {k: sourced(t, k, where, float, minimum=1.0) for k in _GPU_NUM}
    price = sourced(t, "price_usd_per_hour", where, float, minimum=0.0)
    pt = t["price_usd_per_hour"]
    for k in ("provider", "date"):
        if not isinstance(pt.get(k), str) or not pt[k].strip():
            raise HwModelError(f"{where}: price_usd_per_hour needs a '{k}' string")
    visible = sourced(t, "cuda_visible_bytes", where, float, minimum=1.0) if "cuda_visible_bytes" in t else None
    if visible is not None and visible.value > vals["hbm_bytes"].value:
        raise HwModelError(f"{where}: cuda_visible_bytes exceeds hbm_bytes")
    sources = {k: v.source for k, v in vals.items()} | {"price_usd_per_hour": price.source}
    if visible is not None:
        sources["cuda_visible_bytes"] = visible.source
    return GPU(name=name, vendor=str(t.get("vendor", "")), price_usd_per_hour=float(price.value),
               price_provider=pt["provider"], price_date=pt["date"],
               cuda_visible_bytes=None if visible is None else float(visible.value),
               aliases=_aliases(t, where), sources=sources, **{k: float(v.value) for k, v in vals.items()})


def _parse_model(name: str, t: dict[str, Any]) -> Model:
    where = f"{MODEL_FILE} [{name}]"
    ints = {k: sourced(t, k, where, int, minimum=0) for k in _MODEL_INT}
    tie = sourced(t, "tie_word_embeddings", where, bool)
    pub = sourced(t, "published_params", where, float, minimum=1.0)
    attention = t.get("attention")
    if attention not in ("gqa", "mla"):
        raise HwModelError(f"{where}: 'attention' must be \"gqa\" or \"mla\", got {attention!r}")
    if not isinstance(t.get("hf_repo"), str):
        raise HwModelError(f"{where}: 'hf_repo' must be a string")
    v = {k: int(s.value) for k, s in ints.items()}
    for k in ("layers", "hidden", "heads", "kv_heads", "head_dim", "vocab", "dtype_bytes", "linear_dtype_bytes",
              "context_length"):
        if v[k] < 1:
            raise HwModelError(f"{where}: '{k}' must be >= 1, got {v[k]}")
    if v["experts"]:
        if not 1 <= v["top_k"] <= v["experts"] or v["moe_intermediate"] < 1:
            raise HwModelError(f"{where}: MoE needs 1 <= top_k <= experts and moe_intermediate >= 1")
        if v["first_dense_layers"] >= v["layers"] or (v["first_dense_layers"] and v["intermediate"] < 1):
            raise HwModelError(f"{where}: first_dense_layers must be < layers, with intermediate >= 1 if any")
    elif v["top_k"] or v["shared_experts"] or v["moe_intermediate"] or v["first_dense_layers"] != v["layers"] \
            or v["intermediate"] < 1:
        raise HwModelError(f"{where}: dense model needs top_k = shared_experts = moe_intermediate = 0, "
                           f"first_dense_layers = layers and intermediate >= 1")
    if attention == "gqa" and v["heads"] % v["kv_heads"]:
        raise HwModelError(f"{where}: heads ({v['heads']}) must be a multiple of kv_heads ({v['kv_heads']})")
    if attention == "mla" and (v["kv_lora_rank"] < 1 or v["qk_rope_head_dim"] < 1 or v["v_head_dim"] < 1):
        raise HwModelError(f"{where}: MLA needs kv_lora_rank, qk_rope_head_dim and v_head_dim >= 1")
    sources = {k: s.source for k, s in ints.items()} | {"tie_word_embeddings": tie.source,
                                                         "published_params": pub.source}
    groups = 1
    if "expert_groups" in t:  # optional: only grouped-routing MoE models need it
        g = sourced(t, "expert_groups", where, int, minimum=1)
        groups, sources["expert_groups"] = int(g.value), g.source
        if not v["experts"] or v["experts"] % groups:
            raise HwModelError(f"{where}: expert_groups ({groups}) must divide experts ({v['experts']})")
    return Model(name=name, hf_repo=t["hf_repo"], attention=attention, tie_word_embeddings=bool(tie.value),
                 published_params=float(pub.value), aliases=_aliases(t, where), sources=sources,
                 expert_groups=groups, **v)


def _index(records: dict[str, Any], kind: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for rec in records.values():
        for key in (rec.name, *rec.aliases):
            k = _norm(key)
            if k in out and out[k] is not rec:
                raise HwModelError(f"{kind} catalogue: name/alias '{key}' is used by both {out[k].name} and {rec.name}")
            out[k] = rec
    return out


@functools.cache
def _gpus() -> tuple[dict[str, GPU], dict[str, GPU]]:
    raw = read_toml(GPU_FILE)
    recs = {n: _parse_gpu(n, t) for n, t in raw.items()}
    return recs, _index(recs, "GPU")


@functools.cache
def _models() -> tuple[dict[str, Model], dict[str, Model]]:
    raw = read_toml(MODEL_FILE)
    recs = {n: _parse_model(n, t) for n, t in raw.items()}
    return recs, _index(recs, "model")


def list_gpus() -> list[str]:
    """Canonical GPU names in catalogue order."""
    return list(_gpus()[0])


def list_models() -> list[str]:
    """Canonical model names in catalogue order."""
    return list(_models()[0])


def get_gpu(name: str | GPU) -> GPU:
    """Look a GPU up by name or alias, case-insensitively ("H100", "nvidia h200", "MI300X")."""
    if isinstance(name, GPU):
        return name
    if not isinstance(name, str):
        raise HwModelError(f"GPU name must be a string, got {type(name).__name__}")
    rec = _gpus()[1].get(_norm(name))
    if rec is None:
        raise HwModelError(f"unknown GPU '{name}'; known GPUs: {', '.join(list_gpus())}")
    return rec


def get_model(name: str | Model) -> Model:
    """Look a model up by name, alias or HF repo id, case-insensitively ("llama-3.1-8b")."""
    if isinstance(name, Model):
        return name
    if not isinstance(name, str):
        raise HwModelError(f"model name must be a string, got {type(name).__name__}")
    rec = _models()[1].get(_norm(name))
    if rec is None:
        raise HwModelError(f"unknown model '{name}'; known models: {', '.join(list_models())}")
    return rec
