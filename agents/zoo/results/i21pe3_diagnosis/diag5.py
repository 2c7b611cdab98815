import sys, time, numpy as np, torch as th
sys.path.insert(0, __import__("os").path.dirname(__import__("os").path.abspath(__file__)))
from fitexp import collect, fit, evaluate, inputs, G, F
from envs.prefix_eviction import kernels as K
TOK = K.CANDIDATE_FEATURES.index("tokens")
which, beta = sys.argv[1], float(sys.argv[2])
cfg = ("agentic-v1", (0.002, 0.005), "all", 0) if which == "agentic" else ("mooncake_conv-v1", (0.01, 0.02, 0.05, 0.1, 0.25), "all", 0)
evals = sys.argv[3].split(",")
O, X, V, M = collect(cfg, 16, int(sys.argv[4]), 1, beta=beta)
tok = O[:, G:].reshape(len(O), -1, F)[:, :, TOK]
part = M & (tok < 0.999); full = M & (tok >= 0.999)
print("P(never|partial)", (V[part] >= np.log1p(16) - 1e-4).mean(), "n partial", part.sum(), "P(never|full)", (V[full] >= np.log1p(16) - 1e-4).mean())
t0 = time.time()
for ep in [int(x) for x in sys.argv[5].split(",")]:
    net = fit(O, X, V, M, [], epochs=ep)
    with th.no_grad(): s = net(th.from_numpy(inputs(O, X, []))).numpy()
    mse = (((s - V) ** 2) * M).sum() / M.sum()
    print(which, beta, "epochs", ep, "mse", round(float(mse), 4), "pred partial", s[part].mean().round(3), "full", s[full].mean().round(3),
          {e: round(evaluate(net, e, []), 4) for e in evals}, round(time.time() - t0), flush=True)
