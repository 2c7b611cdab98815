"""Random steps of the environments' kernels compiled afresh with ``NUMBA_BOUNDSCHECK=1``, in a
subprocess that the test session starts as soon as collection ends (``conftest.py``), so that its
compilation (about 185 CPU-seconds for KVAdmission-v0 and MultiCluster-v0, 92 for PrefixEviction-v0
on the 2-core box; a kernel compiled with bounds checks cannot be cached: numba refuses, "uses dynamic
globals") runs on the second core while the rest of the suite runs on the first. The tests in
``test_fuzz.py`` that need it run last (``conftest.py`` moves them), wait for it and read its lines.

The subprocess first checks that bounds checking is on (an out-of-bounds index in a jitted function
must raise IndexError), then fuzzes each environment in turn (``envs.fuzz.fuzz``: random scenarios,
random legal actions, the invariants after every step) and prints one line per environment,
``OK <env_id> <steps>`` or ``FAIL <env_id>: <error>``; one environment's failure does not stop the
next. Its numba cache is a fresh temporary folder, so no kernel compiled without checks is reused.

A session that ends (or is stopped by Ctrl-C) kills it and removes the folder (``stop``). One that is
killed outright (SIGKILL, the OOM killer) runs no cleanup: the subprocess watches its parent from a
thread (``os.getppid()`` every 0.1 s: it changes when the parent dies and the child is re-parented) and
then removes the folder and exits at once (``os._exit``), within a second, even mid-compilation (the
compiler's Python and llvmlite's ctypes calls let the thread run); it used to fuzz on for minutes. A
thread rather than ``prctl(PR_SET_PDEATHSIG)``: the signal would kill it before it could remove the
folder, and a handler for a gentler one runs only when the main thread next executes Python code.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_CODE = """\
import os, shutil, sys, threading, time, traceback


def orphaned(parent, folder):  # the session was killed (SIGKILL runs no cleanup): end with it, folder removed
    while os.getppid() == parent:
        time.sleep(0.1)
    shutil.rmtree(folder, ignore_errors=True)
    os._exit(3)


threading.Thread(target=orphaned, args=({parent}, {folder!r}), daemon=True).start()
import numba, numpy as np
f = numba.njit(lambda a, i: a[i])
try:
    f(np.zeros(3), 5)
except IndexError:
    pass
else:
    sys.exit('bounds checking is off')
from envs import fuzz
failed = False
for env_id in {env_ids!r}:
    try:
        n, bad = fuzz.fuzz(env_id, {steps}, 0, {scenario_steps}, log=lambda m: None)
        assert not bad, bad
    except BaseException as exc:
        failed = True
        print('FAIL', env_id + ':', ''.join(traceback.format_exception_only(exc)).strip(), flush=True)
    else:
        print('OK', env_id, n, flush=True)
sys.exit(1 if failed else 0)
"""


class BoundscheckRun:
    """One subprocess fuzzing ``env_ids`` (``steps`` steps each, in scenarios of ``steps // 3``)
    under ``NUMBA_BOUNDSCHECK=1``; started by the constructor, read by :meth:`outcome`."""

    def __init__(self, env_ids: list[str], steps: int):
        if not env_ids or steps < 1:
            raise ValueError(f"BoundscheckRun: env_ids must be non-empty and steps >= 1, got {env_ids!r}, {steps}")
        self.env_ids = list(env_ids)
        self._dir = Path(tempfile.mkdtemp(prefix="servegym-boundscheck-"))
        code = _CODE.format(env_ids=self.env_ids, steps=steps, scenario_steps=max(steps // 3, 1),
                            parent=os.getpid(), folder=str(self._dir))
        env = dict(os.environ, NUMBA_BOUNDSCHECK="1", NUMBA_CACHE_DIR=str(self._dir / "numba"),
                   PYTHONPATH=f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
        self._out = open(self._dir / "out.txt", "w+")
        self._proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env, stdout=self._out,
                                      stderr=subprocess.STDOUT, text=True)
        self._result: tuple[int, str] | None = None

    def outcome(self, timeout: float = 3600.0) -> tuple[int, str]:
        """Wait for the subprocess: (exit status, its whole output)."""
        if self._result is None:
            rc = self._proc.wait(timeout=timeout)
            self._out.seek(0)
            self._result = (rc, self._out.read())
        return self._result

    def check(self, env_id: str) -> None:
        """Raise AssertionError unless the subprocess checked bounds and ``env_id`` ran clean."""
        if env_id not in self.env_ids:
            raise ValueError(f"BoundscheckRun.check: {env_id!r} is not among {self.env_ids}")
        rc, out = self.outcome()
        lines = out.splitlines()
        assert not any(l.startswith("bounds checking is off") for l in lines), out
        assert any(l.split()[:2] == ["OK", env_id] for l in lines), f"{env_id} under boundscheck (exit {rc}):\n{out}"

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._out.close()
        shutil.rmtree(self._dir, ignore_errors=True)


#: The environments the default suite fuzzes under bounds checks (the ``test_fuzz.py`` tests that read
#: them carry ``boundscheck_envs``), in one background subprocess.
_RUN: BoundscheckRun | None = None


#: Random steps per environment in the default suite's boundscheck run.
STEPS = 300


def start(env_ids: list[str], steps: int = STEPS) -> None:
    """Start the session's background run (once; later calls keep the first)."""
    global _RUN
    if _RUN is None:
        _RUN = BoundscheckRun(env_ids, steps)


def run() -> BoundscheckRun | None:
    """The session's background run, or None if none was started."""
    return _RUN


def stop() -> None:
    """Kill the background run if it is still going and remove its folder."""
    global _RUN
    if _RUN is not None:
        _RUN.close()
        _RUN = None
