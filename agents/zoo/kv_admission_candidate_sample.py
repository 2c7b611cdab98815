"""How ``agents.kv_admission_teacher.TRANSFER_STATIC`` was chosen (issue 21): every one of the 21
teacher candidates replayed through a sample of 38 training episodes of the KVAdmission transfer
distribution (4 windows of each of azure_conv-v1, bursty-v1 and the Azure conversation trace at each of
loads 1.1/1.3/1.5; window 0 of each Mooncake family at load 1.3), then per candidate its wins (highest SLO
attainment, ties to the earlier candidate) and the mean attainment of the per-episode best with and
without it (greedy backward elimination over the static schedules).

    python -m agents.zoo.kv_admission_candidate_sample   # from the repository root; ~25 min on one core

Prints one line per candidate (seconds), then the table. Same result every run (replays are exact)."""

from __future__ import annotations

import sys
import time

import numpy as np

from agents import cli
from agents import kv_admission_teacher as T
from agents.zoo import KV_ADMISSION_WORKLOADS
from envs.kv_admission.env import ENV_ID, KVAdmissionVecEnv

FAMILIES = ("azure_conv", "bursty", "mooncake_conv", "azure_file", "mooncake_file")  # KV_ADMISSION_WORKLOADS' order


def sample_ranges(groups: list[int], W: int) -> list[tuple[str, tuple[int, int]]]:
    """(family, episode range) of the sample: episode k = load index * W + window."""
    out = []
    for li in range(3):
        for p in (0, 1, 3):
            out.append((FAMILIES[p], (li * W + groups[p], li * W + groups[p] + 4)))
    for p in (2, 4):
        out.append((FAMILIES[p], (W + groups[p], W + groups[p] + 1)))
    return out


def main() -> int:
    kw = cli.parse_env_kwargs(["workloads=" + ",".join(KV_ADMISSION_WORKLOADS)], ENV_ID)
    v = KVAdmissionVecEnv(1, **{**kw, "split": "train"})
    cfg = v.config
    groups = [int(g) for g in v.scenario.groups]
    cands = T.candidate_names("static")
    res: dict[tuple, dict[str, float]] = {}
    for c in cands:
        t = time.perf_counter()
        for fam, r in sample_ranges(groups, groups[-1]):
            for k, (score, _) in T.replay(cfg, c, 64, r).items():
                res.setdefault((fam,) + k[1:], {})[c] = score
        print(f"{c}: {time.perf_counter() - t:.1f} s", flush=True)
    keys = sorted(res)
    S = np.array([[res[k][c] for c in cands] for k in keys])
    wins = np.bincount(S.argmax(1), minlength=len(cands))
    print(f"{len(keys)} episodes; per-episode best {S.max(1).mean():.4f}, best single {S.mean(0).max():.4f}")
    for c, n, m in zip(cands, wins, S.mean(0)):
        print(f"  {c:28s} wins {n:3d}  mean {m:.4f}")
    cur = [i for i in range(len(cands)) if i < 5 or wins[i] > 0]
    print(f"heuristics and winners: per-episode best {S[:, cur].max(1).mean():.4f}; backward elimination:")
    while len(cur) > 5:
        i, val = max(((i, S[:, [j for j in cur if j != i]].max(1).mean()) for i in cur[5:]), key=lambda x: x[1])
        print(f"  drop {cands[i]}: {val:.4f}")
        cur.remove(i)
    return 0


if __name__ == "__main__":
    sys.exit(main())
