"""ExpertPlacement-v0's native sub-steps and rebalances per CPU-second at E envs under EPLB, timed as
``envs.expert_placement.bench`` times them (whole episodes, so resets, load generation and the
episode's references are inside; the first episode warms up; median of 3; ``time.thread_time``), for
whichever checkout is on the path: a checkout older than ``envs.bench``'s ``--clock`` (the code
before issue 16, 711ea3f) is timed the same way as today's.

    PYTHONPATH=CHECKOUT python tests/golden/ep_rate.py [E]
"""

from __future__ import annotations

import sys
import time

import numpy as np

from envs.expert_placement import kernels as K
from envs.expert_placement.env import ExpertPlacementVecEnv


def main(argv: list[str]) -> int:
    E = int(argv[0]) if argv else 16
    if E < 1:
        print(f"ep_rate: E must be an integer >= 1, got {E}", file=sys.stderr)
        return 2
    vec = ExpertPlacementVecEnv(E, seed=0)
    vec.reset()
    rates, reb = [], []
    for rep in range(4):
        steps = n = 0
        t = time.thread_time()
        while True:
            m = vec.action_masks()
            _, r, d, _ = vec.step(np.where(m[:, K.EPLB], K.EPLB, K.FILL))
            steps += 1
            n += int(np.count_nonzero(r))
            if d.all():
                break
        dt = time.thread_time() - t
        if rep:
            rates.append(steps * E / dt)
            reb.append(n / dt)
    print(f"{K.__file__} E={E}: {np.median(rates):.0f} sub-steps per CPU-second, {np.median(reb):.1f} rebalances "
          f"per CPU-second (runs {', '.join(f'{x:.0f}' for x in rates)})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
