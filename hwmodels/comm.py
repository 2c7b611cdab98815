"""Collective and point-to-point transfer times: TP all-reduce, MoE all-to-all, KV transfer.

Link model (sources in data/gpus.toml and data/infra.toml): inside a node every GPU reaches every
other through NVSwitch / Infinity Fabric at half its aggregate bidirectional scale-up bandwidth per
direction (full bisection); across nodes each GPU has its own NIC (default 400 Gb/s = 50 GB/s per
direction, DGX H100). Achieved bandwidth is comm_eff of the link, plus comm_latency_s per collective.
"""

from __future__ import annotations

import numpy as np

from .calibration import Calibration, default_calibration
from .catalog import GPU, get_gpu
from .errors import HwModelError
from .infra import infra_default
from traces.checks import is_integer, is_real, positive_real


def _bytes(value, what: str) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise HwModelError(f"{what} must be finite and >= 0, got {value!r}")
    return arr


def _n(value: object, what: str) -> int:
    if not is_integer(value) or value < 1:
        raise HwModelError(f"{what} must be a positive integer, got {value!r}")
    return int(value)


def _out(t: np.ndarray):
    return float(t) if t.ndim == 0 else t


def allreduce_time(bytes_per_gpu, gpu: str | GPU, n_gpus: int, calibration: Calibration | None = None):
    """Ring all-reduce of a `bytes_per_gpu` buffer over n_gpus of one node: 2(n-1)/n * bytes / bw + latency."""
    g, n = get_gpu(gpu), _n(n_gpus, "n_gpus")
    cal = default_calibration() if calibration is None else calibration
    b = _bytes(bytes_per_gpu, "allreduce_time: bytes_per_gpu")
    if n == 1:
        return _out(np.zeros_like(b))
    t = 2.0 * (n - 1) / n * b / (0.5 * g.scaleup_bw * cal.comm_eff) + cal.comm_latency_s
    return _out(t)


def alltoall_time(bytes_per_gpu, gpu: str | GPU, n_gpus: int, intra_node: bool = True, nodes: int = 1,
                  inter_node_bw: float | None = None, calibration: Calibration | None = None):
    """All-to-all where each GPU sends `bytes_per_gpu` in total, spread evenly over the other GPUs.

    intra_node=True: all n_gpus share one scale-up domain (nodes must be 1); time =
    bytes / (scaleup_bw/2 * comm_eff) + latency. intra_node=False: the GPUs are spread evenly over
    `nodes` nodes; the off-node share (n - n/nodes)/(n - 1) of the bytes leaves through the GPU's
    NIC at inter_node_bw (default: data/infra.toml), the rest over the scale-up link in parallel;
    time is the slower of the two plus latency.
    """
    g, n, k = get_gpu(gpu), _n(n_gpus, "n_gpus"), _n(nodes, "nodes")
    cal = default_calibration() if calibration is None else calibration
    b = _bytes(bytes_per_gpu, "alltoall_time: bytes_per_gpu")
    if n == 1:
        return _out(np.zeros_like(b))
    local_bw = 0.5 * g.scaleup_bw * cal.comm_eff
    if intra_node:
        if k != 1:
            raise HwModelError(f"alltoall_time: intra_node=True needs nodes=1, got nodes={k}")
        return _out(b / local_bw + cal.comm_latency_s)
    if k < 2 or n % k:
        raise HwModelError(f"alltoall_time: intra_node=False needs nodes >= 2 dividing n_gpus, got n_gpus={n}, nodes={k}")
    nic = positive_real(infra_default("network", "inter_node_bw") if inter_node_bw is None else inter_node_bw,
                      "alltoall_time: inter_node_bw (bytes/s)", HwModelError)
    off = (n - n // k) / (n - 1)
    t = np.maximum(b * (1.0 - off) / local_bw, b * off / (nic * cal.comm_eff)) + cal.comm_latency_s
    return _out(t)


def weight_transfer_time(bytes_per_gpu, gpu: str | GPU, intra_node: bool = True, inter_node_bw: float | None = None,
                         calibration: Calibration | None = None):
    """Seconds for each GPU to receive `bytes_per_gpu` of weights point-to-point (expert migration).

    Every receiving GPU pulls over its own link in parallel: the scale-up link (scaleup_bw/2 per
    direction) when intra_node, else its NIC (inter_node_bw, default data/infra.toml); achieved
    bandwidth is comm_eff of the link, plus comm_latency_s when anything moves.
    """
    g = get_gpu(gpu)
    cal = default_calibration() if calibration is None else calibration
    b = _bytes(bytes_per_gpu, "weight_transfer_time: bytes_per_gpu")
    if intra_node:
        bw = 0.5 * g.scaleup_bw
    else:
        bw = positive_real(infra_default("network", "inter_node_bw") if inter_node_bw is None else inter_node_bw,
                           "weight_transfer_time: inter_node_bw (bytes/s)", HwModelError)
    return _out(np.where(b > 0, b / (bw * cal.comm_eff) + cal.comm_latency_s, 0.0))


def kv_transfer_time(bytes_, bandwidth: float, latency_s: float = 0.0):
    """Seconds to move `bytes_` of KV cache over a link of `bandwidth` bytes/s (e.g. gpu.pcie_bw/2
    for a one-way host swap, infra inter_node_bw for disaggregated prefill), plus a fixed latency."""
    b = _bytes(bytes_, "kv_transfer_time: bytes")
    bw = positive_real(bandwidth, "kv_transfer_time: bandwidth (bytes/s)", HwModelError)
    if not is_real(latency_s) or not 0 <= latency_s < float("inf"):
        raise HwModelError(f"kv_transfer_time: latency_s must be finite and >= 0, got {latency_s!r}")
    return _out(b / bw + latency_s)


def host_copy_time(bytes_, gpu: str | GPU, n_blocks=1, calibration: Calibration | None = None):
    """Seconds for a pinned host<->device copy of `bytes_` (one direction) in `n_blocks` separate
    copies (KV swap copies block by block): bytes / (pcie_bw/2 * host_copy_eff) + host_copy_latency_s
    + (n_blocks - 1) * host_block_latency_s (fitted on hwmodels/calibration/copy.csv).
    Pageable (unpinned) host memory is slower and not modelled."""
    g = get_gpu(gpu)
    cal = default_calibration() if calibration is None else calibration
    b = _bytes(bytes_, "host_copy_time: bytes")
    nb = np.asarray(n_blocks, dtype=np.float64)
    if not np.all(np.isfinite(nb)) or np.any(nb < 1):
        raise HwModelError(f"host_copy_time: n_blocks must be >= 1, got {n_blocks!r}")
    t = b / (0.5 * g.pcie_bw * cal.host_copy_eff) + cal.host_copy_latency_s + (nb - 1.0) * cal.host_block_latency_s
    return _out(np.where(b > 0, t, 0.0))
