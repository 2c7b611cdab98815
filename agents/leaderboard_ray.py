"""The leaderboard's scenario x policy runs as Ray tasks (``python -m agents.leaderboard --ray``).

Each task is ``agents.leaderboard.run_policy`` for one (scenario, policy) pair: a fresh
environment and policy seeded by the scenario, so the episodes, and therefore every output file
but ``timing.json``, equal the sequential run's byte for byte (tests/test_ray.py checks it). Tasks
take one CPU each; a task whose worker process or node dies is retried by Ray (``max_retries``);
an exception inside a task stops the run with the scenario and policy named, as the sequential
run would. The progress bar advances as tasks finish, in whatever order they finish.
"""

from __future__ import annotations

import os
from typing import Any, Callable

from agents.ray_cluster import connect, require_ray
from agents.scenarios import PolicyRun, Scenario, ScenarioResult

MAX_RETRIES = 3  # Ray's own default for tasks; stated so the behaviour is visible here


def _task(run_policy: Callable[..., PolicyRun], sc: Scenario, spec: str, quick: bool,
          episodes: int | None, cwd: str) -> PolicyRun:
    if os.path.isdir(cwd):
        os.chdir(cwd)  # relative --trace paths mean what they meant to the driver
    return run_policy(sc, spec, quick, episodes)


def run_on_ray(plan: list[tuple[Scenario, list[str], str]], quick: bool, episodes: int | None,
               bar: Any, run_policy: Callable[..., PolicyRun], address: str | None = None,
               num_cpus: int | None = None) -> list[ScenarioResult]:
    """Run ``plan`` (from ``agents.leaderboard.plan_runs``) on Ray, each pair as one task calling
    ``run_policy(scenario, policy, quick, episodes)`` (``agents.leaderboard.run_policy``, passed
    in, so that this module does not import the leaderboard back); results in plan order.
    Raises ``RuntimeError`` naming the scenario and policy of a task that raised."""
    ray = require_ray()
    connect(address, num_cpus)
    task = ray.remote(num_cpus=1, max_retries=MAX_RETRIES)(_task)
    cwd = os.getcwd()
    where: dict[Any, tuple[int, int]] = {}
    for i, (sc, policies, _) in enumerate(plan):
        for j, spec in enumerate(policies):
            where[task.remote(run_policy, sc, spec, quick, episodes, cwd)] = (i, j)
    runs: dict[tuple[int, int], PolicyRun] = {}
    pending = list(where)
    while pending:
        ready, pending = ray.wait(pending, num_returns=1)
        for ref in ready:
            i, j = where[ref]
            sc, policies = plan[i][0], plan[i][1]
            try:
                runs[(i, j)] = ray.get(ref)
            except ray.exceptions.RayError as err:
                for other in pending:
                    ray.cancel(other)
                cause = err.cause if isinstance(err, ray.exceptions.RayTaskError) and err.cause else err
                raise RuntimeError(f"leaderboard --ray: scenario {sc.id}, policy {policies[j]}: "
                                   f"{type(cause).__name__}: {cause}") from cause
            bar.update(1)
            bar.set_postfix_str(f"{sc.id} {policies[j]}")
    results = []
    for i, (sc, policies, why) in enumerate(plan):
        if not policies:
            results.append(ScenarioResult(sc, skipped=why))
        else:
            results.append(ScenarioResult(sc, [runs[(i, j)] for j in range(len(policies))]))
    return results


__all__ = ["MAX_RETRIES", "run_on_ray"]
