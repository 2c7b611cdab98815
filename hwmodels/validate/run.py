"""``python -m hwmodels.validate run``: the reference engine on a GPU, at loads of its measured capacity.

For each request window (a JSON file written by ``python -m hwmodels.validate window``):

1. capacity: every request of the window arrives at t = 0 and the engine serves them; capacity is
   the completion rate between the 20th and 80th percentile completions (the convention of
   ``envs/core/capacity.py``: the steady state without ramp-up or drain);
2. for each load L (default 0.3, 0.6, 0.85) or absolute rate, the window's own inter-arrival times
   are rescaled so its mean rate is L x capacity (as the environments' load levels do), and the
   engine serves it in real time.

Writes ``<out>/<window>.json.gz`` (the engine's raw records of every run plus the settings) and
``<out>/environment.json`` (GPU, driver, torch, clocks before and after each run). A ``--budget-s``
stops a run that would outlast it (the record says ``truncated``).
"""

from __future__ import annotations

import argparse
import gc
import gzip
import json
import time
from pathlib import Path

import numpy as np

DEFAULT_LOADS = (0.3, 0.6, 0.85)


def load_window(path: str | Path) -> dict:
    """A request window file: {name, source, arrival_s[], prompt_tokens[], output_tokens[]}.
    Raises ValueError naming the file and field when a field is missing or malformed."""
    path = Path(path)
    try:
        w = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: cannot read a request window: {e}") from e
    for k in ("name", "source", "arrival_s", "prompt_tokens", "output_tokens"):
        if k not in w:
            raise ValueError(f"{path}: missing field {k!r}")
    n = len(w["arrival_s"])
    for k in ("prompt_tokens", "output_tokens"):
        if len(w[k]) != n:
            raise ValueError(f"{path}: field {k!r} has {len(w[k])} entries, arrival_s has {n}")
        bad = [i for i, x in enumerate(w[k]) if not isinstance(x, int) or x < 1]
        if bad:
            raise ValueError(f"{path}: {k}[{bad[0]}] = {w[k][bad[0]]!r}, expected an integer >= 1")
    a = np.asarray(w["arrival_s"], np.float64)
    if n < 2 or not np.all(np.isfinite(a)) or np.any(np.diff(a) < 0) or a[-1] <= a[0]:
        raise ValueError(f"{path}: arrival_s must be >= 2 finite, non-decreasing times spanning > 0 s")
    return w


def natural_rate(w: dict) -> float:
    a = w["arrival_s"]
    return (len(a) - 1) / (a[-1] - a[0])


def arrivals_at_rate(w: dict, rate: float) -> list[float]:
    """The window's arrival times, from 0, rescaled to a mean rate of `rate` requests/s."""
    a = np.asarray(w["arrival_s"], np.float64)
    return ((a - a[0]) * natural_rate(w) / rate).tolist()


def capacity_rps(token_s: list[list[float]]) -> float:
    """Completions per second between the 20th and 80th percentile completions (envs.core.capacity)."""
    done = np.sort([t[-1] for t in token_s])
    m = len(done)
    lo, hi = int(0.2 * m), int(0.8 * m)
    if hi >= m:
        hi = m - 1
    return float((hi - lo) / (done[hi] - done[lo]))


def _requests(w: dict, arrivals: list[float], vocab: int, seed: int):
    from .engine import Request

    rng = np.random.default_rng(seed)
    return [Request(idx=i, arrival_s=float(a), prompt_ids=rng.integers(0, vocab, p).astype(np.int64), output_len=o)
            for i, (a, p, o) in enumerate(zip(arrivals, w["prompt_tokens"], w["output_tokens"]))]


def _serve(eng, reqs, deadline_s: float) -> dict:
    """One timed run with Python's garbage collector paused (as vLLM freezes it while serving)."""
    gc.collect()
    gc.disable()
    try:
        return eng.run(reqs, clock="wall", deadline_s=deadline_s)
    finally:
        gc.enable()


def build_parser(p: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    p = p or argparse.ArgumentParser(prog="python -m hwmodels.validate run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="Llama-3.1-8B", help="dense model of the hwmodels catalogue")
    p.add_argument("--gpu", default="H200", help="catalogue GPU whose KV capacity the scheduler uses")
    p.add_argument("--trace", action="append", required=True,
                   help="request window JSON (python -m hwmodels.validate window); repeatable")
    p.add_argument("--requests", type=int, nargs="*", default=None,
                   help="first N requests of each window (one number per --trace; default all)")
    p.add_argument("--loads", type=float, nargs="*", default=list(DEFAULT_LOADS),
                   help="fractions of the measured capacity (default 0.3 0.6 0.85)")
    p.add_argument("--rates", type=float, nargs="*", default=None, help="absolute rates (req/s) instead of --loads")
    p.add_argument("--budget", type=int, default=2048, help="token budget per iteration")
    p.add_argument("--block-size", type=int, default=16)
    p.add_argument("--max-seqs", type=int, default=256)
    p.add_argument("--mem-frac", type=float, default=0.9, help="GPU memory fraction for KV (vLLM's default)")
    p.add_argument("--no-graphs", action="store_true", help="eager execution (not a valid reference)")
    p.add_argument("--decode-order", choices=("longest_first", "scheduler"), default="longest_first",
                   help="order of the decodes in the kernels' batch (engine.py docstring says why longest first)")
    p.add_argument("--budget-s", type=float, default=float("inf"), help="stop starting/continuing runs past this")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tiny", action="store_true",
                   help="a 2-layer toy model on the CPU: checks this script, measures nothing")
    p.add_argument("--out", required=True)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    t_start = time.perf_counter()
    import torch

    import hwmodels
    from hwmodels.calibrate_measure import environment, smi_snapshot

    from .engine import Engine
    from .model import ModelDims

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    logf = open(out / "validate.log", "a")

    def log(msg: str) -> None:
        line = f"[{time.perf_counter() - t_start:7.1f}s] {msg}"
        print(line, flush=True)
        logf.write(line + "\n")
        logf.flush()

    windows = [load_window(p) for p in args.trace]
    if args.requests:
        if len(args.requests) != len(windows):
            raise SystemExit(f"run: --requests has {len(args.requests)} numbers for {len(windows)} --trace files")
        for w, n in zip(windows, args.requests):
            if not 2 <= n <= len(w["arrival_s"]):
                raise SystemExit(f"run: --requests {n} for window {w['name']!r} of {len(w['arrival_s'])} requests")
            for k in ("arrival_s", "prompt_tokens", "output_tokens"):
                w[k] = w[k][:n]
    if args.tiny:
        dev = torch.device("cpu")
        dims = ModelDims("tiny", layers=2, hidden=64, heads=4, kv_heads=2, head_dim=16, intermediate=96, vocab=101)
    elif not torch.cuda.is_available():
        raise SystemExit("run: needs a CUDA GPU (the CPU path of the engine is for tests; --tiny checks the script)")
    else:
        dev = torch.device("cuda:0")
        dims = ModelDims.from_catalog(args.model)
    env = environment(dev, argparse.Namespace(tiny=False))
    env["snapshots"] = [smi_snapshot("start")]
    max_context = max(p + o for w in windows for p, o in zip(w["prompt_tokens"], w["output_tokens"]))
    cap_blocks = hwmodels.kv_capacity_blocks(args.model, args.gpu, 1, args.mem_frac, args.block_size)
    log(f"{dims.name} on {torch.cuda.get_device_name(dev) if dev.type == 'cuda' else 'cpu'}; scheduler KV capacity {cap_blocks} blocks "
        f"({args.gpu}, mem_frac {args.mem_frac}); max context {max_context}")
    row_b = dims.kv_bytes_per_token
    weights_b = 2 * (dims.vocab * dims.hidden * 2 + dims.layers * (
        (dims.heads + 2 * dims.kv_heads) * dims.head_dim * dims.hidden + dims.hidden * dims.heads * dims.head_dim
        + 3 * dims.hidden * dims.intermediate))
    free_b = torch.cuda.mem_get_info(dev)[0] if dev.type == "cuda" else 2 * cap_blocks * args.block_size * row_b + weights_b + (8 << 30)
    rows = int((free_b - weights_b - (8 << 30)) // row_b)
    rows = min(rows, 2 * cap_blocks * args.block_size)
    if rows < cap_blocks * args.block_size:
        log(f"physical KV rows {rows} < capacity tokens {cap_blocks * args.block_size}: capacity lowered")
        cap_blocks = rows // args.block_size
    if args.tiny:
        cap_blocks, rows = 4096, 2 * 4096 * args.block_size
    eng = Engine(dims, device=dev.type, budget=args.budget, block_size=args.block_size, capacity_blocks=cap_blocks,
                 max_seqs=args.max_seqs, max_context=max_context, kv_rows=rows, seed=args.seed,
                 graphs=not args.no_graphs, decode_order=args.decode_order, log=log)
    log(f"weights + KV allocated ({rows} KV rows)")
    eng.capture_graphs()
    # warm-up: a few requests end to end (not recorded)
    w0 = windows[0]
    eng.run(_requests({k: w0[k][:8] for k in ("prompt_tokens", "output_tokens")} | {"arrival_s": [0.0] * 8},
                      [0.0] * 8, dims.vocab, 99), clock="wall")
    if dev.type == "cuda":
        torch.cuda.synchronize()
    settings = dict(model=dims.name, gpu_catalog=args.gpu, budget=args.budget, block_size=args.block_size,
                    capacity_blocks=cap_blocks, kv_rows=rows, max_seqs=args.max_seqs, max_context=max_context,
                    graphs=not args.no_graphs, decode_order=args.decode_order, seed=args.seed, mem_frac=args.mem_frac)
    deadline = args.budget_s
    for w in windows:
        res = {"window": {k: w[k] for k in w}, "settings": settings, "runs": []}
        fname = out / f"{w['name']}.json.gz"

        def save():
            with gzip.open(fname, "wt") as f:
                json.dump(res, f, separators=(",", ":"))

        left = deadline - (time.perf_counter() - t_start)
        reqs = _requests(w, [0.0] * len(w["arrival_s"]), dims.vocab, args.seed)
        rec = _serve(eng, reqs, left)
        cap = capacity_rps([t for t in rec["requests"]["token_s"] if t]) if not rec["truncated"] else float("nan")
        rec.update(kind="capacity", rate_rps=None, load=None, capacity_rps=cap)
        res["runs"].append(rec)
        env["snapshots"].append(smi_snapshot(f"{w['name']} capacity"))
        log(f"{w['name']}: capacity {cap:.3f} req/s ({len(reqs)} requests at once, {rec['wall_s']} s, "
            f"{len(rec['iterations']['start_s'])} iterations, preemptions {rec['preemptions']}, "
            f"phys stalls {rec['phys_stalls']})")
        save()
        if not np.isfinite(cap) and args.rates is None:
            log("no capacity: skipping the loads of this window")
            continue
        targets = [(r, None) for r in args.rates] if args.rates else [(L * cap, L) for L in args.loads]
        for rate, load in targets:
            left = deadline - (time.perf_counter() - t_start)
            if left <= 5:
                log(f"budget spent: skipping rate {rate:.3f}")
                continue
            reqs = _requests(w, arrivals_at_rate(w, rate), dims.vocab, args.seed)
            rec = _serve(eng, reqs, left)
            rec.update(kind="load", rate_rps=rate, load=load, capacity_rps=cap)
            res["runs"].append(rec)
            it = rec["iterations"]
            dt = np.asarray(it["end_s"]) - np.asarray(it["start_s"])
            log(f"{w['name']}: rate {rate:.3f} req/s (load {load}): {rec['wall_s']} s, {len(dt)} iterations "
                f"(median {np.median(dt) * 1e3:.2f} ms, graphs {np.mean(it['graph']) * 100:.1f}%), "
                f"preemptions {rec['preemptions']}, phys stalls {rec['phys_stalls']}, truncated {rec['truncated']}")
            env["snapshots"].append(smi_snapshot(f"{w['name']} rate {rate:.3f}"))
            save()
    env["settings"] = settings
    (out / "environment.json").write_text(json.dumps(env, indent=1))
    log("done")
    return 0
