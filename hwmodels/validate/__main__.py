"""``python -m hwmodels.validate run|compare|fit|report|waves|window|comm`` (see hwmodels/validate/__init__.py)."""

from __future__ import annotations

import sys

ANALYSES = ("compare", "fit", "report", "waves")  # CPU commands over recorded runs: bad input ends in one line, exit 2


def main(argv: list[str] | None = None) -> int:
    from . import __doc__ as doc

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(doc)
        return 0 if argv else 2
    cmd, rest = argv[0], argv[1:]
    if cmd not in ANALYSES:  # the GPU commands keep their tracebacks
        return _dispatch(cmd, rest)
    try:
        return _dispatch(cmd, rest)
    except (ValueError, OSError) as e:  # bad --data / --json, malformed or truncated run files
        print(f"python -m hwmodels.validate {cmd}: error: {e}", file=sys.stderr)
        return 2


def _dispatch(cmd: str, rest: list[str]) -> int:
    if cmd == "run":
        from . import run
        return run.main(rest)
    if cmd == "window":
        from . import window
        return window.main(rest)
    if cmd == "comm":
        from . import comm_bench
        return comm_bench.main(rest)
    if cmd == "fit":
        from . import fit
        return fit.main(rest)
    if cmd == "waves":
        from . import waves
        return waves.main(rest)
    if cmd == "compare":
        from . import compare  # the one module of hwmodels that imports envs (the simulator)
        return compare.main(rest)
    if cmd == "report":
        from . import report
        return report.main(rest)
    print(f"validate: unknown command {cmd!r}; expected run, compare, fit, report, waves, window or comm",
          file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
