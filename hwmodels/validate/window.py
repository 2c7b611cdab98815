"""``python -m hwmodels.validate window``: cut a request window out of a trace into a small JSON file.

The GPU machine runs the engine without the trace readers; this file carries what it needs
(arrival times, prompt and output lengths) and where it came from. Runs on the CPU.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def build_parser(p: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    p = p or argparse.ArgumentParser(prog="python -m hwmodels.validate window", description=__doc__)
    p.add_argument("--trace", required=True, help="trace name or path (any format traces.load_trace reads)")
    p.add_argument("--start", type=int, default=0, help="index of the first request")
    p.add_argument("--requests", type=int, required=True, help="consecutive requests in the window")
    p.add_argument("--name", required=True, help="window name (file stem of the run's output)")
    p.add_argument("--out", required=True, help="JSON file to write")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from traces import load_trace  # CPU side only

    t = load_trace(args.trace)
    n = len(t)
    if not (0 <= args.start and args.requests >= 2 and args.start + args.requests <= n):
        raise SystemExit(f"window: --start {args.start} --requests {args.requests} outside the trace's {n} requests")
    sl = slice(args.start, args.start + args.requests)
    a = t.arrival_s[sl]
    w = {
        "name": args.name,
        "source": f"{t.meta.source}; requests {args.start}..{args.start + args.requests - 1} "
                  f"(python -m hwmodels.validate window --trace {Path(args.trace).name} --start {args.start} "
                  f"--requests {args.requests})",
        "licence": t.meta.licence,
        "arrival_s": [round(float(x - a[0]), 6) for x in a],
        "prompt_tokens": [int(x) for x in t.prompt_tokens[sl]],
        "output_tokens": [int(x) for x in t.output_tokens[sl]],
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(w, indent=None, separators=(",", ":")) + "\n")
    print(f"wrote {args.out}: {args.requests} requests, mean prompt {sum(w['prompt_tokens']) / args.requests:.0f}, "
          f"mean output {sum(w['output_tokens']) / args.requests:.0f} tokens")
    return 0
