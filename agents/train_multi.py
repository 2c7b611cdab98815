"""Train the multi-agent cluster's router role in the cluster itself: DAgger from Routing-v0's privileged
teacher, parameter sharing over every router seat, on the training distribution.

    python -m agents.train_multi [--steps N] [--seed S] [--clusters C] [--loads L ...] [--warm-start zoo|none|PATH]
        [--admission zoo|HEURISTIC] [--workloads ENTRY ...] --out DIR

The batch is one ``envs.multi.env.RoleVecEnv`` (role ``router``) per training workload
(``agents.scenarios.TRAINING_WORKLOADS["servegym/MultiCluster-v0"]``: Routing-v0's transfer
distribution, the Azure and Mooncake conversation generators and the real traces' training parts, first
70%), ``--clusters`` clusters each, joined as one SB3 VecEnv (``agents.family_vec.FamilyVecEnv``); each
episode draws its load from ``--loads`` (fractions of the cluster's capacity without prefix reuse). The
other seats are the team the router will play in: ``--admission`` (default ``zoo``, KVAdmission-v0's
reference agent) in every admission seat and HPA (``agents.heuristics.multi.HPA``) as the autoscaler.

The labels are ``RoleVecEnv.teacher_targets`` (each replica replayed alone with and without the
router's request, Routing-v0's teacher; ``envs/routing/teacher.py``); the loss and the schedule are
``agents.imitation.imitate`` (Ross et al. 2011). ``--warm-start zoo`` starts from Routing-v0's zoo
checkpoint (a MaskablePPO per-replica scorer, ``agents/scorer_policy.py``: the router observation here is
exactly Routing-v0's), ``none`` from a fresh scorer of the same shape.

Writes ``DIR/final.zip`` (a MaskablePPO checkpoint of Routing-v0's observation and action spaces, so
``--policy router=DIR/final.zip`` seats it) and ``DIR/run.json`` (command, git commit, workloads, loads,
seed, per-round DAgger statistics, wall seconds). Same seed, same checkpoint on one machine. Errors (an
unknown admission policy, a warm-start file that does not exist or does not fit, too few steps for one
per env per round, a --rounds, --epochs or --batch-size below 1, a --learning-rate not finite and > 0,
a negative --seed, an --out that is a file or cannot be made a folder): one line naming the option,
exit status 2, before training.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from agents import cli
from envs.options import output_problem
from traces.checks import positive_levels

ENV_ID = "servegym/MultiCluster-v0"
ROUTING_ID = "servegym/Routing-v0"
# Routing-v0's zoo recipe's load levels (agents/zoo/__init__.py), fractions of capacity without reuse.
LOADS = (0.3, 0.6, 0.9, 1.2, 1.6, 2.0)
# The per-replica scorer of Routing-v0's zoo recipe (used with --warm-start none).
SCORER = {"policy": "agents.scorer_policy:ItemScorerPolicy",
          "policy_kwargs": {"n_global": 7, "n_item": 10, "hidden": 64}}


class RouterFamilyVec:
    """Mixin for ``FamilyVecEnv`` over router ``RoleVecEnv`` parts: the parts' teachers joined."""

    def teacher_actions(self) -> np.ndarray:
        return np.concatenate([p.teacher_actions() for p in self.parts])

    def teacher_targets(self) -> np.ndarray:
        return np.concatenate([p.teacher_targets() for p in self.parts])


# RoleVecEnv fields build_vec sets from train_multi's own options (not --env-kwargs)
SET_HERE = ("trace", "split", "load", "slo_metric")


def build_vec(workloads: list[str], clusters: int, loads: tuple[float, ...], seed: int, admission: str,
              extra: dict[str, Any] | None = None) -> Any:
    """The training batch: one router ``RoleVecEnv`` of ``clusters`` clusters per entry of ``workloads``
    (its ``split="train"`` part), loads drawn from ``loads``, ``admission`` in every admission seat and
    HPA as autoscaler. Part k's clusters are seeded ``seed + k * clusters + c``."""
    from agents.family_vec import FamilyVecEnv
    from agents.heuristics.multi import HPA, ROLE_HEURISTICS
    from agents.policy import make_policy
    from envs.multi.env import RoleVecEnv

    if admission in ROLE_HEURISTICS["admission"]:
        adm = lambda view: ROLE_HEURISTICS["admission"][admission](view, seed)  # noqa: E731
    elif admission == "zoo":
        adm = lambda view: make_policy("zoo", view, "servegym/KVAdmission-v0", seed)  # noqa: E731
    else:
        raise ValueError(f"--admission {admission!r}: one of zoo, {', '.join(ROLE_HEURISTICS['admission'])}")
    others = {"admission": adm, "autoscaler": lambda view: HPA(view, seed)}
    cls = type("RouterFamilyVecEnv", (RouterFamilyVec, FamilyVecEnv), {})
    parts = []
    for k, w in enumerate(workloads):
        try:  # the trace's own error did not say which option gave it
            parts.append(RoleVecEnv(clusters, "router", seed + k * clusters, others=others, trace=w, split="train",
                                    load=tuple(loads), slo_metric="tpot", **(extra or {})))
        except (ValueError, FileNotFoundError) as err:
            raise ValueError(cli.file_error("--workloads", w, err)) from None
    return cls(parts, names=list(workloads))


def check_warm_start(warm_start: str) -> Path:
    """The checkpoint file ``--warm-start`` names (Routing-v0's zoo file for ``zoo``), checked without
    building any environment (``main`` calls it before the training batch, which takes 10-30 s to build):
    ``ValueError`` naming ``--warm-start`` and the file when it does not exist, is not a zip file, holds a malformed
    observation record, records another observation version (:class:`agents.obs_version.ObservationMismatch`)
    or another environment's observation than the router seat's (Routing-v0's,
    :func:`agents.obs_version.check_env`). Whether its weights fit the seat is checked at load
    (:func:`make_model`)."""
    from agents.zoo import ZOO

    path = Path(ZOO[ROUTING_ID] if warm_start == "zoo" else warm_start)
    if not path.is_file():
        raise ValueError(cli.file_error("--warm-start", warm_start, "no such file", path))
    if not zipfile.is_zipfile(path):
        raise ValueError(cli.file_error("--warm-start", warm_start, "not a zip file (an SB3 checkpoint is one)", path))
    from agents.obs_version import check_env, check_zip

    try:  # no zip, a malformed record, another observation version (ObservationMismatch) or another
        # environment's observation than the router seat's (Routing-v0's): ValueErrors naming the file
        check_env(path, check_zip(path), ROUTING_ID)
    except ValueError as err:
        raise ValueError(cli.file_error("--warm-start", warm_start, err, path)) from None
    return path


def make_model(vec: Any, warm_start: str, seed: int) -> Any:
    """A MaskablePPO model on ``vec``: Routing-v0's zoo checkpoint, a checkpoint file, or (``none``) a
    fresh per-replica scorer. ``ValueError`` naming ``--warm-start`` and the file when it is missing, no SB3
    zip, of another observation version or environment than the router seat's (Routing-v0's,
    :func:`agents.obs_version.check_env`), or its weights do not fit the seat's spaces."""
    from sb3_contrib import MaskablePPO

    if warm_start == "none":
        from agents.scorer_policy import ItemScorerPolicy

        return MaskablePPO(ItemScorerPolicy, vec, policy_kwargs=dict(SCORER["policy_kwargs"]), seed=seed,
                           device="cpu", verbose=0)
    path = check_warm_start(warm_start)  # main checked it already; make_model is also called alone
    # The per-replica scorer reads any replica count: its spaces follow the cluster's (an MLP of another
    # width fails to load its weights, reported as the file not fitting).
    try:
        return MaskablePPO.load(path, env=vec, device="cpu", seed=seed, custom_objects={
            "observation_space": vec.observation_space, "action_space": vec.action_space})
    except (RuntimeError, ValueError, KeyError, OSError, TypeError, EOFError, AssertionError) as err:
        # SB3 asserts a 'data' member; an empty .pth is an EOFError; torch's state-dict error names the
        # parameter on its second line
        lines = [ln.strip() for ln in str(err).strip().splitlines() if ln.strip()] or [type(err).__name__]
        raise ValueError(cli.file_error("--warm-start", warm_start, "does not fit the cluster's router seat: "
                                        + " ".join(lines[:2]), path)) from None


def main(argv: list[str] | None = None) -> int:
    from agents.scenarios import TRAINING_WORKLOADS

    p = cli.make_parser("python -m agents.train_multi", __doc__, envs_help=False)
    p.add_argument("--steps", type=int, default=16384, help="DAgger decisions over all router seats")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--clusters", type=int, default=4, help="clusters per training workload (2 routers each)")
    p.add_argument("--loads", type=float, nargs="+", default=list(LOADS))
    p.add_argument("--workloads", nargs="+", default=None,
                   help="trace entries (default: agents.scenarios.TRAINING_WORKLOADS of the multi-agent cluster)")
    p.add_argument("--warm-start", default="zoo", help="zoo (Routing-v0's zoo checkpoint), none, or a checkpoint")
    p.add_argument("--admission", default="zoo", help="the admission seats' policy during training")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--learning-rate", type=float, default=1e-3, help="Adam's step size in DAgger's updates")
    p.add_argument("--env-kwargs", nargs="*", default=[], metavar="KEY=VALUE",
                   help="fields of the cluster's config (envs.multi.env.MultiConfig) for every training cluster, e.g. "
                        f"window_requests=128 (not {', '.join(SET_HERE)}: set by the options above)")
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args(argv)
    try:  # a short --workloads trace asks for a smaller window_requests, which had no option to set it
        extra = cli.parse_env_kwargs(a.env_kwargs, ENV_ID)
    except ValueError as err:
        p.error(str(err))
    taken = [k for k in extra if k in SET_HERE]
    if taken:
        p.error(f"--env-kwargs {taken[0]}: set by train_multi itself ({', '.join(SET_HERE)}: --workloads, --loads)")
    if a.clusters < 1:
        p.error(f"--clusters must be >= 1, got {a.clusters}")
    try:
        positive_levels(a.loads, "--loads")  # the environments' wording (envs.config_check.check_load_field)
    except ValueError as err:
        p.error(str(err))
    for flag, v in (("--rounds", a.rounds), ("--epochs", a.epochs), ("--batch-size", a.batch_size)):
        if v < 1:
            p.error(f"{flag} must be >= 1, got {v}")
    if not (np.isfinite(a.learning_rate) and a.learning_rate > 0):
        p.error(f"--learning-rate must be finite and > 0, got {a.learning_rate}")
    if a.seed < 0:
        p.error(f"--seed must be >= 0, got {a.seed}")
    problem = output_problem(a.out, directory=True)  # a file there was a FileExistsError after training
    if problem is not None:
        p.error(f"--out {a.out}: {problem}")
    from agents.provenance import code_version

    try:  # a bad SERVEGYM_COMMIT was a traceback when run.json was written, after training
        code = code_version()  # taken once, before training: the commit that trained
    except ValueError as err:
        p.error(str(err))
    workloads = list(a.workloads or TRAINING_WORKLOADS[ENV_ID])
    t0 = time.perf_counter()
    import torch as th

    th.manual_seed(a.seed)
    try:  # a missing or refused --warm-start file was reported only after the batch was built (12-26 s)
        if a.warm_start != "none":
            check_warm_start(a.warm_start)
        vec = build_vec(workloads, a.clusters, tuple(a.loads), a.seed, a.admission, extra)
        model = make_model(vec, a.warm_start, a.seed)
    except (ValueError, FileNotFoundError) as err:
        p.error(str(err))
    from agents.imitation import imitate

    vec.seed(a.seed)
    try:
        history = imitate(model, vec, a.steps, rounds=a.rounds, epochs=a.epochs, batch_size=a.batch_size,
                          learning_rate=a.learning_rate, seed=a.seed, log=lambda s: print(s, flush=True))
    except ValueError as err:
        p.error(f"--steps {a.steps}: {err}")
    a.out.mkdir(parents=True, exist_ok=True)
    from agents.obs_version import record
    from agents.training import atomic_save

    atomic_save(model, a.out / "final.zip", ENV_ID, "router")  # with the router seat's observation version
    run = {"command": shlex.join(["python", "-m", "agents.train_multi", *(argv if argv is not None else sys.argv[1:])]),
           "code": code, "env": ENV_ID, "role": "router",
           "observation": record(ENV_ID, "router"), "workloads": workloads,
           "loads": list(a.loads), "env_kwargs": extra, "seed": a.seed, "steps": a.steps, "clusters_per_workload": a.clusters,
           "warm_start": a.warm_start, "admission": a.admission, "autoscaler": "hpa",
           "rounds": a.rounds, "epochs": a.epochs, "batch_size": a.batch_size, "learning_rate": a.learning_rate,
           "imitation": history, "wall_s": time.perf_counter() - t0}
    (a.out / "run.json").write_text(json.dumps(run, indent=1) + "\n")
    print(f"wrote {a.out / 'final.zip'} ({run['wall_s']:.0f} s)")
    vec.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
