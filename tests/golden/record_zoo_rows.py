"""Digests of the leaderboard's zoo rows: each zoo agent on the first quick scenario of its environment.

    PYTHONPATH=$PWD python tests/golden/record_zoo_rows.py [--check FILE] [--out FILE]

Each case is ``agents.leaderboard.run_policy(scenario, "zoo", quick=True)`` (the leaderboard's own call, the
held-out episodes of ``--quick``) and its digest the SHA-256 of every episode's metrics (JSON, sorted keys).
Recorded before a change to the zoo files that must not change what they play (stamping their observation
version, ``python -m agents.zoo stamp``) and checked after it: ``--check FILE`` prints every case that differs
and exits 1. A tool to run beside a change (about 4 minutes on the loaded 2-core box), not a CI test.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from record_i16b import cli  # noqa: E402


def cases() -> dict[str, str]:
    from agents.leaderboard import run_policy
    from agents.policy import ZOO
    from agents.scenarios import scenarios_for

    out = {}
    for env_id in ZOO:
        sc = next(s for s in scenarios_for([env_id]) if s.in_quick)
        t = time.perf_counter()
        run = run_policy(sc, "zoo", True, None)
        blob = json.dumps(run.episodes, sort_keys=True, default=repr)
        out[sc.id] = hashlib.sha256(blob.encode()).hexdigest()[:16]
        print(sc.id, out[sc.id], f"{len(run.episodes)} episodes", f"{time.perf_counter() - t:.1f} s", flush=True)
    return out


def main(argv=None) -> int:
    return cli(cases, argv)


if __name__ == "__main__":
    sys.exit(main())
