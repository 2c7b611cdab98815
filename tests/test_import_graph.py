"""The import graph of the source tree: layers import only downward, and no module imports itself
back through others.

Layers (DESIGN.md): ``traces`` (workload) and ``hwmodels`` (cost) know nothing of ``envs``;
``envs`` knows nothing of ``agents``; ``agents`` sees the rest; ``train.py`` sits on top. Within
``envs``, the shared cluster model ``envs.core`` knows nothing of the environment packages.

The graph is read with ``ast`` from the files themselves (nothing is imported), every import
counted wherever it sits (module level or inside a function: a lazy import is still a
dependency). ``from pkg import name`` is an edge to ``pkg.name`` when that is a module of the
tree, else to ``pkg``; a package's ``__init__`` is not implied by importing one of its modules.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("traces", "hwmodels", "envs", "agents")
TOP_LEVEL = ("train",)
# Which top-level parts each part may import (itself included).
ALLOWED: dict[str, set[str]] = {
    "traces": {"traces"},
    "hwmodels": {"hwmodels", "traces"},
    "envs": {"envs", "traces", "hwmodels"},
    "agents": {"agents", "envs", "traces", "hwmodels"},
    "train": {"agents", "envs", "traces", "hwmodels"},
}
# Modules allowed an import the layers forbid, each with its reason.
EXCEPTIONS: dict[str, tuple[set[str], str]] = {
    "hwmodels.validate.compare": ({"envs"}, "replays the measured workloads through envs.core to "
                                            "validate the simulator against a real engine"),
    "hwmodels.validate.published": ({"envs"}, "replays published vLLM/SGLang workloads through envs.core "
                                              "to compare the simulator with their measurements"),
}
# envs.core is the shared cluster model: it may use these envs modules besides itself.
CORE_MAY_IMPORT = {"envs.slo", "envs.metrics"}


def module_files() -> dict[str, Path]:
    """Dotted module name -> file, for every .py of the packages and the top-level scripts."""
    out: dict[str, Path] = {}
    for pkg in PACKAGES:
        for f in sorted((ROOT / pkg).rglob("*.py")):
            parts = f.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = f
    for name in TOP_LEVEL:
        if (ROOT / f"{name}.py").exists():
            out[name] = ROOT / f"{name}.py"
    return out


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The longest prefix of ``name`` that is a module of the tree (None: outside the tree)."""
    parts = name.split(".")
    for k in range(len(parts), 0, -1):
        cand = ".".join(parts[:k])
        if cand in modules:
            return cand
    return None


def imports_of(mod: str, path: Path, modules: dict[str, Path]) -> dict[str, int]:
    """Modules of the tree that ``mod`` imports -> the line of the first such import."""
    is_pkg = path.name == "__init__.py"
    package = mod if is_pkg else mod.rpartition(".")[0]
    out: dict[str, int] = {}
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                src = ".".join(base + ([node.module] if node.module else []))
            else:
                src = node.module or ""
            targets = [f"{src}.{a.name}" if f"{src}.{a.name}" in modules else src for a in node.names]
        for t in targets:
            r = _resolve(t, modules)
            if r is not None and r != mod:
                out.setdefault(r, node.lineno)
    return out


def import_graph() -> tuple[dict[str, dict[str, int]], dict[str, Path]]:
    modules = module_files()
    return {m: imports_of(m, p, modules) for m, p in modules.items()}, modules


def layer_violations(graph: dict[str, dict[str, int]], modules: dict[str, Path]) -> list[str]:
    bad = []
    for mod, deps in graph.items():
        part = mod.split(".")[0]
        allowed = ALLOWED[part] | EXCEPTIONS.get(mod, (set(), ""))[0]
        for dep, line in deps.items():
            dpart = dep.split(".")[0]
            where = f"{modules[mod].relative_to(ROOT)}:{line}"
            if dpart not in allowed:
                bad.append(f"{where}: {mod} ({part}) imports {dep} ({dpart})")
            elif (mod == "envs.core" or mod.startswith("envs.core.")) and dpart == "envs" \
                    and not (dep == "envs.core" or dep.startswith("envs.core.")) and dep not in CORE_MAY_IMPORT:
                bad.append(f"{where}: the shared cluster model {mod} imports the environment module {dep}")
    return bad


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_layers_import_only_downward():
    graph, modules = import_graph()
    assert len(graph) > 50 and "envs.core.engine" in graph
    bad = layer_violations(graph, modules)
    assert not bad, "upward imports:\n" + "\n".join(bad)


def test_no_import_cycles():
    graph, _ = import_graph()
    found = cycles(graph)
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_checker_catches_an_upward_import_and_a_cycle(tmp_path, monkeypatch):
    """The checks fail on a planted upward import and a planted cycle (they can fail)."""
    for pkg in PACKAGES:
        (tmp_path / pkg).mkdir()
        (tmp_path / pkg / "__init__.py").write_text("")
    (tmp_path / "envs" / "a.py").write_text("def f():\n    from agents import b\n")
    (tmp_path / "agents" / "b.py").write_text("from agents.c import x\n")
    (tmp_path / "agents" / "c.py").write_text("from . import b\n")
    (tmp_path / "envs" / "core").mkdir()
    (tmp_path / "envs" / "core" / "__init__.py").write_text("")
    (tmp_path / "envs" / "core" / "d.py").write_text("import envs.a\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    graph, modules = import_graph()
    bad = layer_violations(graph, modules)
    assert any("envs/a.py:2: envs.a (envs) imports agents.b (agents)" in m for m in bad), bad
    assert any("envs.core.d imports the environment module envs.a" in m for m in bad), bad
    assert cycles(graph) == [["agents.b", "agents.c"]]



# Archived one-off scripts of a finished diagnosis (kept as its record, not maintained code).
LINT_SKIP = ("agents/zoo/results/",)


def test_no_unused_import_or_variable():
    """pyflakes' unused imports and local variables (lazy.py imported _finish, train.py algo_class ...) in
    the four packages; a re-export or an import for its side effect says so with ``# noqa`` on its line,
    or is listed in the module's ``__all__``. Skipped where pyflakes is not installed."""
    import pytest

    pytest.importorskip("pyflakes")
    from pyflakes import api, messages, reporter

    class Unused(reporter.Reporter):
        """Collects (line, text) of unused imports and variables; any other problem is reported as found."""

        def __init__(self):
            self.found: list[tuple[int, str]] = []

        def flake(self, m):
            if isinstance(m, (messages.UnusedImport, messages.UnusedVariable)):
                self.found.append((m.lineno, m.message % m.message_args))

        def unexpectedError(self, filename, msg):
            self.found.append((0, str(msg)))

        def syntaxError(self, filename, msg, lineno, offset, text):
            self.found.append((0, f"line {lineno}: {msg}"))

    bad = []
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel.startswith(LINT_SKIP):
                continue
            text = path.read_text()
            rep = Unused()
            api.check(text, rel, rep)
            lines = text.splitlines()
            bad += [f"{rel}:{n}: {msg}" for n, msg in rep.found if not (0 < n <= len(lines) and "noqa" in lines[n - 1])]
    assert not bad, "\n".join(bad)
