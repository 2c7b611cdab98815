"""servegym workload layer: the Trace type, file loaders, calibrated generators and transforms.

    >>> from traces import load_trace, trace_stats
    >>> tr = load_trace("default", seed=0)          # built-in generator (= "azure_conv")
    >>> tr = load_trace("../shared/traces/mooncake_conversation.jsonl")   # any supported file
"""

from traces.errors import TraceError
from traces.load import load_trace
from traces.moe import ExpertLoadGenerator, load_expert_counts
from traces.stats import trace_stats
from traces.builtin import BUILTIN_TRACES
from traces.trace import MAX_TOKENS, Trace, TraceMeta  # noqa: F401  (MAX_TOKENS: re-exported, not in __all__)
from traces.transforms import rescale_rate, split, subsample, window, windows

__all__ = [
    "Trace",
    "TraceMeta",
    "TraceError",
    "load_trace",
    "BUILTIN_TRACES",
    "rescale_rate",
    "window",
    "windows",
    "split",
    "subsample",
    "trace_stats",
    "ExpertLoadGenerator",
    "load_expert_counts",
]
