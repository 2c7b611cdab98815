"""Reference learned agents (``--policy zoo``), kept with the command that trained them.

Each checkpoint sits beside this file; ``README.md`` here records its training command, seed
and evaluation. An environment has a zoo entry only once its checkpoint is committed.
"""

from pathlib import Path

from agents.policy import ZOO

_HERE = Path(__file__).parent
CHECKPOINTS = {
    "servegym/KVAdmission-v0": _HERE / "kv_admission_ppo.zip",
}
for _env_id, _path in CHECKPOINTS.items():
    if _path.exists():
        ZOO[_env_id] = _path
