"""PrefixEviction-v0 throughput under its learned agent: references simulated per second.

    python -m agents.bench_learned [--sizes 1 16 256] [--repeats 3] [--steps 40000] [--json FILE]

``python -m envs.bench --env servegym/PrefixEviction-v0`` (the same flags and rows) plus, per
batch size, ``refs_per_s_learned``: the zoo agent through SB3/torch, and
``refs_per_s_learned_onnx``: the same agent exported to ONNX (``agents.export``) run by
onnxruntime; decisions round-trip through Python and forward passes are included.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from agents.export import export
from agents.policy import make_policy
from envs.prefix_eviction import bench
from envs.prefix_eviction import env as pe


def main(argv: list[str] | None = None) -> int:
    prog = "python -m agents.bench_learned"
    bench.build_parser(prog).parse_args(argv)  # --help and bad flags before the minute-long export
    onnx_path = Path(tempfile.mkdtemp()) / "prefix_eviction_zoo.onnx"
    print(f"{prog}: exporting the zoo agent to {onnx_path} ...", file=sys.stderr, flush=True)
    export(pe.ENV_ID, "zoo", onnx_path, progress=True)
    policies = {"learned": lambda vec: make_policy("zoo", vec, pe.ENV_ID).act,
                "learned_onnx": lambda vec: make_policy(str(onnx_path), vec, pe.ENV_ID).act}
    return bench.main(argv, policies, prog=prog)


if __name__ == "__main__":
    sys.exit(main())
