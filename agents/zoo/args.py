"""A zoo recipe as a command line: ``recipe_args`` (the trainer's arguments, trace paths resolved
against the repository root so that the command runs from any directory)."""

from __future__ import annotations

import ast
from pathlib import Path

from agents.zoo import HERE, Recipe

REPO_ROOT = HERE.parents[1]


def _from_root(entry: str | tuple) -> str | tuple:
    """A relative trace-file path resolved against the repository root; a built-in trace name
    (no suffix, no slash) or an absolute path unchanged; a ``(name or path, trace_params)`` entry
    of a ``workloads=`` tuple with its name or path so resolved, its parameters unchanged."""
    if isinstance(entry, tuple):
        return (_from_root(entry[0]), *entry[1:])
    path = Path(entry)
    if (path.suffix or "/" in entry) and not path.is_absolute():
        return str((REPO_ROOT / path).resolve())
    return entry


def recipe_args(env_id: str, recipe: Recipe) -> list[str]:
    """``agents.train`` arguments of ``recipe``: ``--env`` first, a relative ``--trace`` path and
    the relative file entries of a ``workloads=`` mixture (comma list or tuple literal) resolved
    against the repository root, so the command runs from any directory."""
    args = list(recipe.train_args)
    if "--trace" in args:
        i = args.index("--trace") + 1
        args[i] = _from_root(args[i])
    for i, a in enumerate(args):
        if a.startswith("workloads="):
            value = a.split("=", 1)[1]
            if value.startswith("("):
                entries = [_from_root(e) for e in ast.literal_eval(value)]
                args[i] = "workloads=" + repr(tuple(entries))
            else:
                args[i] = "workloads=" + ",".join(_from_root(e) for e in value.split(","))
    if recipe.trainer != "agents.train":  # its own command line (agents.train_multi: --workloads ENTRY ...)
        if "--workloads" in args:
            i = args.index("--workloads") + 1
            while i < len(args) and not args[i].startswith("--"):
                args[i] = _from_root(args[i])
                i += 1
        return args
    return ["--env", env_id, *args]
