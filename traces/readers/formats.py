"""Every supported trace file format in one table: how it is recognised, its time unit and its block size.

A reader module parses a file into arrays in the format's own time unit; ``traces.load`` then
converts times to seconds with :data:`TIME_UNITS`, measured from the first arrival (so a file cut
from the middle of a release, or a later file of a release whose clock continues, starts at 0).

| format | container | recognised by (all required) | time | block |
| --- | --- | --- | --- | --- |
| azure | CSV | TIMESTAMP, ContextTokens, GeneratedTokens | wall clock | none |
| burstgpt | CSV | Timestamp, Model, Request tokens, Response tokens, Total tokens, Log Type | s | none |
| mooncake | JSONL | timestamp, input_length, output_length (hash_ids optional) | ms | 512 |
| bailian | JSONL | chat_id, parent_chat_id, timestamp, input_length, output_length, type, turn, hash_ids | s | 16 |

Sources: Azure, Splitwise (ISCA'24) / DynamoLLM (HPCA'25) releases, github.com/Azure/AzurePublicDataset
(AzureLLMInferenceDataset2023.md); BurstGPT, Wang et al., KDD'25, github.com/HPMLL/BurstGPT README
("Timestamp: request submission time, seconds from 0:00:00 on the first day"); Mooncake, Qin et al., FAST'25, github.com/kvcache-ai/Mooncake
(timestamps in milliseconds, hash_ids of 512-token blocks, as its README and servegym's reader of
the released files have it); Bailian,
Wang et al., "KVCache Cache in the Wild", ATC'25, github.com/alibaba-edu/qwen-bailian-usagetraces-anon
README ("timestamp: Seconds since request arrive", "hash_ids: Salted SipHash blocks (16 tokens per block)",
"parent_chat_id: -1 for root requests").
"""

from __future__ import annotations

from dataclasses import dataclass

from traces.errors import TraceError

__all__ = ["FormatSpec", "SPECS", "TIME_UNITS", "time_divisor"]

# Divisor that turns a time in this unit into seconds (division, not multiplication by the
# inverse, so that milliseconds convert exactly as ts / 1000.0 always has).
TIME_UNITS = {"s": 1.0, "ms": 1e3, "us": 1e6, "ns": 1e9}


@dataclass(frozen=True)
class FormatSpec:
    """One trace file format.

    ``fields`` are the header columns (CSV) or record keys (JSONL) that identify the format, all
    required; ``time_unit`` is a key of :data:`TIME_UNITS`, or ``"wallclock"`` for date-time
    strings; ``block_size`` is the tokens per prefix-block hash id (None: no hash ids).
    """

    name: str
    container: str
    fields: tuple[str, ...]
    time_field: str
    time_unit: str
    block_size: int | None
    description: str
    licence: str


SPECS: dict[str, FormatSpec] = {
    "azure": FormatSpec(
        "azure", "csv", ("TIMESTAMP", "ContextTokens", "GeneratedTokens"), "TIMESTAMP", "wallclock", None,
        "Azure LLM inference trace CSV (TIMESTAMP, ContextTokens, GeneratedTokens)",
        "unknown for this file; the public Azure LLM inference traces are CC-BY 4.0 (cite Splitwise / DynamoLLM)",
    ),
    "burstgpt": FormatSpec(
        "burstgpt", "csv",
        ("Timestamp", "Model", "Request tokens", "Response tokens", "Total tokens", "Log Type"),
        "Timestamp", "s", None,
        "BurstGPT CSV (Timestamp, Model, Request tokens, Response tokens, Total tokens, Log Type)",
        "unknown for this file; the public BurstGPT release is CC-BY 4.0 (cite Wang et al., KDD 2025)",
    ),
    "mooncake": FormatSpec(
        "mooncake", "jsonl", ("timestamp", "input_length", "output_length"), "timestamp", "ms", 512,
        "Mooncake trace JSONL (timestamp ms, input_length, output_length, hash_ids of 512-token blocks)",
        "unknown for this file; the public Mooncake traces are Apache-2.0 (kvcache-ai/Mooncake)",
    ),
    "bailian": FormatSpec(
        "bailian", "jsonl",
        ("chat_id", "parent_chat_id", "timestamp", "input_length", "output_length", "type", "turn", "hash_ids"),
        "timestamp", "s", 16,
        "Alibaba Bailian/Qwen trace JSONL (chat_id, parent_chat_id, turn, type, timestamp s, input_length, "
        "output_length, hash_ids of 16-token blocks)",
        "unknown for this file; the public Qwen-Bailian traces are Apache-2.0 (alibaba-edu/qwen-bailian-usagetraces-anon)",
    ),
}


def time_divisor(unit: object, where: str) -> float:
    """Divisor from ``unit`` to seconds; an unknown unit is an error naming ``where``."""
    if not isinstance(unit, str) or unit not in TIME_UNITS:
        raise TraceError(f"{where}: time_unit must be one of {sorted(TIME_UNITS)}, got {unit!r}")
    return TIME_UNITS[unit]
