"""DAgger from a privileged teacher into an SB3 maskable policy (Discrete or MultiDiscrete actions).

Ross, Gordon & Bagnell, "A Reduction of Imitation Learning and Structured Prediction to No-Regret
Online Learning" (AISTATS 2011). Round 0 follows the teacher; round i lets the student act with
probability 1 - 0.5^i, and every visited state is labelled with the teacher's action, so the
student learns the teacher's choice on the states its own mistakes lead to.

Loss. Discrete actions: -log of the probability the masked policy puts on the set of actions the
teacher accepts (its ``teacher_targets()`` where it has them, else its one action). With
``target="values"`` (an env with ``teacher_values()``, PrefixEviction-v0: each candidate's log
next-use distance): the mean squared error between the policy's raw per-action scores (its logits
before normalization) and those values over the legal actions, so the greedy action is the
largest predicted value (LRB's regression of the time to the next request, Song et al. NSDI'20,
in place of classifying Belady's one choice, whose ties among never-reused blocks are arbitrary). MultiDiscrete
actions (Disaggregation-v0: a role per instance and a dispatch rule): -sum over components of the
log-probability of the teacher's choice for that component (the policy's components are
independent categoricals, so this is -log p(teacher's action)); a component whose teacher choice
the mask forbids (an instance that is switching may only keep its target) is left out of the sum.

The teacher is the env's ``teacher_actions()`` (PrefixEviction-v0: Belady's choice among the
current candidates, which reads next-use times; Routing-v0: each replica replayed alone with and
without the request on the true output lengths, ``envs/routing/teacher.py``) or a callable
``teacher(obs, masks) -> actions`` (Disaggregation-v0: ``agents.disaggregation_teacher``, which
replays the episode; KVAdmission-v0: ``agents.kv_admission_teacher``, the action of the episode's
best schedule in hindsight). It is
privileged: it labels training states, the student only ever sees the observation. The result is
an ordinary checkpoint of the same algorithm, which RL can go on training
(``train.py --imitate N --timesteps M``).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch as th
from gymnasium import spaces

from traces.checks import is_integer, is_real, positive_real

Teacher = Callable[[np.ndarray, np.ndarray], np.ndarray]
# Environments whose teacher lives in agents (it replays the simulator, which the env layer does not
# do for itself): id -> "module:function(vec, data_path, procs) -> teacher callable".
TEACHERS = {"servegym/Disaggregation-v0": "agents.disaggregation_teacher:teacher_for",
            "servegym/KVAdmission-v0": "agents.kv_admission_teacher:teacher_for"}


def has_teacher(env_id: str, vec_class: type) -> bool:
    """Whether DAgger can teach ``env_id``: the env's own ``teacher_actions`` or a ``TEACHERS`` entry."""
    return hasattr(vec_class, "teacher_actions") or env_id in TEACHERS


def _teaches_itself(vec: Any) -> bool:
    """``vec`` has its own ``teacher_actions()``; a FamilyVecEnv only where every part has one (its
    Disaggregation-v0 parts have none: their teacher is TEACHERS')."""
    return hasattr(vec, "teacher_actions") and all(hasattr(p, "teacher_actions") for p in getattr(vec, "parts", ()))


def teacher_for(env_id: str, vec: Any, data_path: Any = None, procs: int = 1) -> Teacher | None:
    """The ``TEACHERS`` teacher of ``env_id`` built on ``vec`` (None: the env's own
    ``teacher_actions``, which ``imitate`` uses by default)."""
    if env_id not in TEACHERS or _teaches_itself(vec):
        return None
    import importlib

    module, fn = TEACHERS[env_id].split(":")
    return getattr(importlib.import_module(module), fn)(vec, data_path, procs)


def _good_actions(vec: Any, teacher: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Every action the teacher accepts [E, A]: its ``teacher_targets()`` where it has them (a
    set: e.g. every block not needed soon), else the one-hot of its action."""
    if hasattr(vec, "teacher_targets"):
        return np.asarray(vec.teacher_targets(), bool)
    good = np.zeros(shape, bool)
    good[np.arange(shape[0]), teacher] = True
    return good


def component_legal(actions: np.ndarray, masks: np.ndarray, nvec: np.ndarray) -> np.ndarray:
    """Whether each component of MultiDiscrete ``actions`` [E, C] is allowed by the flat
    ``masks`` [E, sum(nvec)] (SB3-contrib's layout: the components' masks one after another)."""
    offsets = np.concatenate([[0], np.cumsum(nvec)[:-1]])
    return masks[np.arange(len(actions))[:, None], offsets[None, :] + actions]


def _label(vec: Any, teacher: np.ndarray, mask: np.ndarray, multi: np.ndarray | None) -> np.ndarray:
    """Discrete: the good-action set [E, A] (bool); MultiDiscrete: the teacher's action with -1
    in the components the mask forbids [E, C] (int64)."""
    if multi is None:
        return _good_actions(vec, teacher, mask.shape)
    return np.where(component_legal(teacher, mask, multi), teacher, -1).astype(np.int64)


def _agrees(label: np.ndarray, student: np.ndarray, multi: np.ndarray | None) -> np.ndarray:
    """Per env [E]: the student's action is one the teacher accepts (MultiDiscrete: every
    labelled component equal)."""
    if multi is None:
        return label[np.arange(len(label)), student]
    return np.all((label < 0) | (label == student), axis=1)


def _scores(policy: Any, obs: th.Tensor) -> th.Tensor:
    """Raw action scores [B, A] of an SB3 actor-critic policy: its action head before the
    categorical's normalization (which shifts each row by a constant)."""
    features = policy.extract_features(obs, policy.pi_features_extractor)
    return policy.action_net(policy.mlp_extractor.forward_actor(features))


def _value_loss(policy: Any, obs: th.Tensor, mask: th.Tensor, values: th.Tensor) -> th.Tensor:
    """Masked mean squared error between the raw scores and the teacher's values."""
    err = (_scores(policy, obs) - values) ** 2
    m = mask.to(err.dtype)
    return (err * m).sum() / m.sum().clamp(min=1.0)


def _loss(dist: Any, label: th.Tensor, multi: np.ndarray | None) -> th.Tensor:
    if multi is None:
        logp = dist.distribution.logits  # normalized log-probabilities, illegal ~ -1e8
        return -th.logsumexp(logp.masked_fill(~label, -th.inf), dim=1).mean()
    total = th.zeros(label.shape[0], device=label.device)
    for c, cat in enumerate(dist.distributions):  # one MaskableCategorical per component
        y = label[:, c]
        ok = y >= 0
        logp = cat.logits.gather(1, y.clamp(min=0)[:, None])[:, 0]
        total = total - th.where(ok, logp, th.zeros_like(logp))
    return total.mean()


def imitate(model: Any, vec: Any, steps: int, rounds: int = 6, epochs: int = 4, batch_size: int = 1024,
            learning_rate: float = 1e-3, seed: int = 0, log: Any = print,
            teacher: Teacher | None = None, target: str = "set",
            max_grad_norm: float | None = 0.5, beta0: float = 1.0,
            roll_in: str = "teacher") -> list[dict[str, float]]:
    """Run DAgger for ``steps`` labelled decisions (over all envs) and return per-round stats
    (``round``, ``beta``, ``samples``, ``loss`` (mean of the round's last 20 minibatches),
    ``student_agrees`` (share of decisions where the student's greedy action is the teacher's),
    and the env's headline metric over the episodes the round finished).

    ``teacher``: ``teacher(obs [E, n_obs], masks [E, n_mask]) -> actions`` (Discrete [E],
    MultiDiscrete [E, C]); default the env's ``teacher_actions()``. ``target``: ``"set"`` (the
    loss on the accepted actions, module docstring) or ``"values"`` (regression on the env's
    ``teacher_values()``; Discrete only; the teacher's action still drives round 0's mixing and
    ``student_agrees``). ``max_grad_norm``: each minibatch's gradient is clipped to this global L2
    norm (``torch.nn.utils.clip_grad_norm_``; 0.5, SB3's PPO default, keeps the recipes trained
    before it was an argument reproducible), None for no clipping. ``beta0``: the teacher's share of
    round 0's actions; round i's is ``beta0 * 0.5**i`` (1.0, Ross et al.'s schedule, keeps the recipes
    trained before it was an argument; 0.0 lets the student act from the first step, so no labelled state
    comes from the teacher's own trajectory: on PrefixEviction-v0's agentic family Belady's states hold
    only the old blocks that will be reused, and a fit to them learns the reverse of LRU's order,
    envs/prefix_eviction/README.md). ``roll_in``: who acts in that share: ``"teacher"`` (its action) or
    ``"first"`` (the first legal action: the env's own ranking's choice, PrefixEviction-v0's LRU victim),
    so the labelled states are those a plain heuristic reaches, not the oracle's. Raises ``ValueError`` when there
    is no teacher, for fewer steps than one per env per round, for an action space other than
    Discrete / MultiDiscrete, for a ``target`` the env cannot give, for ``rounds`` / ``epochs`` /
    ``batch_size`` not an integer >= 1, a ``learning_rate`` not finite and > 0, a
    ``max_grad_norm`` that is not None or finite and > 0, a ``beta0`` outside [0, 1], or a ``roll_in``
    other than "teacher" / "first" (or "first" with MultiDiscrete actions)."""
    if teacher is None:
        if not hasattr(vec, "teacher_actions"):
            raise ValueError(f"imitate: {type(vec).__name__} has no privileged teacher_actions()")
        teacher = lambda obs, mask: vec.teacher_actions()  # noqa: E731
    for name, v in (("rounds", rounds), ("epochs", epochs), ("batch_size", batch_size)):
        if not is_integer(v) or v < 1:
            raise ValueError(f"imitate: {name} must be an integer >= 1, got {v!r}")
    if not is_real(beta0) or not 0.0 <= beta0 <= 1.0:
        raise ValueError(f"imitate: beta0 must be a number in [0, 1], got {beta0!r}")
    learning_rate = positive_real(learning_rate, "imitate: learning_rate")
    if steps < rounds * vec.num_envs:
        raise ValueError(f"imitate: steps={steps} is fewer than one step per env per round "
                         f"({rounds} rounds x {vec.num_envs} envs)")
    space = vec.action_space
    if isinstance(space, spaces.MultiDiscrete):
        multi = np.asarray(space.nvec, np.int64).ravel()
    elif isinstance(space, spaces.Discrete):
        multi = None
    else:
        raise ValueError(f"imitate: needs a Discrete or MultiDiscrete action space, got {space}")
    if target not in ("set", "values"):
        raise ValueError(f"imitate: target must be 'set' or 'values', got {target!r}")
    max_grad_norm = positive_real(max_grad_norm, "imitate: max_grad_norm", none_ok=True)
    values = target == "values"
    if roll_in not in ("teacher", "first") or (roll_in == "first" and multi is not None):
        raise ValueError(f"imitate: roll_in must be 'teacher' or 'first' (Discrete only), got {roll_in!r}")
    if values and (multi is not None or not hasattr(vec, "teacher_values")):
        raise ValueError(f"imitate: target='values' needs a Discrete env with teacher_values(); "
                         f"{type(vec).__name__} has {'none' if multi is None else 'a MultiDiscrete action space'}")
    policy = model.policy
    opt = th.optim.Adam(policy.parameters(), lr=learning_rate)
    rng = np.random.default_rng(seed)
    E = vec.num_envs
    per_round = steps // (rounds * E)
    obs_buf, mask_buf, label_buf, value_buf = [], [], [], []
    history: list[dict[str, float]] = []
    obs = vec.reset()
    for rnd in range(rounds):
        beta = beta0 * 0.5 ** rnd
        agree, episodes = 0, []
        for _ in range(per_round):
            mask = vec.action_masks()
            taught = np.asarray(teacher(obs, mask), np.int64)
            label = _label(vec, taught, mask, multi)
            student, _ = model.predict(obs, action_masks=mask, deterministic=True)
            agree += int(np.sum(_agrees(label, student, multi)))
            obs_buf.append(obs.copy())
            mask_buf.append(mask.copy())
            label_buf.append(label)
            if values:
                value_buf.append(np.asarray(vec.teacher_values(), np.float32))
            pick = rng.random(E) < beta
            lead = taught if roll_in == "teacher" else np.argmax(mask, axis=1)
            act = np.where(pick if multi is None else pick[:, None], lead, student)
            obs, _, _, infos = vec.step(act)
            episodes += [i["metrics"] for i in infos if "metrics" in i]
        X = th.as_tensor(np.concatenate(obs_buf))
        M = np.concatenate(mask_buf)
        Y = th.as_tensor(np.concatenate(label_buf))
        V = th.as_tensor(np.concatenate(value_buf)) if values else None
        losses = []
        policy.set_training_mode(True)
        for _ in range(epochs):
            for idx in th.randperm(len(Y), generator=th.Generator().manual_seed(seed + rnd)).split(batch_size):
                # The batch goes to the policy's device (cuda under train.py --device cuda).
                if values:
                    loss = _value_loss(policy, X[idx].to(policy.device), th.as_tensor(M[idx.numpy()]).to(policy.device),
                                       V[idx].to(policy.device))
                else:
                    dist = policy.get_distribution(X[idx].to(policy.device), action_masks=M[idx.numpy()])
                    loss = _loss(dist, Y[idx].to(policy.device), multi)
                opt.zero_grad()
                loss.backward()
                if max_grad_norm is not None:
                    th.nn.utils.clip_grad_norm_(policy.parameters(), max_grad_norm)
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
