"""BurstGPT CSV (Wang et al., KDD 2025; Azure OpenAI GPT traffic of a university service).

Columns Timestamp (seconds from the trace start), Model, Request tokens, Response tokens,
Total tokens, Log Type; BurstGPT_3 adds Session ID and Elapsed time, which are read past.
BurstGPT marks a failed request with 0 Response tokens (github.com/HPMLL/BurstGPT README:
"BurstGPT_1.csv contains all of our trace ... with some failure that `Response tokens` are 0s"); a
request that failed before its prompt was counted has 0 Request tokens as well (a row such as
``130,ChatGPT,0,0,0,Conversation log``). Such rows
are kept and flagged in `failed` (output_tokens 0; prompt_tokens 0 where the log says so); the
count is recorded in the trace's transforms. A row with 0 Request tokens but a response is an
error (no request produces a response without a prompt). Total tokens must equal Request +
Response tokens, or the row is an error (a mismatch means shifted columns). Each (Model, Log Type)
pair becomes a tenant id. Timestamps are seconds (``formats.SPECS``); ``traces.load`` measures
them from the first row kept.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from traces.errors import TraceError
from traces.trace import MAX_TOKENS
from traces.readers._common import (check_sorted, float_column, int_column, iter_csv_chunks, no_rows_error,
                                    open_text, where)
from traces.readers.formats import SPECS

COLUMNS = {
    "time": "Timestamp",
    "model": "Model",
    "request": "Request tokens",
    "response": "Response tokens",
    "total": "Total tokens",
    "log": "Log Type",
}
FORMAT = "burstgpt"
DESCRIPTION = SPECS[FORMAT].description
LICENCE = SPECS[FORMAT].licence


def _codes(values: list[str], lines: np.ndarray, path: Path, field: str, names: dict[str, int]) -> np.ndarray:
    out = np.empty(len(values), dtype=np.int32)
    for i, v in enumerate(values):
        s = v.strip()
        if not s:
            raise TraceError(f"{where(path, int(lines[i]), field)}: empty value")
        out[i] = names.setdefault(s, len(names))
    return out


def read(path: Path, header: list[str]) -> dict[str, object]:
    """Parse the whole file into arrays plus the Model / Log Type vocabularies."""
    wanted = {k: next(h for h in header if h.strip().lower() == v.lower()) for k, v in COLUMNS.items()}
    models: dict[str, int] = {}
    logs: dict[str, int] = {}
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("t", "req", "resp", "model", "log")}
    prev: tuple[float, str] | None = None
    with open_text(path) as f:
        for chunk in iter_csv_chunks(path, f, wanted):
            c, lines = chunk.columns, chunk.lines
            t = float_column(c["time"], lines, path, COLUMNS["time"])
            neg = t < 0
            if neg.any():
                i = int(np.flatnonzero(neg)[0])
                raise TraceError(f"{where(path, int(lines[i]), COLUMNS['time'])}: expected >= 0, got {c['time'][i]!r}")
            check_sorted(t, lines, c["time"], path, COLUMNS["time"], prev)
            prev = (float(t[-1]), c["time"][-1])
            req = int_column(c["request"], lines, path, COLUMNS["request"], minimum=0)
            resp = int_column(c["response"], lines, path, COLUMNS["response"], minimum=0)
            bad = (req == 0) & (resp > 0)
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise TraceError(
                    f"{where(path, int(lines[i]), COLUMNS['request'])}: 0 with Response tokens {resp[i]}; "
                    "a request with a response has a prompt (0 is how BurstGPT logs a failed request, "
                    "whose Response tokens are 0 too)"
                )
            total = int_column(c["total"], lines, path, COLUMNS["total"], minimum=0, maximum=2 * MAX_TOKENS)
            bad = total != req + resp
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise TraceError(
                    f"{where(path, int(lines[i]), COLUMNS['total'])}: {total[i]} != Request tokens {req[i]} "
                    f"+ Response tokens {resp[i]} (columns shifted or corrupt?)"
                )
            parts["t"].append(t)
            parts["req"].append(req)
            parts["resp"].append(resp)
            parts["model"].append(_codes(c["model"], lines, path, COLUMNS["model"], models))
            parts["log"].append(_codes(c["log"], lines, path, COLUMNS["log"], logs))
    if not parts["t"]:
        raise no_rows_error(path)
    resp = np.concatenate(parts["resp"])
    req = np.concatenate(parts["req"])
    failed = resp == 0
    n_failed, n_no_prompt = int(failed.sum()), int((req == 0).sum())
    return {
        "arrival_s": np.concatenate(parts["t"]),
        "prompt_tokens": req,
        "output_tokens": resp,
        "failed": failed,
        "model_code": np.concatenate(parts["model"]),
        "log_code": np.concatenate(parts["log"]),
        "model_names": np.asarray(list(models), dtype=np.str_),
        "log_names": np.asarray(list(logs), dtype=np.str_),
        "notes": [f"flagged {n_failed} rows with Response tokens == 0 as failed (kept; {n_no_prompt} of them "
                  "with Request tokens == 0)"],
    }


def _as_set(value: object, param: str) -> set[str]:
    if isinstance(value, str):
        return {value}
    if isinstance(value, (list, tuple, set, frozenset)) and all(isinstance(v, str) for v in value):
        return set(value)
    raise TraceError(f"BurstGPT filter {param}= expects a string or a list of strings, got {value!r}")


def finish(path: Path, parsed: dict[str, np.ndarray], params: dict[str, object]) -> tuple[dict[str, np.ndarray], list[str]]:
    """Apply the `model=` / `log_type=` filters (explicit, recorded) and derive tenant ids."""
    unknown = set(params) - {"model", "log_type"}
    if unknown:
        raise TraceError(f"{path}: BurstGPT files take only model= and log_type= parameters, got {sorted(unknown)}")
    model_names = [str(s) for s in parsed["model_names"]]
    log_names = [str(s) for s in parsed["log_names"]]
    mc, lc = parsed["model_code"], parsed["log_code"]
    n_logs = len(log_names)
    pair = mc.astype(np.int64) * n_logs + lc
    pairs = np.unique(pair)
    tenant = np.searchsorted(pairs, pair).astype(np.int32)
    labels = [f"{i}={model_names[p // n_logs]}/{log_names[p % n_logs]}" for i, p in enumerate(pairs)]
    notes = [f"tenant = (Model, Log Type) category: {', '.join(labels)}"]
    keep = np.ones(mc.shape[0], dtype=bool)
    for param, names, codes in (("model", model_names, mc), ("log_type", log_names, lc)):
        if param not in params:
            continue
        wanted = _as_set(params[param], param)
        missing = wanted - set(names)
        if missing:
            raise TraceError(
                f"{path}: {param}={sorted(missing)} matches no row; values present: {sorted(names)}"
            )
        ok = np.isin(codes, [names.index(w) for w in sorted(wanted)])
        notes.append(f"filter {param} in {sorted(wanted)}: kept {int((keep & ok).sum())} of {int(keep.sum())} rows")
        keep &= ok
    if not keep.any():
        raise TraceError(f"{path}: the filters {params} leave no rows")
    arrays = {
        "arrival_s": parsed["arrival_s"][keep],
        "prompt_tokens": parsed["prompt_tokens"][keep],
        "output_tokens": parsed["output_tokens"][keep],
        "failed": parsed["failed"][keep],
        "tenant": tenant[keep],
    }
    return arrays, notes
