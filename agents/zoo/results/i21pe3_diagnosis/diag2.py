import sys, numpy as np
sys.path.insert(0, __import__("os").path.dirname(__import__("os").path.abspath(__file__)))
from fitexp import collect, fit, evaluate, G, F
from envs.prefix_eviction import kernels as K
cfg = ("agentic-v1", (0.005,), "all", 0)
for beta in (1.0, 0.0):
    O, X, V, M = collect(cfg, 16, 1000, 1, beta=beta)
    c = O[:, G:].reshape(len(O), -1, F)
    age = c[:, :, 1]; tok = c[:, :, K.CANDIDATE_FEATURES.index("tokens")]
    full = M & (tok > 0.999); part = M & (tok < 0.999)
    never = V >= np.log1p(16) - 1e-4
    print("beta", beta, "P(never|partial)", never[part].mean(), "P(never|full)", never[full].mean())
    qs = np.quantile(age[full], [0, .25, .5, .75, 1])
    for lo, hi in zip(qs[:-1], qs[1:]):
        sel = full & (age >= lo) & (age <= hi)
        print(f"  full age {lo:.2f}-{hi:.2f}: P(never) {never[sel].mean():.3f} meanV {V[sel].mean():.3f}")
    net = fit(O, X, V, M, [])
    print("  fitted on this:", evaluate(net, "agentic0.5", []))
