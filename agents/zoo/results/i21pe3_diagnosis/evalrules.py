"""Block hit ratio of simple rules and the teacher on the transfer/main scenarios (eval seed 10000)."""
import sys, numpy as np, envs
from agents.rollout import run_episodes
from envs.prefix_eviction import kernels as K
G, F = K.N_GLOBAL, K.N_CAND
TOK = K.CANDIDATE_FEATURES.index("tokens"); AGE = K.CANDIDATE_FEATURES.index("age")
class P:
    def __init__(s, fn): s.fn = fn
    def act(s, obs, mask): return s.fn(obs, mask)
def cand(obs, i): return obs[:, G:].reshape(obs.shape[0], -1, F)[:, :, i]
def partial_first(obs, mask):
    tok = cand(obs, TOK); age = cand(obs, AGE)
    score = np.where(tok < 0.999, 100.0, 0.0) + age
    return np.argmax(np.where(mask, score, -np.inf), 1)
SC = {"agentic0.2": ("agentic-v1", 0.002, "all", 4), "agentic0.5": ("agentic-v1", 0.005, "all", 4),
      "moon5": ("../shared/traces/mooncake_conversation.jsonl", 0.05, "test", 4),
      "moon10": ("../shared/traces/mooncake_conversation.jsonl", 0.1, "test", 4)}
def run(name, pol):
    tr, frac, split, n = SC[name]
    vec = envs.make_vec("servegym/PrefixEviction-v0", n, seed=10000, trace=tr, split=split, capacity_frac=frac,
                        window_order="sequential", evict_leaves_only=True)
    if pol == "teacher": p = P(lambda o, m: vec.teacher_actions())
    elif pol == "lru": p = P(lambda o, m: np.zeros(len(o), np.int64))
    else: p = P(pol)
    eps, _ = run_episodes(vec, p)
    return np.mean([e["block_hit_ratio"] for e in eps])
if __name__ == "__main__":
    for name in sys.argv[1:]:
        print(name, {k: round(run(name, v), 4) for k, v in (("lru", "lru"), ("partial_first", partial_first), ("teacher", "teacher"))}, flush=True)
