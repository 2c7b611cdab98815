"""What each environment accepts, read from the code so that no help text can go stale.

Used by every command's ``--help`` and argument checks (``agents.cli`` builds on it; ``envs.bench``
uses it directly, since envs know nothing of agents):

- ``resolve_env_id(name)``: an environment by its full id (``servegym/KVAdmission-v0``), its id
  without the namespace (``KVAdmission-v0``), its short name (``KVAdmission``) or its package name
  (``kv_admission``), case-insensitively.
- ``config_fields(env_id)``: the fields of the environment's config dataclass (what
  ``--env-kwargs`` sets), each with its type annotation, default and the comment beside it.
- ``builtin_traces()``: the built-in trace names of ``traces.BUILTIN_TRACES`` and what each is.
- ``env_help()``: the text every command appends to its ``--help``.
- ``Parser``: the argument parser of every command: a user error is one line on stderr,
  ``PROG: error: ARGUMENT ...: what is allowed``, exit status 2.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import importlib
import inspect
import io
import os
import re
import tempfile
import textwrap
import tokenize
import types
import typing
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, NoReturn

from envs.ids import (  # noqa: F401 (the names every command resolves, re-exported)
    MULTI_AGENT,
    UnknownEnvironment,
    _vec_entries,
    env_ids,
    is_multi_agent,
    name_forms,
    package_name,
    resolve_env_id,
    short_name,
    single_agent_ids,
    snake_name,
)


class _ExtendWhenRepeated(argparse.Action):
    """A list option (``nargs`` ``+`` or ``*``) given again adds its values to the earlier ones
    (``--scenarios A --scenarios B`` is ``--scenarios A B``); argparse's default, the last one
    replacing the others, dropped A silently. The first use still replaces the default."""

    def __call__(self, parser, namespace, values, option_string=None):
        current = getattr(namespace, self.dest, None)
        given = current is not None and current is not self.default
        setattr(namespace, self.dest, [*current, *values] if given else list(values))


class Parser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose errors are one line on stderr and exit status 2, whose
    help keeps the description's and epilog's line breaks, whose list options (``nargs`` ``+``
    or ``*`` without an ``action``) collect every use of the option (``_ExtendWhenRepeated``), and
    that takes options by their full names only (argparse's abbreviations took ``agents.leaderboard --seed 3``
    as ``--seeds 3``, three episodes per scenario, and blamed ``--env X`` on ``--env-kwargs`` where a command
    has no ``--env``)."""

    def __init__(self, *args: Any, **kwargs: Any):
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        for action in self._actions:  # the parser's and its groups' (they share the list)
            if type(action) is argparse._StoreAction and action.option_strings and action.nargs in ("+", "*"):
                action.__class__ = _ExtendWhenRepeated
        return super().parse_known_args(args, namespace)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {' '.join(str(message).split())}\n")


@dataclass(frozen=True)
class ConfigField:
    """One ``--env-kwargs`` key: its name, annotation (a type object), the annotation as written,
    its default value and the source comment beside the field (may be empty)."""

    name: str
    annotation: Any
    type_text: str
    default: Any
    doc: str


def _load(entry: str) -> Any:
    module, name = entry.split(":")
    return getattr(importlib.import_module(module), name)


def build(env_id: str, num_envs: int, seed: int | None = None, **kwargs: Any) -> Any:
    """``num_envs`` copies of ``env_id``: the native VecEnv of a single-agent environment, the
    batched core (e.g. ``envs.multi.env.MultiCluster``) of a multi-agent one. Raises what the
    constructor raises for a bad config field (``ValueError``/``TypeError`` naming it)."""
    if is_multi_agent(env_id):
        return _load(MULTI_AGENT[env_id][0])(num_envs, seed=seed, **kwargs)
    import envs

    return envs.make_vec(env_id, num_envs, seed=seed, **kwargs)


def env_arg(name: str) -> str:
    """argparse ``type`` of ``--env``: the registered id that ``name`` (id, short or package name) denotes;
    ``argparse.ArgumentTypeError`` with ``resolve_env_id``'s one-line message otherwise."""
    try:
        return resolve_env_id(name)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def vec_class(env_id: str) -> type:
    """The native VecEnv class of ``env_id`` (the batched core of a multi-agent one)."""
    return _load(_vec_entries()[env_id])


def config_class(env_id: str) -> type:
    """The config dataclass whose fields the VecEnv of ``env_id`` takes as keyword arguments
    (``config_class`` on the VecEnv, else the annotation of its ``config`` parameter; for a
    multi-agent environment the one ``MULTI_AGENT`` names)."""
    if is_multi_agent(env_id):
        return _load(MULTI_AGENT[env_id][1])
    cls = vec_class(env_id)
    found = getattr(cls, "config_class", None)
    if found is None:
        hints = typing.get_type_hints(cls.__init__)
        ann = hints.get("config")
        for t in typing.get_args(ann) or (ann,):
            if dataclasses.is_dataclass(t):
                found = t
                break
    if found is None:
        raise TypeError(f"{cls.__qualname__} names no config dataclass (config_class attribute "
                        "or an annotated config parameter)")
    return found


@cache
def _field_comments(cls: type) -> dict[str, str]:
    """Field name -> the ``# comment`` on its line (or the comment lines right above it)."""
    try:
        src = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    comments: dict[int, str] = {}
    for tok in tokenize.generate_tokens(io.StringIO(src).readline):
        if tok.type == tokenize.COMMENT:
            text = tok.string.lstrip("#").strip()
            if not text.startswith("noqa"):
                comments[tok.start[0]] = re.sub(r"\s*\(?noqa.*$", "", text)
    out: dict[str, str] = {}
    body = ast.parse(src).body[0]
    for node in getattr(body, "body", []):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            line = node.lineno
            text = comments.get(line, "")
            if not text:  # comment lines directly above the field
                above, k = [], line - 1
                while k in comments and k not in {n.lineno for n in body.body}:
                    above.insert(0, comments[k])
                    k -= 1
                text = " ".join(above)
            out[node.target.id] = text
    return out


def type_text(annotation: Any) -> str:
    """A readable rendering of a type annotation: ``float | tuple[float, ...]``, ``int | None``."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_text(a) for a in args)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"tuple[{type_text(args[0])}, ...]"
        return "tuple[" + ", ".join(type_text(a) for a in args) + "]"
    if annotation is type(None):
        return "None"
    if annotation is Any:
        return "Any"
    return getattr(annotation, "__name__", str(annotation))


def fields_of(cls: type) -> list[ConfigField]:
    """The ``ConfigField`` list of a config dataclass, in declaration order."""
    hints = typing.get_type_hints(cls)
    docs = _field_comments(cls)
    out = []
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = dataclasses.MISSING
        ann = hints[f.name]
        out.append(ConfigField(f.name, ann, type_text(ann), default, docs.get(f.name, "")))
    return out


def config_fields(env_id: str) -> list[ConfigField]:
    """The ``--env-kwargs`` keys of ``env_id``: its config dataclass's fields, a nested config
    dataclass's fields in its place (``MultiConfig.routing``: every ``RoutingConfig`` field, as
    ``envs.multi.env.make_config`` takes them)."""
    out: list[ConfigField] = []

    def add(cls: type) -> None:
        for f in fields_of(cls):
            if dataclasses.is_dataclass(f.annotation):
                add(f.annotation)
            else:
                out.append(f)

    add(config_class(env_id))
    return out


def builtin_traces() -> dict[str, str]:
    """Built-in trace name -> the first line of its generator's docstring."""
    import traces

    return {name: (inspect.getdoc(gen) or "").splitlines()[0] if inspect.getdoc(gen) else ""
            for name, gen in traces.BUILTIN_TRACES.items()}


def _default_text(value: Any) -> str:
    if value is dataclasses.MISSING:
        return "(required)"
    if isinstance(value, str):
        return repr(value)
    return str(value)


def env_kwargs_help(env_id: str) -> str:
    """One line per ``--env-kwargs`` key of ``env_id``: ``key: type = default  comment``."""
    lines = []
    for f in config_fields(env_id):
        line = f"    {f.name}: {f.type_text} = {_default_text(f.default)}"
        if f.doc:
            line += f"  # {f.doc}"
        lines.append(line)
    return "\n".join(lines)


TRACE_OPTION = "--trace NAME; or a path to a trace file"


def env_help(selected: list[str] | None = None, kwargs: bool = True, env_option: str | None = "--env",
             trace_option: str | None = TRACE_OPTION) -> str:
    """The text every command appends to its ``--help``: environment ids (with their other name
    forms), built-in traces, and (``kwargs``) each environment's ``--env-kwargs`` keys. ``env_option``
    and ``trace_option`` are how the command takes an environment and a trace name (None: it takes none,
    and the text names no option; ``trace_option`` None leaves the traces out)."""
    ids = selected or env_ids()
    out = [f"environments ({env_option} accepts the id, the short name or the package name):" if env_option
           else "environments (ids, short names, package names):"]
    out += [f"  {e}   {short_name(e)}   {package_name(e)}" for e in ids]
    if trace_option is not None:
        out.append("")
        out.append(f"built-in traces ({trace_option}; 'default' = the environment's own, see its trace field):")
        out += [f"  {name}: {doc}" for name, doc in builtin_traces().items()]
    if kwargs:
        for e in ids:
            out.append("")
            out.append(f"--env-kwargs KEY=VALUE of {e} (tuples as 0.6,0.8 or '(0.6, 0.8)'):")
            out.append(env_kwargs_help(e))
    return "\n".join(out)


def output_problem(path: str | os.PathLike, directory: bool = False) -> str | None:
    """Why an output file (``directory``: folder) cannot be written at ``path``, or None: it exists as
    the wrong kind (a directory for a file, a file for a directory), or the nearest existing ancestor
    of what must be created is not a writable directory (tried by creating and removing a file there:
    ``os.access`` says yes to root almost everywhere, e.g. /proc). The commands call it before a run
    (``agents.cli.check_output``, the benchmarks' ``--json``), so that a long run does not end in a
    traceback at its write."""
    path = Path(path)
    if path.exists():
        if directory != path.is_dir():
            return f"exists and is {'not ' if directory else ''}a directory"
        target = path if directory else path.parent
    else:
        target = path.parent
        while not target.exists():
            target = target.parent
        if not target.is_dir():
            return f"{target} is not a directory"
    if not os.access(target, os.W_OK | os.X_OK):
        return f"{target} is not writable"
    try:
        with tempfile.NamedTemporaryFile(dir=target, prefix=".servegym-probe-"):
            pass
    except OSError as err:
        return f"{target} is not writable ({err.strerror or err})"
    return None


def output_file_arg(value: str) -> Path:
    """argparse ``type`` of an output file option (``--json FILE``): the path, or
    ``argparse.ArgumentTypeError`` saying why it cannot be written (:func:`output_problem`)."""
    problem = output_problem(value)
    if problem is not None:
        raise argparse.ArgumentTypeError(f"{value}: {problem}")
    return Path(value)
