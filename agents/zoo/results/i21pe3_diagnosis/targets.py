"""Same fixed labelled set, base features only: which regression target ranks well?"""
import sys, time, numpy as np, torch as th
sys.path.insert(0, __import__("os").path.dirname(__import__("os").path.abspath(__file__)))
from fitexp import collect, fit, evaluate
which = sys.argv[1]
cfg = ("agentic-v1", (0.002, 0.005), "all", 0) if which == "agentic" else ("mooncake_conv-v1", (0.01, 0.02, 0.05, 0.1, 0.25), "all", 0)
evals = sys.argv[3].split(",")
O, X, V, M = collect(cfg, 16, int(sys.argv[2]), 1)
d = np.expm1(V.astype(np.float64))  # distance / capacity, clipped at 16
t0 = time.time()
for name in sys.argv[4].split(","):
    kind, p = name.split(":")
    p = float(p)
    T = np.log1p(np.minimum(d, p)) if kind == "clip" else (d > p).astype(np.float64)
    net = fit(O, X, np.where(M, T, 0).astype(np.float32), M, [])
    print(name, {e: round(evaluate(net, e, []), 4) for e in evals}, round(time.time() - t0), flush=True)
