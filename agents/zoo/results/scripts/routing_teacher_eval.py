"""Routing-v0's privileged teacher played as a policy, with true or predicted output lengths (issue 21).

    PYTHONPATH=. python3 agents/zoo/results/scripts/routing_teacher_eval.py SUBSTR[,SUBSTR...] POLICY[,POLICY...] OUT.json

POLICY: ``teacher:true`` / ``teacher:predicted`` / ``teacher:sampled`` (``RoutingVecEnv.teacher_actions(lengths=...)``, rule
"marginal", horizon 20 s), the diagnostic mixes ``teacher:live`` (predicted lengths for the requests queued
or running at the replicas, the pending request's true length) and ``teacher:pending`` (the pending
request's predicted length, the others' true lengths), ``teacher:noisyS`` (each request's true length x
exp(N(0, S^2)), drawn once per request (seed 0), at least 1 more token than it has generated: a
per-request length predictor with log-normal error S), or anything ``--policy`` takes (heuristics). A
suffix ``@accX`` plays it on the scenario with ``predictor_accuracy=X`` (how often the predicted bucket is
the true one; the scenarios' default 0.7), e.g. ``teacher:predicted@acc1.0``. Plays every Routing scenario (main
and transfer track) whose id contains one of the SUBSTRs on the leaderboard's held-out episodes
(``agents.leaderboard._held_out_vec``, ``agents.rollout.run_episodes``: the same episodes as
``agents.leaderboard.run_policy``, so heuristic values equal the leaderboard's). Writes one row per
scenario x policy (the mean and per-episode ``slo_attainment_bounded``, ``ttft_p99_s``), after each row.
"""
import dataclasses
import sys

import numpy as np

from agents.leaderboard import _held_out_vec, run_policy
from agents.rollout import run_episodes
from envs.routing import predicted as P
from routing_eval import evaluate  # this folder (sys.path[0] when run as a script)

_believed = P.believed_window


def _mix(part: str):
    """``believed_window`` with the true lengths put back for all but ``part`` ("live" or "pending")."""

    def window(table, wl, st, e):
        b = _believed(table, wl, st, e)
        true = wl.output[int(st.window[e])]
        out = true.copy()
        i = int(st.next_arrival[e])
        if part == "pending":
            out[i] = b.output[0, i]
        else:
            live = (st.status[e] == 1) | (st.status[e] == 2)  # QUEUED, RUNNING
            q = st.req[e][live]
            out[q] = b.output[0, q]
        return b._replace(output=out[None, :])

    return window


def _noisy(sigma: float, seed: int = 0):
    """``believed_window`` whose lengths are the true ones x exp(N(0, sigma^2)) (fixed per request)."""
    noise = {}

    def window(table, wl, st, e):
        b = _believed(table, wl, st, e)
        if "x" not in noise:
            noise["x"] = np.exp(np.random.default_rng(seed).normal(0.0, sigma, wl.output.shape))
        w = int(st.window[e])
        out = np.maximum(np.round(wl.output[w] * noise["x"][w]), 1).astype(np.int32)
        live = (st.status[e] == 1) | (st.status[e] == 2)  # QUEUED, RUNNING
        q = st.req[e][live]
        out[q] = np.maximum(out[q], st.generated[e][live] + 1)
        return b._replace(output=out[None, :])

    return window


class Teacher:
    """The env's teacher as a policy: ``act`` ignores the observation and asks the env."""

    def __init__(self, vec, lengths: str):
        self.vec, self.lengths = vec, lengths

    def act(self, obs, mask):
        return self.vec.teacher_actions(lengths=self.lengths)


def play(sc, spec: str) -> list[dict]:
    if "@acc" in spec:
        spec, acc = spec.split("@acc")
        sc = dataclasses.replace(sc, env_kwargs={**sc.env_kwargs, "predictor_accuracy": float(acc)})
    if not spec.startswith("teacher:"):
        return run_policy(sc, spec, False, None).episodes
    part = spec.split(":", 1)[1]
    mixed = part in ("live", "pending") or part.startswith("noisy")
    P.believed_window = (_noisy(float(part[5:])) if part.startswith("noisy") else _mix(part) if mixed
                         else _believed)
    vec = _held_out_vec(sc, False, None)
    eps, _ = run_episodes(vec, Teacher(vec, "predicted" if mixed else part))
    vec.close()
    P.believed_window = _believed
    return eps


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    evaluate(sys.argv[1].split(","), sys.argv[2].split(","), sys.argv[3], play)
