import sys, time, numpy as np
sys.path.insert(0, __import__("os").path.dirname(__import__("os").path.abspath(__file__)))
from fitexp import collect, fit, evaluate, G, F
which, beta = sys.argv[1], float(sys.argv[2])
cfg = ("agentic-v1", (0.002, 0.005), "all", 0) if which == "agentic" else ("mooncake_conv-v1", (0.01, 0.02, 0.05, 0.1, 0.25), "all", 0)
evals = sys.argv[3].split(",")
O, X, V, M = collect(cfg, 16, int(sys.argv[4]), 1, beta=beta)
t0 = time.time()
for vn, use in {"base": [], "+rank_rel": [0], "+age_rel": [1], "+rank+agerel": [0, 1]}.items():
    net = fit(O, X, V, M, use)
    print(which, beta, vn, {e: round(evaluate(net, e, use), 4) for e in evals}, round(time.time() - t0), flush=True)
