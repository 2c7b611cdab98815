"""The committed reference-engine measurements (hwmodels/validate/data/h200) as arrays.

Each run of ``python -m hwmodels.validate run`` is one record: its window, settings, kind
("capacity": all requests at t = 0; "load": arrivals at a rate), per-iteration loads and times, and
per-request token times. CPU only; imports numpy and hwmodels.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DATA_DIR = Path(__file__).resolve().parent / "data" / "h200"
REPEAT_DIR = DATA_DIR.parent / "h200_repeat"  # the same windows and rates, measured again (report.repeat_spread)
# The earlier runs, decodes in the scheduler's order (engine --decode-order scheduler): the evidence
# behind the slot probe (slot_probe.py) and behind launching the longest decode first.
SCHEDULER_ORDER_DIR = DATA_DIR.parent / "h200_scheduler_order" / "h200"


@dataclass
class Run:
    window: str
    file: str
    kind: str  # "capacity" or "load"
    load: float | None  # fraction of the measured capacity
    rate_rps: float | None
    capacity_rps: float
    settings: dict
    it: dict  # per-iteration arrays (float64)
    arrival_s: np.ndarray
    prompt: np.ndarray
    output: np.ndarray
    token_s: list  # per request: list of token times

    @property
    def label(self) -> str:
        return f"{self.window} {self.kind}" + (f" load {self.load:.2f}" if self.load is not None else "")

    @property
    def iter_s(self) -> np.ndarray:
        return self.it["end_s"] - self.it["start_s"]

    def request_metrics(self) -> dict[str, np.ndarray]:
        """Measured TTFT, TPOT ((E2E - TTFT) / (output - 1), NaN for one-token outputs) and E2E, s."""
        first = np.array([t[0] for t in self.token_s])
        last = np.array([t[-1] for t in self.token_s])
        ttft = first - self.arrival_s
        e2e = last - self.arrival_s
        with np.errstate(invalid="ignore", divide="ignore"):
            tpot = np.where(self.output > 1, (e2e - ttft) / (self.output - 1), np.nan)
        return {"ttft": ttft, "tpot": tpot, "e2e": e2e}


def longest_prefill_context(prefill_tokens: np.ndarray, prompt: np.ndarray) -> np.ndarray:
    """Per iteration, kv + chunk of the prefill chunk that reaches deepest into its prompt (0 without
    prefill), derived from the records: with FCFS admission, ongoing prefills first and no preemption,
    the engine computes the prompts as one stream in arrival order, iteration j taking the next
    prefill_tokens[j] tokens of it (hwmodels/validate/engine.py Engine.schedule). Shapes: [iterations],
    [requests] -> [iterations]."""
    ends = np.cumsum(prefill_tokens)
    starts = ends - prefill_tokens
    bounds = np.concatenate([[0], np.cumsum(prompt)])  # request i's prompt is stream [bounds[i], bounds[i+1])
    if ends[-1] != bounds[-1]:
        raise ValueError(f"prefill tokens ({ends[-1]:.0f}) differ from the prompts' total ({bounds[-1]}): "
                         "the stream derivation needs a run without preemption")
    out = np.zeros(len(ends))
    has = prefill_tokens > 0
    # requests overlapping [start, end): first = the one holding token `start`, last = holding `end - 1`
    first = np.searchsorted(bounds, starts[has], side="right") - 1
    last = np.searchsorted(bounds, ends[has] - 1, side="right") - 1
    # the last request's chunk ends at `end`; any earlier one finished its whole prompt here
    deep_last = ends[has] - bounds[last]
    longest_done = np.zeros(has.sum())
    for n, (a, b) in enumerate(zip(first, last)):
        if b > a:
            longest_done[n] = prompt[a:b].max()
    out[has] = np.maximum(deep_last, longest_done)
    return out


def read_run_file(path: Path) -> dict:
    """One run file (``run``'s gzipped JSON); ValueError naming the file when it is not gzip,
    is truncated, is not JSON, or lacks the ``window``/``runs``/``settings`` fields."""
    try:
        with gzip.open(path, "rt") as fh:
            d = json.load(fh)
    except (OSError, EOFError, ValueError) as e:  # gzip.BadGzipFile is an OSError, JSONDecodeError a ValueError
        raise ValueError(f"{path}: not a readable run file (gzipped JSON): {e}") from None
    missing = [k for k in ("window", "runs", "settings") if not isinstance(d, dict) or k not in d]
    if missing:
        raise ValueError(f"{path}: not a run file of `python -m hwmodels.validate run`: no field(s) {missing}")
    return d


def truncated_runs(data_dir: str | Path = DATA_DIR) -> list[str]:
    """"file: window kind rate" of every run under data_dir that the engine stopped at its time
    budget (``run --budget-s``): such a run is not evidence, `load_runs` leaves it out, and
    `report` names it."""
    out = []
    for f in sorted(Path(data_dir).glob("*.json.gz")):
        d = read_run_file(f)
        out += [f"{f.name}: {d['window']['name']} {r['kind']} {r.get('rate_rps')!r} req/s"
                for r in d["runs"] if r.get("truncated")]
    return out


def load_runs(data_dir: str | Path = DATA_DIR) -> list[Run]:
    """Every finished run of every ``*.json.gz`` under data_dir; ValueError if a file is malformed
    or none is there. Runs the engine truncated at its time budget are not evidence and are left
    out (`truncated_runs` lists them; `report` prints them)."""
    runs = []
    files = sorted(Path(data_dir).glob("*.json.gz"))
    if not files:
        raise ValueError(f"no *.json.gz measurement files in {data_dir}")
    for f in files:
        d = read_run_file(f)
        try:
            runs += _file_runs(f, d)
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{f}: malformed run record ({type(e).__name__}: {e})") from None
    return runs


def _file_runs(f: Path, d: dict) -> list[Run]:
    """The finished runs of one parsed run file `f` (see load_runs)."""
    runs = []
    for i, r in enumerate(d["runs"]):
        if r.get("truncated"):
            continue
        load = r.get("load")
        if load is None and r["kind"] == "load":  # an absolute rate: its load is rate / capacity
            load = r["rate_rps"] / r["capacity_rps"]
        req = r["requests"]
        it = {k: np.asarray(v, dtype=np.float64) for k, v in r["iterations"].items()}
        prompt = np.asarray(req["prompt_tokens"], np.int64)
        # -1 (unknown) where preemption broke the prompt stream (none in the committed runs)
        it["longest_prefill_context"] = (longest_prefill_context(it["prefill_tokens"], prompt)
                                         if r.get("preemptions", 0) == 0 else np.full(len(it["prefill_tokens"]), -1.0))
        runs.append(Run(
            window=d["window"]["name"], file=f.name, kind=r["kind"], load=load, rate_rps=r.get("rate_rps"),
            capacity_rps=r["capacity_rps"], settings=d["settings"],
            it=it,
            arrival_s=np.asarray(req["arrival_s"], np.float64), prompt=prompt,
            output=np.asarray(req["output_tokens"], np.int64), token_s=req["token_s"]))
    return runs


def decode_contexts(run: Run) -> list[list[int]]:
    """Per iteration, the context length (KV tokens read, the new token's included) of every decoding
    sequence, in batch order, rebuilt from the records: token k >= 1 of request i is produced by a
    decode of context prompt_i + k in the iteration whose end time it carries (engine.py appends the
    iteration's end to token_s of every request it emitted for), and the engine batches decodes in
    running order, which is arrival order under FCFS without preemption. ValueError when a token time
    matches no iteration end or the run preempted."""
    end = run.it["end_s"]
    out: list[list[int]] = [[] for _ in range(len(end))]
    for i, ts in enumerate(run.token_s):
        ts = np.asarray(ts, dtype=np.float64)
        # token times are rounded to 1 us in the records, iteration ends to 0.1 us
        j = np.searchsorted(end, ts - 2e-6)
        bad = (j >= len(end)) | (np.abs(end[np.minimum(j, len(end) - 1)] - ts) > 1.5e-6)
        if np.any(bad):
            raise ValueError(f"{run.file} {run.label}: request {i} token {int(np.argmax(bad))} "
                             "matches no iteration end")
        for k in range(1, len(ts)):
            out[j[k]].append(int(run.prompt[i]) + k)
    if sum(len(c) for c in out) != int(run.it["decode_seqs"].sum()):
        raise ValueError(f"{run.file} {run.label}: rebuilt decodes differ from the recorded decode_seqs (preemption?)")
    return out
