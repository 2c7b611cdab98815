"""The held-out evaluation of the heuristics, run in a worker process while the agent trains.

``train.py`` scores its trained agent against every heuristic of the environment on the same
held-out windows (``agents.evaluate.evaluate``). The heuristics' part of that report does not
depend on the agent, and training keeps one core busy (``--threads 1``, the env stepped in
the same process): ``start`` computes it in one worker process from the start of training,
``merge`` joins it to the agent's own part afterwards. The report is the one ``evaluate`` gives for
all the policies in one call, field for field (``evaluate``'s report is a function of its
arguments alone, one policy's results independent of the others'); on a machine with one core
it costs the worker's start-up (about 2 s of imports), on two cores it takes the heuristics'
episodes (about 15% of the README command's time) out of the wall time (issue 16).
"""

from __future__ import annotations

import multiprocessing as mp
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any


def _evaluate(env_id: str, policies: list[str], trace: Any, episodes: int, seed: int, env_kwargs: dict,
              split: str) -> dict[str, Any]:
    from agents.evaluate import evaluate

    return evaluate(env_id, policies, trace, episodes, seed, env_kwargs, split, progress=False)


class EvalAhead:
    """One worker process evaluating policies that need nothing from training (heuristic names,
    ``random``): ``submit`` queues one ``evaluate`` call (same arguments as ``evaluate``), its
    future's ``result()`` is that call's report; ``close`` stops the worker (also as a context
    manager). A worker's exception is raised again by ``result()``."""

    def __init__(self) -> None:
        # forkserver (spawn where there is none): a fork of a process holding torch's threads and
        # the envs' state is not safe (``agents.disaggregation_teacher`` does the same)
        ctx = mp.get_context("forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn")
        self._pool = ProcessPoolExecutor(1, mp_context=ctx)

    def submit(self, env_id: str, policies: list[str], trace: Any, episodes: int, seed: int,
               env_kwargs: dict, split: str) -> Future:
        return self._pool.submit(_evaluate, env_id, list(policies), trace, episodes, seed, dict(env_kwargs), split)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> "EvalAhead":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def merge(first: dict[str, Any], rest: dict[str, Any]) -> dict[str, Any]:
    """One ``evaluate`` report of ``first``'s policies then ``rest``'s, from two reports of the same
    scenarios (every field but ``results`` equal; ``ValueError`` naming the first that differs)."""
    for key in sorted(set(first) | set(rest)):
        if key != "results" and first.get(key) != rest.get(key):
            raise ValueError(f"eval_ahead.merge: the reports differ in {key!r} "
                             f"({first.get(key)!r} vs {rest.get(key)!r}): not the same scenarios")
    return {**first, "results": [*first["results"], *rest["results"]]}
