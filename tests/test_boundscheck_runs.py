"""The background bounds-check run (``boundscheck_runs``) ends with the test session that started it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

# A stand-in for a pytest session: starts the run as conftest.py does, prints its pid and folder, waits.
_PARENT = """\
import sys, time
sys.path.insert(0, {here!r})
import boundscheck_runs
boundscheck_runs.start(['servegym/KVAdmission-v0'])
run = boundscheck_runs.run()
print(run._proc.pid, run._dir, flush=True)
time.sleep(600)
"""


def _alive(pid: int) -> bool:
    """``pid`` exists and is not a zombie (an orphan's new parent may be slow to reap it, or never do)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def test_the_run_dies_with_a_killed_session_and_removes_its_folder():
    """SIGKILL the session mid-compilation: its bounds-check subprocess is gone within 5 s and its
    ``servegym-boundscheck-*`` folder removed (it used to fuzz on for about 4 minutes and leave the folder)."""
    parent = subprocess.Popen([sys.executable, "-c", _PARENT.format(here=str(HERE))], stdout=subprocess.PIPE,
                              text=True)
    pid, folder = parent.stdout.readline().split(maxsplit=1)
    child, folder = int(pid), Path(folder.strip())
    try:
        assert folder.name.startswith("servegym-boundscheck-") and folder.is_dir() and _alive(child)
        time.sleep(2.0)  # importing numba and compiling the kernels with bounds checks
        assert _alive(child), "the run ended before its session was killed"
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 5.0
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(child), f"bounds-check run {child} outlived its killed session by 5 s"
        while folder.exists() and time.monotonic() < deadline + 1.0:  # removed before it exits
            time.sleep(0.05)
        assert not folder.exists(), f"{folder} left behind"
    finally:
        if _alive(child):
            os.kill(child, signal.SIGKILL)
        shutil.rmtree(folder, ignore_errors=True)
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        parent.stdout.close()
