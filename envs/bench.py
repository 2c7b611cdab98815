"""Environment throughput: each environment's native batched VecEnv against SB3's DummyVecEnv.

    python -m envs.bench [--env ID] [benchmark flags ...] [--json FILE]
    python -m envs.bench --help               # every environment and the flags its benchmark takes
    python -m envs.bench --env ID --help      # one environment's benchmark

``--env`` (default ``servegym/KVAdmission-v0``; the id, the short name or the package name)
hands the remaining arguments to that environment's benchmark module (``BENCHES``).
"""

from __future__ import annotations

import importlib
import sys

from envs import options
from envs.options import Parser

# Environment id -> module whose build_parser() and main(argv) benchmark it.
BENCHES: dict[str, str] = {"servegym/KVAdmission-v0": "envs.kv_admission.bench",
                           "servegym/PrefixEviction-v0": "envs.prefix_eviction.bench",
                           "servegym/Routing-v0": "envs.routing.bench",
                           "servegym/ExpertPlacement-v0": "envs.expert_placement.bench",
                           "servegym/Autoscale-v0": "envs.autoscale.bench"}
DEFAULT = "servegym/KVAdmission-v0"
PROG = "python -m envs.bench"


def parser_of(env_id: str) -> Parser:
    """The argument parser of ``env_id``'s benchmark."""
    return importlib.import_module(BENCHES[env_id]).build_parser()


def overview() -> str:
    """``python -m envs.bench --help``: what the command does and, per environment, only the flags
    its benchmark takes (read from each benchmark's own parser)."""
    parts = [__doc__.strip(), "", "environments and the flags each benchmark takes:"]
    for env_id in BENCHES:
        p = parser_of(env_id)
        p.description = None
        parts += ["", f"--env {env_id} ({options.short_name(env_id)}, {options.package_name(env_id)}):",
                  p.format_help().rstrip()]
    return "\n".join(parts) + "\n"


def split_env(argv: list[str]) -> tuple[str | None, list[str]]:
    """``--env VALUE`` / ``--env=VALUE`` taken out of ``argv``: (the value or None, the rest)."""
    for i, arg in enumerate(argv):
        if arg == "--env":
            if i + 1 >= len(argv) or argv[i + 1].startswith("-"):
                Parser(prog=PROG).error("argument --env: expected one argument")
            return argv[i + 1], argv[:i] + argv[i + 2:]
        if arg.startswith("--env="):
            return arg.split("=", 1)[1], argv[:i] + argv[i + 1:]
    return None, argv


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    name, rest = split_env(argv)
    if name is None and any(x in ("-h", "--help") for x in rest):
        print(overview(), end="")
        return 0
    env_id = DEFAULT
    if name is not None:
        try:
            env_id = options.resolve_env_id(name)
        except ValueError as err:
            Parser(prog=PROG).error(f"argument --env: {err}")
    if env_id not in BENCHES:
        Parser(prog=PROG).error(f"argument --env: {env_id} has no benchmark; environments with one: "
                                f"{', '.join(BENCHES)}")
    return importlib.import_module(BENCHES[env_id]).main(rest)


if __name__ == "__main__":
    sys.exit(main())
