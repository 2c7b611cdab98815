"""PrefixEviction-v0 with and without ``full_blocks_only`` (vLLM caches full blocks only), block and token hit ratios.

    PYTHONPATH=$PWD python docs/scripts/pe_full_blocks_only.py SCENARIO 0|1 POLICY[,POLICY...]

SCENARIO: ``agentic0.2`` / ``agentic0.5`` (agentic-v1 played whole at 0.2% / 0.5% of its distinct blocks) or
``moon5`` / ``moon10`` (the held-out part of ../shared/traces/mooncake_conversation.jsonl at 5% / 10%), each as
the leaderboard plays it (eval seed 10000, sequential windows, leaf candidates, 4 envs, one episode each);
``1`` sets full_blocks_only. POLICY: a ``--policy`` name (lru, s3fifo, lfu, belady_candidates, zoo, a .zip).
Prints one line per policy: the mean block hit ratio and token hit ratio over the episodes.
"""
import sys

import numpy as np

import envs
from agents.policy import make_policy
from agents.rollout import run_episodes

SCENARIOS = {"agentic0.2": ("agentic-v1", 0.002, "all"), "agentic0.5": ("agentic-v1", 0.005, "all"),
             "moon5": ("../shared/traces/mooncake_conversation.jsonl", 0.05, "test"),
             "moon10": ("../shared/traces/mooncake_conversation.jsonl", 0.1, "test")}

if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] not in SCENARIOS or sys.argv[2] not in ("0", "1"):
        sys.exit(__doc__)
    trace, frac, split = SCENARIOS[sys.argv[1]]
    for policy in sys.argv[3].split(","):
        vec = envs.make_vec("servegym/PrefixEviction-v0", 4, seed=10000, trace=trace, split=split, capacity_frac=frac,
                            window_order="sequential", evict_leaves_only=True, full_blocks_only=sys.argv[2] == "1")
        episodes, _ = run_episodes(vec, make_policy(policy, vec, "servegym/PrefixEviction-v0"))
        print(sys.argv[1], "full_blocks_only" if sys.argv[2] == "1" else "default", policy,
              round(float(np.mean([e["block_hit_ratio"] for e in episodes])), 4),
              round(float(np.mean([e["token_hit_ratio"] for e in episodes])), 4), flush=True)
