"""Generator speed: requests generated per second by each built-in trace generator.

    python -m traces.bench [--repeats 3] [--json FILE]

Each generator builds about 100k requests (the durations below) after a first call that parses
its parameters; the figure is the median over ``--repeats`` timed calls. A benchmark, not a test:
timings depend on the machine and its load (tests/test_traces.py checks the generated content).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

from traces.load import load_trace

# Durations (s) giving about 100k requests at each generator's default rate.
DURATIONS = {"azure_conv": 18000.0, "azure_code": 39000.0, "mooncake_conv": 28000.0, "bursty": 50000.0}


def measure(name: str, duration_s: float, repeats: int) -> dict[str, float]:
    """Median wall seconds and requests per second of ``load_trace(name, duration_s=...)``."""
    load_trace(name, duration_s=60)  # parameters parsed once
    walls, n = [], 0
    for _ in range(repeats):
        t = time.perf_counter()
        n = len(load_trace(name, duration_s=duration_s))
        walls.append(time.perf_counter() - t)
    wall = statistics.median(walls)
    return {"requests": n, "wall_s": wall, "requests_per_s": n / wall}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m traces.bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", help="also write the rows as JSON to this file")
    a = p.parse_args(argv)
    if a.repeats < 1:
        p.error(f"--repeats must be >= 1, got {a.repeats}")
    rows = {name: measure(name, d, a.repeats) for name, d in DURATIONS.items()}
    for name, r in rows.items():
        print(f"{name}: {r['requests']:,} requests in {r['wall_s']:.3f} s ({r['requests_per_s']:,.0f} requests/s)")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"repeats": a.repeats, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
