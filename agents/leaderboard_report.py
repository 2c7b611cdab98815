"""The leaderboard's outputs: JSON, Markdown, one self-contained HTML page, PNG plots, checks."""

from __future__ import annotations

import base64
import html
import json
import math
import re
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from agents import units

if TYPE_CHECKING:
    from agents.scenarios import ScenarioResult

README_START = "<!-- leaderboard:start (python -m agents.leaderboard --readme README.md) -->"
README_END = "<!-- leaderboard:end -->"
FILES = ("leaderboard.json", "leaderboard.md", "leaderboard.html", "timing.json")


# --- tables ------------------------------------------------------------------------------------

def _fmt(x: Any) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    if isinstance(x, (int, np.integer)):
        return str(x)
    if abs(x) < 1e-9:
        return "0.000"  # float round-off of an exact zero (a reference scored against itself)
    if abs(x) < 0.01:
        return f"{x:.3g}"  # e.g. MoE layer times in seconds
    return f"{x:.3f}" if abs(x) < 1000 else f"{x:,.0f}"


def _scaled(x: Any, scale: float) -> Any:
    return x * scale if isinstance(x, (int, float)) and not isinstance(x, bool) else x


def _with_ci(cell: dict[str, Any], scale: float = 1.0) -> str:
    lo, hi = cell["ci95"]
    if lo is None:
        return _fmt(_scaled(cell["value"], scale))
    return f"{_fmt(_scaled(cell['value'], scale))} [{_fmt(lo * scale)}, {_fmt(hi * scale)}]"


def _rows_by_scenario(report: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    by: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in report["rows"]:
        by[row["scenario"]].append(row)
    return by


def headline_markdown(report: dict[str, Any]) -> str:
    """Per scenario: the main metric of the reference learned agent, the best heuristic, and the
    two references, normalized score in parentheses (0 = naive, 100 = oracle or bound)."""
    lines = [
        "| scenario | main metric | zoo | best heuristic | naive (0) | oracle / bound (100) |",
        "|---|---|---|---|---|---|",
    ]
    by = _rows_by_scenario(report)
    for sc in report["scenarios"]:
        if sc.get("skipped"):
            lines.append(f"| {sc['id']} | skipped: {sc['skipped']} | | | | |")
            continue
        rows = {r["policy"]: r for r in by[sc["id"]]}
        scoring = sc["scoring"]
        col = units.column(scoring["main_metric"], [r["main"]["value"] for r in rows.values()])

        def cell(name: str | None, rows: dict[str, dict[str, Any]] = rows,
                 scale: float = col.scale) -> str:
            if name is None or name not in rows:
                return "–"
            r = rows[name]
            return f"{name} {_fmt(_scaled(r['main']['value'], scale))} ({_fmt(r['normalized']['value'])})"

        refs = {"random", "zoo", scoring["naive"], scoring["bound"], *scoring["oracles"]}
        heur = [r for r in by[sc["id"]] if r["policy"] not in refs and not _is_learned(r["policy"])]
        best = min(heur, key=lambda r: r["rank"])["policy"] if heur else None
        # A team environment has no single "zoo": the best team with a zoo agent in it.
        zoo_teams = [r for r in by[sc["id"]] if r["policy"] != "zoo" and _is_learned(r["policy"])
                     and not _is_path(r["policy"])]
        zoo = "zoo" if "zoo" in rows else (min(zoo_teams, key=lambda r: r["rank"])["policy"]
                                           if zoo_teams else None)
        bound = (cell(scoring["bound"]) if scoring["bound"]
                 else f"bound {_fmt(_scaled(scoring['bound_value'], col.scale))}")
        arrow = "↑" if scoring["higher_is_better"] else "↓"
        lines.append(f"| {sc['id']} | {col.header} {arrow} | {cell(zoo)} | {cell(best)} "
                     f"| {cell(scoring['naive'])} | {bound} |")
    return "\n".join(lines)


def _is_path(name: str) -> bool:
    return name.endswith((".zip", ".onnx")) or "/" in name


def _is_learned(name: str) -> bool:
    """``zoo``, a checkpoint or ONNX file, or a team (``agents.team``) with one in a role."""
    return name == "zoo" or _is_path(name) or any(
        part.split("=", 1)[1] == "zoo" or _is_path(part) for part in name.split(",") if "=" in part)


def scenario_table(rows: list[dict[str, Any]], metric_keys: list[str]) -> str:
    """Markdown table of one scenario, each quantity in a readable unit named in its header
    (``agents.units``; the JSON keeps SI units)."""
    main = units.column(rows[0]["main_metric"], [r["main"]["value"] for r in rows])
    cols = {k: units.column(k, [r["metrics"].get(k) for r in rows]) for k in metric_keys}
    head = ["rank", "policy", f"{main.header} [95% CI]", "normalized [95% CI]",
            *(cols[k].header for k in metric_keys)]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in sorted(rows, key=lambda r: (r["rank"], r["policy"])):
        cells = [str(r["rank"]), r["policy"], _with_ci(r["main"], main.scale), _with_ci(r["normalized"])]
        cells += [_fmt(_scaled(r["metrics"].get(k), cols[k].scale)) for k in metric_keys]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def _metric_keys(rows: list[dict[str, Any]], limit: int = 6, beside: tuple[str, ...] = ()) -> list[str]:
    """The metric columns of a scenario's table: the scoring's ``beside`` metrics first, then
    tails, rates and ratios."""
    main = rows[0]["main_metric"]
    keys = [k for k in rows[0]["metrics"] if k != main and k != "return_mean"]
    first = [k for k in beside if k in keys]
    preferred = [k for k in keys if k.endswith(("_p99_s", "_rps", "_ratio", "_usd", "_bytes", "imbalance"))
                 and k not in first]
    return (first + preferred + [k for k in keys if k not in preferred and k not in first])[:limit]


def markdown(report: dict[str, Any], wall_s: float | None = None) -> str:
    parts = ["# servegym leaderboard", "",
             f"`{report['command']}` (leaderboard v{report['version']}"
             + (", quick" if report["quick"] else "") + ")", "",
             ("Main metric with a 95% paired bootstrap interval over held-out episodes; normalized: "
             "0 = the naive reference, 100 = the oracle or bound."), "", "## Headline", "",
             headline_markdown(report)]
    by = _rows_by_scenario(report)
    for sc in report["scenarios"]:
        parts += ["", f"## {sc['id']}", ""]
        if sc.get("skipped"):
            parts.append(f"Skipped: {sc['skipped']}")
            continue
        s = sc["scoring"]
        replayed = f" ({sc['note']})" if sc.get("note") else ""
        parts.append(f"{sc['env']}, trace `{sc['trace']}`, {sc['episodes']} episodes{replayed}, seed {sc['seed']}, "
                     f"env kwargs `{json.dumps(sc['env_kwargs'], sort_keys=True)}`. Naive: `{s['naive']}`; "
                     f"bound: `{s['bound'] or s['bound_value']}`. Training may see: {s['training_may_see']}.")
        beside = tuple(sc.get("scoring", {}).get("beside", ()))
        parts += ["", scenario_table(by[sc["id"]], _metric_keys(by[sc["id"]], beside=beside))]
    if wall_s is not None:
        parts += ["", f"Wall time of this run: {wall_s:.0f} s."]
    return "\n".join(parts) + "\n"


# --- plots -------------------------------------------------------------------------------------

def _plots(out: Path, report: dict[str, Any], results: list[ScenarioResult]) -> list[tuple[str, Path]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plots_dir = out / "plots"
    plots_dir.mkdir(parents=True, exist_ok=True)
    made: list[tuple[str, Path]] = []

    def save(fig: Any, name: str, title: str) -> None:
        path = plots_dir / f"{name}.png"
        fig.tight_layout()
        fig.savefig(path, dpi=90, metadata={"Software": None})
        plt.close(fig)
        made.append((title, path))

    by = _rows_by_scenario(report)
    # 1. Per-request TTFT CDFs where the environment reports per-request records.
    for res in results:
        if res.skipped or not any(x.get("requests") for r in res.runs for x in r.extras):
            continue
        fig, ax = plt.subplots(figsize=(6, 3.6))
        for r in res.runs:
            ttft = np.concatenate([x["requests"]["ttft"] for x in r.extras if "requests" in x])
            ttft = np.where(np.isfinite(ttft), ttft, np.inf)  # never served: off the right edge
            xs = np.sort(ttft)
            ax.step(xs, np.arange(1, xs.size + 1) / xs.size, where="post", label=r.policy)
        ax.set_xscale("log")
        ax.set_xlabel("TTFT (s); requests never served stay off the right edge")
        ax.set_ylabel("share of requests")
        ax.legend(fontsize=7)
        ax.set_title(res.scenario.id, fontsize=8)
        save(fig, _slug(res.scenario.id) + "_ttft_cdf", f"TTFT CDF: {res.scenario.id}")
    # 2. Main metric against the knob that varies across an environment's scenarios.
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for sc in report["scenarios"]:
        if not sc.get("skipped"):
            groups[(sc["env"], sc["trace"])].append(sc)
    for (env_id, trace), scs in groups.items():
        knob = _varying_knob(scs)
        if knob is None:
            continue
        fig, ax = plt.subplots(figsize=(6, 3.6))
        policies = sorted({r["policy"] for sc in scs for r in by[sc["id"]]})
        xs = [sc["env_kwargs"][knob] for sc in scs]
        for p in policies:
            ys, lo, hi = [], [], []
            for sc in scs:
                r = next(r for r in by[sc["id"]] if r["policy"] == p)
                ys.append(r["main"]["value"])
                ci = r["main"]["ci95"]
                lo.append(r["main"]["value"] - (ci[0] if ci[0] is not None else r["main"]["value"]))
                hi.append((ci[1] if ci[1] is not None else r["main"]["value"]) - r["main"]["value"])
            ax.errorbar(xs, ys, yerr=[lo, hi], marker="o", capsize=2, label=p)
        ax.set_xlabel(knob)
        ax.set_ylabel(scs[0]["scoring"]["main_metric"])
        ax.legend(fontsize=7)
        ax.set_title(f"{env_id} on {Path(trace).name}", fontsize=8)
        save(fig, _slug(f"{env_id}_{Path(trace).name}_{knob}"),
             f"{scs[0]['scoring']['main_metric']} against {knob}: {env_id}, {Path(trace).name}")
    # 3. Time series the environment reports (e.g. expert load imbalance over time), first episode.
    for res in results:
        names = sorted({k for r in res.runs for x in r.extras for k in x.get("series", {})})
        for name in names:
            fig, ax = plt.subplots(figsize=(6, 3.6))
            for r in res.runs:
                series = next((x["series"][name] for x in r.extras if name in x.get("series", {})), None)
                if series is not None:
                    ax.plot(np.asarray(series), label=r.policy, lw=1)
            ax.set_xlabel("step")
            ax.set_ylabel(name)
            ax.legend(fontsize=7)
            ax.set_title(f"{res.scenario.id} (episode 0)", fontsize=8)
            save(fig, _slug(f"{res.scenario.id}_{name}"), f"{name} over time: {res.scenario.id}")
    # 4. Cost against SLO attainment where both are reported.
    for (env_id, trace), scs in groups.items():
        pts = [(r["policy"], r["metrics"].get("cost_usd"), r["metrics"].get("slo_attainment"))
               for sc in scs for r in by[sc["id"]]]
        pts = [p for p in pts if p[1] is not None and p[2] is not None]
        if not pts:
            continue
        fig, ax = plt.subplots(figsize=(6, 3.6))
        for policy in sorted({p[0] for p in pts}):
            mine = [p for p in pts if p[0] == policy]
            ax.scatter([p[1] for p in mine], [p[2] for p in mine], label=policy, s=18)
        ax.set_xlabel("cost (USD)")
        ax.set_ylabel("SLO attainment")
        ax.legend(fontsize=7)
        ax.set_title(f"{env_id} on {Path(trace).name}", fontsize=8)
        save(fig, _slug(f"{env_id}_{Path(trace).name}_cost_slo"), f"cost against SLO: {env_id}")
    return made


def _varying_knob(scs: list[dict[str, Any]]) -> str | None:
    if len(scs) < 2:
        return None
    keys = set.intersection(*(set(sc["env_kwargs"]) for sc in scs))
    for k in sorted(keys):
        vals = [sc["env_kwargs"][k] for sc in scs]
        if len(set(map(repr, vals))) == len(vals) and all(isinstance(v, (int, float)) for v in vals):
            return k
    return None


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", s).strip("_")


# --- HTML --------------------------------------------------------------------------------------

def _md_table_to_html(md: str) -> str:
    lines = [ln for ln in md.splitlines() if ln.startswith("|")]
    if len(lines) < 2:
        return f"<p>{html.escape(md)}</p>"
    cells = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cells[0])
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                   for row in cells[2:])
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def html_page(md_text: str, plots: list[tuple[str, Path]]) -> str:
    """One self-contained page: the Markdown's tables and text, then every plot inlined."""
    blocks, table = [], []
    for line in md_text.splitlines() + [""]:
        if line.startswith("|"):
            table.append(line)
            continue
        if table:
            blocks.append(_md_table_to_html("\n".join(table)))
            table = []
        if line.startswith("# "):
            blocks.append(f"<h1>{html.escape(line[2:])}</h1>")
        elif line.startswith("## "):
            blocks.append(f"<h2>{html.escape(line[3:])}</h2>")
        elif line.strip():
            blocks.append(f"<p>{html.escape(line)}</p>")
    blocks.append("<h2>Plots</h2>")
    for title, path in plots:
        data = base64.b64encode(path.read_bytes()).decode()
        blocks.append(f'<figure><img alt="{html.escape(title)}" src="data:image/png;base64,{data}">'
                      f"<figcaption>{html.escape(title)}</figcaption></figure>")
    style = ("body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse;font-size:13px;margin:1em 0}"
             "td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}"
             "td:nth-child(2),th:nth-child(2){text-align:left}figure{display:inline-block;margin:8px}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>servegym leaderboard</title>"
            f"<style>{style}</style></head><body>{''.join(blocks)}</body></html>\n")


# --- files -------------------------------------------------------------------------------------

def write_all(out: Path, report: dict[str, Any], results: list[ScenarioResult],
              timing: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "leaderboard.json").write_text(json.dumps(report, indent=1, sort_keys=True, allow_nan=False) + "\n")
    md_text = markdown(report, timing["wall_s"])
    (out / "leaderboard.md").write_text(md_text)
    plots = _plots(out, report, results)
    (out / "leaderboard.html").write_text(html_page(md_text, plots))
    (out / "timing.json").write_text(json.dumps(timing, indent=1, sort_keys=True) + "\n")


def readme_problem(readme: Path) -> str | None:
    """Why :func:`update_readme` cannot rewrite ``readme`` (no such file, a directory, unreadable, not
    UTF-8, or without the marker lines ``README_START`` and ``README_END``), in one line; None if it can."""
    try:
        text = readme.read_text()
    except (OSError, UnicodeDecodeError) as err:
        return f"cannot read it ({getattr(err, 'strerror', None) or err})"
    if README_START not in text or README_END not in text:
        return f"no leaderboard section; add the two marker lines {README_START!r} and {README_END!r}"
    return None


def update_readme(readme: Path, report: dict[str, Any]) -> None:
    """Rewrite ``readme``'s headline section (between the marker lines) with ``report``'s table;
    ``ValueError`` naming the file and :func:`readme_problem`'s reason when it cannot."""
    problem = readme_problem(readme)
    if problem is not None:
        raise ValueError(f"{readme}: {problem}")
    text = readme.read_text()
    head, rest = text.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    body = (f"\n`{report['command']}`\n\n" + headline_markdown(report) + "\n")
    readme.write_text(head + README_START + body + README_END + tail)


def _real(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _row_problem(row: Any, scenario_ids: set[str]) -> str | None:
    """Why a ``rows`` entry of leaderboard.json is malformed (the fields ``check`` reads), or None."""
    if not isinstance(row, dict):
        return f"not an object ({type(row).__name__})"
    for key, kind in (("scenario", str), ("policy", str), ("main", dict), ("rank", int), ("metrics", dict)):
        if key not in row:
            return f"no {key!r}"
        if not isinstance(row[key], kind) or isinstance(row[key], bool):
            return f"{key!r} is {row[key]!r}, not {'an' if kind is int else 'a'} {kind.__name__}"
    main = row["main"]
    if "value" not in main or "ci95" not in main:
        return f"'main' is {main!r}, not an object with 'value' and 'ci95'"
    if main["value"] is not None and not _real(main["value"]):
        return f"main value {main['value']!r} is not a number"
    ci = main["ci95"]
    if not (isinstance(ci, list) and len(ci) == 2 and all(c is None or _real(c) for c in ci)):
        return f"main ci95 {ci!r} is not a pair of numbers"
    if row["scenario"] not in scenario_ids:
        return f"scenario {row['scenario']!r} is not among 'scenarios'"
    return None


def check(out: Path) -> list[str]:
    """Problems with a leaderboard directory: missing files, malformed or incomplete rows. A malformed
    leaderboard.json (a field missing or of the wrong type) is a problem named with its row or scenario,
    never an exception."""
    problems = [f"missing {name}" for name in FILES if not (out / name).exists()]
    if problems:
        return problems
    try:
        report = json.loads((out / "leaderboard.json").read_text())
    except json.JSONDecodeError as err:
        return [f"leaderboard.json: not JSON ({err})"]
    if not isinstance(report, dict):
        return [f"leaderboard.json: not a JSON object ({type(report).__name__})"]
    for key in ("version", "command", "scenarios", "rows"):
        if key not in report:
            problems.append(f"leaderboard.json: no {key!r}")
    if problems:
        return problems
    for key in ("scenarios", "rows"):
        if not isinstance(report[key], list):
            problems.append(f"leaderboard.json: {key!r} is not a list ({type(report[key]).__name__})")
    if problems:
        return problems
    scenarios = []
    for i, sc in enumerate(report["scenarios"]):
        scoring = sc.get("scoring") if isinstance(sc, dict) else None
        if not (isinstance(sc, dict) and isinstance(sc.get("id"), str)):
            problems.append(f"leaderboard.json: scenarios[{i}] has no string 'id'")
        else:
            scenarios.append(sc)
            if not sc.get("skipped") and not (isinstance(scoring, dict) and "naive" in scoring
                                              and "bound" in scoring):
                problems.append(f"scenario {sc['id']}: no 'scoring' with 'naive' and 'bound'")
    ids = {sc["id"] for sc in scenarios}
    by: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for i, row in enumerate(report["rows"]):
        why = _row_problem(row, ids)
        if why is None:
            by[row["scenario"]].append(row)
        else:
            problems.append(f"leaderboard.json: rows[{i}]: {why}")
    for sc in scenarios:
        if sc.get("skipped"):
            continue
        rows = by.get(sc["id"], [])
        if not rows:
            problems.append(f"scenario {sc['id']}: no rows")
            continue
        policies = {r["policy"] for r in rows}
        scoring = sc.get("scoring") if isinstance(sc.get("scoring"), dict) else {}
        for ref in ("random", scoring.get("naive"), scoring.get("bound")):
            if ref and ref not in policies:
                problems.append(f"scenario {sc['id']}: no row for {ref}")
        for r in rows:
            where = f"scenario {sc['id']} policy {r['policy']}"
            v, (lo, hi) = r["main"]["value"], r["main"]["ci95"]
            if v is None or not math.isfinite(v):
                problems.append(f"{where}: main metric is not a number")
            elif lo is not None and hi is not None and not (lo - 1e-9 <= v <= hi + 1e-9):
                problems.append(f"{where}: main value {v} outside its CI [{lo}, {hi}]")
            if r["rank"] < 1 or r["rank"] > len(rows):
                problems.append(f"{where}: rank {r['rank']} out of 1..{len(rows)}")
            if not r["metrics"]:
                problems.append(f"{where}: no metrics")
    page = (out / "leaderboard.html").read_text()
    pngs = sorted((out / "plots").glob("*.png")) if (out / "plots").exists() else []
    if not pngs:
        problems.append("plots/: no PNG")
    if page.count("data:image/png;base64,") != len(pngs):
        problems.append(f"leaderboard.html inlines {page.count('data:image/png;base64,')} images, "
                        f"plots/ has {len(pngs)}")
    md = (out / "leaderboard.md").read_text()
    for sc in scenarios:
        if sc["id"] not in md:
            problems.append(f"leaderboard.md: scenario {sc['id']} missing")
    return problems
