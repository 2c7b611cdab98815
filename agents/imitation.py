"""DAgger from an environment's privileged teacher into an SB3 maskable policy.

Ross, Gordon & Bagnell, "A Reduction of Imitation Learning and Structured Prediction to No-Regret
Online Learning" (AISTATS 2011). Round 0 follows the teacher; round i lets the student act with
probability 1 - 0.5^i, and every visited state is labelled with the teacher's action, so the
student learns the teacher's choice on the states its own mistakes lead to. The aggregated data
train the policy's masked logits to put their mass on the actions the teacher accepts
(-log of the probability of that set; one action when the teacher names one).

The teacher is the env's ``teacher_actions()`` (PrefixEviction-v0: Belady's choice among the
current candidates, which reads next-use times). It is privileged: it labels training states,
the student only ever sees the observation. The result is an ordinary checkpoint of the same
algorithm, which RL can go on training (``train.py --imitate N --timesteps M``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch as th


def _good_actions(vec: Any, teacher: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Every action the teacher accepts [E, A]: its ``teacher_targets()`` where it has them (a
    set: e.g. every block not needed soon), else the one-hot of its action."""
    if hasattr(vec, "teacher_targets"):
        return np.asarray(vec.teacher_targets(), bool)
    good = np.zeros(shape, bool)
    good[np.arange(shape[0]), teacher] = True
    return good


def imitate(model: Any, vec: Any, steps: int, rounds: int = 6, epochs: int = 4, batch_size: int = 1024,
            learning_rate: float = 1e-3, seed: int = 0, log: Any = print) -> list[dict[str, float]]:
    """Run DAgger for ``steps`` labelled decisions (over all envs) and return per-round stats."""
    if not hasattr(vec, "teacher_actions"):
        raise ValueError(f"imitate: {type(vec).__name__} has no privileged teacher_actions()")
    if steps < rounds * vec.num_envs:
        raise ValueError(f"imitate: steps={steps} is fewer than one step per env per round "
                         f"({rounds} rounds x {vec.num_envs} envs)")
    policy = model.policy
    opt = th.optim.Adam(policy.parameters(), lr=learning_rate)
    rng = np.random.default_rng(seed)
    E = vec.num_envs
    per_round = steps // (rounds * E)
    obs_buf, mask_buf, label_buf = [], [], []
    history: list[dict[str, float]] = []
    obs = vec.reset()
    for rnd in range(rounds):
        beta = 0.5 ** rnd
        agree, episodes = 0, []
        for _ in range(per_round):
            mask = vec.action_masks()
            teacher = vec.teacher_actions()
            good = _good_actions(vec, teacher, mask.shape)
            student, _ = model.predict(obs, action_masks=mask, deterministic=True)
            agree += int(np.sum(good[np.arange(E), student]))
            obs_buf.append(obs.copy())
            mask_buf.append(mask.copy())
            label_buf.append(good)
            act = np.where(rng.random(E) < beta, teacher, student)
            obs, _, _, infos = vec.step(act)
            episodes += [i["metrics"] for i in infos if "metrics" in i]
        X = th.as_tensor(np.concatenate(obs_buf))
        M = np.concatenate(mask_buf)
        Y = th.as_tensor(np.concatenate(label_buf))
        losses = []
        policy.set_training_mode(True)
        for _ in range(epochs):
            for idx in th.randperm(len(Y), generator=th.Generator().manual_seed(seed + rnd)).split(batch_size):
                # The batch goes to the policy's device (cuda under train.py --device cuda).
                dist = policy.get_distribution(X[idx].to(policy.device), action_masks=M[idx.numpy()])
                logp = dist.distribution.logits  # normalized log-probabilities, illegal ~ -1e8
                good = Y[idx].to(policy.device)
                loss = -th.logsumexp(logp.masked_fill(~good, -th.inf), dim=1).mean()
                opt.zero_grad()
                loss.backward()
                th.nn.utils.clip_grad_norm_(policy.parameters(), 0.5)
                opt.step()
                losses.append(loss.item())
        policy.set_training_mode(False)
        stats = {"round": rnd, "beta": beta, "samples": float(len(Y)), "loss": float(np.mean(losses[-20:])),
                 "student_agrees": agree / (per_round * E)}
        main = getattr(vec, "table_metrics", ())[:1]
        for k in main:  # the env's headline metric over the episodes this round finished
            vals = [m[k] for m in episodes if k in m]
            if vals:
                stats[f"episode_{k}"] = float(np.mean(vals))
        history.append(stats)
        log("imitation " + " ".join(f"{k}={v:.4g}" for k, v in stats.items()))
    return history
