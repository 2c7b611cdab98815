"""The search space of a sweep (``python -m agents.sweep --space FILE``): parse, sample, decode.

A space file is TOML (``.toml``) or JSON (``.json``): one table per parameter, with exactly one
of ``grid``/``choice`` (a list of values) or ``uniform``/``loguniform``/``randint`` (``[low,
high]``; ``randint``'s ``high`` is exclusive, as in ``numpy`` and Ray Tune)::

    [learning_rate]
    loguniform = [1e-5, 1e-3]
    ["policy_kwargs.net_arch"]       # dotted key: one entry of a dict argument
    choice = [[64, 64], [128, 128]]
    ["env.load"]                     # env. prefix: an environment keyword argument
    grid = [0.9, 1.1]
    ["train.n_envs"]                 # train. prefix: a train.py option (n_envs, timesteps, imitate)
    grid = [8, 16]

Names without a prefix are keyword arguments of the SB3 algorithm (``train.py --hyperparams``).
``--search grid`` needs only ``grid``/``choice`` parameters (their cross product);
``--search random`` samples ``N`` configurations with a seeded numpy generator (``grid`` counts
as ``choice``); ``--search optuna`` hands the same domains to Ray Tune's ``OptunaSearch``.
Before any trial runs, ``check_values`` refuses (one line naming the file, parameter and value) a
value that ``train.py`` would refuse in every trial drawing it: a hyperparameter out of its range
(both bounds of a range), an ``env.`` key the environment does not have, a ``train.`` option that is
not a non-negative integer; a parameter named twice, a non-finite bound or a TOML date is refused
when the file is read.
"""

from __future__ import annotations

import itertools
import json
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

KINDS = ("grid", "choice", "uniform", "loguniform", "randint")
TRAIN_OPTIONS = {"n_envs": "--n-envs", "timesteps": "--timesteps", "imitate": "--imitate"}


@dataclass(frozen=True)
class Param:
    """One searched parameter: its name (as in the file), kind and values or ``[low, high]``."""

    name: str
    kind: str
    values: tuple[Any, ...]

    @property
    def discrete(self) -> bool:
        return self.kind in ("grid", "choice")

    @property
    def scalar(self) -> bool:
        """Discrete values that Optuna can take as categories as they are."""
        return all(v is None or isinstance(v, (bool, int, float, str)) for v in self.values)


@dataclass(frozen=True)
class SearchSpace:
    params: tuple[Param, ...]

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.params]

    def grid(self) -> list[dict[str, Any]]:
        """Every combination of the discrete parameters, in file order (the first varies
        slowest). Raises ``ValueError`` naming a parameter that is not ``grid``/``choice``."""
        for p in self.params:
            if not p.discrete:
                raise ValueError(f"--search grid: parameter {p.name!r} is {p.kind}; a grid needs "
                                 "grid or choice values (use --search random or optuna)")
        combos = itertools.product(*(p.values for p in self.params))
        return [dict(zip(self.names, c)) for c in combos]

    def sample(self, n: int, seed: int) -> list[dict[str, Any]]:
        """``n`` configurations drawn independently (same seed, same configurations)."""
        rng = np.random.default_rng(seed)
        out = []
        for _ in range(n):
            cfg: dict[str, Any] = {}
            for p in self.params:
                if p.discrete:
                    cfg[p.name] = p.values[int(rng.integers(len(p.values)))]
                elif p.kind == "uniform":
                    cfg[p.name] = float(rng.uniform(*p.values))
                elif p.kind == "loguniform":
                    lo, hi = p.values
                    cfg[p.name] = float(math.exp(rng.uniform(math.log(lo), math.log(hi))))
                else:  # randint
                    cfg[p.name] = int(rng.integers(*p.values))
            out.append(cfg)
        return out

    def tune_domains(self) -> dict[str, Any]:
        """Ray Tune domains for a searcher (``OptunaSearch``). Discrete parameters whose values
        Optuna cannot store as categories (lists, dicts) are searched by index; ``decode`` maps
        indices back."""
        from ray import tune

        out: dict[str, Any] = {}
        for p in self.params:
            if p.discrete:
                out[p.name] = tune.choice(list(p.values) if p.scalar else list(range(len(p.values))))
            elif p.kind == "uniform":
                out[p.name] = tune.uniform(*p.values)
            elif p.kind == "loguniform":
                out[p.name] = tune.loguniform(*p.values)
            else:
                out[p.name] = tune.randint(*p.values)
        return out

    def decode(self, suggested: dict[str, Any]) -> dict[str, Any]:
        """A configuration from ``tune_domains`` with indices replaced by the values."""
        out = dict(suggested)
        for p in self.params:
            if p.discrete and not p.scalar and p.name in out:
                out[p.name] = p.values[int(out[p.name])]
        return out


def _flatten(data: dict[str, Any], prefix: str = "", where: str = "space",
             out: dict[str, Any] | None = None) -> dict[str, Any]:
    """``{"env": {"load": {"grid": [...]}}}`` (TOML ``[env.load]``) -> ``{"env.load": {...}}``.
    Raises ``ValueError`` for a name given twice (TOML ``["env.load"]`` beside ``[env.load]``): one
    of them would be dropped."""
    out = {} if out is None else out
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value and not any(k in KINDS for k in value) \
                and all(isinstance(v, dict) for v in value.values()):
            _flatten(value, name + ".", where, out)
        elif name in out:
            raise ValueError(f"{where}: parameter {name!r} is given twice (a quoted [\"{name}\"] table and a "
                             "dotted one name the same parameter); keep one")
        else:
            out[name] = value
    return out


def parse_space(data: dict[str, Any], where: str = "space") -> SearchSpace:
    """A ``SearchSpace`` from the parsed file. Raises ``ValueError`` naming the parameter and
    what is wrong with it (unknown kind, not exactly one kind, empty list, bad bounds)."""
    if not isinstance(data, dict) or not data:
        raise ValueError(f"{where}: expected a table of parameters, got {data!r}")
    params = []
    for name, spec in _flatten(data, where=where).items():
        at = f"{where}: parameter {name!r}"
        if not isinstance(spec, dict):
            raise ValueError(f"{at}: expected a table with one of {', '.join(KINDS)}, got {spec!r}")
        kinds = [k for k in spec if k in KINDS]
        extra = [k for k in spec if k not in KINDS]
        if len(kinds) != 1 or extra:
            raise ValueError(f"{at}: expected exactly one of {', '.join(KINDS)}, got {sorted(spec)}")
        kind = kinds[0]
        values = spec[kind]
        if not isinstance(values, list) or not values:
            raise ValueError(f"{at}: {kind} must be a non-empty list, got {values!r}")
        if name.startswith("train.") and name[6:] not in TRAIN_OPTIONS:
            raise ValueError(f"{at}: train.* options are {', '.join(TRAIN_OPTIONS)}")
        try:  # the sweep stores the space as JSON (sweep_spec.json); TOML dates and times are not values
            json.dumps(values, allow_nan=False)
        except (TypeError, ValueError):
            raise ValueError(f"{at}: {kind} values must be finite numbers, strings, booleans, lists or "
                             f"tables, got {values!r}") from None
        if kind in ("uniform", "loguniform", "randint"):
            ok_type = int if kind == "randint" else (int, float)
            if (len(values) != 2 or not all(isinstance(v, ok_type) and not isinstance(v, bool)
                                            for v in values) or not values[0] < values[1]):
                raise ValueError(f"{at}: {kind} needs [low, high] numbers with low < high, got {values!r}")
            if kind == "loguniform" and values[0] <= 0:
                raise ValueError(f"{at}: loguniform needs low > 0, got {values!r}")
            if kind == "randint" and not -2**63 <= values[0] < values[1] <= 2**63 - 1:
                raise ValueError(f"{at}: randint bounds must fit in a 64-bit integer, got {values!r}")
        params.append(Param(name, kind, tuple(values)))
    return SearchSpace(tuple(params))


def check_values(space: SearchSpace, env_id: str, where: str = "space") -> None:
    """Refuse, before any trial runs, a value that ``train.py`` would refuse in every trial that
    draws it: an SB3 hyperparameter out of its range (``agents.training.hyperparam_problem``: ``gamma``
    in [0, 1], counts >= 1 ...), an ``env.KEY`` that ``env_id``'s config has no field for, a
    ``train.*`` option that is not an integer >= 1 (``imitate``, ``timesteps``: >= 0). A range
    (``uniform``/``loguniform``/``randint``) is checked at both bounds. Raises ``ValueError`` naming
    ``where``, the parameter and the value."""
    from agents.training import hyperparam_problem
    from envs.options import config_fields
    from traces.checks import is_integer

    keys = [f.name for f in config_fields(env_id)]
    for p in space.params:
        at = f"{where}: parameter {p.name!r}"
        if p.name.startswith("env."):
            if p.name[4:] not in keys:
                raise ValueError(f"{at}: {env_id} has no --env-kwargs key {p.name[4:]!r}; valid keys: {', '.join(keys)}")
            continue  # typed and range-checked by the environment when the trial builds it
        for v in p.values:
            if p.name.startswith("train."):
                low = 1 if p.name == "train.n_envs" else 0
                problem = None if is_integer(v) and v >= low else f"expected an integer >= {low}"
            else:
                problem = hyperparam_problem(p.name, v)
            if problem:
                raise ValueError(f"{at}: {v!r}: {problem}")


def load_space(path: Path) -> SearchSpace:
    """Read a ``.toml`` or ``.json`` space file (errors name the file)."""
    try:
        text = path.read_text()
    except OSError as err:
        raise ValueError(f"--space {path}: {err.strerror}") from None
    try:
        if path.suffix == ".toml":
            data = tomllib.loads(text)
        elif path.suffix == ".json":
            data = json.loads(text)
        else:
            raise ValueError(f"--space {path}: expected a .toml or .json file")
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"--space {path}: {err}") from None
    return parse_space(data, str(path))


def _split_list_options(argv: list[str], names: tuple[str, ...]) -> tuple[list[str], dict[str, list[str]]]:
    """``argv`` without the list-valued options ``names`` (``--env-kwargs A=1 B=2``), and their
    items (argparse keeps only the last occurrence of such an option, so they must be merged)."""
    rest: list[str] = []
    items: dict[str, list[str]] = {n: [] for n in names}
    current = None
    for tok in argv:
        if tok in names:
            current = tok
        elif current is not None and not tok.startswith("--"):
            items[current].append(tok)
        else:
            current = None
            rest.append(tok)
    return rest, items


def train_argv(config: dict[str, Any], base: list[str] | tuple[str, ...] = ()) -> list[str]:
    """``train.py`` arguments: ``base`` (a recipe's) with one configuration applied on top
    (names as in the space file; a configured key replaces the same key of ``base``). A
    configuration with ``train.imitate`` 0 drops the recipe's ``--imitate-kwargs`` (train.py
    refuses them without imitation)."""
    rest, items = _split_list_options(list(base), ("--env-kwargs", "--hyperparams", "--imitate-kwargs"))
    env_kw = {i.partition("=")[0]: i for i in items["--env-kwargs"]}
    hyper = {i.partition("=")[0]: i for i in items["--hyperparams"]}
    opts: list[str] = []
    for name, value in config.items():
        if name.startswith("env."):
            text = value if isinstance(value, str) else repr(value)
            env_kw[name[4:]] = f"{name[4:]}={text}"
        elif name.startswith("train."):
            opts += [TRAIN_OPTIONS[name[6:]], str(value)]
        else:
            hyper[name] = f"{name}={value!r}"
    imitate_kw = items["--imitate-kwargs"] if config.get("train.imitate", 1) != 0 else []
    return [*rest, *opts, *(["--imitate-kwargs", *imitate_kw] if imitate_kw else []),
            *(["--env-kwargs", *env_kw.values()] if env_kw else []),
            *(["--hyperparams", *hyper.values()] if hyper else [])]


__all__ = ["Param", "SearchSpace", "check_values", "load_space", "parse_space", "train_argv"]
