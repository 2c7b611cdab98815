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

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from record_i16b import Digest, play, write_and_check  # noqa: E402

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
        d = Digest()
        d.h.update(h.encode())
        for k, v in vec.state._asdict().items():
            d.h.update(k.encode())
            d.arr(v)
        for a in (vec._ttft_ema, vec._busy, vec._snap, vec._snap_t, vec._sent, vec._charged, vec._first_open):
            d.arr(a)
        out[f"rt/{name}"] = d.hex()
        print(name, out[f"rt/{name}"][:16], flush=True)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--out")
    p.add_argument("--check")
    a = p.parse_args(argv)
    return write_and_check(rt_cases(), a.out, a.check)


if __name__ == "__main__":
    sys.exit(main())
