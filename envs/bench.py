"""Environment throughput: each environment's native batched VecEnv against SB3's DummyVecEnv.

    python -m envs.bench [--env ID] [benchmark flags ...] [--json FILE]

``--env ID`` (default ``servegym/KVAdmission-v0``) hands the remaining arguments to that
environment's benchmark module (``BENCHES``), whose ``--help`` lists the flags it takes.
"""

from __future__ import annotations

import importlib
import sys

# Environment id -> module whose main(argv) benchmarks it.
BENCHES: dict[str, str] = {"servegym/KVAdmission-v0": "envs.kv_admission.bench",
                           "servegym/PrefixEviction-v0": "envs.prefix_eviction.bench",
                           "servegym/Routing-v0": "envs.routing.bench",
                           "servegym/ExpertPlacement-v0": "envs.expert_placement.bench",
                           "servegym/Autoscale-v0": "envs.autoscale.bench",
                           "servegym/Disaggregation-v0": "envs.disaggregation.bench"}
DEFAULT = "servegym/KVAdmission-v0"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    env_id = DEFAULT
    if "--env" in argv:
        i = argv.index("--env")
        if i + 1 >= len(argv) or argv[i + 1] not in BENCHES:
            got = argv[i + 1] if i + 1 < len(argv) else "nothing"
            print(f"python -m envs.bench: --env got {got}; known: {', '.join(BENCHES)}", file=sys.stderr)
            return 2
        env_id = argv[i + 1]
        argv = argv[:i] + argv[i + 2:]
    return importlib.import_module(BENCHES[env_id]).main(argv)


if __name__ == "__main__":
    sys.exit(main())
