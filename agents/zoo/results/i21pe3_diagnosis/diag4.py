import sys, numpy as np, torch as th
sys.path.insert(0, __import__("os").path.dirname(__import__("os").path.abspath(__file__)))
from fitexp import collect, fit, make, inputs, extras, G, F
from evalrules import partial_first
from envs.prefix_eviction import kernels as K
TOK = K.CANDIDATE_FEATURES.index("tokens")
cfg = ("agentic-v1", (0.002, 0.005), "all", 0)
O, X, V, M = collect(cfg, 16, 1500, 1, beta=0.0)
net = fit(O, X, V, M, [])
vec = make("agentic0.5", 4, 10000); obs = vec.reset()
stats = dict(n=0, part_avail=0, net_part=0, rule_eq=0, net_rank=[], net_never=0, rule_never=0, lru_never=0)
for _ in range(3000):
    m = vec.action_masks()
    with th.no_grad(): s = net(th.from_numpy(inputs(obs, extras(vec), []))).numpy()
    a = np.argmax(np.where(m, s, -np.inf), 1); r = partial_first(obs, m)
    c = obs[:, G:].reshape(4, -1, F); tok = c[:, :, TOK]; age = c[:, :, 1]
    V = vec.teacher_values(); never = V >= np.log1p(16) - 1e-4
    for e in range(4):
        stats["n"] += 1
        pa = (m[e] & (tok[e] < 0.999)).any()
        stats["part_avail"] += pa; stats["net_part"] += pa and tok[e, a[e]] < 0.999
        stats["rule_eq"] += a[e] == r[e]
        stats["net_never"] += never[e, a[e]]; stats["rule_never"] += never[e, r[e]]; stats["lru_never"] += never[e, 0]
        if not pa:
            ag = np.where(m[e], age[e], -1); stats["net_rank"].append(int((ag > ag[a[e]]).sum()))
    obs, _, d, _ = vec.step(a)
    if d.any(): break
rk = np.array(stats.pop("net_rank")); n = stats["n"]
print({k: round(v / n, 3) for k, v in stats.items()}, "net rank (0=oldest) when no partial:", np.bincount(rk)[:8] / len(rk))
