"""Block hit ratio of every one-feature eviction rule, LRU and the teacher on a scenario (eval seed 10000).

    PYTHONPATH=$PWD python agents/zoo/results/i21pe3_diagnosis/rules_synthetic.py syn5 syn10 [moon5 moon10]

A rule evicts the candidate with the largest (``max f``) or smallest (``min f``) value of one of
``kernels.CANDIDATE_FEATURES``, the older one among ties; ``lru`` is the env's first legal candidate (LRU's
victim), ``teacher`` Belady among the offered candidates (``env.teacher_actions``). Settings as the leaderboard's
transfer / main scenarios: sequential windows, leaf-only candidates, 3 episodes. Diagnostic (issue 21's gap clause
on the Mooncake synthetic trace, envs/prefix_eviction/README.md), not part of the package.
"""
import sys

import numpy as np

import envs
from agents.rollout import run_episodes
from agents.scenarios import _MOONCAKE_SYNTHETIC_FILE as SYN
from envs.prefix_eviction import kernels as K

G, F = K.N_GLOBAL, K.N_CAND
AGE = K.CANDIDATE_FEATURES.index("age")
SC = {"syn5": (SYN, 0.05, "all", 3), "syn10": (SYN, 0.1, "all", 3),
      "moon5": ("../shared/traces/mooncake_conversation.jsonl", 0.05, "test", 3),
      "moon10": ("../shared/traces/mooncake_conversation.jsonl", 0.1, "test", 3)}


class Rule:
    def __init__(self, fn):
        self.fn = fn

    def act(self, obs, mask):
        return self.fn(obs, mask)


def cand(obs, i):
    return obs[:, G:].reshape(obs.shape[0], -1, F)[:, :, i]


def one_feature(i, sign):
    def fn(obs, mask):
        score = sign * cand(obs, i) + 1e-6 * cand(obs, AGE)  # ties: the older candidate
        return np.argmax(np.where(mask, score, -np.inf), 1)
    return fn


def run(name, pol):
    trace, frac, split, n = SC[name]
    vec = envs.make_vec("servegym/PrefixEviction-v0", n, seed=10000, trace=trace, split=split, capacity_frac=frac,
                        window_order="sequential", evict_leaves_only=True)
    rule = Rule(lambda o, m: vec.teacher_actions()) if pol == "teacher" else Rule(pol)
    eps, _ = run_episodes(vec, rule)
    return np.mean([e["block_hit_ratio"] for e in eps])


if __name__ == "__main__":
    for name in sys.argv[1:]:
        out = {"teacher": run(name, "teacher"), "lru": run(name, lambda o, m: np.argmax(m, 1))}
        for i, f in enumerate(K.CANDIDATE_FEATURES):
            if f != "present":
                for s in (1, -1):
                    out[("max " if s > 0 else "min ") + f] = run(name, one_feature(i, s))
        print(name, " ".join(f"{k}={v:.3f}" for k, v in sorted(out.items(), key=lambda kv: -kv[1])), flush=True)
