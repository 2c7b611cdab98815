"""The held-out evaluation of the heuristics, run in a worker process while the agent trains.

``train.py`` scores its trained agent against every heuristic of the environment on the same
held-out windows (``agents.evaluate.evaluate``). The heuristics' part of that report does not
depend on the agent, and training keeps one core busy (``--threads 1``, the env stepped in
the same process): ``start`` computes it in one worker process from the start of training,
``merge`` joins it to the agent's own part afterwards. The report is the one ``evaluate`` gives for
all the policies in one call, field for field (``evaluate``'s report is a function of its
arguments alone, one policy's results independent of the others'). On two cores or more it takes
the heuristics' episodes (about 15% of the README command's time) out of the wall time (issue 16).
A process allowed one core (``os.sched_getaffinity``: ``taskset -c 0``, a one-CPU container) gets
no worker: there it could only take turns with training and would add its start-up (the forkserver
imports train.py's modules again, then the worker loads the kernels and builds the held-out
scenarios: 4-8 s on the GPU machine's host), so ``result()`` runs the evaluation in this process
instead, after training (same report).
"""

from __future__ import annotations

import multiprocessing as mp
import os
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any

from traces.checks import is_integer


def _evaluate(env_id: str, policies: list[str], trace: Any, episodes: int, seed: int, env_kwargs: dict,
              split: str) -> dict[str, Any]:
    from agents.evaluate import evaluate

    return evaluate(env_id, policies, trace, episodes, seed, env_kwargs, split, progress=False)


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity where the OS reports one, else the count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


class _Deferred:
    """A future-like call run in this process by the first ``result()`` (its exception raised there)."""

    def __init__(self, *args: Any) -> None:
        self._args, self._done, self._value = args, False, None

    def result(self) -> dict[str, Any]:
        if not self._done:
            self._value, self._done = _evaluate(*self._args), True
        return self._value


class EvalAhead:
    """One worker process evaluating policies that need nothing from training (heuristic names,
    ``random``): ``submit`` queues one ``evaluate`` call (same arguments as ``evaluate``), its
    future's ``result()`` is that call's report; ``close`` stops the worker (also as a context
    manager). A worker's exception is raised again by ``result()``. ``workers=0`` (the default
    where ``usable_cores()`` is 1) starts none: ``result()`` then runs the call in this process."""

    def __init__(self, workers: int | None = None) -> None:
        if workers is None:
            workers = 1 if usable_cores() >= 2 else 0
        if not is_integer(workers) or workers not in (0, 1):
            raise ValueError(f"EvalAhead: workers must be 0 or 1, got {workers!r}")
        self._pool = None
        if workers:
            # forkserver (spawn where there is none): a fork of a process holding torch's threads and
            # the envs' state is not safe (``agents.disaggregation_teacher`` does the same)
            ctx = mp.get_context("forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn")
            self._pool = ProcessPoolExecutor(1, mp_context=ctx)

    def submit(self, env_id: str, policies: list[str], trace: Any, episodes: int, seed: int,
               env_kwargs: dict, split: str) -> Future | _Deferred:
        args = (env_id, list(policies), trace, episodes, seed, dict(env_kwargs), split)
        return _Deferred(*args) if self._pool is None else self._pool.submit(_evaluate, *args)

    def close(self) -> None:
        if self._pool is not None:
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


if __name__ == "__main__":  # `python -m agents.eval_ahead ...` exited 0 having done nothing
    import sys

    print("python -m agents.eval_ahead: not a command; train.py runs it (the heuristics' held-out evaluation in "
          "a worker process while the agent trains)", file=sys.stderr)
    sys.exit(2)
