"""Digests of everything Routing-v0 emits for fixed seeds (issue 16, the batched-step work).

    PYTHONPATH=$PWD python tests/golden/record_i16rt.py [--check FILE] [--out FILE]

Each case steps a seeded batch with seeded random legal actions and hashes (SHA-256, as
``record_i16b.py``) the observations, masks, rewards, dones and every info (metrics and request
records included, floats by their exact bytes), then the whole cluster state. Recorded before a
change and checked after it: ``--check FILE`` prints every case that differs and exits 1. Digests
are of one machine's floating point, so this is a tool to run beside a change, not a CI test
(``tests/test_kernel_parity.py`` keeps the reference path).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from record_i16b import cli, play, state_digest  # noqa: E402

CASES = [
    ("default", {}, 4, 300),
    ("small_windows", {"window_requests": 48}, 5, 400),
    ("stale", {"stale_s": 0.5, "window_requests": 64}, 3, 300),
    ("high_load_drops", {"load": 2.5, "queue_slots": 8, "window_requests": 96}, 4, 400),
    ("rate_scale", {"rate_scale": 3.0, "window_requests": 64}, 3, 250),
    ("no_cache_p99", {"prefix_caching": False, "slo_metric": "p99_tbt", "window_requests": 64}, 3, 250),
    ("no_bound", {"ttft_bound_penalty": 0.0, "replicas": 3, "window_requests": 64}, 3, 250),
    ("mixture", {"workloads": ("mooncake_conv", "azure_conv"), "window_requests": 64}, 3, 250),
    ("sequential", {"window_order": "sequential", "split": "test", "window_requests": 64}, 4, 300),
]


def rt_cases() -> dict[str, str]:
    from envs.routing import env as rt

    out = {}
    for name, kw, E, steps in CASES:
        vec = rt.RoutingVecEnv(E, seed=3, **kw)
        h = play(vec, steps, 7)
        out[f"rt/{name}"] = state_digest(h, vec.state, (vec._ttft_ema, vec._busy, vec._snap, vec._snap_t, vec._sent,
                                                           vec._charged, vec._first_open))
        print(name, out[f"rt/{name}"][:16], flush=True)
    return out


if __name__ == "__main__":
    sys.exit(cli(rt_cases))
