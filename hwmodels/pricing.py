"""Dollar cost of GPU time (prices, provider and date in data/gpus.toml)."""

from __future__ import annotations

from .catalog import GPU, get_gpu


def price_per_gpu_hour(gpu: str | GPU) -> float:
    """Typical on-demand USD price of one GPU for one hour."""
    return get_gpu(gpu).price_usd_per_hour
