"""Residual autoscaling over Kubernetes HPA on servegym/Autoscale-v0: a learned offset from HPA's fleet.

Residual policy learning (Silver et al., "Residual Policy Learning", 2018; Johannink et al., "Residual
Reinforcement Learning for Robot Control", ICRA'19): a controller that production already runs (here HPA,
``agents.heuristics.autoscale.HPA``, with its scale-down stabilisation window and tolerance set by
:func:`base_hpa`) decides the fleet, and the policy adds an offset of -r .. +r replicas of the reference GPU
type to it each control interval. Offset 0 everywhere plays the base HPA's episodes exactly (tested). The
policy sees Autoscale-v0's observation plus the base's fleet per type over ``max_replicas`` (shape
``[E, n_obs + G]``) and picks one of ``2r + 1`` offsets (``Discrete``); its offset-0 logit starts ``prior``
above the others, so PPO explores around the base.

- :class:`HPAResidualVecEnv`: the SB3 VecEnv a residual policy trains in (wraps an Autoscale-v0 VecEnv).
- :class:`HPAResidualPolicy`: a saved residual checkpoint behind the ``agents.policy.Policy`` protocol, acting
  in the plain environment (``--policy FILE`` of agents.evaluate and agents.leaderboard: ``make_policy``
  recognises the checkpoint by its member :data:`MEMBER`).
- :func:`train`: PPO on ``agents.scenarios.TRAINING_FAMILIES`` (``python -m agents.hpa_residual --out DIR``).

``agents.export`` refuses a residual checkpoint: its ONNX graph would not hold the base HPA the offsets act on.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from gymnasium import spaces
from stable_baselines3.common.vec_env import VecEnvWrapper

from agents.heuristics import autoscale as A
from agents.policy_base import PolicyFileError, PolicyMismatch, read_zip_json

ENV_ID = "servegym/Autoscale-v0"
MEMBER = "hpa_residual.json"  # {"base": "hpa", "down_window_s", "tolerance", "max_offset"} inside the SB3 zip
_KEYS = ("base", "down_window_s", "tolerance", "max_offset")
# Kubernetes bounds behavior.scaleDown.stabilizationWindowSeconds at 3600 s (autoscaling/v2 API validation);
# a tolerance of 1 or more never scales down; an offset is at most the replicas a type may run (16 by default).
MAX_WINDOW_S = 3600.0
MAX_OFFSET = 64


def base_hpa(down_window_s: float = A.HPA.DOWN_WINDOW_S, tolerance: float = A.HPA.TOLERANCE) -> type:
    """``agents.heuristics.autoscale.HPA`` with its scale-down window (s, in [0, 3600], Kubernetes' bound) and
    tolerance (in [0, 1)) set (Kubernetes' defaults: 300 s, 0.1). ``ValueError`` naming the argument otherwise."""
    for name, v, hi, closed in (("down_window_s", down_window_s, MAX_WINDOW_S, True), ("tolerance", tolerance, 1.0, False)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v) or v < 0 \
                or (v > hi if closed else v >= hi):
            raise ValueError(f"hpa_residual: {name} must be a finite number in [0, {hi:g}{']' if closed else ')'}, "
                             f"got {v!r}")
    return type("BaseHPA", (A.HPA,), {"DOWN_WINDOW_S": float(down_window_s), "TOLERANCE": float(tolerance)})


def augment(obs: np.ndarray, fleet: np.ndarray, max_n: np.ndarray) -> np.ndarray:
    """The residual policy's observation [E, n_obs + G] (float32): ``obs`` and the base's fleet / max_replicas."""
    return np.concatenate([obs, fleet / max_n], 1).astype(np.float32)


def check_max_offset(v: Any, name: str = "hpa_residual: max_offset") -> int:
    """``v`` as an int; ``ValueError`` naming ``name`` unless it is an integer in [1, MAX_OFFSET]."""
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not 1 <= v <= MAX_OFFSET:
        raise ValueError(f"{name} must be in [1, {MAX_OFFSET}] (an integer), got {v!r}")
    return int(v)


class _Residual:
    """The base HPA of one batch and the offset arithmetic both classes below share."""

    def __init__(self, vec: Any, max_offset: int, base: type):
        self.r = check_max_offset(max_offset)
        self.hpa = base(vec)

    def see(self, obs: np.ndarray) -> np.ndarray:
        """Record ``obs`` [E, n_obs] and the base's fleet for it (one call per observation); the policy's input."""
        self.obs, self.fleet = obs, self.hpa.targets(obs)
        return augment(obs, self.fleet, self.hpa.max_n)

    def actions(self, offsets: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
        """The environment's actions [E] for ``offsets`` [E] in 0 .. 2r (offset - r replicas of the reference type
        on the base's fleet; ``HPA.to_action`` clips to the limits and the step)."""
        t = self.fleet.copy()
        t[:, self.hpa.ref] += np.asarray(offsets, np.int64).reshape(-1) - self.r
        return self.hpa.to_action(self.obs, mask, t)


class HPAResidualVecEnv(VecEnvWrapper):
    """An Autoscale-v0 VecEnv whose actions are offsets from the base HPA's fleet (``Discrete(2r + 1)``, every one
    legal) and whose observation carries that fleet (``Box(n_obs + G)``)."""

    def __init__(self, venv: Any, max_offset: int = 2, base: type = A.HPA):
        self.res = _Residual(venv, max_offset, base)
        n = venv.observation_space.shape[0] + self.res.hpa.G
        super().__init__(venv, spaces.Box(-np.inf, np.inf, (n,), np.float32), spaces.Discrete(2 * self.res.r + 1))

    def reset(self) -> np.ndarray:
        return self.res.see(self.venv.reset())

    def step_async(self, actions: np.ndarray) -> None:
        self.venv.step_async(self.res.actions(actions, self.venv.action_masks()))

    def step_wait(self):
        obs, rew, done, infos = self.venv.step_wait()
        for e in np.flatnonzero(done):  # a finished day's last observation, for its value: the base's fleet is as is
            o = infos[e]["terminal_observation"][None, :]
            infos[e]["terminal_observation"] = augment(o, self.res.hpa.fleet(o), self.res.hpa.max_n)[0]
        return self.res.see(obs), rew, done, infos

    def action_masks(self) -> np.ndarray:
        return np.ones((self.num_envs, 2 * self.res.r + 1), bool)

    def env_method(self, method_name: str, *args, indices=None, **kwargs) -> list[Any]:
        if method_name == "action_masks":
            return list(self.action_masks()[list(self._get_indices(indices))])
        return self.venv.env_method(method_name, *args, indices=indices, **kwargs)


def read_spec(path: str | Path) -> dict[str, Any] | None:
    """The residual record of checkpoint ``path`` (None: no :data:`MEMBER`, a plain checkpoint).
    ``PolicyFileError`` naming the file for an unreadable or malformed record."""
    spec = read_zip_json(path, MEMBER, PolicyFileError)
    if spec is None:
        return None
    if not isinstance(spec, dict) or set(spec) != set(_KEYS) or spec["base"] != "hpa":
        raise PolicyFileError(f"{path}: {MEMBER} must be a JSON object with keys {', '.join(_KEYS)} and base 'hpa', "
                              f"got {spec!r}")
    try:
        base_hpa(spec["down_window_s"], spec["tolerance"])
        check_max_offset(spec["max_offset"])
    except ValueError as err:
        raise PolicyFileError(f"{path}: {MEMBER}: {err}") from None
    return spec


def save(model: Any, path: str | Path, max_offset: int, base: type) -> None:
    """Save ``model`` at ``path`` (``agents.training.atomic_save``: with its observation record) with its residual
    record (:data:`MEMBER`)."""
    from agents.training import atomic_save

    path = Path(path)
    tmp = path.with_name(path.stem + ".res.zip")
    atomic_save(model, tmp, ENV_ID)
    spec = {"base": "hpa", "down_window_s": base.DOWN_WINDOW_S, "tolerance": base.TOLERANCE, "max_offset": max_offset}
    with zipfile.ZipFile(tmp, "a") as z:
        z.writestr(MEMBER, json.dumps(spec))
    tmp.replace(path)


class HPAResidualPolicy:
    """A residual checkpoint acting in the plain Autoscale-v0 environment ``env`` (deterministic offsets)."""

    row_independent = False  # the base HPA keeps each env's scale-down window

    def __init__(self, path: str | Path, env: Any, env_id: str = ENV_ID):
        from agents.obs_version import check_env, check_zip
        from agents.sb3_policy import load_model

        if env_id != ENV_ID:
            raise PolicyMismatch(f"{path}: an HPA-residual checkpoint plays {ENV_ID}, not {env_id}")
        self.path, self.name = Path(path), str(path)
        spec = read_spec(self.path)
        if spec is None:
            raise PolicyFileError(f"{path}: no {MEMBER}: not an HPA-residual checkpoint")
        check_env(self.path, check_zip(self.path), env_id)
        import torch

        torch.set_num_threads(1)
        self.model = load_model(self.path, device="cpu")
        self.res = _Residual(env, spec["max_offset"], base_hpa(spec["down_window_s"], spec["tolerance"]))
        want = (env.observation_space.shape[0] + self.res.hpa.G,)
        if self.model.observation_space.shape != want or self.model.action_space != spaces.Discrete(2 * self.res.r + 1):
            raise PolicyMismatch(f"{path}: trained on observations {self.model.observation_space.shape} and "
                                 f"{self.model.action_space}; this environment needs {want} and "
                                 f"Discrete({2 * self.res.r + 1}) (different gpu_types?)")

    def act(self, obs: np.ndarray, action_mask: np.ndarray | None) -> np.ndarray:
        a, _ = self.model.predict(self.res.see(obs), deterministic=True)
        return self.res.actions(a, action_mask)


def train(out: str | Path, seed: int = 0, timesteps: int = 393_216, n_envs: int = 16, max_offset: int = 2,
          down_window_s: float = 120.0, tolerance: float = 0.1, prior: float = 3.0, ent_coef: float = 0.0,
          penalties: tuple[float, ...] = (0.0003, 0.0006, 0.001)) -> Path:
    """PPO (Autoscale-v0's ``ppo`` hyperparameters, ``ent_coef``) for ``timesteps`` steps on every family of
    ``agents.scenarios.TRAINING_FAMILIES[ENV_ID]`` (``n_envs`` envs each, training split, slo_penalty drawn
    from ``penalties`` per episode), residual over ``base_hpa(down_window_s, tolerance)``; writes
    ``out/final.zip`` and ``out/run.json`` and returns the checkpoint's path."""
    import envs
    import torch as th

    from agents.family_vec import FamilyVecEnv
    from agents.scenarios import TRAINING_FAMILIES
    from agents.training import make_model

    base = base_hpa(down_window_s, tolerance)
    parts, names = [], []
    for k, (name, (trace, kw)) in enumerate(TRAINING_FAMILIES[ENV_ID].items()):
        v = envs.make_vec(ENV_ID, n_envs, seed=seed * 1000 + k * 100, trace=trace, split="train",
                          **{**kw, "slo_penalty": tuple(penalties)})
        parts.append(HPAResidualVecEnv(v, max_offset, base))
        names.append(name)
    vec = FamilyVecEnv(parts, names)
    model = make_model("ppo", ENV_ID, vec, seed, None, {"ent_coef": ent_coef})
    with th.no_grad():
        model.policy.action_net.bias[max_offset] += prior
    t0 = time.perf_counter()
    model.learn(timesteps)
    out = Path(out)
    save(model, out / "final.zip", max_offset, base)
    run = {"command": " ".join(sys.argv), "env": ENV_ID, "seed": seed, "timesteps": int(model.num_timesteps),
           "n_envs_per_family": n_envs, "families": names, "max_offset": max_offset, "down_window_s": down_window_s,
           "tolerance": tolerance, "prior": prior, "ent_coef": ent_coef, "slo_penalties": list(penalties),
           "train_s": time.perf_counter() - t0}
    (out / "run.json").write_text(json.dumps(run, indent=1))
    vec.close()
    return out / "final.zip"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser("python -m agents.hpa_residual", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="folder for final.zip and run.json")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timesteps", type=int, default=393_216)
    p.add_argument("--n-envs", type=int, default=16, help="envs per training family")
    p.add_argument("--max-offset", type=int, default=2, help="largest offset r (replicas) from the base's fleet")
    p.add_argument("--down-window", type=float, default=120.0, help="the base HPA's scale-down window (s)")
    p.add_argument("--tolerance", type=float, default=0.1, help="the base HPA's tolerance")
    p.add_argument("--prior", type=float, default=3.0, help="offset 0's initial logit over the others'")
    p.add_argument("--ent-coef", type=float, default=0.0)
    p.add_argument("--penalties", type=float, nargs="+", default=[0.0003, 0.0006, 0.001],
                   help="slo_penalty values (dollars per missed request) training episodes draw from")
    a = p.parse_args(argv)
    for name in ("timesteps", "n_envs"):
        if getattr(a, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(a, name)}")
    if a.seed < 0:
        p.error(f"--seed must be >= 0, got {a.seed}")
    if not np.isfinite(a.prior):
        p.error(f"--prior must be a finite number, got {a.prior}")
    if not (np.isfinite(a.ent_coef) and a.ent_coef >= 0):
        p.error(f"--ent-coef must be a finite number >= 0, got {a.ent_coef}")
    if not all(np.isfinite(x) and x > 0 for x in a.penalties):
        p.error(f"--penalties must be finite numbers > 0, got {a.penalties}")
    try:
        check_max_offset(a.max_offset, "--max-offset")
        base_hpa(a.down_window, a.tolerance)
    except ValueError as err:
        p.error(str(err))
    out = Path(a.out)
    if not a.out.strip():
        p.error("--out must name a folder, got ''")
    try:  # before the minutes of training, not at the save
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        p.error(f"--out {a.out}: cannot be made a folder ({err.strerror or err})")
    path = train(a.out, a.seed, a.timesteps, a.n_envs, a.max_offset, a.down_window, a.tolerance, a.prior,
                 a.ent_coef, tuple(a.penalties))
    print(f"saved {path}")


if __name__ == "__main__":
    main()
