"""Alibaba Bailian/Qwen trace JSONL (Wang et al., "KVCache Cache in the Wild", USENIX ATC 2025;
github.com/alibaba-edu/qwen-bailian-usagetraces-anon).

One JSON object per line: chat_id (request id), parent_chat_id (the chat_id of the previous turn
of the same conversation, -1 for a root request), timestamp (seconds from the trace start),
input_length, output_length, type (text / search / image / file), turn (1 for a root request)
and hash_ids (16-token blocks, remapped to dense ids as for Mooncake). Recognised by these fields
(``formats.SPECS["bailian"]``).

The multi-turn structure is kept: ``parent`` holds, for each request, the index of its parent
request in the trace (-1 for a root, or for a parent that is not in the file, e.g. in a slice; the
count is recorded), and ``turn`` its turn number. The request type becomes the tenant id (the
mapping is recorded in the transforms). A zero output_length is kept and flagged as failed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from traces.errors import TraceError
from traces.readers import mooncake
from traces.readers.formats import SPECS
from traces.checks import is_integer

FORMAT = "bailian"
DESCRIPTION = SPECS[FORMAT].description
LICENCE = SPECS[FORMAT].licence
REQUIRED = SPECS[FORMAT].fields
BLOCK_SIZE = SPECS[FORMAT].block_size


def read(path: Path, block_size: int = BLOCK_SIZE, time_unit_given: bool = False) -> dict[str, object]:
    """Parse the whole file (see the module docstring); arrays as ``mooncake.read`` plus
    ``parent`` (int64), ``turn`` (int32) and ``tenant`` (int32, from ``type``)."""
    chat: list[int] = []
    parent: list[int] = []
    unresolved: list[tuple[int, int]] = []
    turn: list[int] = []
    kind: list[int] = []
    kinds: dict[str, int] = {}
    row_of: dict[int, int] = {}

    def extra(line_no: int, rec: dict) -> None:
        w = lambda f: mooncake._where(path, line_no, f)  # noqa: E731
        c = mooncake._integer(rec["chat_id"], path, line_no, "chat_id", 0, maximum=None)  # an opaque key
        pc = rec["parent_chat_id"]
        if not is_integer(pc) or pc < -1:
            raise TraceError(f"{w('parent_chat_id')}: expected a chat_id (integer >= 0) or -1 for a root, got {pc!r}")
        tn = mooncake._integer(rec["turn"], path, line_no, "turn", 1, maximum=np.iinfo(np.int32).max)
        ty = rec["type"]
        if not isinstance(ty, str) or not ty:
            raise TraceError(f"{w('type')}: expected a non-empty string (text/search/image/file), got {ty!r}")
        if c in row_of:
            raise TraceError(f"{w('chat_id')}: {c} already used on an earlier line; chat ids must be unique")
        if pc != -1 and pc not in row_of:
            unresolved.append((line_no, pc))
        row_of[c] = len(chat)
        chat.append(c)
        parent.append(row_of.get(pc, -1) if pc != -1 else -1)
        turn.append(tn)
        kind.append(kinds.setdefault(ty, len(kinds)))

    parsed = mooncake.read(path, block_size, FORMAT, time_unit_given, extra)
    for line_no, pc in unresolved:
        if pc in row_of:
            raise TraceError(
                f"{mooncake._where(path, line_no, 'parent_chat_id')}: {pc} is the chat_id of a later line; "
                "a turn's parent must arrive before it"
            )
    orphans = len(unresolved)
    notes = list(parsed["notes"])  # type: ignore[arg-type]
    notes.append("tenant = request type: " + ", ".join(f"{i}={k}" for k, i in kinds.items()))
    if orphans:
        notes.append(f"{orphans} requests name a parent_chat_id that is not in the file (parent = -1)")
    parsed.update(parent=np.asarray(parent, dtype=np.int64), turn=np.asarray(turn, dtype=np.int32),
                  tenant=np.asarray(kind, dtype=np.int32), notes=notes)
    return parsed
