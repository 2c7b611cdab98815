"""Fit a per-candidate MLP on teacher values (fixed labelled set), with/without extra candidate features,
and evaluate its block hit ratio. Diagnostic only (extras computed from env state in Python)."""
import sys, time, numpy as np, torch as th, envs
from torch import nn
from envs.prefix_eviction import kernels as K
sys.path.insert(0, __import__("os").path.dirname(__import__("os").path.abspath(__file__)))
from evalrules import SC, partial_first
G, F = K.N_GLOBAL, K.N_CAND
AGE = K.CANDIDATE_FEATURES.index("age")
th.set_num_threads(1)

def extras(vec):
    """[E, K, X] diagnostic candidate features."""
    st, bt = vec.state, vec.built
    E, Kc = vec._cands.shape
    rows = np.arange(E)[:, None]
    m = vec._mask
    c = vec._cands
    age = vec._obs[:, G:].reshape(E, Kc, F)[:, :, AGE]
    agem = np.where(m, age, -np.inf)
    rank = np.argsort(np.argsort(-agem, 1), 1)  # 0 = oldest
    n = m.sum(1, keepdims=True)
    rank_rel = 1.0 - rank / np.maximum(n - 1, 1)  # 1 = oldest
    age_rel = np.where(m, age / np.maximum(agem.max(1, keepdims=True), 1e-9), 0)
    q = st.pin[rows, c]
    qnow = st.iv[:, K.I_REQ][:, None]
    qage = np.log1p(np.maximum(qnow - q, 0)) / 6.0
    out = np.log1p(bt.output[np.maximum(q, 0)]) / 6.0
    age_s = np.log1p(np.maximum(bt.arrival_s[qnow] - bt.arrival_s[np.maximum(q, 0)], 0))
    X = np.stack([rank_rel, age_rel, qage, out, age_s], 2)
    return np.where(m[:, :, None], X, 0).astype(np.float32)
XNAMES = ["rank_rel", "age_rel", "qage", "out", "age_s"]

def make(name_or_cfg, n, seed, train=False):
    tr, frac, split, _ = SC[name_or_cfg] if isinstance(name_or_cfg, str) else name_or_cfg
    kw = dict(trace=tr, split=split, capacity_frac=frac, evict_leaves_only=True)
    if not train: kw["window_order"] = "sequential"
    return envs.make_vec("servegym/PrefixEviction-v0", n, seed=seed, **kw)

def collect(cfg, n_env, steps, seed, beta=0.5):
    vec = make(cfg, n_env, seed, train=True); obs = vec.reset(); rng = np.random.default_rng(seed)
    O, X, V, M = [], [], [], []
    for _ in range(steps):
        m = vec.action_masks().copy(); v = vec.teacher_values(); x = extras(vec)
        O.append(obs.copy()); X.append(x); V.append(v); M.append(m)
        a = vec.teacher_actions() if rng.random() < beta else partial_first(obs, m)
        obs, _, _, _ = vec.step(a)
    return np.concatenate(O), np.concatenate(X), np.concatenate(V), np.concatenate(M)

class Scorer(nn.Module):
    def __init__(s, d, h=64):
        super().__init__(); s.net = nn.Sequential(nn.Linear(d, h), nn.Tanh(), nn.Linear(h, h), nn.Tanh(), nn.Linear(h, 1))
    def forward(s, x): return s.net(x).squeeze(-1)

def inputs(obs, x, use):
    E = obs.shape[0]; Kc = x.shape[1]
    g = np.repeat(obs[:, None, :G], Kc, 1); c = obs[:, G:].reshape(E, Kc, F)
    parts = [g, c] + ([x[:, :, use]] if len(use) else [])
    return np.concatenate(parts, 2).astype(np.float32)

def fit(O, X, V, M, use, epochs=6, seed=0):
    th.manual_seed(seed)
    I = th.from_numpy(inputs(O, X, use)); Vt = th.from_numpy(V); Mt = th.from_numpy(M)
    net = Scorer(I.shape[2]); opt = th.optim.Adam(net.parameters(), 3e-4 * 3)
    rng = np.random.default_rng(seed)
    for ep in range(epochs):
        perm = rng.permutation(len(I))
        for b in range(0, len(I), 512):
            idx = perm[b:b + 512]
            p = net(I[idx]); l = (((p - Vt[idx]) ** 2) * Mt[idx]).sum() / Mt[idx].sum()
            opt.zero_grad(); l.backward(); opt.step()
    return net

def evaluate(net, name, use):
    vec = make(name, SC[name][3], 10000); obs = vec.reset(); E = vec.num_envs
    res = [None] * E
    while any(r is None for r in res):
        m = vec.action_masks()
        with th.no_grad(): s = net(th.from_numpy(inputs(obs, extras(vec), use))).numpy()
        a = np.argmax(np.where(m, s, -np.inf), 1)
        obs, _, d, info = vec.step(a)
        for e in np.flatnonzero(d):
            if res[e] is None: res[e] = info[e]["metrics"]["block_hit_ratio"]
    return float(np.mean(res))

if __name__ == "__main__":
    which = sys.argv[1]  # agentic | moon
    t0 = time.time()
    if which == "agentic":
        cfgs = [("agentic-v1", (0.002, 0.005), "all", 0)]
        evals = ["agentic0.2", "agentic0.5"]
    else:
        cfgs = [("mooncake_conv-v1", (0.01, 0.02, 0.05, 0.1, 0.25), "all", 0)]
        evals = ["moon5", "moon10", "agentic0.2", "agentic0.5"]
    data = [collect(c, 16, int(sys.argv[2]) if len(sys.argv) > 2 else 1500, 1) for c in cfgs]
    O, X, V, M = (np.concatenate(z) for z in zip(*data))
    print("collected", O.shape, time.time() - t0, flush=True)
    variants = {"base": [], "+rank_rel": [0], "+qage": [2], "+out+age_s": [3, 4], "+all": [0, 1, 2, 3, 4]}
    for vn, use in variants.items():
        net = fit(O, X, V, M, use)
        print(vn, {e: round(evaluate(net, e, use), 4) for e in evals}, round(time.time() - t0), flush=True)
