"""Digests of everything KVAdmission-v0 emits for fixed seeds (issue 16, the steady-state step work).

    PYTHONPATH=$PWD python tests/golden/record_i16kv.py [--check FILE] [--out FILE]

Each case steps a seeded batch with seeded random legal actions, or with vLLM's fixed action
(admit all, 8192 budget: the benchmark's steady state, large batches), and hashes (SHA-256, as
``record_i16b.py``) the observations, masks, rewards, dones and every info (metrics and request
records included, floats by their exact bytes), then the whole cluster state (lazy decoders
written back) and the observation's working memory. The ``run_fixed`` case replays the fixed action
in kernel calls. Recorded before a change and checked after it: ``--check FILE`` prints every case
that differs and exits 1. Digests are of one machine's floating point, so this is a tool to run
beside a change, not a CI test (``tests/test_kernel_parity.py`` and ``tests/test_kv_admission_lazy.py``
keep the reference paths).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from record_i16b import Digest, cli, play, state_digest  # noqa: E402

# name, config fields, E, steps, policy ("random" legal actions, "vllm" fixed, "run_fixed" in the kernel)
CASES = [
    ("default", {}, 4, 600, "random"),
    ("default_vllm", {}, 3, 2500, "vllm"),
    ("small_windows", {"window_requests": 64}, 5, 1500, "random"),
    ("small_vllm", {"window_requests": 128, "load": (1.5, 2.5)}, 4, 3000, "vllm"),
    ("high_load_drops", {"load": 2.5, "queue_slots": 16, "window_requests": 96}, 4, 1200, "random"),
    ("p99_tbt", {"slo_metric": "p99_tbt", "window_requests": 64}, 3, 1200, "random"),
    ("candidates_1", {"candidates": 1, "window_requests": 64}, 3, 1000, "random"),
    ("candidates_16", {"candidates": 16, "window_requests": 128}, 3, 1500, "vllm"),
    ("rate_scale", {"rate_scale": 3.0, "window_requests": 64}, 3, 1000, "random"),
    ("mixture", {"workloads": ("mooncake_conv", "azure_conv"), "window_requests": 64}, 3, 1000, "random"),
    ("prefix_cache", {"trace": "mooncake_conv", "prefix_caching": True, "window_requests": 64}, 3, 1000, "random"),
    ("sequential", {"window_order": "sequential", "split": "test", "window_requests": 64}, 4, 1000, "random"),
    ("run_fixed", {"window_requests": 96}, 4, 4000, "run_fixed"),
]


# The observation's working memory hashed: ObsScratch's fields as recorded in i16kv_main.json, less
# ``mark``. Those added since (pos_g, pos_l, pos_b, pos_ok: per-position constants of the running
# requests that fill_obs keeps to skip their per-slot loads) are caches of the state, every use of
# which shows in the hashed observations and order. ``mark`` only tells, within one call, which slots
# that call placed (a slot counts as marked only at the call's own stamp, which is hashed); since
# issue 16's eighth pass step_all's calls no longer write marks (they take the admitted from the
# running list's tail), so its stale entries differ from main's while every order is the same.
SCRATCH_FIELDS = ("order", "n_order", "stamp", "rem", "length", "suf", "heads", "head_seq", "peak", "extra_len")


def _play_fixed(vec, steps: int, kernel: bool) -> str:
    from envs.kv_admission import bench as kb

    d = Digest()
    d.arr(vec.reset())
    a = np.full(vec.num_envs, kb.VLLM_ACTION)
    done_steps = 0
    while done_steps < steps:
        if kernel:
            n, (obs, r, done, infos) = vec.run_fixed(kb.VLLM_ACTION, steps - done_steps)
            d.h.update(str(n).encode())
        else:
            n, (obs, r, done, infos) = 1, vec.step(a)
        done_steps += n
        d.arr(vec.action_masks()), d.arr(obs), d.arr(r), d.arr(done)
        for i in infos:
            d.obj(i)
    return d.hex()


def kv_cases() -> dict[str, str]:
    from envs.kv_admission import env as kva

    out = {}
    for name, kw, E, steps, policy in CASES:
        vec = kva.KVAdmissionVecEnv(E, seed=5, **kw)
        h = play(vec, steps, 11) if policy == "random" else _play_fixed(vec, steps, policy == "run_fixed")
        out[f"kv/{name}"] = state_digest(h, vec.state, [getattr(vec._scratch, f) for f in SCRATCH_FIELDS])
        print(name, out[f"kv/{name}"][:16], flush=True)
    return out


if __name__ == "__main__":
    sys.exit(cli(kv_cases))
