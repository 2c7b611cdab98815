"""Autoscale-v0's fluid model against the full cluster model under a policy's replica schedule.

    python -m agents.autoscale_fidelity [--policy hpa] [--day 0] [--start-h 7] [--hours 2]
        [--env-kwargs K=V ...] [--json FILE]

The comparison itself is ``envs.autoscale.full.compare``; this command resolves ``--policy``
(a heuristic, ``zoo``, a checkpoint or an ONNX file, as in ``agents.evaluate``) and prints one
row per policy: SLO attainment and TTFT p99 of the fluid model and of the full model on the same
requests, their difference and the per-interval attainment MAE.
"""

from __future__ import annotations

import json
import sys

from agents import cli
from agents.policy import make_policy
from envs.autoscale import env as asc
from envs.autoscale.full import compare
from envs.options import output_file_arg


def fidelity(policy: str = "hpa", day: int = 0, start_h: float = 7.0, hours: float = 2.0,
             env_kwargs: dict | None = None) -> dict:
    """``envs.autoscale.full.compare`` under the policy named ``policy`` (see ``agents.policy``)."""
    return compare(lambda vec: make_policy(policy, vec, asc.ENV_ID), policy, day, start_h, hours, env_kwargs)


def main(argv: list[str] | None = None) -> int:
    p = cli.make_parser("python -m agents.autoscale_fidelity", __doc__, selected=[asc.ENV_ID], env_option=None,
                         trace_option="--env-kwargs trace=NAME; or a path to a trace file")
    p.add_argument("--policy", action="append",
                   help="policies whose schedules to replay (default hpa; names listed by --policy x)")
    p.add_argument("--day", type=int, default=0, help="held-out day (window index)")
    p.add_argument("--start-h", type=float, default=7.0)
    p.add_argument("--hours", type=float, default=2.0)
    p.add_argument("--env-kwargs", nargs="*", default=[], metavar="KEY=VALUE",
                   help="Autoscale-v0 config fields (listed below)")
    p.add_argument("--json", type=output_file_arg)  # checked when parsed, before the run
    a = p.parse_args(argv)
    try:
        kwargs = cli.parse_env_kwargs(a.env_kwargs, asc.ENV_ID)
        cli.check_policies(asc.ENV_ID, a.policy or ["hpa"])
    except cli.UsageError as err:
        p.error(str(err))
    if a.day < 0 or not a.hours > 0 or not 0 <= a.start_h < 24:
        p.error(f"--day {a.day} --start-h {a.start_h} --hours {a.hours}: need day >= 0, "
                "0 <= start-h < 24, hours > 0")
    rows = []
    for pol in a.policy or ["hpa"]:
        r = fidelity(pol, a.day, a.start_h, a.hours, kwargs)
        rows.append(r)
        print(f"{pol:>12}: {r['requests']} requests, fluid attainment {r['fluid']['slo_attainment']:.4f} "
              f"TTFT p99 {r['fluid']['ttft_p99_s']:.3f} s | full {r['full']['slo_attainment']:.4f} "
              f"TTFT p99 {r['full']['ttft_p99_s']:.3f} s | error {r['attainment_error']:+.4f}, "
              f"per-interval MAE {r['interval_attainment_mae']:.4f} (full model {r['full']['wall_s']:.0f} s)",
              flush=True)
    if a.json:
        a.json.write_text(json.dumps({"env": asc.ENV_ID, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
