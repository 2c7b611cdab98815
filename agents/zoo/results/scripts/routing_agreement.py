"""Student vs privileged teacher on one Routing scenario's held-out episodes (the leaderboard's vec):
the student plays; at each decision teacher_targets (accepted replicas) and teacher_actions are read.
Prints agreement overall and by request features, and mean replica features of the student's vs the
teacher's replica where they differ.

    PYTHONPATH=. python3 agents/zoo/results/scripts/routing_agreement.py SCENARIO_ID POLICY MAX_STEPS

Agreement: the policy's replica is among ``teacher_targets()`` (envs/routing/env.py; the replicas the
privileged teacher accepts), counted over the decisions of the policy's own episodes (on-policy states,
so two policies are compared on different states). Feature values are the observation's
(envs.routing.kernels.REPLICA_FEATURES: queued / running in units of one replica's requests per TTFT SLO,
outstanding / est_ttft in TTFT SLOs). MAX_STEPS caps the batch steps (one decision per episode each).
"""
import sys
import numpy as np
from agents.scenarios import SCENARIOS, TRANSFER_SCENARIOS
from agents.leaderboard import _held_out_vec
from agents.policy import make_policy
from envs.routing import kernels as K
sid, spec, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
sc = next(s for s in list(SCENARIOS) + list(TRANSFER_SCENARIOS) if s.id == sid)
vec = _held_out_vec(sc, False, None)
pol = make_policy(spec, vec, sc.env_id, seed=sc.seed)
obs = vec.reset(); E, R = vec.num_envs, vec.R
rec = []
done_e = np.zeros(E, bool)
for t in range(steps):
    mask = vec.action_masks()
    a = np.asarray(pol.act(obs, mask))
    tgt = vec.teacher_targets(); ta = vec.teacher_actions()
    for e in range(E):
        if done_e[e]:
            continue
        g = obs[e, :K.G]; f = obs[e, K.G:].reshape(R, K.F)
        rec.append((tgt[e, a[e]], g[0], g[1], f[a[e]], f[ta[e]], a[e] == ta[e]))
    obs, _, dones, _ = vec.step(a)
    done_e |= dones
    if done_e.all():
        break
ok = np.array([r[0] for r in rec]); prompt = np.array([r[1] for r in rec]); pb = np.array([r[2] for r in rec])
print(f"{sid} {spec}: {len(rec)} decisions, agreement (student in teacher targets) {ok.mean():.3f}, "
      f"same as teacher_actions {np.mean([r[5] for r in rec]):.3f}")
for lo, hi in ((0, 0.25), (0.25, 0.5), (0.5, 1.01)):
    s = (pb >= lo) & (pb < hi)
    print(f"  pred_bucket in [{lo},{hi}): n={s.sum()} agreement {ok[s].mean() if s.any() else float('nan'):.3f}")
q = np.quantile(prompt, [0.5]); 
for name, s in (("prompt<=median", prompt <= q[0]), ("prompt>median", prompt > q[0])):
    print(f"  {name}: n={s.sum()} agreement {ok[s].mean():.3f}")
bad = ~ok
fs = np.array([r[3] for r in rec])[bad]; ft = np.array([r[4] for r in rec])[bad]
print(f"  where the student's replica is not accepted ({bad.sum()}): mean features student vs teacher")
for i, n in enumerate(K.REPLICA_FEATURES):
    print(f"    {n:12s} {fs[:, i].mean():8.3f} {ft[:, i].mean():8.3f}")
