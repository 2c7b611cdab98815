"""A learned agent's training seeds against the best heuristic, from one leaderboard run's JSON.

    python -m agents.leaderboard_seeds LEADERBOARD_JSON [...] --agent SEED0 SEED1 ... [--seeds S0 S1 ...]
        [--beside METRIC ...] [--metric METRIC [--lower-is-better]] [--label TEXT] [--json FILE]

``LEADERBOARD_JSON`` is the ``leaderboard.json`` of an ``agents.leaderboard`` run in which every
``--agent`` (a policy name as the run wrote it, usually a checkpoint path given with ``--policy``;
one per training seed) played. Several JSONs are one run split by scenario (e.g. one
``--scenarios ID`` process per scenario where Ray is not installed): their scenarios and rows are
read together; a file given twice, a file with no scenario, a scenario in two files and files run
with different ``quick`` or JSON ``version`` are errors, and files from different commits get a note
on stderr. For every scenario of the files holding all of them, a Markdown row
(printed to stdout; the README's seed tables are this output):

- scenario: the id shortened by one rule: ``ENV/[transfer/]TRACE/MODEL-GPU/REST`` (the layout of
  ``agents.scenarios``) becomes ``[transfer/]TRACE/REST``: the environment prefix is dropped, and
  the model/GPU part too when every row of the table shares it;
- each seed's main metric (the scenario's scoring; the mean over its held-out episodes);
- the mean over seeds and its 95% Student t interval (``agents.sweep_report.seed_ci``);
- the best heuristic and its main metric: the best value among the run's policies other than
  ``random``, the scenario's oracles and bound policy, ``zoo``, checkpoint/ONNX files and teams
  holding one (``agents.leaderboard_report._is_learned``), and the ``--agent`` policies themselves;
  the naive reference counts. Policies tied at the best value are all named, sorted, ``", "``-joined;
- agent mean - best heuristic (positive: the agent is better on a higher-is-better metric);
- per ``--beside`` metric: the agent's mean over seeds / the best heuristic's value (tied best
  heuristics: each value, ``", "``-joined).

Numbers: the main metric in the unit of ``agents.units`` (SLO attainment as is; a time in the unit
named in the header), three decimals (thousands separated from 1000); the difference carries its
sign (``0.000`` when it rounds to zero). ``--beside`` metrics keep SI units (seconds for ``*_s``
keys), three significant digits.

``--json FILE`` writes the same numbers unrounded. Errors (a file that is not a leaderboard JSON,
an ``--agent`` absent from it, an unknown ``--beside`` or ``--metric`` metric, a seed named twice,
``--lower-is-better`` without ``--metric``, no scenario holding every agent):
one line naming the file and what is wrong (``ValueError`` from the functions; from the command
``PROG: error: ...`` on stderr, exit status 2, the convention of ``agents.cli``). A scenario
holding only some of the agents is left out with a note on stderr.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from agents import cli, units
from agents.leaderboard_report import _is_learned
from agents.sweep_report import seed_ci


@dataclass(frozen=True)
class SeedRow:
    """One scenario's row. ``agent``: main metric per seed (``--agent`` order); ``seed``:
    ``seed_ci`` of them; ``best``: tied best heuristics (sorted); ``beside``: metric ->
    (agent mean over seeds, [value of each best heuristic])."""

    scenario: str
    short: str
    main_metric: str
    higher_is_better: bool
    agent: list[float]
    seed: dict[str, Any]
    best: list[str]
    best_value: float
    beside: dict[str, tuple[float, list[float]]]

    @property
    def difference(self) -> float:
        return self.seed["mean"] - self.best_value


def _split_id(scenario_id: str) -> tuple[list[str], int]:
    parts = scenario_id.split("/")
    lead = 3 if len(parts) > 1 and parts[1] == "transfer" else 2  # parts before MODEL-GPU
    if len(parts) < lead + 2:
        raise ValueError(f"scenario id {scenario_id!r} is not ENV/[transfer/]TRACE/MODEL-GPU/REST")
    return parts, lead


def short_id(scenario_id: str, keep_model: bool = False) -> str:
    """``ENV/[transfer/]TRACE/MODEL-GPU/REST`` -> ``[transfer/]TRACE/REST`` (with ``keep_model``:
    ``[transfer/]TRACE/MODEL-GPU/REST``).

    Raises ``ValueError`` for an id with too few parts for that layout."""
    parts, lead = _split_id(scenario_id)
    return "/".join(parts[1:lead] + parts[lead + (0 if keep_model else 1):])


def model_part(scenario_id: str) -> str:
    """The ``MODEL-GPU`` part of a scenario id (``ValueError`` as ``short_id``)."""
    parts, lead = _split_id(scenario_id)
    return parts[lead]


def load(path: Path) -> dict[str, Any]:
    """A leaderboard JSON with its ``scenarios`` and ``rows``. Raises ``ValueError`` naming
    ``path`` when the file is missing, not JSON, or lacks a field the table reads."""
    try:
        report = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ValueError(f"{path}: is a directory (give its leaderboard.json)") from None
    except OSError as err:
        raise ValueError(f"{path}: cannot be read ({err.strerror or err})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not JSON ({err})") from None
    if not isinstance(report, dict):
        raise ValueError(f"{path}: not a leaderboard JSON (top level is {type(report).__name__}, "
                         f"expected an object with 'scenarios' and 'rows')")
    for key in ("scenarios", "rows"):
        if not isinstance(report.get(key), list):
            raise ValueError(f"{path}: not a leaderboard JSON (no list {key!r})")
    for key in ("scenarios", "rows"):
        for i, x in enumerate(report[key]):
            if not isinstance(x, dict):
                raise ValueError(f"{path}: {key}[{i}] is a {type(x).__name__}, expected an object")
    for i, sc in enumerate(report["scenarios"]):
        for key in ("id", "scoring"):
            if key not in sc:
                raise ValueError(f"{path}: scenarios[{i}] has no {key!r}")
        if not sc.get("skipped"):
            for key in ("main_metric", "higher_is_better", "oracles", "bound"):
                if key not in sc["scoring"]:
                    raise ValueError(f"{path}: scenarios[{i}] ({sc['id']}) scoring has no {key!r}")
    for i, r in enumerate(report["rows"]):
        for key in ("scenario", "policy", "main", "metrics"):
            if key not in r:
                raise ValueError(f"{path}: rows[{i}] has no {key!r}")
        v = r["main"].get("value") if isinstance(r["main"], dict) else None
        if not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"{path}: rows[{i}] ({r['scenario']}, {r['policy']}): main value "
                             f"{v!r} is not a finite number")
    return report


def load_many(paths: list[Path]) -> dict[str, Any]:
    """The ``load``-ed JSONs of one run split by scenario, as one report (scenarios and rows in the
    order of ``paths``). Raises ``ValueError`` naming the file: given twice, holding no scenario, a
    scenario id also in another file (naming both), or run with other settings than the first file
    (``quick``, the JSON ``version``: one run's split parts share them); ``code`` is the first file's,
    ``commits`` every file's commit (a note when they differ)."""
    merged: dict[str, Any] = {"scenarios": [], "rows": []}
    where: dict[str, Path] = {}
    commits = []
    first: tuple[Path, dict[str, Any]] | None = None
    seen: dict[Path, Path] = {}
    for path in paths:
        same = seen.get(Path(path).resolve())
        if same is not None:
            raise ValueError(f"{path}: given twice (also as {same})")
        seen[Path(path).resolve()] = path
        report = load(path)
        if not report["scenarios"]:
            raise ValueError(f"{path}: holds no scenario (a split run's part plays at least one)")
        settings = {k: report.get(k) for k in ("quick", "version")}
        if first is None:
            first = (path, settings)
        for k, v in settings.items():
            if v != first[1][k]:
                raise ValueError(f"{path}: {k} is {v!r} but {first[1][k]!r} in {first[0]} "
                                 f"(the parts of one run share their settings)")
        for sc in report["scenarios"]:
            if sc["id"] in where:
                raise ValueError(f"{path}: scenario {sc['id']} is also in {where[sc['id']]} "
                                 f"(split runs must not overlap)")
            where[sc["id"]] = path
        merged["scenarios"] += report["scenarios"]
        merged["rows"] += report["rows"]
        merged.setdefault("code", report.get("code"))
        commits.append((report.get("code") or {}).get("commit"))
    merged["commits"] = commits
    return merged


def seed_rows(report: dict[str, Any], agents: list[str], beside: list[str] = (),
              source: str = "leaderboard JSON",
              notes: list[str] | None = None, metric: tuple[str, bool] | None = None) -> list[SeedRow]:
    """The rows of every scenario of ``report`` (a ``load``-ed leaderboard JSON) holding every
    policy in ``agents``, in the report's scenario order. ``notes`` (if given) receives one line per
    scenario left out because it holds only some of the agents. ``metric`` ((name, higher is
    better)): rank and report that metric of the rows instead of each scenario's main metric (e.g.
    ExpertPlacement's normalized_score, which counts migration time; its main metric, the MoE layer
    time, does not). Raises ``ValueError`` naming
    ``source``: no agents, an agent twice, an agent in no row, a ``beside`` metric no row reports,
    no scenario holding every agent, a scenario with no heuristic."""
    if not agents:
        raise ValueError(f"{source}: no --agent given")
    if len(set(agents)) != len(agents):
        raise ValueError(f"{source}: an --agent is given twice ({agents})")
    present = {r["policy"] for r in report["rows"]}
    missing = [a for a in agents if a not in present]
    if missing:
        raise ValueError(f"{source}: policy {missing[0]!r} is in no row "
                         f"(policies: {', '.join(sorted(present))})")
    metrics = {k for r in report["rows"] for k in r["metrics"]}
    for m, flag in [*((b, "--beside") for b in beside), *([(metric[0], "--metric")] if metric else [])]:
        if m not in metrics:
            raise ValueError(f"{source}: unknown metric {m!r} ({flag}); the rows report "
                             f"{', '.join(sorted(metrics))}")
    by: dict[str, dict[str, dict[str, Any]]] = {}
    for r in report["rows"]:
        by.setdefault(r["scenario"], {})[r["policy"]] = r
    out = []
    for sc in report["scenarios"]:
        if sc.get("skipped"):
            if notes is not None:
                notes.append(f"{source}: scenario {sc['id']} left out: skipped in the run ({sc['skipped']})")
            continue
        rows = by.get(sc["id"], {})
        absent = [a for a in agents if a not in rows]
        if absent:
            if notes is not None and len(absent) < len(agents):
                notes.append(f"{source}: scenario {sc['id']} left out: no row for {', '.join(absent)}")
            continue
        s = dict(sc["scoring"])
        if metric is not None:
            s["main_metric"], s["higher_is_better"] = metric
            rows = {p: {**r, "main": {"value": r["metrics"].get(metric[0], math.nan)}} for p, r in rows.items()}
            bad = [p for p, r in rows.items() if not isinstance(r["main"]["value"], (int, float))
                   or not math.isfinite(r["main"]["value"])]
            if bad:
                raise ValueError(f"{source}: scenario {sc['id']} policy {bad[0]}: metric {metric[0]!r} is not a "
                                 f"finite number")
        refs = {"random", "zoo", *s["oracles"], *([s["bound"]] if s["bound"] else []), *agents}
        heur = {p: r for p, r in rows.items() if p not in refs and not _is_learned(p)}
        if not heur:
            raise ValueError(f"{source}: scenario {sc['id']} has no heuristic row to compare with")
        sign = 1.0 if s["higher_is_better"] else -1.0
        best_value = max((r["main"]["value"] for r in heur.values()), key=lambda v: sign * v)
        best = sorted(p for p, r in heur.items() if r["main"]["value"] == best_value)
        values = [float(rows[a]["main"]["value"]) for a in agents]
        side = {}
        for m in beside:
            for p in (*agents, *best):
                v = rows[p]["metrics"].get(m)
                if not isinstance(v, (int, float)) or not math.isfinite(v):
                    raise ValueError(f"{source}: scenario {sc['id']} policy {p}: metric {m!r} is {v!r}, "
                                     f"not a finite number")
            side[m] = (float(sum(rows[a]["metrics"][m] for a in agents) / len(agents)),
                       [float(rows[p]["metrics"][m]) for p in best])
        out.append(SeedRow(sc["id"], short_id(sc["id"]), s["main_metric"], bool(s["higher_is_better"]),
                           values, seed_ci(values), best, float(best_value), side))
    if not out:
        raise ValueError(f"{source}: no scenario holds every --agent ({', '.join(agents)})")
    if len({model_part(r.scenario) for r in out}) > 1:  # e.g. Disaggregation's 8B and 70B rows
        out = [replace(r, short=short_id(r.scenario, keep_model=True)) for r in out]
    return out


def _fmt(x: float) -> str:
    """Three decimals (a rounded zero without its sign); thousands separated from 1000."""
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    out = f"{x:.3f}"
    return "0.000" if out == "-0.000" else out


def _sig3(x: float) -> str:
    """Three significant digits, trailing zeros kept (7.90, 0.928, 93.0); thousands separated."""
    return f"{x:,.0f}" if abs(x) >= 1000 else f"{x:#.3g}".rstrip(".")


def _side_header(metric: str) -> tuple[str, str]:
    if metric.endswith("_s") and metric not in units.RATES:
        return metric[:-2], " (s)"
    return metric, ""


def markdown(rows: list[SeedRow], seeds: list[str], label: str = "agent", beside: list[str] = ()) -> str:
    """The table of ``seed_rows``; ``seeds`` names the training seed of each ``--agent``."""
    if len(seeds) != len(rows[0].agent):
        raise ValueError(f"{len(seeds)} seed labels for {len(rows[0].agent)} agents")
    main = rows[0].main_metric
    if any(r.main_metric != main for r in rows):
        raise ValueError(f"the rows mix main metrics ({sorted({r.main_metric for r in rows})}); "
                         f"one table holds one environment's scenarios")
    col = units.column(main, [v for r in rows for v in (*r.agent, r.best_value)])
    s = col.scale
    unit = col.header[col.header.rfind(" ("):] if col.header.endswith(")") else ""  # e.g. " (ms)"
    head = ["scenario", f"{label}, seeds {' / '.join(seeds)}{unit}",
            "mean [95% t interval]", "best heuristic", f"{label} − best"]
    for m in beside:
        name, u = _side_header(m)
        head.append(f"{name} {label} (mean) / best{u}")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        ci = r.seed["ci95"]
        mean = _fmt(r.seed["mean"] * s) + (f" [{_fmt(ci[0] * s)}, {_fmt(ci[1] * s)}]" if ci else "")
        d = r.difference * s
        diff = ("+" if d > 0 and _fmt(d) != "0.000" else "") + _fmt(d)
        cells = [r.short, " / ".join(_fmt(v * s) for v in r.agent), mean,
                 f"{', '.join(r.best)} {_fmt(r.best_value * s)}", diff]
        for m in beside:
            agent_mean, best_vals = r.beside[m]
            cells.append(f"{_sig3(agent_mean)} / {', '.join(_sig3(v) for v in best_vals)}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def to_json(rows: list[SeedRow], source: str, agents: list[str], seeds: list[str],
            beside: list[str]) -> dict[str, Any]:
    return {
        "source": source, "agents": agents, "seeds": seeds, "beside": list(beside),
        "rows": [{
            "scenario": r.scenario, "short": r.short, "main_metric": r.main_metric,
            "higher_is_better": r.higher_is_better, "agent": r.agent,
            "mean": r.seed["mean"], "ci95": r.seed["ci95"], "std": r.seed["std"], "n": r.seed["n"],
            "best_heuristic": r.best, "best_value": r.best_value, "difference": r.difference,
            "beside": {m: {"agent_mean": a, "best": b} for m, (a, b) in r.beside.items()},
        } for r in rows],
    }


def parser() -> argparse.ArgumentParser:
    p = cli.Parser(prog="python -m agents.leaderboard_seeds", description=__doc__.split("\n\n")[0])
    p.add_argument("leaderboard_json", type=Path, nargs="+",
                   help="leaderboard.json of an agents.leaderboard run (several: one run split by scenario)")
    p.add_argument("--agent", nargs="+", required=True, metavar="POLICY",
                   help="the agent's policies as the run names them, one per training seed")
    p.add_argument("--seeds", nargs="+", metavar="SEED",
                   help="training seed of each --agent, in order (default: 0 1 ... N-1)")
    p.add_argument("--beside", nargs="+", default=[], metavar="METRIC",
                   help="metrics shown as agent mean / best heuristic (e.g. ttft_p99_s)")
    p.add_argument("--metric", metavar="METRIC",
                   help="rank by this metric of the rows instead of each scenario's main metric")
    p.add_argument("--lower-is-better", action="store_true", help="--metric: lower values are better")
    p.add_argument("--label", default="agent", help="the agent's name in the headers (default: agent)")
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the numbers to FILE")
    return p


def table_for(argv: list[str], notes: list[str] | None = None) -> tuple[str, dict[str, Any]]:
    """The Markdown table and JSON of a command line (arguments after the module name).
    Raises ``ValueError`` (see ``seed_rows``) and ``SystemExit`` for bad arguments."""
    a = parser().parse_args(argv)
    seeds = a.seeds or [str(i) for i in range(len(a.agent))]
    if len(seeds) != len(a.agent):
        raise ValueError(f"--seeds gives {len(seeds)} seeds for {len(a.agent)} --agent policies")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds {' '.join(seeds)}: a seed named twice (one training seed per --agent)")
    if a.lower_is_better and not a.metric:
        # it was ignored: the scenarios' main metrics carry their own direction
        raise ValueError("--lower-is-better: only with --metric")
    files = a.leaderboard_json
    source = str(files[0]) if len(files) == 1 else f"{files[0]} (+{len(files) - 1} more)"
    metric = (a.metric, not a.lower_is_better) if a.metric else None
    report = load(files[0]) if len(files) == 1 else load_many(files)
    if len(set(report.get("commits", []))) > 1 and notes is not None:
        notes.append(f"the {len(files)} files come from {len(set(report['commits']))} commits: "
                     f"{', '.join(sorted(map(str, set(report['commits']))))}")
    rows = seed_rows(report, a.agent, a.beside, source, notes, metric)
    return markdown(rows, seeds, a.label, a.beside), to_json(rows, source, a.agent, seeds, a.beside)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    notes: list[str] = []
    out = parser().parse_args(args).json
    try:
        if out is not None:
            cli.check_output(out, "--json")  # a directory or an unwritable place was a traceback after the table
        md, data = table_for(args, notes)
    except ValueError as err:  # cli.UsageError is one
        parser().error(str(err))
    for n in notes:
        print(f"note: {n}", file=sys.stderr)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(data, indent=1, allow_nan=False) + "\n")
    sys.stdout.write(md)


if __name__ == "__main__":
    main()
