"""Reproduce the reference learned agents.

    python -m agents.zoo list
    python -m agents.zoo stamp [--env ID ...] [--env-kwargs KEY=VALUE ...]
    python -m agents.zoo train [--env ID ...] [--recipe FILE | --pending] [--out DIR] [--dry-run]
    python -m agents.zoo seeds NAME [MODE [STAGE]] --out DIR [--mode full|small|tiers] [--stage all|teacher|train]
        [--ncpu N] [--work DIR] [--steps N] [--n-seeds N] [--dry-run]

``list`` prints each recipe as a command that runs when pasted, from any directory (the pending
ones, ``agents.zoo.PENDING``, as comments: a checkpoint not committed yet); ``train`` runs the recipe's
trainer (``agents.train``, or ``agents.train_multi`` for the multi-agent cluster's router) with its
recorded arguments (into ``DIR/<stem>``) and copies the final checkpoint over the zoo file beside this
module (with the observation version it was trained on). ``stamp`` records the observation version
this servegym builds in committed zoo checkpoints (``agents.zoo.stamp``; only for one trained on it).
``seeds`` trains a recipe's seeds at once and plays them on the leaderboard (the GPU host's
runs, ``agents.zoo.seeds``; ``agents/zoo/train_*.sh`` call it). A recipe's relative trace path (``../shared/traces/...``) is relative to the repository root.
"""

from __future__ import annotations

import shlex
import shutil
import sys
from pathlib import Path

from agents import cli
from agents.zoo import HERE, PENDING, RECIPES, ZOO, load_recipe, seeds_driver, stamp, zoo_role
from agents.zoo.args import REPO_ROOT, recipe_args  # noqa: F401  (REPO_ROOT: re-exported)



def main(argv: list[str] | None = None) -> int:
    p = cli.make_parser("python -m agents.zoo", __doc__, env_kwargs=False, trace_option=None)
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="retrain zoo agents with their recorded commands")
    t.add_argument("--env", action="append", type=cli.env_arg,
                   help="environment id, short name or package name (repeatable; default: all)")
    t.add_argument("--out", type=Path, default=Path("runs/zoo"))
    t.add_argument("--recipe", type=Path, metavar="FILE",
                   help="train this recipe JSON instead (python -m agents.sweep's best_recipe.json)")
    t.add_argument("--pending", action="store_true",
                   help="train the pending recipes (agents.zoo.PENDING: checkpoints not committed yet) instead")
    t.add_argument("--dry-run", action="store_true", help="print the commands only")
    sub.add_parser("list", help="show each recipe, whether its checkpoint exists, and its command")
    st = sub.add_parser("stamp", help="record the current observation version in committed zoo checkpoints "
                        "(only for ones trained on it)")
    st.add_argument("--env", action="append", type=cli.env_arg, help="environment id (repeatable; default: all)")
    st.add_argument("--env-kwargs", nargs="*", default=[], metavar="KEY=VALUE",
                    help="with one --env: the configuration its file was trained on (as train.py takes it); "
                    "the spaces are checked against it, not the default one, and it is recorded")
    sp = seeds_driver.add_parser(sub)
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["seeds"]:  # MODE / STAGE words may follow options (train_X.sh --dry-run small)
        a = sp.parse_intermixed_args(argv[1:])
        a.cmd = "seeds"
        return seeds_driver.run_cli(a, sp)
    a = p.parse_args(argv)
    if a.cmd == "list":
        for env_id, r in RECIPES.items():
            have = "present" if (HERE / r.file).exists() else "missing"
            print(f"# {env_id}: {r.file} ({have})")
            print(shlex.join(["python", "-m", r.trainer, *recipe_args(env_id, r),
                              "--out", f"runs/zoo/{Path(r.file).stem}"]))
        for env_id, r in PENDING.items():
            print(f"# {env_id}: {r.file} (pending: python -m agents.zoo train --pending --env {env_id})")
            print("# " + shlex.join(["python", "-m", r.trainer, *recipe_args(env_id, r),
                                     "--out", f"runs/zoo/{Path(r.file).stem}"]))
        return 0
    if a.cmd == "stamp":
        kwargs = {}
        if a.env_kwargs:
            if len(a.env or []) != 1:
                st.error(f"--env-kwargs {' '.join(a.env_kwargs)}: give exactly one --env (the environment whose "
                         f"configuration they set), got {len(a.env or [])}")
            try:
                kwargs = cli.parse_env_kwargs(a.env_kwargs, a.env[0])
            except cli.UsageError as err:
                st.error(str(err))
        try:
            for env_id, rec in stamp(a.env, kwargs).items():
                config = f" checked with --env-kwargs {' '.join(cli.env_kwargs_args(kwargs))}" if kwargs else ""
                print(f"{ZOO[env_id]}: {env_id} observation v{rec['observation_version']} "
                      f"({rec['observation_layout']}){config}")
        except (KeyError, ValueError) as err:
            st.error(str(err.args[0]) if isinstance(err, KeyError) else str(err))
        return 0
    if a.recipe and a.pending:
        t.error("--recipe and --pending: give one")
    recipes = dict(PENDING if a.pending else RECIPES)
    if a.recipe:
        try:
            env_id, recipe = load_recipe(a.recipe)
        except ValueError as err:
            t.error(f"--recipe {a.recipe}: {err}")
        recipes = {env_id: recipe}
    chosen = a.env or list(recipes)
    unknown = [e for e in chosen if e not in recipes]
    if unknown:
        t.error(f"--env {', '.join(unknown)}: no zoo recipe; environments with one: {', '.join(recipes)}")
    import importlib

    for env_id in chosen:
        r = recipes[env_id]
        out = a.out / Path(r.file).stem
        args = [*recipe_args(env_id, r), "--out", str(out)]
        print(shlex.join(["python", "-m", r.trainer, *args]), flush=True)
        if a.dry_run:
            continue
        rc = importlib.import_module(r.trainer).main(args)
        if rc != 0:
            return rc
        shutil.copyfile(out / "final.zip", HERE / r.file)
        from agents.obs_version import stamp_zip

        stamp_zip(HERE / r.file, env_id, zoo_role(env_id))  # trained now: the version this servegym builds
        print(f"{env_id}: wrote {HERE / r.file}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
