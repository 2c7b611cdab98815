"""One command-line convention for every servegym command (train, evaluate, leaderboard, export,
zoo; ``envs.bench`` follows it through ``envs.options``).

- ``--env`` takes an environment's full id, its id without namespace, its short name or its
  package name (``servegym/KVAdmission-v0``, ``KVAdmission-v0``, ``KVAdmission``,
  ``kv_admission``): ``env_arg`` is the argparse ``type``.
- ``--env-kwargs KEY=VALUE`` is parsed against the environment's config dataclass
  (``parse_env_kwargs``): the value's type comes from the field's annotation (``1.5`` is refused
  for an ``int`` field, never truncated; ``none`` gives ``None``; a tuple is written ``0.6,0.8``
  or ``'(0.6, 0.8)'``); an unknown key lists the valid ones.
- A user error (unknown key, wrong type, out of range, unknown policy or trace) ends in one line
  on stderr, ``PROG: error: ARGUMENT ...: what is allowed``, exit status 2 (``Parser.error``);
  tracebacks are left for bugs. ``check_env`` builds the environment once so that the
  environment's own range checks (which name the field) surface the same way.
- ``--help`` ends with the environment ids, the built-in traces and every environment's
  ``--env-kwargs`` keys with type and default (``envs.options.env_help``, generated from the
  config dataclasses).
"""

from __future__ import annotations

import argparse
import re
import typing
from pathlib import Path
from typing import Any

from agents.env_kwargs import (  # noqa: F401  (re-exported: cli.parse_env_kwargs, cli.UsageError, ...)
    UsageError, conform, env_kwargs_args, parse_env_kwargs, parse_value)
from envs import options

# What constructing an environment from user arguments raises for bad arguments (TraceError and
# HwModelError are ValueErrors).
USER_ERRORS = (ValueError, TypeError, KeyError, FileNotFoundError)


Parser = options.Parser


def one_line(message: str) -> str:
    return " ".join(str(message).split())


def make_parser(prog: str, doc: str | None, envs_help: bool = True, env_kwargs: bool = True,
                selected: list[str] | None = None, env_option: str | None = "--env",
                trace_option: str | None = options.TRACE_OPTION) -> Parser:
    """A ``Parser`` for ``prog`` whose ``--help`` ends with ``envs.options.env_help`` (environment
    ids, built-in traces and, with ``env_kwargs``, every ``--env-kwargs`` key), naming the options the
    command takes them with (``env_option``, ``trace_option``; None: none)."""
    epilog = (options.env_help(selected, kwargs=env_kwargs, env_option=env_option, trace_option=trace_option)
              if envs_help else None)
    return Parser(prog=prog, description=doc, epilog=epilog)


env_arg = options.env_arg  # argparse ``type`` of ``--env``: the registered id that a name denotes


def single_env_arg(name: str) -> str:
    """argparse ``type`` of ``--env`` where only a single-agent environment fits (train, export)."""
    env_id = env_arg(name)
    if options.is_multi_agent(env_id):
        raise argparse.ArgumentTypeError(
            f"{env_id} is multi-agent (teams are scored by agents.evaluate and the leaderboard; "
            f"train a role with envs.multi.env.RoleVecEnv); single-agent: {', '.join(options.single_agent_ids())}")
    return env_id


# --- checks that need the environment --------------------------------------------------------

def check_env(env_id: str, kwargs: dict[str, Any], trace: Any = "default", seed: int | None = 0,
              **fixed: Any) -> None:
    """Build ``env_id`` once (one env) from the user's ``kwargs`` and ``trace`` (plus ``fixed``
    settings the command adds, such as ``split``) so that the environment's own checks (out of
    range, unknown model or GPU, bad trace) end as a ``UsageError`` naming the argument instead
    of a traceback later."""
    from traces.errors import TraceError

    from envs.core.workload import TraceUnsuited

    try:
        vec = options.build(env_id, 1, seed=seed, **{**fixed, **kwargs, "trace": trace})
    except USER_ERRORS as err:
        msg = one_line(err.args[0] if isinstance(err, KeyError) and err.args else err)
        # the --env-kwargs fields the message names (a field's own check says "FIELD must ..."): those alone are
        # shown; a bad split was shown as '--env-kwargs window_requests=50: ... split must be ...'
        named = {k: v for k, v in kwargs.items() if re.search(rf"(?<!\w){re.escape(k)}(?!\w)", msg)}
        if isinstance(err, (TraceError, FileNotFoundError)) or (isinstance(err, TraceUnsuited) and not named):
            # a trace that cannot be read, or whose kind the environment cannot replay (every request failed
            # in the trace, e.g. output 0, was an '--env-kwargs' line): the file is the fault
            raise UsageError(f"--trace {trace!r}: {msg}") from None
        shown = " ".join(env_kwargs_args(named or kwargs))
        if not shown and isinstance(trace, (str, Path)) and str(trace) != "default":
            # no --env-kwargs given: the trace is what the environment refused (too few requests for a
            # window, no block ids, counts of another shape); it was reported as '--env-kwargs (none given)'
            raise UsageError(f"--trace {str(trace)!r}: {msg}") from None
        raise UsageError(f"--env-kwargs {shown or '(none given)'}: {msg}") from None
    if hasattr(vec, "close"):
        vec.close()


def policy_choices(env_id: str) -> list[str]:
    """Policy names ``--policy`` accepts for ``env_id`` besides checkpoint and ONNX paths."""
    from agents.policy import ZOO, heuristic_names

    names = ["random", *heuristic_names(env_id)]
    if env_id in ZOO:
        names.append("zoo")
    return names


def check_policies(env_id: str, specs: list[str], allowed: tuple[str, ...] = (".zip", ".onnx"),
                   names: bool | tuple[str, ...] = True) -> None:
    """Each of ``specs`` is a policy name of ``env_id`` (with ``names``: every one, or the ``names``
    given, e.g. ``("zoo",)`` where only the learned agent fits) or an existing file with one of the
    ``allowed`` suffixes; else ``UsageError`` naming it and what is allowed. A policy given twice (a
    file by any path to it) is a ``UsageError`` too: it played twice, two rows of one name."""
    every = policy_choices(env_id)
    choices = every if names is True else [n for n in every if n in names] if names else []
    from agents.policy import ZOO

    seen: dict[str, str] = {}
    for spec in specs:
        key = str(Path(spec).resolve()) if Path(spec).is_file() else spec
        if key in seen:
            same = repr(spec) if seen[key] == spec else f"{seen[key]!r} and {spec!r} (the same file)"
            raise UsageError(f"--policy {same}: given twice; each policy plays once")
        seen[key] = spec
        if spec in choices:
            continue
        if spec == "zoo" and env_id not in ZOO:
            raise UsageError(f"--policy zoo: no reference learned agent for {env_id}; "
                             f"environments with one: {', '.join(ZOO)}")
        path = Path(spec)
        if path.suffix in allowed and path.is_file():
            continue
        files = " or ".join(f"an existing {s} file" for s in allowed)
        named = f"one of {', '.join(choices)}, or " if len(choices) > 1 else f"{choices[0]} or " if choices else ""
        raise UsageError(f"--policy {spec!r}: not a policy of {env_id}; allowed: {named}{files}")


def check_policy_file(path: str | Path) -> dict[str, Any] | None:
    """Read a checkpoint (``.zip``) or ONNX file the way playing it will, before any episode runs: one
    recorded for another observation version, or unreadable (not a zip, no SB3 data, a truncated
    ``policy.pth``, not an ONNX model), raises ``ValueError`` ``"PATH: reason"`` (``agents.obs_version``,
    ``agents.sb3_policy.load_model``). Without it a corrupt file was found only when it first played,
    after every policy listed before it. Returns the file's observation record (None where it has none),
    for ``agents.obs_version.check_env`` against the environments it is to play."""
    from agents import obs_version

    if Path(path).suffix == ".zip":  # readable first: a file that is no zip gets the checkpoint's line
        from agents.sb3_policy import load_model

        load_model(path, device="cpu")
    return obs_version.check_file(path)


def check_output(path: Path, option: str, directory: bool = False) -> None:
    """``UsageError`` naming ``option`` and ``path`` when the output there cannot be written
    (``envs.options.output_problem``: the wrong kind exists there, or the nearest existing ancestor
    of what must be created is not a writable directory). Called before a run, so that a long
    evaluation does not end in a traceback at its write."""
    problem = options.output_problem(path, directory)
    if problem is not None:
        raise UsageError(f"{option} {path}: {problem}")


def take_env_kwarg(kwargs: dict[str, Any], key: str, option: str, given: Any, default: Any,
                   choices: tuple[Any, ...] | None = None) -> Any:
    """The value of a setting that a command has its own ``option`` for (``--trace``, ``--split``) and
    that ``--env-kwargs KEY=VALUE`` sets too: ``given`` (the option's value, None when not given) or
    else ``kwargs[key]`` or else ``default``; ``key`` is removed from ``kwargs`` so that the
    environment receives it once. ``UsageError`` naming both when both are given and differ (one was
    silently ignored, or the command ended in a TypeError traceback: "got multiple values"), and
    naming ``--env-kwargs KEY=VALUE`` for a value not in ``choices`` (the option's own, which argparse
    checks: taken out of ``kwargs``, a bad one was blamed on the other ``--env-kwargs``)."""
    if key not in kwargs:
        return default if given is None else given
    value = kwargs.pop(key)
    if choices is not None and value not in choices:
        shown = value if isinstance(value, str) else repr(value)
        raise UsageError(f"--env-kwargs {key}={shown}: {key} must be one of {', '.join(map(str, choices))} "
                         f"(as {option})")
    if given is not None and given != value:
        shown = value if isinstance(value, str) else repr(value)  # as the user typed it: split=test
        raise UsageError(f"{option} {given} --env-kwargs {key}={shown}: two different values of {key}; "
                         "give one")
    return value


def file_error(option: str, given: Any, message: Any, path: Any = None) -> str:
    """The one line ``OPTION GIVEN: MESSAGE`` for a file argument: ``GIVEN (PATH)`` where the value
    names another file than itself (``--warm-start zoo``), and ``message`` (an exception or text) without
    its own leading ``PATH: `` (``agents.obs_version``'s errors start with the file), so that the path
    appears once."""
    path = str(given if path is None else path)
    text = one_line(message)
    if text.startswith(f"{path}: "):
        text = text[len(path) + 2:]
    shown = str(given) if path == str(given) else f"{given} ({path})"
    return f"{option} {shown}: {text}"


def run_main(parser: Parser, body: typing.Callable[[], int]) -> int:
    """``body()``, with any ``UsageError`` it raises ended as ``parser.error`` (one line, exit 2)."""
    try:
        return body()
    except UsageError as err:
        parser.error(str(err))

