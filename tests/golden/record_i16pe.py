"""Digests of everything PrefixEviction-v0 emits for fixed seeds (issue 16, its native-step pass).

    PYTHONPATH=$PWD python tests/golden/record_i16pe.py [--check FILE] [--out FILE]
    PYTHONPATH=$PWD python tests/golden/record_i16pe.py --check tests/golden/i16pe_main.json  # recorded at 04c1ff8

Each case steps a seeded batch with seeded random legal actions and hashes (SHA-256, as
``record_i16b.py``) the observations, masks, rewards, dones and every info (metrics included,
floats by their exact bytes), then the whole kernel state and the env's working arrays
(candidates, windows, capacities). The cases cover the benchmark's batch (E = 256, capacity_frac
0.05) under three seeds, the default sweep of capacities, both candidate sets, flat mode, leaf-only
off, a held-out sequential split, a workload mixture, the teacher targets, every ranking as a
decider and natively. Recorded before a change and checked after it: ``--check FILE`` prints every
case that differs and exits 1. Digests are of one machine's floating point, so this is a tool to
run beside a change, not a CI test.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from record_i16b import Digest, cli, play  # noqa: E402

# The state fields the digests cover: those of the kernel state before this pass (a field added since,
# such as a packed copy of others, is derived; its consistency is tested in tests/test_prefix_eviction_kernels.py).
FIELDS = ("iv", "fv", "where", "desc", "n_evict", "g_in", "g_prev", "g_next", "key", "free", "lru_prev", "lru_next",
          "q_prev", "q_next", "heap", "hpos", "k1", "k2", "ins_t", "last_t", "prev_t", "next_use", "freq", "pin",
          "tenant", "s3f", "s3q", "hit_tok")

SMALL = {"window_requests": 40, "warmup_requests": 40}
# (name, config, E, steps, seed, ranking or None, native)
CASES = [
    ("bench_s0", {"capacity_frac": 0.05}, 256, 60, 0, None, False),
    ("bench_s1", {"capacity_frac": 0.05}, 256, 60, 1, None, False),
    ("bench_s9", {"capacity_frac": 0.05, "window_requests": 120, "warmup_requests": 200}, 256, 300, 9, None, False),
    ("default_sweep", {"window_requests": 60}, 8, 600, 3, None, False),
    ("lru_set", {"candidate_set": "lru", **SMALL}, 6, 500, 4, None, False),
    ("k4", {"candidates": 4, **SMALL}, 6, 500, 5, None, False),
    ("flat", {"chain": False, **SMALL}, 6, 500, 6, None, False),
    ("flat_lru_set", {"chain": False, "candidate_set": "lru", **SMALL}, 6, 400, 7, None, False),
    ("no_leaf", {"evict_leaves_only": False, **SMALL}, 6, 500, 8, None, False),
    ("seq_test", {"window_order": "sequential", "split": "test", **SMALL}, 5, 400, 2, None, False),
    ("mixture", {"workloads": ("mooncake_conv", "agentic"), **SMALL}, 5, 400, 1, None, False),
] + [(f"rank_{r}", SMALL, 4, 250, 3, r, False) for r in
     ("lru", "lru_leaf", "fifo", "lfu", "gdsf", "belady", "s3fifo")] + [
    (f"native_{r}", SMALL, 4, 12, 3, r, True) for r in ("lru", "lru_leaf", "fifo", "lfu", "gdsf", "belady", "s3fifo")]


def pe_cases() -> dict[str, str]:
    from envs.prefix_eviction import env as pe

    out = {}
    for name, kw, E, steps, seed, ranking, native in CASES:
        vec = pe.PrefixEvictionVecEnv(E, seed=seed, **kw)
        if ranking:
            vec.set_ranking(ranking, native=native)
        h = play(vec, steps, seed + 7)
        d = Digest()
        d.h.update(h.encode())
        if not native:  # the privileged teacher channels at the last decision
            d.arr(vec.teacher_actions()), d.arr(vec.teacher_targets()), d.arr(vec.teacher_values())
        for k in FIELDS:
            d.h.update(k.encode())
            d.arr(getattr(vec.state, k))
        for a in (vec._obs, vec._mask, vec._cands, vec._noop, vec._noop_reward, vec._win, vec._cap, vec._frac,
                  vec._returns, vec._lengths):
            d.arr(a)
        out[f"pe/{name}"] = d.hex()
        print(name, out[f"pe/{name}"][:16], flush=True)
    return out


if __name__ == "__main__":
    sys.exit(cli(pe_cases))
