"""The shape of the library: no import cycles, no function over 60 lines, engines opened in one place, no
click or rich (see test_evals), `python -m srlm_lite` from a checkout."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "srlm_lite"
MAX_FUNCTION_LINES = 60


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _is_package(name: str, modules: dict[str, Path]) -> bool:
    return modules[name].name == "__init__.py"


def _resolve(module: str, node: ast.ImportFrom, modules: dict[str, Path]) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if _is_package(module, modules) else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph() -> dict[str, set[str]]:
    """Module -> the library modules it imports, at module level or inside functions, with the packages that
    importing them loads (a package's own ancestors excepted: importing them is how Python loads the module)."""
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(name, node, modules)
                subs = {f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in modules}
                targets |= subs or {base}
        own = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 2)}
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            parts = target.split(".")
            for i in range(1, len(parts) + 1):
                step = ".".join(parts[:i])
                if step in modules and step not in own:
                    graph[name].add(step)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), or a module importing itself."""
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph[v]:
                found.append(sorted(component))

    sys.setrecursionlimit(10000)
    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    graph = import_graph()
    assert len(graph) >= 40 and "srlm_lite.engines" in graph["srlm_lite.stages.context"]
    assert cycles(graph) == []


def test_no_function_over_60_lines():
    long = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name} ({lines} lines)")
    assert long == []


def test_engines_are_opened_in_one_place():
    """Outside engines/, no engine class of the registry is constructed or opened directly: everything goes
    through `open_engine`."""
    from srlm_lite.engines import ENGINES

    classes = {path.rpartition(":")[2] for path in ENGINES.values()}
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if "engines" in path.relative_to(PACKAGE).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.Name, ast.Attribute)) and (getattr(node, "id", None) or node.attr) in classes:
                offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert len(classes) >= 2 and offenders == []


def test_python_m_runs_from_a_checkout_that_is_not_installed(tmp_path):
    """The checkout on the path, this environment's packages after it, no .pth processing (so no editable
    install): `python -m srlm_lite` still finds its cli/ and prompts/."""
    import site
    import sysconfig

    root = PACKAGE.parent
    paths = list(dict.fromkeys([sysconfig.get_paths()["purelib"], *site.getsitepackages()]))
    code = ("import sys, runpy; sys.path[:0] = [%r]; sys.path += %r; sys.argv = ['srlm-lite', 'iterate', '--help'];"
            "runpy.run_module('srlm_lite', run_name='__main__')" % (str(root), paths))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-S", "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "--judge-mode" in done.stdout
    code = ("import sys; sys.path[:0] = [%r]; sys.path += %r; from srlm_lite.templates import load_template;"
            "print(load_template('judge').placeholders)" % (str(root), paths))
    done = subprocess.run([sys.executable, "-S", "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0 and "instruction" in done.stdout, done.stderr


def test_every_subpackage_is_packaged():
    """A subpackage missing from pyproject's `packages` works in a checkout and is absent from an installed wheel."""
    import tomllib

    listed = set(tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(("srlm_lite", *p.parent.relative_to(PACKAGE).parts)) for p in PACKAGE.rglob("__init__.py")}
    assert found - listed == set()
