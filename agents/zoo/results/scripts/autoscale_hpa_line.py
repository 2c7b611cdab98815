"""HPA's own settings on the Autoscale transfer scenario's real days (ServeGen m-large, penalty $0.001):
where the cost-attainment line that every learned student lies on passes HPA (issue 21's Autoscale target).

    PYTHONPATH=. python3 agents/zoo/results/scripts/autoscale_hpa_line.py OUT.json
    PYTHONPATH=. python3 agents/zoo/results/scripts/autoscale_hpa_line.py --table OUT.json [FINETUNE.json]

The second form prints the README's table and, given ``agents/zoo/results/autoscale_finetune.json``, which
fine-tuned runs cost less than an HPA setting of lower or equal attainment.

Plays ``agents.heuristics.autoscale.HPA`` with its scale-down stabilisation window (s) and tolerance set
per row (Kubernetes' defaults are 300 s and 0.1, the registered ``hpa``), and a mixed-fleet variant of
it (``mix``: the same demand, rate_30s x headroom over the last ``window`` s, as whole H100s plus L40S
for the remainder when cheaper than one more H100), on the leaderboard's 13 episodes of
``autoscale/transfer/servegen_m_large/.../penalty0.001/v1``. Writes one row per setting: normalized
score, cost per day ($), SLO attainment and cold starts per day, means over the 13 days.
"""
import json
import math
import sys

import numpy as np

from agents.heuristics import autoscale as A
from agents.leaderboard import _held_out_vec
from agents.rollout import run_episodes
from agents.scenarios import TRANSFER_SCENARIOS

SID = "autoscale/transfer/servegen_m_large/llama3.1-8b-h100+l40s/penalty0.001/v1"
HPA_ROWS = [(300, 0.1), (120, 0.1), (60, 0.1), (0, 0.1), (300, 0.05), (120, 0.05), (60, 0.2), (120, 0.2), (300, 0.2),
            (600, 0.1), (120, 0.3), (300, 0.3)]
MIX_ROWS = [(1.1, 300, False), (1.1, 300, True), (1.15, 300, True), (1.2, 300, True), (1.2, 120, True),
            (1.3, 120, True)]


class Mix(A._Base):
    """Demand rate_30s x ``head`` (reference-replica units), its maximum over the last ``window`` s, as
    whole reference replicas plus (``mix``) the remainder on the second type when that costs less than
    one more reference replica."""

    name = "hpa_mix"

    def __init__(self, env, head: float, window: float, mix: bool) -> None:
        super().__init__(env)
        p = self.sc.pools
        self.head, self.mix = head, mix
        self.safe = p.mu * self.sc.safe_util / self.sc.ref_cap
        self.price = p.price_s
        self.hist = np.zeros((env.num_envs, max(round(window / env.config.interval_s), 1)))

    def act(self, obs, mask):
        self.hist[self.fresh(obs)] = 0
        self.hist = np.roll(self.hist, 1, axis=1)
        self.hist[:, 0] = obs[:, A._f("rate_30s")] * self.head
        t = np.zeros((obs.shape[0], self.G), np.int64)
        for e, d in enumerate(np.maximum(self.hist.max(axis=1), 1e-9)):
            if not self.mix:
                t[e, 0] = max(math.ceil(d / self.safe[0] - 1e-9), 1)
                continue
            nh = int(d // self.safe[0])
            r = d - nh * self.safe[0]
            nl = math.ceil(r / self.safe[1] - 1e-9) if r > 1e-9 else 0
            if nl * self.price[1] >= self.price[0]:
                nh, nl = nh + 1, 0
            t[e] = (max(nh, 1) if nl == 0 else nh, nl)
        return self.to_action(obs, mask, t)


def play(make) -> dict:
    sc = next(s for s in TRANSFER_SCENARIOS if s.id == SID)
    vec = _held_out_vec(sc, False, None)
    eps, _ = run_episodes(vec, make(vec))
    vec.close()
    return {k: float(np.mean([e[k] for e in eps])) for k in ("normalized_score", "cost_usd", "slo_attainment",
                                                              "cold_starts")}


def main(out: str) -> None:
    rows = []
    default = (A.HPA.DOWN_WINDOW_S, A.HPA.TOLERANCE)
    for window, tol in HPA_ROWS:
        A.HPA.DOWN_WINDOW_S, A.HPA.TOLERANCE = window, tol
        rows.append({"policy": "hpa", "down_window_s": window, "tolerance": tol, **play(A.HPA)})
        print(rows[-1], flush=True)
    A.HPA.DOWN_WINDOW_S, A.HPA.TOLERANCE = default
    for head, window, mix in MIX_ROWS:
        rows.append({"policy": "hpa_mix" if mix else "hpa_ref_only", "headroom": head, "window_s": window,
                     **play(lambda vec: Mix(vec, head, window, mix))})
        print(rows[-1], flush=True)
    with open(out, "w") as f:
        json.dump({"scenario": SID, "command": " ".join(sys.argv), "rows": rows}, f, indent=1)
    print(markdown(rows))


def below(hpa_rows: list[dict], finetune: dict) -> str:
    """The runs of ``autoscale_finetune.json`` (m-large, penalty $0.001) that cost less than some HPA
    setting of lower or equal attainment, each with those settings."""
    hpa = [r for r in hpa_rows if r["policy"] == "hpa"]
    lines = []
    for name, run in finetune["runs"].items():
        m = run.get("m-large", {}).get("0.001")
        if m is None:
            continue
        beaten = [f"{h['down_window_s']} s / {h['tolerance']} (${h['cost_usd']:.1f}, {h['slo_attainment']:.4f})"
                  for h in hpa if h["slo_attainment"] <= m["slo_attainment"] and h["cost_usd"] >= m["cost_usd"]]
        lines.append(f"{name}: ${m['cost_usd']:.1f}, {m['slo_attainment']:.4f}: "
                     + ("cheaper than " + "; ".join(beaten) if beaten else "below no HPA setting"))
    return "\n".join(lines)


def markdown(rows: list[dict]) -> str:
    """The README's table: HPA's settings in order of attainment, cost per day and SLO attainment."""
    hpa = sorted((r for r in rows if r["policy"] == "hpa"), key=lambda r: r["slo_attainment"])
    name = lambda r: f"{r['down_window_s']} s, {r['tolerance']}" + (" (default)" if (r["down_window_s"], r["tolerance"])
                                                                     == (300, 0.1) else "")
    return "\n".join([
        "| scale-down window, tolerance | " + " | ".join(name(r) for r in hpa) + " |",
        "|---|" + "---|" * len(hpa),
        "| HPA on m-large | " + " | ".join(f"${r['cost_usd']:.0f}, {r['slo_attainment']:.4f}" for r in hpa) + " |"])


if __name__ == "__main__":
    if sys.argv[1:2] == ["--table"]:  # the README's table from a written JSON, then the runs below the line
        with open(sys.argv[2]) as f:
            hpa_rows = json.load(f)["rows"]
        print(markdown(hpa_rows))
        if len(sys.argv) > 3:
            with open(sys.argv[3]) as f:
                print(below(hpa_rows, json.load(f)))
    else:
        main(sys.argv[1])
