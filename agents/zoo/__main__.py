"""Reproduce the reference learned agents.

    python -m agents.zoo train [--env ID ...] [--recipe FILE] [--out DIR] [--dry-run]

Runs ``train.py`` with each recipe's recorded arguments (into ``DIR/<stem>``) and copies the
final checkpoint over the zoo file beside this module.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from agents.zoo import HERE, RECIPES, load_recipe


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m agents.zoo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="retrain zoo agents with their recorded commands")
    t.add_argument("--env", action="append", help="environment id (repeatable; default: all)")
    t.add_argument("--out", type=Path, default=Path("runs/zoo"))
    t.add_argument("--recipe", type=Path, metavar="FILE",
                   help="train this recipe JSON instead (python -m agents.sweep's best_recipe.json)")
    t.add_argument("--dry-run", action="store_true", help="print the commands only")
    sub.add_parser("list", help="show each recipe and whether its checkpoint exists")
    a = p.parse_args(argv)
    if a.cmd == "list":
        for env_id, r in RECIPES.items():
            have = "present" if (HERE / r.file).exists() else "missing"
            print(f"{env_id}: {r.file} ({have})  python train.py {' '.join(r.train_args)}")
        return 0
    recipes = dict(RECIPES)
    if a.recipe:
        try:
            env_id, recipe = load_recipe(a.recipe)
        except ValueError as err:
            p.error(str(err))
        recipes = {env_id: recipe}
    chosen = a.env or list(recipes)
    unknown = [e for e in chosen if e not in recipes]
    if unknown:
        p.error(f"no zoo recipe for {', '.join(unknown)}; known: {', '.join(recipes)}")
    import train

    for env_id in chosen:
        r = recipes[env_id]
        out = a.out / Path(r.file).stem
        args = ["--env", env_id, *r.train_args, "--out", str(out)]
        print("python train.py " + " ".join(args), flush=True)
        if a.dry_run:
            continue
        rc = train.main(args)
        if rc != 0:
            return rc
        shutil.copyfile(out / "final.zip", HERE / r.file)
        print(f"{env_id}: wrote {HERE / r.file}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
