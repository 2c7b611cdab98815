"""Block hit ratio of checkpoints on the leaderboard's PE scenarios (seed 10000, the scenario's episodes)."""
import sys, json
from agents.evaluate import evaluate
MOON = "../shared/traces/mooncake_conversation.jsonl"
SC = {"moon1": (MOON, 0.01, "test"), "moon5": (MOON, 0.05, "test"), "moon10": (MOON, 0.1, "test"), "moon25": (MOON, 0.25, "test"),
      "agentic0.2": ("agentic-v1", 0.002, "all"), "agentic0.5": ("agentic-v1", 0.005, "all")}
names = sys.argv[1].split(",")
for p in sys.argv[2:]:
    out = {}
    for n in names:
        tr, frac, split = SC[n]
        rep = evaluate("servegym/PrefixEviction-v0", [p], trace=tr, episodes=4, seed=10000, split=split,
                       env_kwargs={"capacity_frac": frac, "evict_leaves_only": True}, progress=False)
        out[n] = round(rep["results"][0]["metrics"]["block_hit_ratio"], 4)
    print(p, json.dumps(out), flush=True)
