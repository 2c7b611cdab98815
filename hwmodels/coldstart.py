"""Cold start of one replica: read the weights from storage and start the engine.

Why: autoscaling decisions trade idle GPU-hours against the minute-scale delay of adding a replica.
"""

from __future__ import annotations

from .catalog import GPU, Model, get_gpu, get_model
from .errors import HwModelError
from .infra import infra_default
from .memory import _check_tp
from traces.checks import is_real, positive_real


def cold_start_time(model: str | Model, gpu: str | GPU, tp: int = 1, storage_bw: float | None = None,
                    engine_init_s: float | None = None) -> float:
    """Seconds from process start to serving: weight load + engine init (profiling, KV alloc, graphs).

    Weight load streams the whole checkpoint from the node's storage at `storage_bw` bytes/s
    (default: one PCIe Gen4 NVMe, data/infra.toml) while each of the tp GPUs copies its shard over
    its own PCIe link (half of gpu.pcie_bw, one direction); the slower of the two bounds the load.
    engine_init_s defaults to the vLLM start-up figure in data/infra.toml.
    """
    m, g = get_model(model), get_gpu(gpu)
    _check_tp(m, tp)
    bw = positive_real(infra_default("storage", "storage_bw") if storage_bw is None else storage_bw,
                       "cold_start_time: storage_bw (bytes/s)", HwModelError)
    init = infra_default("engine", "engine_init_s") if engine_init_s is None else engine_init_s
    if not is_real(init) or not 0 <= init < float("inf"):
        raise HwModelError(f"cold_start_time: engine_init_s must be finite and >= 0, got {engine_init_s!r}")
    total = m.weight_bytes()
    load = max(total / bw, total / tp / (0.5 * g.pcie_bw))
    return load + float(init)
