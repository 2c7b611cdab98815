"""Routing-v0 checkpoints or heuristics on the leaderboard's Routing scenarios, without the rest of the leaderboard.

    PYTHONPATH=. python3 agents/zoo/results/scripts/routing_eval.py SUBSTR[,SUBSTR...] POLICY[,POLICY...] OUT.json

Plays every Routing scenario (main and transfer track) whose id contains one of the SUBSTRs with each POLICY
(anything ``--policy`` takes) through ``agents.leaderboard.run_policy``: the same held-out episodes, so the
per-episode values equal the leaderboard's. Writes one row per scenario x policy: the mean and per-episode
``slo_attainment_bounded`` (the Routing main metric, SLO attainment with the TTFT tail bound) and
``ttft_p99_s`` (s), with the plain ``slo_attainment`` and the wall time beside. Used for the issue 21 training-family ablation (routing_family_ablation.json).
"""
import json
import sys
import time

import numpy as np

from agents.leaderboard import run_policy
from agents.scenarios import SCENARIOS, TRANSFER_SCENARIOS


def _default_play(sc, spec: str) -> list[dict]:
    return run_policy(sc, spec, False, None).episodes


def evaluate(pats: list[str], pols: list[str], out: str, play=_default_play) -> list[dict]:
    """Play each POLICY on every Routing scenario whose id contains one of ``pats`` with ``play(scenario,
    spec) -> episodes``; write the rows to ``out`` after each row (a long run keeps what it has)."""
    seen, rows = set(), []
    for sc in list(SCENARIOS) + list(TRANSFER_SCENARIOS):
        if sc.id in seen or not sc.id.startswith("routing") or not any(p in sc.id for p in pats):
            continue
        seen.add(sc.id)
        for p in pols:
            t = time.time()
            eps = play(sc, p)
            v = [float(e["slo_attainment_bounded"]) for e in eps]
            a = [float(e["slo_attainment"]) for e in eps]
            q = [float(e["ttft_p99_s"]) for e in eps]
            rows.append({"scenario": sc.id, "policy": p, "value": float(np.mean(v)), "episodes": v,
                         "slo_attainment": float(np.mean(a)), "ttft_p99_s": float(np.mean(q)), "ttft_p99_eps": q,
                         "wall_s": round(time.time() - t, 1)})
            print(f"{sc.id} {p:30s} {np.mean(v):.3f} {np.round(v, 3).tolist()} p99 {np.mean(q):.2f} "
                  f"({time.time() - t:.0f}s)", flush=True)
            with open(out, "w") as f:
                json.dump(rows, f, indent=1)
    return rows


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    evaluate(sys.argv[1].split(","), sys.argv[2].split(","), sys.argv[3])
