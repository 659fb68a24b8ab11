"""The house is one-way: every le_ray module imports only from its own floor or below, and nothing imports in a circle.

Floors (../shared/design.md), lowest first; data flows config → data → trial → metrics/stats →
results → report, and metrics/stats sit low because they are pure functions that the trial's
evaluation and the report both call.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "le_ray"

#: package (or leaf module) → floor; the longest matching prefix wins. One entry per package: the tree is the floors.
FLOORS = {
    # 1: the leaves everything may use, and the validated config
    "le_ray": 1, "le_ray.errors": 1, "le_ray.atomic": 1, "le_ray.seeds": 1, "le_ray.version": 1,
    "le_ray.registry": 1, "le_ray.glossary": 1, "le_ray.config": 1,
    # 2: pure numpy / scipy over additive per-condition sums
    "le_ray.metrics": 2, "le_ray.stats": 2,
    # 3: the Polars pipeline, synthetic data, prepared arrays, tensor batches
    "le_ray.data": 3,
    # 4: model, losses, history, objectives, loop, devices, the trial
    "le_ray.training": 4,
    # 5: the sweep engine: plan, Ray driver, results store, audit, fault hooks
    "le_ray.sweep": 5,
    # 6: reports of sweeps and diagnostic runs, and their figures (read results, never train a trial)
    "le_ray.report": 6,
    # 7: each command's orchestration, the console, and the thin `python -m` entry points
    "le_ray.runners": 7, "le_ray.cli": 7, "le_ray.report.__main__": 7,
    "le_ray.repeats": 7, "le_ray.run": 7, "le_ray.tune": 7, "le_ray.prepare": 7,
}

#: the only modules directly in le_ray/: the leaves and the thin entry points
TOP_LEVEL = {"__init__", "errors", "atomic", "seeds", "version", "registry", "glossary",
             "repeats", "run", "tune", "prepare"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def floor_of(module: str) -> int:
    keys = [k for k in FLOORS if module == k or module.startswith(k + ".")]
    if not keys:
        raise AssertionError(f"{module} has no floor in tests/test_layering.py FLOORS; add it")
    return FLOORS[max(keys, key=len)]


def _imports(path: Path) -> set[str]:
    """le_ray modules imported anywhere in the file (top level and inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("le_ray")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("le_ray"):
            for alias in node.names:  # "from le_ray import metrics" imports the module le_ray.metrics
                sub = f"{node.module}.{alias.name}"
                found.add(sub if _exists(sub) else node.module)
    return found


def _exists(module: str) -> bool:
    base = PACKAGE.parent.joinpath(*module.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {m: {i for i in _imports(p) if i != m and i in modules} for m, p in modules.items()}


def test_every_module_has_a_floor():
    for module in _graph():
        floor_of(module)


def test_no_import_runs_from_a_lower_floor_up():
    upward = [f"{m} (floor {floor_of(m)}) imports {i} (floor {floor_of(i)})"
              for m, deps in sorted(_graph().items()) for i in sorted(deps) if floor_of(i) > floor_of(m)]
    assert not upward, "\n".join(upward)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

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
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))
    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle():
    # a package's __init__ re-exporting its own submodules is not a circle of ideas: drop those edges
    graph = {m: {i for i in deps if not (m != "le_ray" and i.startswith(m + "."))} for m, deps in _graph().items()}
    assert _cycles(graph) == []


def test_the_checks_can_fail():
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": set()}) == [["a", "b"]]
    with pytest.raises(AssertionError, match="no floor"):
        floor_of("elsewhere.module")


def test_no_function_is_longer_than_60_lines():
    long = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > 60:
                    long.append(f"{_module_name(path)}.{node.name}: {length} lines")
    assert not long, "\n".join(long)


def test_top_level_holds_only_leaves_and_entry_points():
    """Everything else lives in the package of its stage (config, data, training, sweep, report, runners, cli)."""
    extra = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem not in TOP_LEVEL)
    assert not extra, f"modules outside a stage package: {extra}"


@pytest.mark.parametrize("entry", ["repeats", "run", "tune", "prepare"])
def test_entry_points_are_thin(entry):
    """`python -m le_ray.<entry>` only dispatches: no function of its own, one import from its runner."""
    tree = ast.parse((PACKAGE / f"{entry}.py").read_text())
    assert not [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))]
    froms = [n.module for n in tree.body if isinstance(n, ast.ImportFrom)]
    assert froms == [f"le_ray.runners.{entry}"]
