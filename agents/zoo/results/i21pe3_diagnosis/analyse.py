"""Issue 21 analysis: at agentic decisions, what Belady's victim looks like vs LRU's."""
import sys, numpy as np, envs, traces
from envs.prefix_eviction import env as pe, kernels as K
frac = float(sys.argv[1]) if len(sys.argv) > 1 else 0.005
trace = sys.argv[2] if len(sys.argv) > 2 else "agentic-v1"
E = 8
vec = pe.PrefixEvictionVecEnv(E, seed=10000, trace=trace, split="all", capacity_frac=frac, evict_leaves_only=True)
bt = vec.built; sc = bt.sc
tr = traces.load_trace("agentic", seed=0) if trace == "agentic-v1" else None
vec.reset()
F, G = K.N_CAND, K.N_GLOBAL
names = list(K.CANDIDATE_FEATURES)
rows = []
done_count = 0
for step in range(4000):
    m = vec.action_masks()
    a = vec.teacher_actions()
    st = vec.state
    for e in range(E):
        n = int(m[e].sum()); c = vec._cands[e, :n]
        now = sc.req_off[st.iv[e, K.I_REQ]] + st.iv[e, K.I_J]
        f = vec._obs[e, G:].reshape(-1, F)[:n]
        nxt = st.next_use[e, c]; dist = np.where(nxt == K.NEVER, np.inf, (nxt - now) / vec._cap[e])
        q = st.pin[e, c]; qnow = st.iv[e, K.I_REQ]
        ages_s = bt.arrival_s[qnow] - bt.arrival_s[q]
        b = st.key[e, c]
        rows.append(dict(a=int(a[e]), n=n, f=f.copy(), dist=dist, age_s=ages_s, out=bt.output[q],
                         partial=(sc.tokens[b] < bt.block_size), depth=sc.depth[b], qage=qnow - q))
    _, _, d, _ = vec.step(a)
    done_count += int(d.sum())
    if done_count >= 8: break
print("decisions", len(rows), "cap", vec._cap[:2])
a = np.array([r["a"] for r in rows])
lru = np.array([0 for r in rows])
print("P(belady==lru victim)", np.mean(a == 0))
def at(key, idx):
    return np.array([r[key][i] for r, i in zip(rows, idx)])
for key in ("partial", "age_s", "out", "depth", "qage"):
    print(key, "belady", np.mean(at(key, a)), "lru", np.mean(at(key, lru)), "all", np.mean(np.concatenate([r[key] for r in rows])))
dist_b = at("dist", a); dist_l = at("dist", lru)
print("belady victim never-used", np.mean(np.isinf(dist_b)), "lru victim never", np.mean(np.isinf(dist_l)))
allnever = np.concatenate([np.isinf(r["dist"]) for r in rows]); print("all cands never", allnever.mean())
# per-feature correlation with never-used among candidates
X = np.concatenate([r["f"] for r in rows]); 
for i, nm in enumerate(names):
    x = X[:, i]
    if x.std() > 0: print(f"{nm:12s} corr(never) {np.corrcoef(x, allnever)[0,1]:+.3f}")
for key in ("partial","age_s","out","depth","qage"):
    x = np.concatenate([r[key] for r in rows]).astype(float)
    print(f"{key:12s} corr(never) {np.corrcoef(x, allnever)[0,1]:+.3f}")
# recency rank among candidates: rank of belady victim by age (0 = oldest)
rk = np.array([np.argsort(np.argsort(-r["f"][:, 1]))[r["a"]] for r in rows])
print("belady victim age rank hist", np.bincount(rk, minlength=16)[:16] / len(rk))
np.savez("/tmp/i21_rows.npz", a=a)
