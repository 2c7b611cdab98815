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


WARMUPS: dict[str, Callable[[], None]] = {f.__name__: f for f in (
    kv_admission, prefix_eviction, expert_placement, routing, disaggregation, multi)}


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
