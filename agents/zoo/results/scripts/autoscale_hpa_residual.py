"""HPA-residual checkpoints (``agents.hpa_residual``) against HPA on the Autoscale leaderboard's episodes: the
transfer scenario's 13 real m-large days and the main track's held-out bursty days (issue 21's Autoscale target:
cheaper than HPA at equal or better SLO attainment on real days).

    PYTHONPATH=. python3 agents/zoo/results/scripts/autoscale_hpa_residual.py OUT.json CKPT.zip [CKPT.zip ...]
    PYTHONPATH=. python3 agents/zoo/results/scripts/autoscale_hpa_residual.py --table OUT.json

Each checkpoint (``python -m agents.hpa_residual --out DIR --seed S [--down-window W]``; its base HPA is in the
file) plays each scenario at penalty $0.001, beside HPA's defaults and beside its own base HPA alone: cost per
day ($), SLO attainment, cold starts per day and normalized score, means over the scenario's days.
"""
import json
import sys

import numpy as np

from agents import hpa_residual as R
from agents.heuristics import autoscale as A
from agents.leaderboard import _held_out_vec
from agents.rollout import run_episodes
from agents.scenarios import SCENARIOS

SIDS = ("autoscale/transfer/servegen_m_large/llama3.1-8b-h100+l40s/penalty0.001/v1",
        "autoscale/bursty/llama3.1-8b-h100+l40s/penalty0.001/v2")
KEYS = ("normalized_score", "cost_usd", "slo_attainment", "cold_starts")


def play(sid: str, make) -> dict:
    sc = next(s for s in SCENARIOS if s.id == sid)
    vec = _held_out_vec(sc, False, None)
    eps, _ = run_episodes(vec, make(vec))
    vec.close()
    return {k: float(np.mean([e[k] for e in eps])) for k in KEYS}


def main(out: str, ckpts: list[str]) -> None:
    rows = []
    for sid in SIDS:
        rows.append({"scenario": sid, "policy": "hpa", **play(sid, A.HPA)})
        print(json.dumps(rows[-1]), flush=True)
        bases = set()
        for path in ckpts:
            spec = R.read_spec(path)
            if spec is None:
                sys.exit(f"{path}: not an HPA-residual checkpoint (no {R.MEMBER}; python -m agents.hpa_residual writes one)")
            rows.append({"scenario": sid, "policy": path, **spec,
                         **play(sid, lambda vec: R.HPAResidualPolicy(path, vec))})
            print(json.dumps(rows[-1]), flush=True)
            bases.add((spec["down_window_s"], spec["tolerance"]))
        for w, t in sorted(bases):
            rows.append({"scenario": sid, "policy": "base hpa", "down_window_s": w, "tolerance": t,
                         **play(sid, R.base_hpa(w, t))})
            print(json.dumps(rows[-1]), flush=True)
    with open(out, "w") as f:
        json.dump({"command": " ".join(sys.argv), "rows": rows}, f, indent=1)
    print(table(rows))


def table(rows: list[dict]) -> str:
    lines = ["| scenario | policy | base HPA (window, tolerance) | cost per day | SLO attainment | cold starts | "
             "normalized |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        base = f"{r['down_window_s']:g} s, {r['tolerance']:g}" if "down_window_s" in r else "300 s, 0.1"
        lines.append(f"| {r['scenario'].split('/')[1]} | {r['policy']} | {base} | ${r['cost_usd']:.2f} | "
                     f"{r['slo_attainment']:.4f} | {r['cold_starts']:.1f} | {r['normalized_score']:.1f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--table"]:
        print(table(json.load(open(sys.argv[2]))["rows"]))
    else:
        main(sys.argv[1], sys.argv[2:])
