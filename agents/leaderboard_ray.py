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

A worker process that dies is restarted and its run retried by Ray (``MAX_RETRIES``); an
exception inside a run stops the leaderboard with the scenario and policy named, as the
sequential run would. The progress bar advances as runs finish, in whatever order they finish.
"""

from __future__ import annotations

import os
from collections import defaultdict
from typing import Any, Callable

from agents.ray_cluster import connect, require_ray
from agents.scenarios import PolicyRun, Scenario, ScenarioResult

MAX_RETRIES = 3  # Ray's own default for tasks; the same for a restarted worker actor


class _Worker:
    """One CPU's worker process; runs accumulate in it so that what an environment memoizes is
    built once per process."""

    def run(self, run_policy: Callable[..., PolicyRun], sc: Scenario, spec: str, quick: bool,
            episodes: int | None, cwd: str) -> PolicyRun:
        if os.path.isdir(cwd):
            os.chdir(cwd)  # relative --trace paths mean what they meant to the driver
        return run_policy(sc, spec, quick, episodes)


def _expected_s(hints: dict[str, Any] | None, sc: Scenario, spec: str) -> float:
    try:
        return float(hints["scenarios"][sc.id][spec]["wall_s"])  # type: ignore[index]
    except (TypeError, KeyError, ValueError):
        return 1.0


class Affinity:
    """Which run a free worker gets next: a run of an environment it has already warmed (the
    environment with the most expected work left, its longest run first), else the environment
    with the most expected work left per worker already holding it.

    ``runs``: env id -> [(expected seconds, key)]; ``next(w)`` returns a key, or None when
    nothing is left. Ties break on the env id and the key, so the order is deterministic."""

    def __init__(self, runs: dict[str, list[tuple[float, Any]]], n_workers: int) -> None:
        # longest last (popped first); equal lengths in key order (stable sorts)
        self.todo = {env: sorted(sorted(r, key=lambda x: x[1], reverse=True), key=lambda x: x[0])
                     for env, r in runs.items()}
        self.work = {env: sum(x[0] for x in r) for env, r in self.todo.items()}  # expected s left
        self.warmed: list[set[str]] = [set() for _ in range(n_workers)]
        self.holders: dict[str, int] = defaultdict(int)

    def next(self, w: int) -> Any:
        left = [env for env, r in self.todo.items() if r]
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
        expected, key = self.todo[env].pop()
        work[env] -= expected
        return key


def run_on_ray(plan: list[tuple[Scenario, list[str], str]], quick: bool, episodes: int | None,
               bar: Any, run_policy: Callable[..., PolicyRun], address: str | None = None,
               num_cpus: int | None = None, hints: dict[str, Any] | None = None) -> list[ScenarioResult]:
    """Run ``plan`` (from ``agents.leaderboard.plan_runs``) on Ray, each pair as one call of
    ``run_policy(scenario, policy, quick, episodes)`` (``agents.leaderboard.run_policy``, passed
    in, so that this module does not import the leaderboard back) on one of the cluster's worker
    actors (one per CPU); results in plan order, whatever the order the runs finish in.
    ``hints``: a previous run's ``timing.json`` (``{"scenarios": {id: {policy: {"wall_s"}}}}``),
    used only to start the longest runs first. Raises ``RuntimeError`` naming the scenario and
    policy of a run that raised."""
    ray = require_ray()
    resources = connect(address, num_cpus)
    runs_by_env: dict[str, list[tuple[float, tuple[int, int]]]] = defaultdict(list)
    for i, (sc, policies, _) in enumerate(plan):
        for j, spec in enumerate(policies):
            runs_by_env[sc.env_id].append((_expected_s(hints, sc, spec), (i, j)))
    n_runs = sum(len(v) for v in runs_by_env.values())
    n_workers = max(1, min(int(resources.get("CPU", 1)), n_runs))
    actor = ray.remote(num_cpus=1, max_restarts=MAX_RETRIES, max_task_retries=MAX_RETRIES)(_Worker)
    workers = [actor.remote() for _ in range(n_workers)]
    dispatch = Affinity(runs_by_env, n_workers)

    cwd = os.getcwd()
    where: dict[Any, tuple[int, int, int]] = {}

    def submit(w: int) -> None:
        ij = dispatch.next(w)
        if ij is not None:
            i, j = ij
            ref = workers[w].run.remote(run_policy, plan[i][0], plan[i][1][j], quick, episodes, cwd)
            where[ref] = (w, i, j)

    for w in range(n_workers):
        submit(w)
    runs: dict[tuple[int, int], PolicyRun] = {}
    while where:
        (ref,), _ = ray.wait(list(where), num_returns=1)
        w, i, j = where.pop(ref)
        sc, policies = plan[i][0], plan[i][1]
        try:
            runs[(i, j)] = ray.get(ref)
        except ray.exceptions.RayError as err:
            for a in workers:
                ray.kill(a)
            cause = err.cause if isinstance(err, ray.exceptions.RayTaskError) and err.cause else err
            raise RuntimeError(f"leaderboard --ray: scenario {sc.id}, policy {policies[j]}: "
                               f"{type(cause).__name__}: {cause}") from cause
        bar.update(1)
        bar.set_postfix_str(f"{sc.id} {policies[j]}")
        submit(w)
    for a in workers:
        ray.kill(a)
    results = []
    for i, (sc, policies, why) in enumerate(plan):
        if not policies:
            results.append(ScenarioResult(sc, skipped=why))
        else:
            results.append(ScenarioResult(sc, [runs[(i, j)] for j in range(len(policies))]))
    return results


__all__ = ["MAX_RETRIES", "Affinity", "run_on_ray"]
