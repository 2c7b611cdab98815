"""Numba warm-ups of the zoo's seed runs (``agents.zoo.seeds``): each compiles one environment's
kernels (and its teacher's, its generator's) into numba's on-disk cache (``cache=True``) once, before
several training processes would compile them at the same time.

    python -m agents.zoo.warmup NAME      # NAME: a key of WARMUPS

Each warm-up builds a tiny batch and steps it; it prints nothing and exits 0, or raises.
"""

from __future__ import annotations

import sys
from typing import Callable


def kv_admission() -> None:
    import numpy as np

    from envs.kv_admission.env import KVAdmissionVecEnv

    vec = KVAdmissionVecEnv(2, seed=0, window_requests=64)
    vec.reset()
    for _ in range(50):
        vec.step(np.zeros(2, np.int64))


def prefix_eviction() -> None:
    import envs

    vec = envs.make_vec("servegym/PrefixEviction-v0", 2, seed=0, trace="mooncake_conv-v1", window_requests=64,
                        warmup_requests=64, capacity_frac=0.01)
    vec.reset()
    for _ in range(50):
        vec.teacher_values()
        vec.step(vec.teacher_actions())


def expert_placement() -> None:
    import envs

    vec = envs.make_vec("servegym/ExpertPlacement-v0", 2, seed=0, intervals=2)
    vec.reset()
    for _ in range(12):
        vec.step(vec.teacher_actions())


def routing() -> None:
    import envs

    vec = envs.make_vec("servegym/Routing-v0", 2, seed=0, trace="azure_conv-v1", window_requests=64)
    vec.reset()
    for _ in range(80):
        vec.step(vec.teacher_actions())
    vec.teacher_actions("ttft")


def disaggregation() -> None:
    import numpy as np

    from agents.family_vec import family_specs, make_family_vec
    from agents.heuristics import disaggregation as H

    specs = family_specs("servegym/Disaggregation-v0", ["disaggregation/*"], {"phases": 1, "phase_s": 20.0})
    vec = make_family_vec("servegym/Disaggregation-v0", len(specs), 0, specs, "train")
    vec.reset()
    for roles in (H.roles_pd(8, 4, 4), H.roles_pd(8, 4)):
        vec.step(np.tile(np.append(roles, 1), (vec.num_envs, 1)))


def multi() -> None:
    from agents.train_multi import build_vec

    vec = build_vec(["azure_conv-v1"], 1, (0.9,), 0, "sarathi")
    vec.reset()
    for _ in range(40):
        vec.step(vec.teacher_actions())


def autoscale() -> None:
    """Also builds every training family's scenario and the transfer scenarios' (ServeGen's replays,
    minutes each, land in the autoscale disk cache) and the oracle's plans of every training day
    (``references``, cached on disk), once, before the seeds and the leaderboard's workers would each
    compute them."""
    import envs
    from agents.family_vec import training_family_specs
    from agents.scenarios import SCENARIOS
    from envs.autoscale import env as asc

    vec = envs.make_vec(asc.ENV_ID, 2, seed=0, episode_s=600.0, train_days=2, test_days=1)
    vec.reset()
    for _ in range(12):
        vec.step(vec.teacher_actions())
    for f in training_family_specs(asc.ENV_ID, ["all"]):
        v = asc.AutoscaleVecEnv(1, trace=f.trace, split="train", **f.env_kwargs)
        for w in range(v.scenario.arrivals.shape[0]):
            for pen in v.config.penalties():
                asc.references(v.scenario, w, pen, v.n_steps)
    for sc in SCENARIOS:
        if sc.env_id == asc.ENV_ID and sc.track == "transfer" and sc.trace_available()[0]:
            v = asc.AutoscaleVecEnv(1, trace=sc.trace, **sc.env_kwargs)
            for w in range(v.scenario.arrivals.shape[0]):
                asc.references(v.scenario, w, v.config.penalties()[0], v.n_steps)


WARMUPS: dict[str, Callable[[], None]] = {f.__name__: f for f in (
    kv_admission, prefix_eviction, expert_placement, routing, disaggregation, multi, autoscale)}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or argv[0] not in WARMUPS:
        print(f"python -m agents.zoo.warmup: error: NAME {' '.join(argv) or '(none)'}: "
              f"one of {', '.join(WARMUPS)}", file=sys.stderr)
        return 2
    WARMUPS[argv[0]]()
    return 0


if __name__ == "__main__":
    sys.exit(main())
