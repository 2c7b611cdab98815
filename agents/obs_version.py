"""Which observation a checkpoint was trained on, recorded in the checkpoint and checked at load.

An environment's observation can change meaning under the same feature names (KVAdmission-v0's
request counts went from fractions of max_seqs to capacity units, issue 21): a checkpoint trained on
the earlier layout still loads and plays, reading every count wrong. Each environment declares its
observation version beside its feature names (``OBS_VERSION`` and ``OBS_VERSIONS`` in
``envs/<env>/kernels.py``; :func:`envs.observation_version`), and

- every SB3 checkpoint servegym writes (``agents.train``, ``agents.train_multi``, the DAgger path,
  the sweep's held-out snapshots) holds a member ``servegym.json`` =
  ``{"env_id", "role", "observation_layout", "observation_version"}`` beside SB3's own members
  (SB3's ``load`` reads only ``data``, ``*.pth`` and ``_stable_baselines3_version``; this file changes
  no weight); ``run.json`` repeats it as ``"observation"``;
- ``agents.export`` copies it into the ONNX model's ``metadata_props`` (keys ``observation_layout``
  and ``observation_version``, beside ``env_id``);
- loading (``SB3Policy``: ``--policy PATH|zoo`` of agents.evaluate and agents.leaderboard, the
  zoo's files, team seats; ``OnnxPolicy``: the engine-side runtime; ``agents.export``;
  ``train.py --resume`` / ``--init``) calls :func:`check`: a recorded version other than the one this
  servegym builds is a :class:`ObservationMismatch` (a ``ValueError`` the CLIs print in one line)
  naming the file, both versions and what each means; a file with no record (written before
  versions were recorded) gets one ``ObservationVersionUnknown`` warning per file.

:func:`stamp_zip` adds the record to an existing checkpoint without touching its weights (the zoo's
files: ``python -m agents.obs_version stamp agents/zoo/FILE.zip --env ID``), after checking that the
policy's spaces are the environment's in its default configuration, or in the one ``--env-kwargs
KEY=VALUE ...`` sets (``agents.env_kwargs.parse_env_kwargs``, as train.py reads them; for a file trained on
other shapes, e.g. Routing-v0 with ``replicas=4``); those kwargs are then recorded as the record's fifth
key ``"env_kwargs"``. ``--role`` names a seat of a multi-agent environment only.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
import zipfile
from pathlib import Path
from typing import Any

from agents.policy_base import PolicyMismatch, read_zip_json

MEMBER = "servegym.json"  # the record's name inside an SB3 zip
ONNX_KEYS = ("observation_layout", "observation_version")  # the record's keys in ONNX metadata_props


class ObservationMismatch(PolicyMismatch):
    """A checkpoint trained on another version of its environment's observation (the features'
    names may be the same; their meaning is not)."""


class ObservationRecordError(PolicyMismatch):
    """A checkpoint whose observation record is unreadable or malformed (not JSON, keys missing or
    extra, a version that is not an integer, a layout that is not its env_id's), or that records
    another environment's observation than the one it is loaded for. A ``ValueError`` (and a
    ``PolicyMismatch``, so that every CLI ends it in one line naming the file)."""


class ObservationVersionUnknown(UserWarning):
    """A checkpoint that records no observation version (written before servegym recorded it)."""


_warned: set[str] = set()


def record(env_id: str, role: str | None = None) -> dict[str, Any]:
    """The record of a checkpoint trained now on ``env_id`` (role ``role`` of a PettingZoo env with
    several): ``{"env_id", "role", "observation_layout", "observation_version"}``; ``KeyError`` for an
    unknown env or role (:func:`envs.observation_layout`)."""
    import envs

    layout = envs.observation_layout(env_id, role)
    return {"env_id": env_id, "role": role, "observation_layout": layout,
            "observation_version": envs.observation_version(env_id, role)[0]}


def env_id_of(vec: Any) -> str:
    """The environment id of a (possibly wrapped) native VecEnv: the ``ENV_ID`` of the module that
    defines it (or its ``env_id``, ``envs.subproc_vec``), looked up through SB3 wrappers (``venv``)
    and ``agents.family_vec`` parts; ``ValueError`` if none is found."""
    seen = [vec]
    while seen:
        v = seen.pop(0)
        if v is None:
            continue
        eid = getattr(v, "env_id", None) or getattr(sys.modules.get(type(v).__module__), "ENV_ID", None)
        if isinstance(eid, str):
            return eid
        seen += [getattr(v, "venv", None), *(getattr(v, "parts", None) or [])[:1]]
    raise ValueError(f"{type(vec).__name__}: no servegym environment id found (pass env_id)")


def read_zip(path: str | Path) -> dict[str, Any] | None:
    """The record inside the SB3 checkpoint ``path``, or None if it has none; ``ValueError`` naming
    the file if it is no zip or its record is not a JSON object with the four keys."""
    rec = read_zip_json(path, MEMBER, ObservationRecordError, f"observation record {MEMBER}")
    if rec is None:
        return None
    _validate(path, rec)
    import envs

    try:  # the layout follows from env_id and role (agents.obs_version.record): a record that disagrees was edited
        layout = envs.observation_layout(rec["env_id"], rec["role"])
    except KeyError as err:
        raise ObservationRecordError(f"{path}: {MEMBER}: {err.args[0] if err.args else err}") from None
    if layout != rec["observation_layout"]:
        seat = f" role {rec['role']!r}" if rec["role"] else ""
        raise ObservationRecordError(f"{path}: {MEMBER}: env_id {rec['env_id']!r}{seat} has observation layout "
                                     f"{layout!r}, the record says {rec['observation_layout']!r}")
    return rec


def _validate(path: str | Path, rec: Any) -> None:
    keys = ("env_id", "role", "observation_layout", "observation_version")
    if not isinstance(rec, dict) or not set(keys) <= set(rec) or not set(rec) <= {*keys, "env_kwargs"}:
        raise ObservationRecordError(f"{path}: {MEMBER} must be a JSON object with keys {', '.join(keys)} "
                                     f"(and optionally env_kwargs), got {rec!r}")
    if "env_kwargs" in rec and not isinstance(rec["env_kwargs"], dict):
        raise ObservationRecordError(f"{path}: {MEMBER} env_kwargs must be a JSON object, got {rec['env_kwargs']!r}")
    for key in ("env_id", "observation_layout"):
        if not isinstance(rec[key], str):
            raise ObservationRecordError(f"{path}: {MEMBER} {key} must be a string, got {rec[key]!r}")
    if rec["role"] is not None and not isinstance(rec["role"], str):
        raise ObservationRecordError(f"{path}: {MEMBER} role must be a string or null, got {rec['role']!r}")
    if not isinstance(rec["observation_version"], int) or isinstance(rec["observation_version"], bool):
        raise ObservationRecordError(f"{path}: {MEMBER} observation_version must be an integer, got "
                                     f"{rec['observation_version']!r}")


def check_env(path: str | Path, rec: dict[str, Any] | None, env_id: str) -> None:
    """Refuse a checkpoint whose record ``rec`` (None: nothing to compare) names another
    observation layout than the one ``env_id`` emits (:func:`envs.observation_layout`; a role of a
    PettingZoo env is loaded for the single-agent env it sees, e.g. Routing-v0 for a router seat):
    :class:`ObservationRecordError` naming the file and both. Where the shapes differ too, the
    policy's own shape check would also refuse it; this names the cause."""
    if rec is None:
        return
    import envs

    layout = envs.observation_layout(env_id)
    if rec["observation_layout"] != layout:
        raise ObservationRecordError(f"{path}: trained on {rec['observation_layout']}'s observation, "
                                     f"not {layout}'s")


def space_shape(space: Any) -> str:
    """A space's shape as stamp's error shows it: ``Box(80,)``, ``Discrete(108)``,
    ``MultiDiscrete([3, 2])``, a ``Dict`` of those; the type name and ``shape`` otherwise."""
    from gymnasium import spaces

    if isinstance(space, spaces.Dict):
        return "Dict(" + ", ".join(f"{k}: {space_shape(v)}" for k, v in space.spaces.items()) + ")"
    if isinstance(space, spaces.Discrete):
        return f"Discrete({int(space.n)})"
    if isinstance(space, spaces.MultiDiscrete):
        return f"MultiDiscrete({[int(n) for n in space.nvec.ravel()]})"
    return f"{type(space).__name__}{tuple(space.shape) if space.shape is not None else '()'}"


def env_spaces(env_id: str, role: str | None = None,
               env_kwargs: dict[str, Any] | None = None) -> tuple[Any, Any]:
    """``(observation_space, action_space)`` of ``env_id`` in its default configuration, or in the one
    ``env_kwargs`` sets (its config dataclass's fields, as ``agents.env_kwargs.parse_env_kwargs`` reads
    ``--env-kwargs``): its native VecEnv's, or a PettingZoo env's first agent in seat ``role``
    (``router_0`` for MultiCluster-v0's ``router``; ExpertPlacementParallel-v0's first agent for None).
    ``KeyError`` for an unknown env or role; ``ValueError`` naming ``env_kwargs`` where the environment
    refuses them."""
    import envs

    envs.observation_layout(env_id, role)  # KeyError (one line) for an unknown env or role
    kwargs = dict(env_kwargs or {})
    try:
        if role is None and env_id in envs.VEC_ENVS:
            vec = envs.make_vec(env_id, 1, seed=0, **kwargs)
            try:
                return vec.observation_space, vec.action_space
            finally:
                vec.close()
        penv = envs.make_parallel(env_id, **kwargs)
    except (ValueError, TypeError, KeyError) as err:
        if not kwargs:
            raise
        msg = " ".join(str(err.args[0] if isinstance(err, KeyError) and err.args else err).split())
        raise ValueError(f"--env-kwargs {_kwargs_text(kwargs)}: {env_id} refuses them: {msg}") from None
    agent = next(a for a in penv.possible_agents if role is None or a == role or a.rsplit("_", 1)[0] == role)
    return penv.observation_space(agent), penv.action_space(agent)


def _kwargs_text(env_kwargs: dict[str, Any] | None) -> str:
    """``KEY=VALUE ...`` as ``--env-kwargs`` takes them (``agents.env_kwargs.env_kwargs_args``'s form)."""
    return " ".join(f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in (env_kwargs or {}).items())


def check_spaces(path: str | Path, data: bytes, env_id: str, role: str | None = None,
                 env_kwargs: dict[str, Any] | None = None) -> None:
    """Refuse to record ``env_id`` (``role``) in a checkpoint whose policy reads or writes other shapes:
    ``data`` is the SB3 zip's ``data`` member (JSON; each space cloudpickled under ``:serialized:``, as
    ``stable_baselines3.common.save_util.data_to_json`` writes it). ``ValueError`` naming the file and
    both shapes (:func:`space_shape`) where the observation or the action space differs from
    :func:`env_spaces` (``env_kwargs``: in that configuration, else the default one), or where ``data``
    holds no readable space."""
    import base64

    import cloudpickle

    saved = []
    for key in ("observation_space", "action_space"):
        try:
            saved.append(cloudpickle.loads(base64.b64decode(json.loads(data)[key][":serialized:"].encode())))
        except Exception as err:  # noqa: BLE001 (JSON, base64 and unpickling each raise their own types)
            raise ValueError(f"{path}: its 'data' member holds no readable {key} "
                             f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else err})") from None
    seat = f" ({role} seat)" if role else ""
    config = f"--env-kwargs {_kwargs_text(env_kwargs)}" if env_kwargs else "default configuration"
    for kind, got, want in zip(("observation", "action"), saved, env_spaces(env_id, role, env_kwargs)):
        if space_shape(got) != space_shape(want):
            raise ValueError(f"{path}: its policy's {kind} space is {space_shape(got)}, {env_id}{seat}'s "
                             f"({config}) is {space_shape(want)}; not stamped")


def stamp_zip(path: str | Path, env_id: str, role: str | None = None, *, spaces: bool = False,
              env_kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write :func:`record` ``(env_id, role)`` into the SB3 checkpoint ``path`` as its member
    ``servegym.json`` (appended, so every other member keeps its stored bytes; an earlier,
    different record is replaced, the other members keeping their contents and compression). Written to a temporary file, then renamed over ``path``. Returns the record;
    ``ValueError`` if ``path`` is no SB3 zip (no ``data`` member) or, with ``spaces`` (the stamp
    commands, for a file trained elsewhere; not a training run's own save, whose env may be configured
    otherwise), its policy's observation or action space shape differs from ``env_id``'s (``role``'s)
    in its default configuration, or in the one ``env_kwargs`` sets (:func:`check_spaces`; the file is
    left as it was). Non-empty ``env_kwargs`` (the stamp commands' ``--env-kwargs``) are recorded as the
    record's fifth key ``"env_kwargs"`` (a JSON object; tuples as lists): the configuration whose
    shapes were checked; without them the record has its four keys, byte for byte as before."""
    path = Path(path)
    rec = record(env_id, role)
    if env_kwargs:
        rec["env_kwargs"] = json.loads(json.dumps(env_kwargs))  # as read back (tuples as lists)
    blob = json.dumps(rec, sort_keys=True) + "\n"
    try:
        with zipfile.ZipFile(path) as src:
            names = src.namelist()
            if "data" not in names:
                raise ValueError(f"{path}: not a stable-baselines3 checkpoint (no 'data' member)")
            if spaces:
                check_spaces(path, src.read("data"), env_id, role, env_kwargs)
            if MEMBER in names and src.read(MEMBER) == blob.encode():  # bytes: an earlier record may not be UTF-8
                return rec  # already this record
            members = [(info, src.read(info.filename)) for info in src.infolist() if info.filename != MEMBER]
    except (OSError, zipfile.BadZipFile) as err:
        raise ValueError(f"{path}: not a zip file ({err})") from None
    tmp = path.with_name(f".{path.name}.{os.getpid()}.stamp.tmp")
    if MEMBER not in names:  # appended: every other member's stored bytes stay as they were
        tmp.write_bytes(path.read_bytes())
        with zipfile.ZipFile(tmp, "a") as dst:
            dst.writestr(MEMBER, blob, compress_type=zipfile.ZIP_DEFLATED)
    else:  # an earlier record replaced: the other members copied with their compression
        with zipfile.ZipFile(tmp, "w") as dst:
            for info, data in members:
                dst.writestr(info, data, compress_type=info.compress_type)
            dst.writestr(MEMBER, blob, compress_type=zipfile.ZIP_DEFLATED)
    os.replace(tmp, path)
    return rec


def check(path: str | Path, rec: dict[str, Any] | None) -> None:
    """Refuse a checkpoint trained on another observation version: ``rec`` is its record (``None``:
    none recorded). Raises :class:`ObservationMismatch` (one line: the file, the recorded and current
    versions and what each means, "retrain") when ``rec``'s version differs from what this servegym
    builds for ``rec``'s ``observation_layout``, ``ValueError`` for an unknown layout; warns
    :class:`ObservationVersionUnknown` once per file when ``rec`` is None."""
    import envs

    if rec is None:
        key = os.path.abspath(path)
        if key not in _warned:
            _warned.add(key)
            warnings.warn(f"{path}: records no observation version (written before servegym recorded "
                          "them); it may have been trained on an earlier observation layout", ObservationVersionUnknown,
                          stacklevel=3)
        return
    _validate(path, rec)
    try:
        current, meanings = envs.layout_version(rec["observation_layout"])
    except KeyError as err:
        raise ObservationRecordError(f"{path}: trained on an {err.args[0] if err.args else err}") from None
    got = rec["observation_version"]
    if got != current:
        seat = f" ({rec['role']} seat)" if rec["role"] else ""
        raise ObservationMismatch(
            f"{path}: trained on {rec['env_id']}{seat} observation v{got} "
            f"({meanings.get(got, 'a version this servegym does not know')}); this servegym builds "
            f"v{current} ({meanings[current]}); retrain")


def check_zip(path: str | Path) -> dict[str, Any] | None:
    """:func:`check` of the record inside the SB3 checkpoint ``path``; returns the record."""
    rec = read_zip(path)
    check(path, rec)
    return rec


def read_file(path: str | Path) -> dict[str, Any] | None:
    """The record of an SB3 checkpoint (:func:`read_zip`) or of an ONNX export (``.onnx``: its
    ``metadata_props``, read with onnxruntime, :func:`from_onnx_metadata`); None where none is
    recorded; ``ValueError`` naming the file if it cannot be read or its record is malformed."""
    if Path(path).suffix == ".onnx":
        import onnxruntime as ort

        try:
            meta = dict(ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
                        .get_modelmeta().custom_metadata_map)
        except Exception as err:  # onnxruntime raises its own exception types for a bad file
            raise ValueError(f"{path}: not an ONNX model ({str(err).splitlines()[0] if str(err) else err})") from None
        return from_onnx_metadata(path, meta)
    return read_zip(path)


def check_file(path: str | Path) -> dict[str, Any] | None:
    """:func:`check` of an SB3 checkpoint (``.zip``) or an ONNX export (``.onnx``, its
    ``metadata_props``, read with onnxruntime); returns the record (None where none is recorded)."""
    rec = read_file(path)
    check(path, rec)
    return rec


def onnx_metadata(rec: dict[str, Any] | None) -> dict[str, str]:
    """The ``metadata_props`` entries of ``rec`` for an ONNX export (empty for None)."""
    if rec is None:
        return {}
    return {"observation_layout": rec["observation_layout"], "observation_version": str(rec["observation_version"])}


def from_onnx_metadata(path: str | Path, meta: dict[str, str]) -> dict[str, Any] | None:
    """The record of an ONNX export from its ``metadata_props`` (None where export recorded none);
    ``ValueError`` naming the file for a malformed version."""
    if "observation_version" not in meta:
        return None
    v = meta["observation_version"]
    if not (v.isascii() and v.isdigit()):
        raise ObservationRecordError(f"{path}: metadata observation_version must be an integer, got {v!r}")
    return {"env_id": meta.get("env_id", ""), "role": None,
            "observation_layout": meta.get("observation_layout", ""), "observation_version": int(v)}


def main(argv: list[str] | None = None) -> int:
    """``python -m agents.obs_version stamp FILE.zip --env ID [--role ROLE] [--env-kwargs KEY=VALUE ...]`` |
    ``show FILE.zip|FILE.onnx ...``."""
    from envs import options  # not agents.cli: it imports agents.policy, which imports this module

    p = options.Parser(prog="python -m agents.obs_version", description=main.__doc__)  # errors: one line, status 2
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("stamp", help="record the current observation version in SB3 checkpoints")
    s.add_argument("files", nargs="+", type=Path)
    s.add_argument("--env", required=True, type=options.env_arg, help="environment id, short or package name")
    s.add_argument("--role", default=None, help="the seat of a multi-agent environment "
                   f"({', '.join(options.MULTI_AGENT)}) whose observation the file reads")
    s.add_argument("--env-kwargs", nargs="*", default=[], metavar="KEY=VALUE",
                   help="the configuration the file was trained on (as train.py takes it): its policy's "
                   "spaces are checked against it, not the default one, and it is recorded")
    sh = sub.add_parser("show", help="print each file's record (or 'none')")
    sh.add_argument("files", nargs="+", type=Path)
    a = p.parse_args(argv)
    kwargs: dict[str, Any] = {}
    if a.cmd == "stamp":
        if a.role is not None and not options.is_multi_agent(a.env):
            s.error(f"--role {a.role}: applies only to the multi-agent environment(s) "
                    f"{', '.join(options.MULTI_AGENT)}; --env {a.env} is single-agent (stamp it without --role)")
        import envs

        seats = envs.observation_roles(a.env)
        if seats and a.role not in seats:  # was a KeyError's text under the parent's prefix, naming no option
            s.error(f"--role {a.role}: not a seat of {a.env}; allowed: {', '.join(seats)}" if a.role is not None
                    else f"--role: required with the multi-agent --env {a.env}; allowed: {', '.join(seats)}")
        from agents.env_kwargs import UsageError, parse_env_kwargs  # not agents.cli: it imports agents.policy

        try:
            kwargs = parse_env_kwargs(a.env_kwargs, a.env)
        except UsageError as err:
            s.error(str(err))
    try:
        for f in a.files:
            if a.cmd == "stamp":
                rec = stamp_zip(f, a.env, a.role, spaces=True, env_kwargs=kwargs)
                print(f"{f}: {json.dumps(rec, sort_keys=True)}")
            else:
                rec = read_file(f)
                print(f"{f}: {json.dumps(rec, sort_keys=True) if rec is not None else 'none'}")
    except (ValueError, KeyError) as err:
        p.exit(2, f"{p.prog}: error: {err.args[0] if isinstance(err, KeyError) else err}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
