"""The held-out evaluation of ``train.py``, played for each snapshot a run kept (``--snapshots``).

    python -m agents.snapshot_eval DIR [DIR ...]

For every ``DIR/steps_N.zip`` of a ``train.py --snapshots`` run, the evaluation ``train.py`` gives its
final model (``agents.train``: the run's own trace and ``--env-kwargs``, or ``--eval-at``, ``--eval-episodes``
held-out episodes from seed ``--seed`` + 10000) played by the snapshot alone: the trained agent's row of
the ``eval.json`` a run of ``--timesteps N`` would write (the snapshot is that run's final model:
``agents.training.SnapshotCallback``). Writes ``DIR/eval_steps_N.json`` (``agents.evaluate``'s report)
and prints one line per snapshot: ``DIR N slo_attainment return_mean``. Runs of ``--scenarios``,
``--slo-tiers`` or ``--families`` (several evaluations) are refused, as is a directory without ``run.json``
or snapshots.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from agents import cli
from agents.evaluate import evaluate, report_json
from agents.train import EVAL_SEED_OFFSET, EVAL_SPLIT, build_parser, env_settings, eval_runs
from agents.training import atomic_write_text


def snapshot_args(run_dir: Path) -> tuple[argparse.Namespace, dict, dict[int, Path]]:
    """``(train.py's arguments, its env kwargs, {N: DIR/steps_N.zip})`` of the run in ``run_dir``, read
    from its ``run.json``; ``ValueError`` naming ``run_dir`` when there is no ``run.json``, no snapshot,
    or the run trained on several families (``--scenarios``, ``--slo-tiers``, ``--families``)."""
    if run_dir.exists() and not run_dir.is_dir():  # a file here was a NotADirectoryError traceback
        raise ValueError(f"{run_dir}: not a directory (a train.py --out directory)")
    try:
        run = json.loads((run_dir / "run.json").read_text())
    except FileNotFoundError:
        raise ValueError(f"{run_dir}: no run.json (not a train.py output directory)") from None
    except json.JSONDecodeError as err:  # was reported without naming the file
        raise ValueError(f"{run_dir / 'run.json'}: not valid JSON ({err})") from None
    if not isinstance(run, dict) or not isinstance(run.get("command"), str):
        raise ValueError(f"{run_dir / 'run.json'}: no 'command' (not a train.py run record)")
    if not run.get("snapshots"):
        raise ValueError(f"{run_dir}: the run kept no snapshots (train.py --snapshots N ...)")
    a = build_parser().parse_args(shlex.split(run["command"])[2:])  # "python train.py ARGS"
    if a.scenarios or a.slo_tiers or a.families:  # --families was evaluated on --trace, not on each family's
        raise ValueError(f"{run_dir}: a --scenarios/--slo-tiers/--families run (several evaluations); not supported")
    try:  # the trace as train.py resolved it (--trace or --env-kwargs trace=, else 'default')
        kwargs = env_settings(a)
    except cli.UsageError as err:
        raise ValueError(f"{run_dir / 'run.json'}: {err}") from None
    return a, kwargs, {int(n): Path(p) for n, p in run["snapshots"].items()}


def snapshot_paths(run_dir: Path, snaps: dict[int, Path]) -> dict[int, Path]:
    """``{N: file}`` in step order: ``run_dir``'s own ``steps_N.zip`` first (a copied directory's ``run.json``
    still names the original's files), else the path ``run.json`` recorded; ``ValueError`` naming the first
    snapshot found in neither place, before any is evaluated."""
    out = {}
    for n, recorded in sorted(snaps.items()):
        path = run_dir / recorded.name
        out[n] = path if path.is_file() else recorded
        if not out[n].is_file():
            raise ValueError(f"{run_dir}: snapshot steps_{n}.zip is missing (neither {path} nor {recorded})")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m agents.snapshot_eval", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dirs", nargs="+", type=Path, metavar="DIR", help="train.py --out directories")
    a = p.parse_args(argv)

    def run() -> int:
        for run_dir in a.dirs:
            try:
                targs, kwargs, snaps = snapshot_args(run_dir)
            except ValueError as err:
                raise cli.UsageError(str(err)) from None
            ((trace, kw),) = eval_runs(targs, kwargs, None)
            try:
                paths = snapshot_paths(run_dir, snaps)
            except ValueError as err:
                raise cli.UsageError(str(err)) from None
            for n, path in paths.items():
                rep = evaluate(targs.env, [str(path)], trace, targs.eval_episodes,
                               EVAL_SEED_OFFSET + targs.seed, kw, EVAL_SPLIT, progress=False)
                atomic_write_text(run_dir / f"eval_steps_{n}.json", report_json(rep))
                m = rep["results"][0]["metrics"]
                print(f"{run_dir} {n} slo_attainment {m['slo_attainment']:.4f} return_mean {m['return_mean']:.1f}",
                      flush=True)
        return 0

    return cli.run_main(p, run)


if __name__ == "__main__":
    sys.exit(main())
