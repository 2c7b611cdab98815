"""The held-out evaluation of ``train.py``, played for each snapshot a run kept (``--snapshots``).

    python -m agents.snapshot_eval DIR [DIR ...]

For every ``DIR/steps_N.zip`` of a ``train.py --snapshots`` run, the evaluation ``train.py`` gives its
final model (``agents.train``: the run's own trace and ``--env-kwargs``, or ``--eval-at``, ``--eval-episodes``
held-out episodes from seed ``--seed`` + 10000) played by the snapshot alone: the trained agent's row of
the ``eval.json`` a run of ``--timesteps N`` would write (the snapshot is that run's final model:
``agents.training.SnapshotCallback``). Writes ``DIR/eval_steps_N.json`` (``agents.evaluate``'s report)
and prints one line per snapshot: ``DIR N`` and the environment's main metric, ``slo_attainment`` where it has
one, ``return_mean``. Every DIR is checked before any snapshot plays; one given twice is refused. Runs of ``--scenarios``,
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
    if not run_dir.exists():  # was "no run.json", as if the directory were there
        raise ValueError(f"{run_dir}: no such directory (a train.py --out directory)")
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


def shown_metrics(env_id: str, m: dict) -> str:
    """``NAME VALUE`` pairs of a snapshot's line: the environment's main leaderboard metric
    (``agents.scenarios.SCORING``), ``slo_attainment`` where the environment reports it, and ``return_mean``
    (PrefixEviction-v0 and ExpertPlacement-v0 report no SLO attainment: the line was a KeyError traceback)."""
    from agents.scenarios import SCORING

    names = [SCORING[env_id].main_metric] if env_id in SCORING else []
    names += [k for k in ("slo_attainment", "return_mean") if k in m and k not in names]
    return " ".join(f"{k} {m[k]:.4f}" if k.startswith("slo_attainment") else f"{k} {m[k]:.4g}" for k in names
                    if m.get(k) is not None)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m agents.snapshot_eval", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dirs", nargs="+", type=Path, metavar="DIR", help="train.py --out directories")
    a = p.parse_args(argv)

    def run() -> int:
        dirs = [d.resolve() for d in a.dirs]
        twice = sorted({str(d) for d, r in zip(a.dirs, dirs) if dirs.count(r) > 1})
        if twice:  # was evaluated (and written, and printed) once per mention
            raise cli.UsageError(f"{', '.join(twice)}: given twice (one DIR once)")
        runs = []
        for run_dir in a.dirs:  # every directory checked before any snapshot plays (a bad second one was
            try:  # reported after the first one's evaluations)
                targs, kwargs, snaps = snapshot_args(run_dir)
                paths = snapshot_paths(run_dir, snaps)
            except ValueError as err:
                raise cli.UsageError(str(err)) from None
            ((trace, kw),) = eval_runs(targs, kwargs, None)
            runs.append((run_dir, targs, trace, kw, paths))
        for run_dir, targs, trace, kw, paths in runs:
            for n, path in paths.items():
                rep = evaluate(targs.env, [str(path)], trace, targs.eval_episodes,
                               EVAL_SEED_OFFSET + targs.seed, kw, EVAL_SPLIT, progress=False)
                atomic_write_text(run_dir / f"eval_steps_{n}.json", report_json(rep))
                print(f"{run_dir} {n} {shown_metrics(targs.env, rep['results'][0]['metrics'])}", flush=True)
        return 0

    return cli.run_main(p, run)


if __name__ == "__main__":
    sys.exit(main())
