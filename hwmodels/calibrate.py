"""Calibrate the step-time model on a real GPU: ``measure``, ``fit``, ``report``.

    python -m hwmodels.calibrate measure --out DIR     # on a CUDA machine (resumable)
    python -m hwmodels.calibrate fit                   # fit on the training split, write TOML
    python -m hwmodels.calibrate report [--json FILE]  # held-out error per category
    python -m hwmodels.calibrate ablate                # the same without the terms the fit added
    python -m hwmodels.calibrate plot                  # predicted vs measured PNG

The raw measurements live in ``hwmodels/calibration/`` (CSV + environment.json).
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    cmd, rest = argv[0], argv[1:]
    if cmd == "measure":
        from hwmodels import calibrate_measure

        return calibrate_measure.main(rest)
    if cmd in ("fit", "report", "plot", "ablate"):
        from hwmodels import calibrate_fit

        return calibrate_fit.main([cmd, *rest])
    print(f"calibrate: unknown command {cmd!r}; expected measure, fit or report", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
