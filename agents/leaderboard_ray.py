"""The leaderboard's scenario x policy runs on Ray (``python -m agents.leaderboard --ray``).

Each run is ``agents.leaderboard.run_policy`` for one (scenario, policy) pair: a fresh
environment and policy seeded by the scenario, so the episodes, and therefore every output file
but ``timing.json``, equal the sequential run's byte for byte (tests/test_ray.py checks it).

Why actors and not plain tasks: the first run of an environment in a process pays for loading
its compiled kernels, its trace and the references it memoizes (oracle plans, searched
baselines): 10-40 s, against 1-5 s for most runs after it. Plain tasks spread every
environment over every worker, so on 16 workers that first-run cost was paid about 16 times per
environment and the runs took 3.2x their sequential CPU time (``timing.json`` of both runs on
16 cores). Here one worker actor per CPU keeps a set of environments it has warmed, and each
free worker is handed a run of an environment it already holds (longest expected first); it
takes up a new environment only when its own are done, choosing the one with the most
remaining work per worker holding it. Expected durations come from ``hints`` (a previous
run's ``timing.json``), else every run counts the same.

Sharded runs (``agents.policy_base.Sharded``: the clairvoyant oracles of Disaggregation-v0, whose
candidate replays are most of the leaderboard's CPU time): the shards of a scenario's shard group
are runs of their own, done once for every policy of the group, each on any worker; the policy's
run starts when all its shards are done and gets their results (``run_policy(..., shards=)``).
The oracle then plays exactly as in the sequential run, where it replays its candidates itself.

A worker process that dies is restarted and its run retried by Ray (``MAX_RETRIES``); an
exception inside a run stops the leaderboard with the scenario and policy named, as the
sequential run would (an error in the user's input, ``user_errors``, as the run raised it). The
progress bar advances as runs finish, in whatever order they finish.
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from typing import Any, Callable

from agents.ray_cluster import connect, require_ray
from agents.scenarios import PolicyRun, Scenario, ScenarioResult

MAX_RETRIES = 3  # Ray's own default for tasks; the same for a restarted worker actor


class _Worker:
    """One CPU's worker process; runs accumulate in it so that what an environment memoizes is
    built once per process."""

    def run(self, run_policy: Callable[..., PolicyRun], sc: Scenario, spec: str, quick: bool,
            episodes: int | None, cwd: str, shards: list[Any] | None = None) -> PolicyRun:
        if os.path.isdir(cwd):
            os.chdir(cwd)  # relative --trace paths mean what they meant to the driver
        if shards is None:
            return run_policy(sc, spec, quick, episodes)
        return run_policy(sc, spec, quick, episodes, shards=shards)

    def shard(self, run_shard: Callable[..., Any], sc: Scenario, spec: str, quick: bool,
              episodes: int | None, cwd: str, index: int) -> tuple[Any, float]:
        if os.path.isdir(cwd):
            os.chdir(cwd)
        t = time.perf_counter()
        out = run_shard(sc, spec, quick, episodes, index)
        return out, time.perf_counter() - t


def _expected_s(hints: dict[str, Any] | None, sc: Scenario, spec: str) -> float:
    try:
        return float(hints["scenarios"][sc.id][spec]["wall_s"])  # type: ignore[index]
    except (TypeError, KeyError, ValueError):
        return 1.0


class Affinity:
    """Which run a free worker gets next: a ready run of an environment it has already warmed (the
    environment with the most expected work left, its longest ready run first), else a ready run
    of the environment with the most expected work left per worker already holding it.

    ``runs``: env id -> [(expected seconds, key)]; ``ready(key)``: whether a run may start now
    (a sharded run waits for its shards; default: always). ``next(w)`` returns a key, or None when
    no run is ready. Ties break on the env id and the key, so the order is deterministic."""

    def __init__(self, runs: dict[str, list[tuple[float, Any]]], n_workers: int,
                 ready: Callable[[Any], bool] | None = None) -> None:
        # longest last (taken first); equal lengths in key order (stable sorts)
        self.todo = {env: sorted(sorted(r, key=lambda x: x[1], reverse=True), key=lambda x: x[0])
                     for env, r in runs.items()}
        self.work = {env: sum(x[0] for x in r) for env, r in self.todo.items()}  # expected s left
        self.warmed: list[set[str]] = [set() for _ in range(n_workers)]
        self.holders: dict[str, int] = defaultdict(int)
        self.ready = ready or (lambda key: True)

    def _last_ready(self, env: str) -> int | None:
        r = self.todo[env]
        return next((i for i in range(len(r) - 1, -1, -1) if self.ready(r[i][1])), None)

    def next(self, w: int) -> Any:
        left = [env for env, r in self.todo.items() if r and self._last_ready(env) is not None]
        if not left:
            return None
        work = self.work
        own = [env for env in left if env in self.warmed[w]]
        if own:
            env = max(own, key=lambda e: (work[e], e))
        else:
            env = max(left, key=lambda e: (work[e] / (self.holders[e] + 1), e))
            self.warmed[w].add(env)
            self.holders[env] += 1
        expected, key = self.todo[env].pop(self._last_ready(env))  # type: ignore[arg-type]
        work[env] -= expected
        return key

    def done(self) -> bool:
        return not any(self.todo.values())


def _hinted_shard_s(hints: dict[str, Any] | None, sc: Scenario, group: str) -> float | None:
    try:
        walls = hints["shards"][sc.id][group]["wall_s"]  # type: ignore[index]
        return float(sum(walls) / len(walls))
    except (TypeError, KeyError, ValueError, ZeroDivisionError):
        return None


def run_on_ray(plan: list[tuple[Scenario, list[str], str]], quick: bool, episodes: int | None,
               bar: Any, run_policy: Callable[..., PolicyRun], address: str | None = None,
               num_cpus: int | None = None, hints: dict[str, Any] | None = None,
               run_shard: Callable[..., Any] | None = None,
               user_errors: tuple[type[BaseException], ...] = ()) -> list[ScenarioResult]:
    """Run ``plan`` (from ``agents.leaderboard.plan_runs``) on Ray, each pair as one call of
    ``run_policy(scenario, policy, quick, episodes)`` (``agents.leaderboard.run_policy``, passed
    in, so that this module does not import the leaderboard back) on one of the cluster's worker
    actors (one per CPU); results in plan order, whatever the order the runs finish in.
    ``run_shard(scenario, policy, quick, episodes, index)`` (``agents.leaderboard.run_shard``):
    with it, the shards of ``Sharded`` heuristics run first as runs of their own (module
    docstring); without it every policy runs whole.
    ``hints``: a previous run's ``timing.json`` (``{"scenarios": {id: {policy: {"wall_s"}}},
    "shards": {id: {group: {"wall_s": [...]}}}}``), used only to start the longest runs first.
    Raises ``RuntimeError`` naming the scenario and policy of a run (or shard) that raised, except that an
    exception of one of ``user_errors`` (``agents.leaderboard.USER_ERRORS``: errors in the user's input,
    which the sequential run ends with as one line) is raised as the run raised it (Ray's wrapper and
    traceback dropped), so that the user sees the same line on either path."""
    from agents.policy import shard_spec

    ray = require_ray()
    resources = connect(address, num_cpus)
    n_eps = {i: episodes or sc.n_episodes(quick) for i, (sc, _, _) in enumerate(plan)}
    # Work items: ("run", i, j) = policy j of scenario i; ("shard", i, group, k) = shard k of a
    # shard group of scenario i, shared by that group's policies (run by the first of them).
    items: dict[str, list[tuple[float, tuple]]] = defaultdict(list)
    needs: dict[tuple, tuple] = {}  # run -> its shard group (i, group)
    group_spec: dict[tuple, tuple[str, int]] = {}  # (i, group) -> (policy that runs its shards, count)
    for i, (sc, policies, _) in enumerate(plan):
        for j, spec in enumerate(policies):
            expected = _expected_s(hints, sc, spec)
            ss = shard_spec(sc.env_id, spec) if run_shard is not None else None
            if ss is None:
                items[sc.env_id].append((expected, ("run", i, j)))
                continue
            group, per_episode = ss
            n_shards = per_episode * n_eps[i]
            if (i, group) not in group_spec:
                group_spec[(i, group)] = (spec, n_shards)
                each = _hinted_shard_s(hints, sc, group) or expected / n_shards
                items[sc.env_id] += [(each, ("shard", i, group, k)) for k in range(n_shards)]
            needs[("run", i, j)] = (i, group)
            items[sc.env_id].append((expected / n_shards, ("run", i, j)))
    shard_out: dict[tuple, dict[int, Any]] = defaultdict(dict)
    shard_s: dict[tuple, list[float]] = defaultdict(list)

    def ready(key: tuple) -> bool:
        g = needs.get(key)
        return g is None or len(shard_out[g]) == group_spec[g][1]

    n_items = sum(len(v) for v in items.values())
    n_workers = max(1, min(int(resources.get("CPU", 1)), n_items))
    actor = ray.remote(num_cpus=1, max_restarts=MAX_RETRIES, max_task_retries=MAX_RETRIES)(_Worker)
    workers = [actor.remote() for _ in range(n_workers)]
    dispatch = Affinity(items, n_workers, ready)

    cwd = os.getcwd()
    where: dict[Any, tuple[int, tuple]] = {}
    idle: list[int] = []

    def submit(w: int) -> None:
        key = dispatch.next(w)
        if key is None:
            idle.append(w)
            return
        i = key[1]
        sc, policies = plan[i][0], plan[i][1]
        if key[0] == "shard":
            spec = group_spec[(i, key[2])][0]
            ref = workers[w].shard.remote(run_shard, sc, spec, quick, episodes, cwd, key[3])
        else:
            got = shard_out[needs[key]] if key in needs else None
            ref = workers[w].run.remote(run_policy, sc, policies[key[2]], quick, episodes, cwd,
                                        None if got is None else [got[k] for k in sorted(got)])
        where[ref] = (w, key)

    for w in range(n_workers):
        submit(w)
    runs: dict[tuple[int, int], PolicyRun] = {}
    while where:
        (ref,), _ = ray.wait(list(where), num_returns=1)
        w, key = where.pop(ref)
        i = key[1]
        sc, policies = plan[i][0], plan[i][1]
        try:
            out = ray.get(ref)
        except ray.exceptions.RayError as err:
            for a in workers:
                ray.kill(a)
            cause = err.cause if isinstance(err, ray.exceptions.RayTaskError) and err.cause else err
            if isinstance(cause, user_errors):
                raise cause from None
            what = (f"policy {policies[key[2]]}" if key[0] == "run"
                    else f"shard {key[3]} of {group_spec[(i, key[2])][0]}")
            raise RuntimeError(f"leaderboard --ray: scenario {sc.id}, {what}: "
                               f"{type(cause).__name__}: {cause}") from cause
        if key[0] == "shard":
            shard_out[(i, key[2])][key[3]] = out[0]
            shard_s[(i, key[2])].append(out[1])
        else:
            runs[(i, key[2])] = out
            bar.update(1)
            bar.set_postfix_str(f"{sc.id} {policies[key[2]]}")
        # Only a finished item changes what is ready (a shard group's last shard frees its runs):
        # offer work to this worker, then once to each idle one.
        waiting, idle[:] = idle[:], []
        for v in (w, *waiting):
            submit(v)
    if not dispatch.done():  # cannot happen: every shard group's shards are runs of their own
        raise RuntimeError("leaderboard --ray: runs left whose shards never ran")
    for a in workers:
        ray.kill(a)
    results = []
    for i, (sc, policies, why) in enumerate(plan):
        if not policies:
            results.append(ScenarioResult(sc, skipped=why))
        else:
            res = ScenarioResult(sc, [runs[(i, j)] for j in range(len(policies))])
            res.shard_s = {g: shard_s[(k, g)] for (k, g) in group_spec if k == i}
            results.append(res)
    return results


__all__ = ["MAX_RETRIES", "Affinity", "run_on_ray"]
